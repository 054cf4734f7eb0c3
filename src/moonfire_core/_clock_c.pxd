"""Layout of ``_clock_c.ClockAdjuster`` so the compiled writer can ``cimport`` it and call
``adjust_c`` per frame without a Python method call."""

from libc.stdint cimport int64_t


cdef class ClockAdjuster:
    cdef int64_t _cur     # units accumulated since the last one-unit shift, always >= 0
    cdef int64_t _every   # shift one unit per this many units (>= 2000); 0 when disabled
    cdef int _ndir        # +1 shortens, -1 lengthens, 0 disabled

    cdef int64_t adjust_c(self, int64_t val) noexcept
