"""Decode times for packets that arrive without one (issue 10 §1: B-frames over RTSP).

A camera with B-frames sends frames in decode order with presentation times out of order, and
the recorder stores them in that order with durations between *decode* times.  FFmpeg's RTSP
demuxer gives the first packets of a session no dts (it gave pts 9000, 3000, 6000 with dts
``None, None, 3000``: media-notes §3), and a demuxer may drop one now and then.

``DecodeTimeFiller`` holds packets without a dts until one with a dts arrives and then fills
them in.  At the start of a session it works backwards: each held packet is decoded one frame
interval (the smallest step between the pts seen) before the next, and never after its own pts;
for the example that gives -3000 and 0, exactly the times the camera used, and the filled times
are strictly increasing with non-negative composition offsets.  Later, a packet missing its dts
between two that have one gets a time shared out evenly between theirs.  Known decode times are
never changed, so the recorder's "time went back" check still sees a camera that restarted its
clock.  A stream that never gives a dts (``MAX_HELD`` packets
in a row) is decoded in presentation order from the smallest pts held, which is exact for a
stream without B-frames.
"""

from __future__ import annotations

from typing import Generic, TypeVar

#: Packets held while waiting for a dts; beyond, the stream is taken to have none.
MAX_HELD = 16

T = TypeVar("T")


class DecodeTimeFiller(Generic[T]):
    """Gives every packet of one session a decode time, in order.

    ``push(item, pts, dts)`` takes a packet (any object: it is handed back untouched) with its
    times and returns ``(item, decode time)`` for each packet that is ready, in arrival order;
    ``finish()`` those still held when the session ends.
    """

    def __init__(self) -> None:
        self._held: list[tuple[T, int]] = []  # (item, pts), waiting for a dts
        self._last_dts: int | None = None

    def push(self, item: T, pts_90k: int, dts_90k: int | None) -> list[tuple[T, int]]:
        if dts_90k is None:
            self._held.append((item, pts_90k))
            if len(self._held) <= MAX_HELD:
                return []
            return [self._release_oldest_without_dts()]
        ready = self._fill_before(dts_90k, pts_90k) if self._held else []
        self._last_dts = dts_90k
        ready.append((item, dts_90k))
        return ready

    def finish(self) -> list[tuple[T, int]]:
        ready = []
        while self._held:
            ready.append(self._release_oldest_without_dts())
        return ready

    def _fill_before(self, next_dts: int, next_pts: int) -> list[tuple[T, int]]:
        """The held packets, decoded before ``next_dts`` (one step apart, none after its pts)."""
        held, self._held = self._held, []
        times: list[int] = []
        if self._last_dts is not None:
            # A gap between two known decode times: share it out evenly.
            span = next_dts - self._last_dts
            times = [self._last_dts + span * (i + 1) // (len(held) + 1) for i in range(len(held))]
        else:
            step = _frame_step([pts for _, pts in held] + [next_pts])
            dts = next_dts
            for _, pts in reversed(held):
                dts = min(pts, dts - step)
                times.append(dts)
            times.reverse()
        return [(item, time) for (item, _), time in zip(held, times, strict=True)]

    def _release_oldest_without_dts(self) -> tuple[T, int]:
        """No dts in sight: decode the oldest held packet at the smallest pts still to come."""
        item, pts = self._held.pop(0)
        dts = min([pts] + [later for _, later in self._held])
        if self._last_dts is not None:
            dts = max(dts, self._last_dts + 1)
        self._last_dts = dts
        return item, dts


def _frame_step(pts: list[int]) -> int:
    """The smallest positive gap between distinct presentation times: one frame interval."""
    distinct = sorted(set(pts))
    gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
    return min(gaps) if gaps else 1
