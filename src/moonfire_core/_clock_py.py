"""Era-1 frame-duration correction (brief §3.4), pure-Python twin of ``_clock_c``.

A recording's ``local_time_delta`` says how far the NVR's clock has drifted from the chained
timeline of a run.  The *next* recording of the run cancels that drift by nudging its frame
durations one 90 kHz unit at a time, at most once every 2000 units (500 ppm), so playback never
visibly speeds up or slows down.  This is the fixed logic of bbe04f9: deltas within ±60 units
(0.67 ms) leave durations alone, which also avoids the negative-``every`` overflow of c82f038.
"""

from operator import index

#: Largest duration ``adjust`` accepts: the ``video_index`` stores durations as i32.
MAX_DURATION_90K = 2**31 - 1

# 2700 units = 500 ppm of the 60 s (5,400,000 unit) desired recording duration.
_CORRECTION_WINDOW_90K = 5_400_000
_MAX_CORRECTION_90K = 2700
_MIN_EVERY = 2000
_DEAD_BAND_90K = 60


class ClockAdjuster:
    """Shifts frame durations by one unit every ``every`` units to cancel a clock delta.

    ``ndir`` is +1 when the NVR clock is behind the chained timeline (the camera runs fast, so
    durations are shortened) and -1 when it is ahead (durations are lengthened); 0 disables.
    """

    __slots__ = ("_cur", "_every", "_ndir")

    def __init__(self, local_time_delta_90k: int | None) -> None:
        """:param local_time_delta_90k: the previous recording's ``local_time_delta`` in 90 kHz
            units, or ``None`` for the first recording of a run (no correction)."""
        self._cur = 0
        if local_time_delta_90k is None:
            self._every, self._ndir = 0, 0
            return
        delta = index(local_time_delta_90k)
        if -_DEAD_BAND_90K <= delta <= _DEAD_BAND_90K:
            self._every, self._ndir = 0, 0
        elif delta <= -_MAX_CORRECTION_90K:
            self._every, self._ndir = _MIN_EVERY, 1
        elif delta >= _MAX_CORRECTION_90K:
            self._every, self._ndir = _MIN_EVERY, -1
        elif delta < 0:
            # Both operands are positive here, so Python's floor division equals Rust's
            # truncating i32 division.
            self._every, self._ndir = _CORRECTION_WINDOW_90K // -delta, 1
        else:
            self._every, self._ndir = _CORRECTION_WINDOW_90K // delta, -1

    def adjust(self, duration_90k: int) -> int:
        """Return ``duration_90k`` corrected toward the NVR clock; call once per frame, in order.

        Equivalent to the Rust loop ``cur += val; while cur > every - 1 && val > ndir
        { val -= ndir; cur -= every }``, computed in one step: the loop runs ``cur // every``
        times (``cur`` is never negative), capped when shortening so a duration never drops
        below 1 (a 1 stays 1 and a trailing-zero 0 stays 0).

        :param duration_90k: a frame duration in 90 kHz units, 0 to 2**31 - 1.
        :raises ValueError: if ``duration_90k`` is outside that range.
        """
        val = duration_90k if type(duration_90k) is int else index(duration_90k)
        if val < 0 or val > MAX_DURATION_90K:
            raise ValueError(f"duration_90k {val} out of range [0, {MAX_DURATION_90K}]")
        ndir = self._ndir
        if ndir == 0:
            return val
        cur = self._cur + val
        every = self._every
        shifts = cur // every
        if ndir > 0 and shifts > val - 1:
            shifts = max(val - 1, 0)
        self._cur = cur - shifts * every
        return val - shifts * ndir
