"""Live frames, from the streamers to the live view's WebSocket clients (issue 11 §3).

A streamer thread publishes every frame it records; the web event loop hands each one to the
clients watching that stream.  The rules, each one a requirement:

* **The publisher never waits.**  ``LiveFeed.publish`` takes one short lock, appends the frame
  to one bounded inbox per event loop that has subscribers, and wakes that loop with
  ``call_soon_threadsafe`` only if it is not already due to drain the inbox.  The fan-out to
  the subscribers runs on the event loop, so a hundred viewers cost the streamer what one does.
  An event loop that stops draining loses the oldest inbox entries (its subscribers see the gap
  and skip to the next key frame); the publisher is never held up and memory stays bounded.
* **Each subscriber's queue is bounded** (``max_queue`` frames).  A subscriber that falls
  behind drops to the latest key frame in its queue, or, with none after its head, everything
  it holds and every frame up to the next key frame; the frames it lost arrive as one
  ``Dropped(frames=N)`` just before the key frame it resumes at.
* **A new subscriber starts with the current GOP**: the feed keeps the frames since the last
  key frame (bounded in frames and bytes; past the bound, new subscribers wait for the next key
  frame), so a player shows a picture at once instead of after up to a GOP.
* A frame is published once its duration is known, that is when the next frame arrives: the
  fragment's ``trun`` carries it, and Moonfire's UI lays fragments end to end by duration.
  That costs the live view one frame interval of latency; ``LiveFeeds(estimate_durations=True)``
  publishes each frame at once with the previous frame's duration instead.

Threads: ``publish`` and ``reset`` from any thread (the streamer's); ``subscribe`` and
everything on a ``Subscription`` from the event loop that reads it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moonfire.errors import MoonfireError

if TYPE_CHECKING:
    from moonfire.ingest.recorder import RecordingStart

log = logging.getLogger(__name__)

#: Frames a subscriber may have queued before it is made to skip (3 s at 30 fps).
DEFAULT_MAX_QUEUE = 90
#: Bounds of the current GOP kept for new subscribers (20 s at 30 fps; 8 s at 16 Mbit/s).  Every
#: stream keeps its GOP, watched or not: typically 0.2-2 MB.
GOP_MAX_FRAMES = 600
GOP_MAX_BYTES = 16 << 20
#: Frames an event loop's inbox holds before it loses the oldest (the loop stopped draining).
INBOX_MAX_FRAMES = 1024


class SubscriptionClosedError(MoonfireError):
    """``Subscription.get`` after ``close()``: the client left or the server is stopping."""


@dataclass(frozen=True, slots=True)
class LiveRecording:
    """The recording a live frame belongs to: what the ``X-`` headers of ``live.m4s`` say
    (web-api.md §2.7).  One object is shared by all the frames of a recording."""

    stream_id: int
    #: The sample file directory open the recording will be committed under (``openId``).
    open_id: int | None
    #: The recording id it is expected to get: ids are given at commit, in order, so this is
    #: the stream's next id when the streamer started plus the recordings it has closed since.
    #: Wrong only if a recording is rejected at commit.  None when unknown.
    recording_id_hint: int | None
    #: Wall time (90 kHz since 1970) the recording's first frame was received: the
    #: recording's start to within the clock adjustment the writer applies.
    start_90k: int
    #: Decode time of the recording's first frame (its pts without B-frames); a frame's media
    #: time in it is its decode time minus this.
    start_pts_90k: int
    #: Summed media duration of the earlier recordings of its run.
    prev_media_duration_90k: int
    #: Runs the streamer has begun, this recording's included (``X-Runs``).
    runs: int


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """One frame as it was written to the sample file, with its duration."""

    stream_id: int
    video_sample_entry_id: int
    #: The sample's bytes as the sample file holds them (H.264: length-prefixed NAL units).
    data: bytes
    is_key: bool
    #: Its presentation time; frames come in decode order, so with B-frames this goes back and
    #: forth (see ``composition_offset_90k``).
    pts_90k: int
    #: Until the next frame's decode time; the previous frame's (an estimate) for the last
    #: frame of a session, before a time jump, and for every frame with ``estimate_durations``.
    duration_90k: int
    #: Wall time the frame was received (90 kHz since 1970).
    local_time_90k: int
    #: ``time.monotonic_ns()`` when it was received: for measuring the live view's latency.
    received_ns: int
    recording: LiveRecording
    #: Presentation minus decode time (B-frames; 0 otherwise): the fragment's ``trun`` carries
    #: it so the player shows frames in presentation order.
    composition_offset_90k: int = 0

    @property
    def decode_time_90k(self) -> int:
        return self.pts_90k - self.composition_offset_90k

    @property
    def media_start_90k(self) -> int:
        """Where the frame starts in its recording's media time (``X-Media-Time-Range``): its
        decode time, as the recording's durations are decode-time deltas."""
        return self.decode_time_90k - self.recording.start_pts_90k


@dataclass(frozen=True, slots=True)
class Dropped:
    """A subscriber fell behind and lost ``frames`` frames; the next item is a key frame."""

    frames: int


LiveItem = LiveFrame | Dropped


class LiveFeeds:
    """One ``LiveFeed`` per stream: the daemon makes one and gives it to every ``Streamer``
    (``live=``) and to the web app.

    ``estimate_durations``: streamers publish each frame as it arrives, with the previous
    frame's duration, instead of when the next one arrives (see ``FramePublisher``).
    """

    def __init__(
        self,
        *,
        gop_max_frames: int = GOP_MAX_FRAMES,
        gop_max_bytes: int = GOP_MAX_BYTES,
        inbox_max_frames: int = INBOX_MAX_FRAMES,
        estimate_durations: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[int, LiveFeed] = {}
        self._limits = (gop_max_frames, gop_max_bytes, inbox_max_frames)
        self._estimate_durations = estimate_durations

    def feed(self, stream_id: int) -> LiveFeed:
        """The stream's feed, made on first use (by its streamer or by a first viewer)."""
        with self._lock:
            feed = self._feeds.get(stream_id)
            if feed is None:
                gop_frames, gop_bytes, inbox = self._limits
                feed = LiveFeed(
                    stream_id,
                    gop_max_frames=gop_frames,
                    gop_max_bytes=gop_bytes,
                    inbox_max_frames=inbox,
                    estimate_durations=self._estimate_durations,
                )
                self._feeds[stream_id] = feed
            return feed

    def viewers(self) -> dict[int, int]:
        """Subscribers per stream id (the live-viewer metric)."""
        with self._lock:
            feeds = list(self._feeds.values())
        return {feed.stream_id: feed.subscribers for feed in feeds}


class LiveFeed:
    """One stream's frames: published by its streamer, read by any number of subscribers."""

    def __init__(
        self,
        stream_id: int,
        *,
        gop_max_frames: int = GOP_MAX_FRAMES,
        gop_max_bytes: int = GOP_MAX_BYTES,
        inbox_max_frames: int = INBOX_MAX_FRAMES,
        estimate_durations: bool = False,
    ) -> None:
        self.stream_id = stream_id
        #: Streamers publish each frame at once with an estimated duration (``FramePublisher``).
        self.estimate_durations = estimate_durations
        self._gop_max_frames = gop_max_frames
        self._gop_max_bytes = gop_max_bytes
        self._inbox_max_frames = inbox_max_frames
        self._lock = threading.Lock()
        self._seq = 0
        #: (sequence number, frame) since the last key frame; empty until one is seen.
        self._gop: list[tuple[int, LiveFrame]] = []
        self._gop_bytes = 0
        self._fanouts: dict[asyncio.AbstractEventLoop, _Fanout] = {}
        #: Called after each new subscription (a live-only streamer connects on demand).
        self._on_subscribe: list[Callable[[], None]] = []
        #: Frames published so far.
        self.published = 0

    @property
    def subscribers(self) -> int:
        with self._lock:
            return sum(len(f.subscribers) for f in self._fanouts.values())

    def on_subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each new subscription, on the subscriber's event loop
        with no lock held, so it must be quick (a live-only streamer sets an event: it
        connects when its first viewer arrives)."""
        with self._lock:
            self._on_subscribe.append(callback)

    # ---- the publisher's side (any thread; never blocks on a subscriber) ----

    def publish(self, frame: LiveFrame) -> None:
        """Hand ``frame`` to every subscriber; returns at once whatever they are doing."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            self.published += 1
            if frame.is_key:
                self._gop = [(seq, frame)]
                self._gop_bytes = len(frame.data)
            elif self._gop:
                self._gop_bytes += len(frame.data)
                if len(self._gop) >= self._gop_max_frames or self._gop_bytes > self._gop_max_bytes:
                    self._gop = []  # too long to replay: new subscribers wait for a key frame
                else:
                    self._gop.append((seq, frame))
            if not self._fanouts:
                return
            to_wake = [fanout for fanout in self._fanouts.values() if fanout.push(seq, frame)]
        for fanout in to_wake:
            if not fanout.wake():
                self._remove_fanout(fanout)

    def reset(self) -> None:
        """The stream's session ended: its GOP is no longer the current picture."""
        with self._lock:
            self._gop = []
            self._gop_bytes = 0

    # ---- the subscribers' side (the event loop) ----

    def subscribe(self, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        """A subscription for the running event loop, starting with the current GOP (if any)
        or else at the next key frame."""
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        loop = asyncio.get_running_loop()
        with self._lock:
            fanout = self._fanouts.get(loop)
            if fanout is None:
                fanout = self._fanouts[loop] = _Fanout(self, loop, self._inbox_max_frames)
            subscription = Subscription(
                self, fanout, max_queue, [frame for _, frame in self._gop], self._seq
            )
            fanout.subscribers.add(subscription)
            callbacks = list(self._on_subscribe)
        for callback in callbacks:
            callback()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            fanout = subscription._fanout
            fanout.subscribers.discard(subscription)
            if not fanout.subscribers and self._fanouts.get(fanout.loop) is fanout:
                del self._fanouts[fanout.loop]

    def _remove_fanout(self, fanout: _Fanout) -> None:
        """Its event loop is closed: nobody will read its subscriptions."""
        with self._lock:
            if self._fanouts.get(fanout.loop) is fanout:
                del self._fanouts[fanout.loop]


class _Fanout:
    """The frames waiting for one event loop, and that loop's subscribers of one feed.

    ``inbox`` and ``scheduled`` are guarded by the feed's lock; ``subscribers`` is changed
    under it too, and read by ``drain`` on the loop.
    """

    def __init__(self, feed: LiveFeed, loop: asyncio.AbstractEventLoop, inbox_max: int) -> None:
        self.feed = feed
        self.loop = loop
        self.inbox: deque[tuple[int, LiveFrame]] = deque(maxlen=inbox_max)
        self.scheduled = False
        self.subscribers: set[Subscription] = set()

    def push(self, seq: int, frame: LiveFrame) -> bool:
        """Queue a frame (feed lock held); True if the loop must be woken to drain."""
        self.inbox.append((seq, frame))
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def wake(self) -> bool:
        """Ask the loop to drain (no lock held); False if the loop is closed."""
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def drain(self) -> None:
        """On the loop: give every waiting frame to every subscriber."""
        with self.feed._lock:
            items = list(self.inbox)
            self.inbox.clear()
            self.scheduled = False
            subscribers = list(self.subscribers)
        for subscription in subscribers:
            for seq, frame in items:
                subscription._offer(seq, frame)


class Subscription:
    """One viewer's bounded queue of frames; read it on the event loop that made it.

    ``async for item in subscription`` gives ``LiveFrame``s, starting at a key frame, and a
    ``Dropped`` before the key frame it resumes at after falling behind; ``get(timeout)`` is
    the same with a timeout.  ``close()`` when done.
    """

    def __init__(
        self,
        feed: LiveFeed,
        fanout: _Fanout,
        max_queue: int,
        gop: list[LiveFrame],
        last_seq: int,
    ) -> None:
        self._feed = feed
        self._fanout = fanout
        self.max_queue = max_queue
        self._queue: deque[LiveItem] = deque(gop)
        self._frames_queued = len(gop)
        #: The GOP replayed at the start does not count against ``max_queue``.
        self._limit = max_queue + len(gop)
        self._last_seq = last_seq
        #: Waiting for a key frame: at the start when there was no GOP to replay, or after
        #: falling behind (only then are the frames passed over counted in ``_dropped``).
        self._waiting_for_key = not gop
        self._count_skipped = False
        self._dropped = 0
        #: Frames reported lost by the ``Dropped`` items read so far.
        self.dropped_total = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def stream_id(self) -> int:
        return self._feed.stream_id

    @property
    def queued(self) -> int:
        """Frames waiting to be read."""
        return self._frames_queued

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self, timeout: float | None = None) -> LiveItem | None:
        """The next frame or ``Dropped``; None after ``timeout`` seconds with nothing.

        Raises ``SubscriptionClosedError`` once closed.
        """
        if not self._queue and not self._closed:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _finish, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        if self._closed:
            raise SubscriptionClosedError(f"live subscription to stream {self.stream_id} closed")
        if not self._queue:
            return None
        item = self._queue.popleft()
        if isinstance(item, LiveFrame):
            self._frames_queued -= 1
        else:
            self.dropped_total += item.frames
        return item

    def close(self) -> None:
        """Stop receiving frames; a ``get`` waiting now raises ``SubscriptionClosedError``."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._frames_queued = 0
        self._feed._unsubscribe(self)
        if self._waiter is not None:
            _finish(self._waiter)

    def __aiter__(self) -> AsyncIterator[LiveItem]:
        return self

    async def __anext__(self) -> LiveItem:
        try:
            item = await self.get()
        except SubscriptionClosedError:
            raise StopAsyncIteration from None
        assert item is not None
        return item

    # ---- fed by _Fanout.drain, on the loop ----

    def _offer(self, seq: int, frame: LiveFrame) -> None:
        if self._closed or seq <= self._last_seq:
            return  # already replayed as part of the GOP
        lost = seq - self._last_seq - 1  # lost from the loop's inbox: the loop fell behind
        self._last_seq = seq
        if self._waiting_for_key:
            if self._count_skipped:
                self._dropped += lost + (not frame.is_key)
            if not frame.is_key:
                return
            self._waiting_for_key = False
            self._append_after_drop(frame)
        elif lost:
            # What is queued is still whole; the frames after the gap need a key frame.
            self._dropped += lost
            if frame.is_key:
                self._append_after_drop(frame)
            else:
                self._skip_to_next_key(1)
        else:
            self._queue.append(frame)
            self._frames_queued += 1
            if self._frames_queued > self._limit:
                self._fall_behind()
        if self._waiter is not None and self._queue:
            _finish(self._waiter)

    def _fall_behind(self) -> None:
        """Too many frames queued: keep the queue from its last key frame if that is not its
        first frame; otherwise drop it all and wait for the next key frame."""
        self._limit = self.max_queue
        frames_before = self._frames_queued
        for position in range(len(self._queue) - 1, -1, -1):
            item = self._queue[position]
            if isinstance(item, LiveFrame):
                frames_before -= 1
                if item.is_key:
                    if frames_before == 0:
                        break
                    dropped = self._dropped + self._discard(position)
                    self._dropped = 0
                    self._queue.appendleft(Dropped(dropped))
                    return
        self._skip_to_next_key(self._discard(len(self._queue)))

    def _skip_to_next_key(self, dropped: int) -> None:
        self._dropped += dropped
        self._waiting_for_key = True
        self._count_skipped = True

    def _discard(self, count: int) -> int:
        """Drop the first ``count`` queue items; the frames they held (earlier ``Dropped``
        counts included)."""
        frames = 0
        for _ in range(count):
            item = self._queue.popleft()
            if isinstance(item, LiveFrame):
                frames += 1
                self._frames_queued -= 1
            else:
                frames += item.frames
        return frames

    def _append_after_drop(self, frame: LiveFrame) -> None:
        """Queue the key frame a skip resumes at, after the ``Dropped`` count (if any)."""
        if self._dropped:
            self._queue.append(Dropped(self._dropped))
            self._dropped = 0
        self._queue.append(frame)
        self._frames_queued += 1


def _finish(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FramePublisher:
    """The streamer's side: turns recorded frames into ``LiveFrame``s, and never lets a failure
    here reach the recording.

    A frame is published when the next one arrives and its duration is known, unless its feed
    has ``estimate_durations``: then it goes at once, with the previous frame's duration as its
    own (exact for a constant frame rate), which takes one frame interval off the live view's
    latency.  Only a session's first frame then waits for the second.
    """

    def __init__(
        self,
        feed: LiveFeed,
        *,
        next_recording_id: int | None = None,
        open_id: int | None = None,
    ) -> None:
        self.feed = feed
        self._next_recording_id = next_recording_id
        self._open_id = open_id
        self._at_once = feed.estimate_durations
        self._pending: tuple[bytes, int, bool, int, int, int, LiveRecording, int] | None = None
        #: Decode time of the previous frame of this session that went into a recording.
        self._prev_dts: int | None = None
        self._last_duration = 0
        self._start: RecordingStart | None = None
        self._recording: LiveRecording | None = None
        self._failed = False

    def frame(
        self,
        data: bytes,
        pts_90k: int,
        is_key: bool,
        video_sample_entry_id: int,
        local_time_90k: int,
        received_ns: int | None,
        start: RecordingStart | None,
        *,
        dts_90k: int | None = None,
    ) -> None:
        """A frame the recorder was given; ``start`` is the recording it went into (None if it
        went into none: before the first key frame, or after a write error).  ``dts_90k`` is
        its decode time (B-frames), ``None`` when that is the pts."""
        try:
            dts = pts_90k if dts_90k is None else dts_90k
            if start is not None and self._prev_dts is not None and dts > self._prev_dts:
                self._last_duration = dts - self._prev_dts
            if self._pending is not None:
                self._publish(self._pending, self._last_duration)
                self._pending = None
            if start is None:
                self._prev_dts = None
                return
            self._prev_dts = dts
            if received_ns is None:
                received_ns = time.monotonic_ns()
            item = (
                bytes(data), pts_90k, is_key, video_sample_entry_id, local_time_90k,
                received_ns, self._recording_for(start), pts_90k - dts,
            )
            if self._at_once and self._last_duration > 0:
                self._publish(item, self._last_duration)
            else:
                self._pending = item
        except Exception:  # noqa: BLE001 - the live view must never stop the recording
            self._pending = None
            if not self._failed:
                self._failed = True
                log.exception("live view of stream %d: publishing failed", self.feed.stream_id)

    def end_session(self) -> None:
        """The session ended: publish its last frame (with the previous duration) and forget
        the GOP."""
        try:
            if self._pending is not None:
                self._publish(self._pending, self._last_duration)
            self._pending = None
            self._prev_dts = None
            self.feed.reset()
        except Exception:  # noqa: BLE001 - as in frame()
            log.exception("live view of stream %d: ending the session", self.feed.stream_id)

    def _publish(
        self, pending: tuple[bytes, int, bool, int, int, int, LiveRecording, int], duration: int
    ) -> None:
        data, pts, is_key, entry_id, local_time, received_ns, recording, offset = pending
        self.feed.publish(
            LiveFrame(
                self.feed.stream_id, entry_id, data, is_key, pts, duration, local_time,
                received_ns, recording, offset,
            )
        )

    def _recording_for(self, start: RecordingStart) -> LiveRecording:
        if start is self._start and self._recording is not None:
            return self._recording
        self._start = start
        hint = None
        if self._next_recording_id is not None:
            hint = self._next_recording_id + start.closed_before
        self._recording = LiveRecording(
            stream_id=self.feed.stream_id,
            open_id=self._open_id,
            recording_id_hint=hint,
            start_90k=start.local_time_90k,
            start_pts_90k=start.pts_90k,
            prev_media_duration_90k=start.pts_90k - start.run_start_pts_90k,
            runs=start.runs,
        )
        return self._recording
