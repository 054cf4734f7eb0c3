"""Selector for the era-1 ``ClockAdjuster`` (brief §3.4)."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._clock_py import ClockAdjuster
else:
    try:
        from ._clock_c import ClockAdjuster
    except ImportError:
        FALLBACKS.add("clock")
        from ._clock_py import ClockAdjuster

__all__ = ["ClockAdjuster"]
