"""``python -m moonfire`` is the same as the ``moonfire`` command."""

import sys

from .cli import main

sys.exit(main())
