"""One thread per stream: connect, feed packets to the recorder, reconnect on errors
(§4.1).  A camera recording its main and sub streams has two.

A *session* is one connection to the stream.  It opens the source, turns its
extradata into a sample entry (inserted, deduplicated, in the database before
any packet is written), anchors the monotonic clock to wall time once (brief
§3.2: a wall-clock step mid-session must not move frame times) and hands every
packet to ``StreamRecorder``, which drops packets until the first key frame and
rotates.  A session ends with ``recorder.end_run()``, so its last recording is
saved with a trailing zero and the next session starts a new run.

Clocks: the wall clock is read once per session, so a step (NTP after boot)
moves only the *next* session's anchor, with a WARNING saying by how much.  A
camera whose timestamps jump against the monotonic clock by more than
``MAX_TIMESTAMP_JUMP_SEC`` mid-session has its run ended there, and the next key
frame starts a new one (``_CheckedSource``).

On any error the streamer logs one line naming the stream (``camera/main``) and
reconnects (``ReconnectPolicy``): quickly (``QUICK_RETRY_SEC``) for a second after
a session that delivered a key frame (a flaky link costs only its gap), else with
a back-off of 1 s doubling to 30 s while connections keep failing before any
frame.  An exception nobody expected (a bug, a bad URL) is logged the same way
and retried: the thread never dies of one.  A *finite* source (a file) reaching
its end ends the stream for good (state ``ended``).  ``stop()`` wakes it from the
back-off and interrupts the source; a source blocked in a network read notices
within its read timeout.

``transport=auto`` tries TCP, then UDP when the camera refuses TCP.  The streamer
remembers the transport that worked and asks for it alone at the next sessions, so a
UDP-only camera's reconnects don't each pay a refused TCP setup (and the pause after
it); a session on it that fails before any key frame forgets it, and ``auto`` decides
again.

A *live-only* streamer (``live_only=True``: a sub stream with no budget, kept for the
live view) has no recorder and no syncer: it publishes frames to its ``LiveFeed``
through the same ``FramePublisher`` and inserts its sample entries in the database as
a recorded stream does (the live view's init segment needs one), and follows the same
``ReconnectPolicy``.  It connects on demand: only while someone watches, staying
connected ``LIVE_ONLY_GRACE_SEC`` after the last viewer left (a page reload or a
layout change doesn't reconnect), so a stream nobody watches costs no connection
(cameras allow few sessions), no bandwidth and no CPU.  Each session is one run of
frames whose ``LiveRecording`` no database row will have (no ``X-Recording-Id``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from moonfire.codec import SampleEntry, sample_entry_from_extradata
from moonfire.db import Camera, Database, Stream
from moonfire.ingest.live import FramePublisher, LiveFeeds
from moonfire.ingest.recorder import RecordingStart, StreamRecorder
from moonfire.ingest.sources import Source, SourceError, open_source, redact_url
from moonfire.ingest.status_file import ENDED, FAILED, LIVE_ONLY, RECORDING, RETRYING
from moonfire.storage.syncer import Syncer, SyncerStoppedError

log = logging.getLogger(__name__)

BACKOFF_INITIAL_SEC = 1.0
BACKOFF_MAX_SEC = 30.0
#: After a session that delivered a key frame, retry this often ...
QUICK_RETRY_SEC = 0.2
#: ... for this long after it ended, before backing off.
QUICK_RETRY_WINDOW_SEC = 1.0
#: Camera timestamps that move this much more (or less) than the monotonic clock
#: between two frames of a session end the run: the camera's clock jumped.
MAX_TIMESTAMP_JUMP_SEC = 5.0
#: A session anchor this far from the last one is a wall clock step worth a warning.
WALL_CLOCK_STEP_WARNING_SEC = 1.0
#: A live-only stream stays connected this long after its last viewer left.
LIVE_ONLY_GRACE_SEC = 30.0
#: How often a live-only session counts its viewers (a lock and a sum).
VIEWER_CHECK_SEC = 1.0
#: The reason a live-only stream gives while nobody watches it.
LIVE_ONLY_IDLE = "not connected: connects when someone watches"

SourceFactory = Callable[..., Source]


class ReconnectPolicy:
    """How long to wait before the next connection, from how the last session went.

    A session that delivered a key frame proves the camera works: the back-off goes
    back to its start and the next tries come every ``QUICK_RETRY_SEC`` for
    ``QUICK_RETRY_WINDOW_SEC``, so a link that drops every few seconds is recorded
    nearly all the time.  Only sessions failing before any frame back off (1 s,
    doubling to 30 s), so a dead or misconfigured camera isn't hammered.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._backoff = BACKOFF_INITIAL_SEC
        self._quick_until = float("-inf")

    def next_delay(self, delivered_key_frame: bool) -> float:
        """Seconds to wait after a session that ended (with or without a key frame)."""
        now = self._clock()
        if delivered_key_frame:
            self._backoff = BACKOFF_INITIAL_SEC
            self._quick_until = now + QUICK_RETRY_WINDOW_SEC
        if now < self._quick_until:
            return QUICK_RETRY_SEC
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_SEC)
        return delay


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot of one streamer, for status displays and the HTTP API."""

    camera: str
    #: ``main`` or ``sub``.
    stream: str
    connected: bool
    frames: int
    recordings: int
    #: Sessions that ended in an error (each one was, or will be, retried).
    errors: int
    last_error: str | None
    #: Wall time (``time.time()``) of ``last_error``.
    last_error_time: float | None
    #: ``recording``, ``retrying``, ``failed``, ``ended`` or ``live only``
    #: (``moonfire.ingest.status_file``).
    state: str = RETRYING
    #: Why it is retrying, failed or ended, or a live-only stream is idle or connecting
    #: (None while recording or streaming live).
    reason: str | None = None


class _SessionEntry:
    """The sample entry in use and how packets must be transformed to match it."""

    def __init__(self, db: Database, extradata: bytes, codec: str) -> None:
        entry: SampleEntry = sample_entry_from_extradata(extradata, codec)
        self.entry = entry
        self.extradata = extradata
        self.codec = codec
        self.id = db.insert_video_sample_entry(entry.width, entry.height, entry.box)
        #: The parameter sets of Annex B extradata, to notice in-band changes (None otherwise).
        self.parameter_sets = entry.parameter_sets(extradata) if entry.need_transform else None


class _CheckedSource:
    """A session's source as ``_record_packets`` sees it (every other attribute is the
    source's): notes whether a key frame was delivered (handed on and handled), and ends
    the recorder's run when the camera's timestamps jump against the monotonic clock.

    The reference (decode time − receipt time) follows the stream by at most 1 ms a frame, so
    the drift between two honest clocks (well under 1 ms/s) and network jitter never
    add up to a jump, while a real one (a camera resetting its clock forward or back
    by seconds) is caught at the first frame after it.
    """

    def __init__(self, source: Source, streamer: Streamer) -> None:
        self._source = source
        self._streamer = streamer
        self.key_frame_seen = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def packets(self) -> Iterator[Any]:
        limit_ns = int(MAX_TIMESTAMP_JUMP_SEC * 1e9)
        if not getattr(self._source, "realtime", True):  # a file at full speed: no clock
            limit_ns = 1 << 62
        reference_ns: int | None = None
        for packet in self._source.packets():
            received_ns = packet.received_ns if packet.received_ns is not None else (
                time.monotonic_ns())
            # Decode times increase even where B-frames reorder the pts.
            dts_90k = getattr(packet, "dts_90k", None)
            media_90k = packet.pts_90k if dts_90k is None else dts_90k
            offset_ns = media_90k * 100_000 // 9 - received_ns
            if reference_ns is None:
                reference_ns = offset_ns
            jump_ns = offset_ns - reference_ns
            if abs(jump_ns) > limit_ns:
                self._streamer.timestamp_jumped(jump_ns)
                reference_ns = offset_ns
            else:
                reference_ns += max(-1_000_000, min(1_000_000, jump_ns))
            yield packet
            # Only once it was handled: a session failing at its first key frame every
            # time (a bug, a broken stream) keeps backing off rather than reconnecting fast.
            if packet.is_key:
                self.key_frame_seen = True


class _LiveOnlyRuns:
    """A live-only stream's stand-in for the recorder's ``RecordingStart``s: what the live
    view's headers say of its frames (``X-Recording-Start``, ``X-Media-Time-Range``,
    ``X-Runs``).  A run begins at a key frame and lasts until the session ends, the camera's
    timestamps jump or its decode time goes backwards, as a recorded stream's run would;
    nothing rotates it, since no recording is written."""

    def __init__(self) -> None:
        self.current: RecordingStart | None = None
        self._runs = 0
        self._last_dts: int | None = None

    def frame(self, local_time_90k: int, dts_90k: int, is_key: bool) -> RecordingStart | None:
        """The run this frame belongs to; None before the run's first key frame."""
        if self._last_dts is not None and dts_90k < self._last_dts:
            self.end_run()
        if self.current is None:
            if not is_key:
                return None
            self._runs += 1
            self.current = RecordingStart(local_time_90k, dts_90k, dts_90k, self._runs, 0)
        self._last_dts = dts_90k
        return self.current

    def end_run(self) -> None:
        self.current = None
        self._last_dts = None


class Streamer:
    """Records one stream of a camera in its own thread until ``stop()``; with
    ``live_only``, streams it to the live view while it is watched (see the module
    docstring)."""

    def __init__(
        self,
        camera: Camera,
        stream: Stream,
        db: Database,
        syncer: Syncer | None,
        *,
        rotate_offset_sec: int = 0,
        source_factory: SourceFactory | None = None,
        live: LiveFeeds | None = None,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        live_only: bool = False,
    ) -> None:
        """``source_factory(url, username, password)`` opens a session's source (default:
        ``open_source`` over the stream's transport); ``wall_clock_ns`` is the wall clock
        each session is anchored to (tests step it).  ``live_only`` streams to ``live``
        (required then) without recording: ``syncer`` is None.  A recorded stream without a
        syncer gets no recorder until one is assigned to ``recorder`` (tests' stand-ins)."""
        self.camera = camera
        self.stream = stream
        #: ``camera/main`` or ``camera/sub``: how logs and status name it.
        self.name = f"{camera.short_name}/{stream.type}"
        #: Streamed to the live view while watched, never recorded.
        self.live_only = live_only
        if live_only and live is None:
            raise ValueError(f"stream {self.name}: a live-only streamer needs live feeds")
        self._db = db
        self._syncer = syncer
        self._source_factory = source_factory
        #: ``auto``'s choice that worked last (``tcp``/``udp``), asked for alone until a
        #: session fails on it; None: let ``auto`` choose.
        self._working_transport: str | None = None
        self._wall_clock_ns = wall_clock_ns
        #: The last session's wall − monotonic anchor, to notice wall clock steps.
        self._last_anchor_ns: int | None = None
        self._recorder: StreamRecorder | None = None
        if syncer is not None and not live_only:
            self._recorder = StreamRecorder(
                syncer,
                stream.id,
                stream_name=self.name,
                rotate_interval_sec=camera.rotate_interval_sec,
                rotate_offset_sec=rotate_offset_sec,
            )
        self._live_runs = _LiveOnlyRuns()
        self._grace_sec = LIVE_ONLY_GRACE_SEC
        #: Set by a new viewer of a live-only stream, and by ``stop()``.
        self._wake = threading.Event()
        #: A live-only stream: a viewer is waiting (connecting, streaming or retrying) ...
        self._demanded = False
        #: ... and the last session failed.
        self._retrying = False
        #: Publishes each recorded frame to the live view (never blocks this thread).
        self._live: FramePublisher | None = None
        if live is not None:
            feed = live.feed(stream.id)
            self._live = FramePublisher(
                feed,
                next_recording_id=None if live_only else db.get_stream(stream.id).next_recording_id,
                open_id=getattr(syncer, "open_id", None),
            )
            if live_only:
                feed.on_subscribe(self._wake.set)
        self._stop = threading.Event()
        self._source: Source | None = None
        self._source_lock = threading.Lock()
        self._connected = False
        self._frames = 0
        self._errors = 0
        self._last_error: str | None = None
        self._last_error_time: float | None = None
        #: Why the thread ended on its own (its storage stopped); None while it can record.
        self._failed: str | None = None
        #: Why a finite source (a file) is over; None until it reaches its end.
        self._ended: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"streamer-{self.name}", daemon=True)

    # ---- control (any thread) ----

    @property
    def recorder(self) -> StreamRecorder:
        """The recorder of a recorded stream (a live-only streamer has none)."""
        if self._recorder is None:
            why = "is live only" if self.live_only else "was made without a syncer"
            raise RuntimeError(f"stream {self.name} {why}: it has no recorder")
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: StreamRecorder) -> None:
        self._recorder = recorder

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end its session and exit; returns at once (see ``join``)."""
        self._stop.set()
        self._wake.set()
        with self._source_lock:
            if self._source is not None:
                self._source.interrupt()

    def fail(self, reason: str) -> None:
        """Its storage stopped: report ``failed`` with ``reason`` from now on, and stop."""
        if self._failed is None:
            self._failed = reason
        self.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it has exited."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """The thread is still recording or retrying."""
        return self._thread.is_alive()

    @property
    def ended(self) -> bool:
        """Its source was a file that reached its end: nothing more to record, no failure."""
        return self._ended is not None

    def status(self) -> CameraStatus:
        state: str
        reason: str | None
        if self._failed is not None:
            state, reason = FAILED, self._failed
        elif self._ended is not None and not self._connected:
            state, reason = ENDED, self._ended
        elif self._connected:
            state, reason = (LIVE_ONLY if self.live_only else RECORDING), None
        elif not self.live_only or self._retrying:
            state, reason = RETRYING, self._last_error or "connecting"
        elif self._demanded:
            state, reason = LIVE_ONLY, "connecting for a viewer"
        else:
            state, reason = LIVE_ONLY, LIVE_ONLY_IDLE
        return CameraStatus(
            camera=self.camera.short_name,
            stream=self.stream.type,
            connected=self._connected,
            frames=self._frames,
            recordings=0 if self._recorder is None else self._recorder.recordings_closed,
            errors=self._errors,
            last_error=self._last_error,
            last_error_time=self._last_error_time,
            state=state,
            reason=reason,
        )

    # ---- the thread ----

    def _run(self) -> None:
        policy = ReconnectPolicy()
        while not self._stop.is_set():
            if self.live_only and not self._viewers():
                self._demanded = self._retrying = False
                if not self._wait_for_viewer():
                    break
                self._demanded = True
                policy = ReconnectPolicy()  # an earlier viewer's back-off isn't this one's
            try:
                delay = self._session_then_delay(policy)
            except SyncerStoppedError as e:
                # Its directory's storage is gone: this stream can't record any more.
                log.error("stream %s: stopping: %s", self.name, e)
                self._record_error(str(e))
                if self._failed is None:
                    self._failed = str(e)
                return
            except Exception as e:  # noqa: BLE001 - a bug here must not end recording
                delay = policy.next_delay(delivered_key_frame=False)
                self._record_error(f"internal error ({type(e).__name__}): {self._secret_free(e)}")
                log.error(
                    "stream %s: internal error (%s): %s; retrying in %g s",
                    self.name, type(e).__name__, self._secret_free(e), delay,
                )
                log.debug("stream %s: internal error", self.name, exc_info=True)
            if delay is None or self._stop.wait(delay):
                break
        log.info("stream %s: stopped", self.name)

    def _session_then_delay(self, policy: ReconnectPolicy) -> float | None:
        """One session; then the seconds to wait before the next, or None to end the thread
        (stopped, or a file that ended)."""
        checked: list[_CheckedSource] = []
        try:
            nobody_watches = self._session(checked)
            if self._stop.is_set() or self._ended is not None:
                return None
            if nobody_watches:
                self._retrying = False
                return 0.0
            error = f"stream ended ({redact_url(self.stream.url)})"
        except SyncerStoppedError:
            raise
        except SourceError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - any failure ends the session, never the thread
            error = f"{type(e).__name__}: {self._secret_free(e)}"
            log.debug("stream %s: session failed", self.name, exc_info=True)
        if self._stop.is_set():
            return None
        delivered_key_frame = bool(checked) and checked[0].key_frame_seen
        if not delivered_key_frame and self._working_transport is not None:
            log.info(
                "stream %s: RTSP over %s failed; transport auto chooses again next time",
                self.name, self._working_transport.upper(),
            )
            self._working_transport = None
        delay = policy.next_delay(delivered_key_frame=delivered_key_frame)
        self._retrying = True
        self._record_error(error)
        log.warning("stream %s: %s; retrying in %g s", self.name, error, delay)
        return delay

    def _viewers(self) -> int:
        return 0 if self._live is None else self._live.feed.subscribers

    def _wait_for_viewer(self) -> bool:
        """Block a live-only streamer until someone watches (True) or it is stopped."""
        while True:
            self._wake.clear()
            # ``stop()`` sets ``_stop`` before ``_wake``: checked after the clear, neither a
            # stop nor a viewer arriving (subscribed before the wake) is missed.
            if self._stop.is_set():
                return False
            if self._viewers():
                return True
            self._wake.wait()

    def _open(self) -> Source:
        """A session's source: the factory's, or ``open_source`` over the stream's transport
        (``auto``: the one that worked last, if it still does)."""
        camera = self.camera
        if self._source_factory is not None:
            return self._source_factory(self.stream.url, camera.username, camera.password)
        transport = self.stream.transport
        if transport == "auto" and self._working_transport is not None:
            transport = self._working_transport
        return open_source(self.stream.url, camera.username, camera.password, transport=transport)

    def _secret_free(self, e: BaseException) -> str:
        """``str(e)`` without the camera's password, whatever raised it."""
        text = str(e)
        if self.camera.password:
            text = text.replace(self.camera.password, "***")
        return text

    def _record_error(self, error: str) -> None:
        self._errors += 1
        self._last_error = error
        self._last_error_time = time.time()

    def _wall_anchor_ns(self) -> int:
        """wall − monotonic, sampled once per session (brief §3.2); a step since the last
        session is logged, as this session's recordings move with it."""
        anchor_ns = self._wall_clock_ns() - time.monotonic_ns()
        last, self._last_anchor_ns = self._last_anchor_ns, anchor_ns
        if last is not None and abs(anchor_ns - last) > WALL_CLOCK_STEP_WARNING_SEC * 1e9:
            log.warning(
                "stream %s: the wall clock moved by %+.3f s since the last session; this run "
                "is stamped with the new time", self.name, (anchor_ns - last) / 1e9,
            )
        return anchor_ns

    def timestamp_jumped(self, jump_ns: int) -> None:
        """The camera's timestamps jumped mid-session: end the run; the next key frame
        starts a new one (frames until then can't start a recording)."""
        log.warning(
            "stream %s: camera timestamps jumped by %+.3f s against the NVR's clock; "
            "starting a new run", self.name, jump_ns / 1e9,
        )
        self._end_run()

    def _end_run(self) -> None:
        if self.live_only:
            self._live_runs.end_run()
        else:
            self.recorder.end_run()

    def _session(self, checked: list[_CheckedSource] | None = None) -> bool:
        """Open, record (or stream live) until the source ends or fails, end the run;
        ``checked`` gets the ``_CheckedSource`` (did a key frame arrive?).  True if a
        live-only session ended because nobody watches any more."""
        source = self._open()
        with self._source_lock:
            self._source = source
        nobody_watches = False
        try:
            if self._stop.is_set():
                return False
            # Test doubles that predate ``Source.codec`` are H.264 sources.
            entry = _SessionEntry(self._db, source.extradata, getattr(source, "codec", "h264"))
            anchor_ns = self._wall_anchor_ns()
            self._connected = True
            self._retrying = False
            # Sources that don't derive from ``Source`` (test doubles) have neither attribute.
            transport = getattr(source, "transport", None)
            if self.stream.transport == "auto" and self._source_factory is None and transport:
                self._working_transport = transport
            log.info(
                "stream %s: connected to %s (%dx%d%s%s)",
                self.name, source.url, source.width, source.height,
                f", RTSP over {transport.upper()}" if transport else "",
                ", live view only" if self.live_only else "",
            )
            packets = _CheckedSource(source, self)
            if checked is not None:
                checked.append(packets)
            if self.live_only:
                nobody_watches = self._publish_packets(packets, entry, anchor_ns)  # type: ignore[arg-type]
            else:
                self._record_packets(packets, entry, anchor_ns)  # type: ignore[arg-type]
            if nobody_watches:
                log.info(
                    "stream %s: nobody watched for %g s; disconnected until someone does",
                    self.name, self._grace_sec,
                )
            elif getattr(source, "finite", False) and not self._stop.is_set():
                self._ended = f"{source.url} ended after {self._frames} frames"
                log.info("stream %s: %s; not reopening it", self.name, self._ended)
        finally:
            self._connected = False
            with self._source_lock:
                self._source = None
            try:
                self._end_run()
            finally:
                if self._live is not None:
                    self._live.end_session()
                source.close()
        return nobody_watches

    def _record_packets(self, source: Source, entry: _SessionEntry, anchor_ns: int) -> None:
        recorder = self.recorder
        live = self._live
        stop = self._stop
        monotonic_ns = time.monotonic_ns
        for packet in source.packets():
            if stop.is_set():
                return
            if packet.new_extradata is not None:
                entry = self._change_entry(entry, packet.new_extradata)
            elif packet.is_key and entry.parameter_sets is not None:
                entry = self._check_in_band_parameter_sets(entry, packet.data)
            # The time of receipt (§3.2), not now: AvSource holds each packet back a frame.
            received_ns = packet.received_ns if packet.received_ns is not None else monotonic_ns()
            # ns → 90 kHz: × 90 000 / 10⁹ = × 9 / 100 000, exact in integers.
            local_time_90k = (received_ns + anchor_ns) * 9 // 100_000
            data = entry.entry.to_sample(packet.data)
            # Decode order: with B-frames the dts increases while the pts goes back and forth.
            dts_90k = packet.dts_90k
            recorder.write(
                data, local_time_90k, packet.pts_90k, packet.is_key, entry.id, dts_90k=dts_90k
            )
            if live is not None:
                live.frame(
                    data, packet.pts_90k, packet.is_key, entry.id, local_time_90k,
                    packet.received_ns, recorder.current, dts_90k=dts_90k,
                )
            self._frames += 1

    def _publish_packets(self, source: Source, entry: _SessionEntry, anchor_ns: int) -> bool:
        """A live-only session: each packet goes to the live view as ``_record_packets``
        would publish it, with no recorder.  True once nobody has watched for the grace
        period (the session should end), False when the source ended or the streamer
        was stopped."""
        live = self._live
        assert live is not None  # the constructor refuses a live-only streamer without feeds
        runs = self._live_runs
        stop = self._stop
        monotonic_ns = time.monotonic_ns
        check_every_ns = int(VIEWER_CHECK_SEC * 1e9)
        grace_ns = int(self._grace_sec * 1e9)
        next_check_ns = monotonic_ns()
        unwatched_since_ns: int | None = None
        for packet in source.packets():
            if stop.is_set():
                return False
            now_ns = monotonic_ns()
            if now_ns >= next_check_ns:
                next_check_ns = now_ns + check_every_ns
                if live.feed.subscribers:
                    unwatched_since_ns = None
                elif unwatched_since_ns is None:
                    unwatched_since_ns = now_ns
                elif now_ns - unwatched_since_ns >= grace_ns:
                    return True
            if packet.new_extradata is not None:
                entry = self._change_entry(entry, packet.new_extradata)
            elif packet.is_key and entry.parameter_sets is not None:
                entry = self._check_in_band_parameter_sets(entry, packet.data)
            received_ns = packet.received_ns if packet.received_ns is not None else now_ns
            local_time_90k = (received_ns + anchor_ns) * 9 // 100_000
            data = entry.entry.to_sample(packet.data)
            dts_90k = packet.dts_90k
            start = runs.frame(
                local_time_90k, packet.pts_90k if dts_90k is None else dts_90k, packet.is_key
            )
            live.frame(
                data, packet.pts_90k, packet.is_key, entry.id, local_time_90k,
                packet.received_ns, start, dts_90k=dts_90k,
            )
            self._frames += 1
        return False

    def _change_entry(self, entry: _SessionEntry, extradata: bytes) -> _SessionEntry:
        """New parameter sets: a new sample entry, so the recorder rotates at this key frame."""
        if extradata == entry.extradata:
            return entry
        new = _SessionEntry(self._db, extradata, entry.codec)
        if new.id != entry.id:
            log.info(
                "stream %s: new parameter sets; video sample entry %d -> %d",
                self.name, entry.id, new.id,
            )
        return new

    def _check_in_band_parameter_sets(self, entry: _SessionEntry, data: bytes) -> _SessionEntry:
        """A key frame carrying SPS/PPS that differ from the entry's starts a new entry."""
        in_band = entry.entry.parameter_sets(data)
        if not in_band or in_band == entry.parameter_sets:
            return entry
        extradata = entry.entry.extradata_from_parameter_sets(in_band)
        if extradata is None:
            return entry  # a partial update; keep the entry we have
        return self._change_entry(entry, extradata)
