"""Selector for the per-recording ``Writer`` (brief §4.1): compiled or pure-Python twin."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._writer_py import MAX_DURATION_90K, Writer
else:
    try:
        from ._writer_c import MAX_DURATION_90K, Writer
    except ImportError:
        FALLBACKS.add("writer")
        from ._writer_py import MAX_DURATION_90K, Writer

__all__ = ["MAX_DURATION_90K", "Writer"]
