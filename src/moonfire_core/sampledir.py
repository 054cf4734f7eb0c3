"""Selector for the sample file directory layer (brief §1.1, §1.6): compiled or pure twin."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._sampledir_py import SampleDirectory, close_fd, fdatasync, fsync
else:
    try:
        from ._sampledir_c import SampleDirectory, close_fd, fdatasync, fsync
    except ImportError:
        FALLBACKS.add("sampledir")
        from ._sampledir_py import SampleDirectory, close_fd, fdatasync, fsync

__all__ = ["SampleDirectory", "close_fd", "fdatasync", "fsync"]
