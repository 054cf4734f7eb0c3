"""Era-1 frame-duration correction (brief §3.4), compiled twin of ``_clock_py``.

``_clock_py`` is the readable specification; this module matches it name for name, message for
message.  ``adjust`` runs once per video frame, so its state lives in C 64-bit integers and the
per-call work is one conversion, one division and no allocation.  ``cur`` is 64-bit because the
Rust i32 could grow past i32 while lengthening a 2**31 - 1 duration; outputs may exceed i32 for
the same reason and are returned as Python ints, exactly as the twin does.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from libc.stdint cimport int64_t

from operator import index

#: Largest duration ``adjust`` accepts: the ``video_index`` stores durations as i32.
MAX_DURATION_90K = 2**31 - 1

cdef enum:
    _MAX_DURATION = 2147483647
    # 2700 units = 500 ppm of the 60 s (5,400,000 unit) desired recording duration.
    _CORRECTION_WINDOW_90K = 5400000
    _MAX_CORRECTION_90K = 2700
    _MIN_EVERY = 2000
    _DEAD_BAND_90K = 60


@cython.final
cdef class ClockAdjuster:
    """Shifts frame durations by one unit every ``every`` units to cancel a clock delta.

    ``ndir`` is +1 when the NVR clock is behind the chained timeline (the camera runs fast, so
    durations are shortened) and -1 when it is ahead (durations are lengthened); 0 disables.
    """

    def __init__(self, local_time_delta_90k):
        """:param local_time_delta_90k: the previous recording's ``local_time_delta`` in 90 kHz
            units, or ``None`` for the first recording of a run (no correction)."""
        self._cur = 0
        self._every = 0
        self._ndir = 0
        if local_time_delta_90k is None:
            return
        # Compare as Python ints: the delta is an i64 in the database, but any int is accepted
        # and clamped, exactly as the twin does; this runs once per recording.
        delta = index(local_time_delta_90k)
        if -_DEAD_BAND_90K <= delta <= _DEAD_BAND_90K:
            pass
        elif delta <= -_MAX_CORRECTION_90K:
            self._every, self._ndir = _MIN_EVERY, 1
        elif delta >= _MAX_CORRECTION_90K:
            self._every, self._ndir = _MIN_EVERY, -1
        elif delta < 0:
            # Positive operands: truncating and floor division agree.
            self._every, self._ndir = _CORRECTION_WINDOW_90K // -delta, 1
        else:
            self._every, self._ndir = _CORRECTION_WINDOW_90K // delta, -1

    def adjust(self, duration_90k):
        """Return ``duration_90k`` corrected toward the NVR clock; call once per frame, in order.

        See ``_clock_py.ClockAdjuster.adjust`` for the closed form of the Rust loop.

        :param duration_90k: a frame duration in 90 kHz units, 0 to 2**31 - 1.
        :raises ValueError: if ``duration_90k`` is outside that range.
        """
        cdef int overflow = 0
        cdef long long val
        if not PyLong_CheckExact(duration_90k):
            # Same conversion (and TypeError text) as the twin for bool, numpy ints, floats.
            duration_90k = index(duration_90k)
        val = PyLong_AsLongLongAndOverflow(duration_90k, &overflow)
        if overflow != 0 or val < 0 or val > _MAX_DURATION:
            raise ValueError(f"duration_90k {duration_90k} out of range [0, {MAX_DURATION_90K}]")
        return self.adjust_c(val)

    @cython.cdivision(True)
    cdef int64_t adjust_c(self, int64_t val) noexcept:
        """``adjust`` for Cython callers that already hold a validated 0..2**31-1 duration."""
        cdef int64_t cur, shifts
        if self._ndir == 0:
            return val
        cur = self._cur + val
        shifts = cur // self._every  # cur >= 0 and every >= 2000: C and Python division agree
        if self._ndir > 0 and shifts > val - 1:
            shifts = val - 1 if val > 1 else 0
        self._cur = cur - shifts * self._every
        return val - shifts * self._ndir
