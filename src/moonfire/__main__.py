"""``python -m moonfire`` is the same as the ``moonfire`` command."""

import sys

from moonfire.cli.main import main

sys.exit(main())
