"""One thread per recorded stream: connect, feed packets to the recorder, reconnect on
errors (§4.1).  A camera recording its main and sub streams has two.

A *session* is one connection to the stream.  It opens the source, turns its
extradata into a sample entry (inserted, deduplicated, in the database before
any packet is written), anchors the monotonic clock to wall time once (brief
§3.2: a wall-clock step mid-session must not move frame times) and hands every
packet to ``StreamRecorder``, which drops packets until the first key frame and
rotates.  A session ends with ``recorder.end_run()``, so its last recording is
saved with a trailing zero and the next session starts a new run.

On any error the streamer logs one line naming the stream (``camera/main``), backs off (1 s,
doubling to 30 s; back to 1 s after a session that lasted over 30 s) and
reconnects.  ``stop()`` wakes it from the back-off and interrupts the source;
a source blocked in a network read notices within its read timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from moonfire.codec import SampleEntry, sample_entry_from_extradata
from moonfire.db import Camera, Database, Stream
from moonfire.ingest.live import FramePublisher, LiveFeeds
from moonfire.ingest.recorder import StreamRecorder
from moonfire.ingest.sources import Source, SourceError, open_source, redact_url
from moonfire.ingest.status_file import FAILED, RECORDING, RETRYING
from moonfire.storage.syncer import Syncer, SyncerStoppedError

log = logging.getLogger(__name__)

BACKOFF_INITIAL_SEC = 1.0
BACKOFF_MAX_SEC = 30.0
#: A session that lasted longer than this resets the back-off to its initial value.
BACKOFF_RESET_AFTER_SEC = 30.0


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
    #: ``recording``, ``retrying`` or ``failed`` (see ``moonfire.ingest.status_file``).
    state: str = RETRYING
    #: Why it is retrying or failed (None while recording).
    reason: str | None = None


class _SessionEntry:
    """The sample entry in use and how packets must be transformed to match it."""

    def __init__(self, db: Database, extradata: bytes) -> None:
        entry: SampleEntry = sample_entry_from_extradata(extradata)
        self.entry = entry
        self.extradata = extradata
        self.id = db.insert_video_sample_entry(entry.width, entry.height, entry.box)
        #: The parameter sets of Annex B extradata, to notice in-band changes (None otherwise).
        self.parameter_sets = entry.parameter_sets(extradata) if entry.need_transform else None


def _wall_anchor_ns() -> int:
    """wall − monotonic, sampled once per session (brief §3.2)."""
    return time.time_ns() - time.monotonic_ns()


class Streamer:
    """Records one stream of a camera in its own thread until ``stop()``."""

    def __init__(
        self,
        camera: Camera,
        stream: Stream,
        db: Database,
        syncer: Syncer,
        *,
        rotate_offset_sec: int = 0,
        source_factory: Callable[[str, str | None, str | None], Source] = open_source,
        live: LiveFeeds | None = None,
    ) -> None:
        self.camera = camera
        self.stream = stream
        #: ``camera/main`` or ``camera/sub``: how logs and status name it.
        self.name = f"{camera.short_name}/{stream.type}"
        self._db = db
        self._syncer = syncer
        self._open_source = source_factory
        self.recorder = StreamRecorder(
            syncer,
            stream.id,
            stream_name=self.name,
            rotate_interval_sec=camera.rotate_interval_sec,
            rotate_offset_sec=rotate_offset_sec,
        )
        #: Publishes each recorded frame to the live view (never blocks this thread).
        self._live: FramePublisher | None = None
        if live is not None:
            self._live = FramePublisher(
                live.feed(stream.id),
                next_recording_id=db.get_stream(stream.id).next_recording_id,
                open_id=getattr(syncer, "open_id", None),
            )
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
        self._thread = threading.Thread(target=self._run, name=f"streamer-{self.name}", daemon=True)

    # ---- control (any thread) ----

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end its session and exit; returns at once (see ``join``)."""
        self._stop.set()
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

    def status(self) -> CameraStatus:
        if self._failed is not None:
            state, reason = FAILED, self._failed
        elif self._connected:
            state, reason = RECORDING, None
        else:
            state, reason = RETRYING, self._last_error or "connecting"
        return CameraStatus(
            camera=self.camera.short_name,
            stream=self.stream.type,
            connected=self._connected,
            frames=self._frames,
            recordings=self.recorder.recordings_closed,
            errors=self._errors,
            last_error=self._last_error,
            last_error_time=self._last_error_time,
            state=state,
            reason=reason,
        )

    # ---- the thread ----

    def _run(self) -> None:
        backoff = BACKOFF_INITIAL_SEC
        url = redact_url(self.stream.url)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
                if self._stop.is_set():
                    break
                error = f"stream ended ({url})"
            except SyncerStoppedError as e:
                # Its directory's storage is gone: this stream can't record any more.
                log.error("stream %s: stopping: %s", self.name, e)
                self._record_error(str(e))
                if self._failed is None:
                    self._failed = str(e)
                return
            except SourceError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - any failure ends the session, never the thread
                error = f"{type(e).__name__}: {e}"
                log.debug("stream %s: session failed", self.name, exc_info=True)
            if self._stop.is_set():
                break
            if time.monotonic() - started > BACKOFF_RESET_AFTER_SEC:
                backoff = BACKOFF_INITIAL_SEC
            self._record_error(error)
            log.warning("stream %s: %s; retrying in %g s", self.name, error, backoff)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX_SEC)
        log.info("stream %s: stopped", self.name)

    def _record_error(self, error: str) -> None:
        self._errors += 1
        self._last_error = error
        self._last_error_time = time.time()

    def _session(self) -> None:
        camera = self.camera
        source = self._open_source(self.stream.url, camera.username, camera.password)
        with self._source_lock:
            self._source = source
        try:
            if self._stop.is_set():
                return
            entry = _SessionEntry(self._db, source.extradata)
            anchor_ns = _wall_anchor_ns()
            self._connected = True
            log.info(
                "stream %s: connected to %s (%dx%d)",
                self.name, source.url, source.width, source.height,
            )
            self._record_packets(source, entry, anchor_ns)
        finally:
            self._connected = False
            with self._source_lock:
                self._source = None
            try:
                self.recorder.end_run()
            finally:
                if self._live is not None:
                    self._live.end_session()
                source.close()

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
            recorder.write(data, local_time_90k, packet.pts_90k, packet.is_key, entry.id)
            if live is not None:
                live.frame(
                    data, packet.pts_90k, packet.is_key, entry.id, local_time_90k,
                    packet.received_ns, recorder.current,
                )
            self._frames += 1

    def _change_entry(self, entry: _SessionEntry, extradata: bytes) -> _SessionEntry:
        """New parameter sets: a new sample entry, so the recorder rotates at this key frame."""
        if extradata == entry.extradata:
            return entry
        new = _SessionEntry(self._db, extradata)
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
