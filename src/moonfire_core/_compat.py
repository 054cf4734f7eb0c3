"""Which implementation of the core to load.

``MOONFIRE_NO_EXTENSIONS`` is read once, at import.  Non-CPython interpreters
always get the pure-Python twins.  When the compiled module of a pair cannot be
imported the selector falls back to its twin and records the name in
``FALLBACKS``, so ``moonfire_core.IMPLEMENTATION`` (and the test that guards it)
tells the truth about a broken build instead of hiding it.
"""

import os
import sys

NO_EXTENSIONS: bool = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)

#: Stems of compiled modules that failed to import and were replaced by twins.
FALLBACKS: set[str] = set()
