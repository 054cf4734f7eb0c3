"""The recording daemon: every recorded stream of a data directory, until told to stop.

Start-up and shut-down happen in a fixed order so that an orderly stop leaves
the data directory exactly as ``moonfire check`` wants it:

1. open the database and lock every sample file directory a recorded stream
   uses (a second daemon on the same directory fails here, before touching
   anything; so does a directory refused as another database's copy);
2. start one syncer per directory, whose constructor first recovers from the
   last run and enforces retention, synchronously, before any writer exists;
3. start one ``Streamer`` per recorded stream (a camera's main and sub stream
   are two), stream *i* of *N* rotating at offset ``interval·i//N`` so
   rotations (and their fsyncs) are staggered (§3.3); and, with a live view, a
   live-only ``Streamer`` per stream kept for live view only (a sub stream with
   no budget), which uses no directory and connects while someone watches;
4. wait for the stop event, the time limit, or every stream having stopped;
5. stop and join every streamer (each ends its run: its last recording is
   saved with a trailing zero), close the syncers (each drains its queue and
   drops every reservation), then close the directories and the database.

A directory that fails stops only its own streams (brief: one syncer per
directory): one that can't be opened at start (gone, unreadable) has its
streams reported ``failed`` with the reason while the others record; a
syncer's fatal error (a failed directory fsync, the directory removed,
replaced or unmounted) stops the streams on it through ``on_fatal``.  When no
stream can record any more, ``run_cameras`` returns non-zero within a second,
so a service manager restarts it; any storage failure during the run makes
the exit code non-zero.

A streamer still running after its join timeout may yet write through its
syncer, the directory and the database, so none of them is closed under it:
shutdown logs the stream and returns non-zero so the process exits (its
threads are daemons); the next start recovers whatever it left half done.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moonfire.db import Camera, Database, Stream
from moonfire.ingest import status_file
from moonfire.ingest.live import LiveFeeds
from moonfire.ingest.streamer import SourceFactory, Streamer
from moonfire.storage.archive import ArchiveUploader, start_uploaders
from moonfire.storage.data_dir import open_db
from moonfire.storage.dir_meta import DirectoryMismatchError
from moonfire.storage.sample_file_dir import SampleFileDir
from moonfire.storage.syncer import (
    SampleDirectoryFailedError,
    Syncer,
    SyncerStoppedError,
    SyncerStuckError,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STORAGE_FAILURE = 1
#: A streamer did not stop in time; `moonfire run` documents 1 for "recording failed".
EXIT_STREAMER_STUCK = 1

#: How long shutdown waits for each streamer to end its session (a read blocked on a
#: silent camera ends within the source's read timeout).
STREAMER_JOIN_TIMEOUT_SEC = 30.0
#: How long shutdown waits for each syncer to finish its last saves (each one fsyncs).
SYNCER_CLOSE_TIMEOUT_SEC = 60.0
#: How often ``run_cameras`` looks for archives given to recorded streams while running.
ARCHIVE_CHECK_INTERVAL_SEC = 5.0


@dataclass(frozen=True, slots=True)
class UnstartedStream:
    """A stream to record whose sample file directory could not be opened at start."""

    camera: str
    stream: str
    reason: str
    stream_id: int


class Daemon:
    """A running set of streamers over one data directory; see ``start_daemon``."""

    def __init__(self, db: Database, stop: threading.Event, data_dir: str | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        #: The opened (locked) sample file directories, by id, and their syncers.
        self.sample_file_dirs: dict[int, SampleFileDir] = {}
        self.syncers: dict[int, Syncer] = {}
        #: Why a directory stopped (failed to open, or its syncer's fatal error), by id.
        self.dir_errors: dict[int, BaseException] = {}
        #: Names of the directories that could not be opened, for the status published
        #: after the database is closed.
        self._unopened_dir_names: dict[int, str] = {}
        self.stop_event = stop
        self.streamers: list[Streamer] = []
        self.unstarted: list[UnstartedStream] = []
        #: The first storage failure of the run: the exit code is non-zero after one.
        self.fatal_error: BaseException | None = None
        #: Names of streams whose streamer was still running when shutdown gave up on it.
        self.stuck_streamers: list[str] = []
        #: Where the streamers publish their frames for the live view (None: no live view).
        self.live: LiveFeeds | None = None
        #: Stream id -> (its frame count, ``time.monotonic()`` when that count was first
        #: seen): when each stream's last frame arrived, to within the second between two
        #: looks (``statuses_by_stream_id``), with nothing added to the streamers' loops.
        self._frames_seen: dict[int, tuple[int, float]] = {}
        self._closed = False
        self._publisher: _StatusPublisher | None = None
        #: One per archive a recorded stream uploads to (``moonfire.storage.archive``);
        #: off the recording path, stopped before the database closes.
        self.uploaders: list[ArchiveUploader] = []

    @property
    def syncer(self) -> Syncer | None:
        """The syncer of the first directory (most data directories have only one)."""
        return next(iter(self.syncers.values()), None)

    def _on_fatal(self, dir_id: int, error: BaseException) -> None:
        """A directory's syncer stopped: stop its streams, and only those."""
        self.dir_errors[dir_id] = error
        self.fatal_error = self.fatal_error or error
        path = self.sample_file_dirs[dir_id].path if dir_id in self.sample_file_dirs else dir_id
        failed = [
            s for s in self.streamers
            if s.stream.sample_file_dir_id == dir_id and not s.live_only  # those write no file
        ]
        log.critical(
            "sample file directory %s failed; stopping its stream%s %s: %s",
            path,
            "" if len(failed) == 1 else "s",
            ", ".join(s.name for s in failed) or "(none)",
            error,
        )
        for streamer in failed:
            streamer.fail(f"sample file directory {path} failed: {error}")
        if self._publisher is not None:
            self._publisher.publish()  # at once: "failed" is visible before shutdown ends

    def status_doc(self, running: bool) -> dict[str, Any]:
        """What ``moonfire status`` reads (see ``moonfire.ingest.status_file``)."""
        streams = []
        for s in self.statuses():
            streams.append(
                {
                    "name": f"{s['camera']}/{s['stream']}",
                    "camera": s["camera"],
                    "stream": s["stream"],
                    "state": s["state"],
                    "reason": s["reason"],
                    "recordings": s["recordings"],
                    "errors": s["errors"],
                }
            )
        errors = {
            self._dir_label(dir_id): str(error) for dir_id, error in self.dir_errors.items()
        }
        return {
            "pid": os.getpid(),
            "updated": time.time(),
            "running": running,
            "publish_every_sec": status_file.PUBLISH_EVERY_SEC,
            "sample_file_dirs": {
                self._dir_label(dir_id): d.path for dir_id, d in self.sample_file_dirs.items()
            },
            "storage_errors": errors,
            "streams": streams,
        }

    def _dir_label(self, dir_id: int) -> str:
        opened = self.sample_file_dirs.get(dir_id)
        if opened is not None:
            return opened.name
        if dir_id in self._unopened_dir_names:
            return self._unopened_dir_names[dir_id]
        return self.db.sample_file_dir(dir_id).name

    def start_publishing(self) -> None:
        if self.data_dir is not None:
            self._publisher = _StatusPublisher(self, self.data_dir)
            self._publisher.start()

    def statuses(self) -> list[dict[str, Any]]:
        """The latest status of every stream to record (the live-only ones after them), the
        unstarted last."""
        return list(self.statuses_by_stream_id().values())

    def statuses_by_stream_id(self) -> dict[int, dict[str, Any]]:
        """``statuses()`` by stream id (in the same order), each also with ``frames`` and
        ``last_frame_age_sec`` (None before the first frame): the one source of
        ``moonfire status``, ``GET /api/``'s stream states and ``/metrics``.

        Each call notes which frame counts changed; the status publisher calls it every
        second, so the age of the last frame is known to about a second.
        """
        now = time.monotonic()
        out: dict[int, dict[str, Any]] = {}
        for streamer in self.streamers:
            s = streamer.status()
            out[streamer.stream.id] = {
                "camera": s.camera, "stream": s.stream, "state": s.state, "reason": s.reason,
                "recordings": s.recordings, "errors": s.errors, "frames": s.frames,
                "last_frame_age_sec": self._last_frame_age(streamer.stream.id, s.frames, now),
            }
        for u in self.unstarted:
            out[u.stream_id] = {
                "camera": u.camera, "stream": u.stream, "state": status_file.FAILED,
                "reason": u.reason, "recordings": 0, "errors": 1, "frames": 0,
                "last_frame_age_sec": None,
            }
        return out

    def _last_frame_age(self, stream_id: int, frames: int, now: float) -> float | None:
        seen = self._frames_seen.get(stream_id)
        if seen is not None and seen[0] == frames:
            return now - seen[1]
        if frames == 0:
            return None
        self._frames_seen[stream_id] = (frames, now)
        return 0.0

    def no_camera_can_record(self) -> bool:
        """Every streamer has stopped on its own (storage failed under it): time to exit 1.

        A streamer ends without being told to when its syncer stopped, so ``moonfire
        run`` then exits non-zero for a service manager to restart it; or when it read a
        file to its end (``ended``), which is no failure: with only such streams left the
        daemon keeps running (and serving what it recorded).  Live-only streamers don't
        count: they record nothing, and keep running whatever happens to storage.
        """
        if self.stop_event.is_set():
            return False
        recorders = [s for s in self.streamers if not s.live_only]
        if not recorders and not self.unstarted:
            return False
        if any(s.running for s in recorders):
            return False
        if not self.unstarted and all(s.ended for s in recorders):
            return False
        log.error("no stream can record any more; exiting")
        if self.fatal_error is None:
            self.fatal_error = SyncerStoppedError("every stream stopped recording")
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stopped (or ``timeout`` seconds); True if the stop event is set."""
        return self.stop_event.wait(timeout)

    def shutdown(self) -> int:
        """Stop everything in order; 0, or non-zero after a storage failure or stuck streamer.

        A streamer that outlives its join timeout leaves the syncers, directories and
        database open (see the module docstring).
        """
        if self._closed:
            return self._exit_code()
        self._closed = True
        self.stop_event.set()
        try:
            return self._shutdown()
        finally:
            if self._publisher is not None:
                self._publisher.stop()

    def _shutdown(self) -> int:
        for uploader in self.uploaders:
            uploader.stop(timeout=0)
        for streamer in self.streamers:
            streamer.stop()
        deadline = time.monotonic() + STREAMER_JOIN_TIMEOUT_SEC  # shared: N stuck streams
        for streamer in self.streamers:  # don't take N times as long
            if not streamer.join(max(0.0, deadline - time.monotonic())):
                self.stuck_streamers.append(streamer.name)
        for uploader in self.uploaders:
            if not uploader.stop():
                log.warning("archive %r's uploader is still waiting on its store; leaving it",
                            uploader.archive.name)
        if self.stuck_streamers:
            log.error(
                "stream%s %s did not stop within %.0f s; leaving the syncers, sample file "
                "directories and database open under %s and exiting: the next start recovers",
                "" if len(self.stuck_streamers) == 1 else "s",
                ", ".join(self.stuck_streamers),
                STREAMER_JOIN_TIMEOUT_SEC,
                "it" if len(self.stuck_streamers) == 1 else "them",
            )
            return self._exit_code()
        stuck: list[int] = []
        for dir_id, syncer in self.syncers.items():
            try:
                syncer.close(timeout=SYNCER_CLOSE_TIMEOUT_SEC)
            except SyncerStuckError as e:
                # Closing the directory or the database under a busy syncer could
                # corrupt what it is doing; the next start's recovery finishes it.
                log.error("%s; leaving its sample file directory and the database open", e)
                self.fatal_error = self.fatal_error or e
                stuck.append(dir_id)
            except SyncerStoppedError as e:
                self.fatal_error = self.fatal_error or e
        for dir_id, sample_file_dir in self.sample_file_dirs.items():
            if dir_id not in stuck:
                sample_file_dir.close()
        if stuck:
            return self._exit_code()
        self.db.close()
        log.info("stopped")
        return self._exit_code()

    def _exit_code(self) -> int:
        if self.fatal_error is not None:
            return EXIT_STORAGE_FAILURE
        return EXIT_STREAMER_STUCK if self.stuck_streamers else EXIT_OK


class _StatusPublisher:
    """Writes the daemon's status file every few seconds and soon after any change."""

    def __init__(self, daemon: Daemon, data_dir: str) -> None:
        self._daemon = daemon
        self._data_dir = data_dir
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_states: object = None
        self._last_write = 0.0
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.publish(running=False)

    def publish(self, running: bool = True) -> None:
        with self._lock:
            doc = self._daemon.status_doc(running)
            try:
                status_file.write_status(self._data_dir, doc)
            except OSError as e:
                if not self._warned:
                    log.warning("can't write the status file for `moonfire status`: %s", e)
                    self._warned = True
                return
            self._last_states = _states(doc)
            self._last_write = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            doc = self._daemon.status_doc(True)
            due = time.monotonic() - self._last_write >= status_file.PUBLISH_EVERY_SEC
            if due or _states(doc) != self._last_states:
                self.publish()


def _states(doc: dict[str, Any]) -> object:
    """The part of a status whose change is published at once."""
    return (doc["storage_errors"], [(c["name"], c["state"], c["reason"]) for c in doc["streams"]])


def _select_cameras(db: Database, camera_names: list[str] | None) -> list[Camera]:
    if camera_names is None:
        return db.list_cameras()
    cameras = [db.get_camera(name) for name in camera_names]  # unknown names raise here
    return list({c.id: c for c in cameras}.values())  # a camera named twice is recorded once


def _streams_for_live_only(cameras: list[Camera]) -> list[tuple[Camera, Stream]]:
    """Every stream with a URL that doesn't record: a sub stream kept for live view."""
    return [(c, s) for c in cameras for s in c.streams if s.url and not s.record]


def _live_only_streamer(
    daemon: Daemon, camera: Camera, stream: Stream, source_factory: SourceFactory | None = None
) -> Streamer:
    assert daemon.live is not None
    return Streamer(
        camera, stream, daemon.db, None, source_factory=source_factory, live=daemon.live,
        live_only=True,
    )


def _streams_to_record(cameras: list[Camera]) -> list[tuple[Camera, Stream]]:
    """Every stream that records, by camera then main before sub; says why a camera has none."""
    chosen = []
    for camera in cameras:
        streams = [s for s in camera.streams if s.record]
        if not streams:
            log.warning("camera %s: no stream to record (no URL configured)", camera.short_name)
        chosen += [(camera, s) for s in streams]
    return chosen


def start_daemon(
    data_dir: str,
    *,
    stop: threading.Event | None = None,
    camera_names: list[str] | None = None,
    source_factory: SourceFactory | None = None,
    live: LiveFeeds | None = None,
) -> Daemon:
    """Open ``data_dir`` for recording and start its syncers and streamers.

    Raises (having released everything) if the data directory is missing, a sample
    file directory is locked by another recorder or refused as another database's
    (``DirectoryMismatchError``), or a named camera does not exist.  A directory that
    is merely gone or unreadable stops only its own streams.
    """
    db = open_db(data_dir)
    daemon = Daemon(db, stop or threading.Event(), data_dir=data_dir)
    daemon.live = live
    try:
        cameras = _select_cameras(db, camera_names)
        to_record = _streams_to_record(cameras)
        if not to_record:
            log.warning("no cameras to record in %s", data_dir)
        for dir_id in sorted({stream.sample_file_dir_id for _, stream in to_record}):
            _open_dir(daemon, dir_id)
        recordable = [(c, s) for c, s in to_record if s.sample_file_dir_id in daemon.syncers]
        for camera, stream in to_record:
            if stream.sample_file_dir_id not in daemon.syncers:
                reason = str(daemon.dir_errors[stream.sample_file_dir_id])
                daemon.unstarted.append(
                    UnstartedStream(camera.short_name, stream.type, reason, stream.id)
                )
        for i, (camera, stream) in enumerate(recordable):
            daemon.streamers.append(
                Streamer(
                    camera,
                    stream,
                    db,
                    daemon.syncers[stream.sample_file_dir_id],
                    rotate_offset_sec=camera.rotate_interval_sec * i // len(recordable),
                    source_factory=source_factory,
                    live=live,
                )
            )
        if live is not None:
            for camera, stream in _streams_for_live_only(cameras):
                daemon.streamers.append(
                    _live_only_streamer(daemon, camera, stream, source_factory)
                )
        for streamer in daemon.streamers:
            streamer.start()
        daemon.uploaders = start_uploaders(
            db, {s.archive_id for _, s in recordable if s.archive_id is not None})
        daemon.start_publishing()
    except BaseException:
        daemon.shutdown()
        raise
    count = sum(1 for s in daemon.streamers if not s.live_only)
    live_only = len(daemon.streamers) - count
    log.info(
        "recording %d stream%s from %s%s", count, "" if count == 1 else "s", data_dir,
        f"; {live_only} more for live view only, connected while watched" if live_only else "",
    )
    return daemon


def _open_dir(daemon: Daemon, dir_id: int) -> None:
    """Lock a sample file directory and start its syncer; a directory that is gone or
    unreadable is logged and remembered (its streams fail), anything else raises."""
    try:
        opened = SampleFileDir.open(daemon.db, dir_id)
    except (BlockingIOError, DirectoryMismatchError):
        raise  # another recorder, or another database's directory: refuse the start
    except OSError as e:
        row = daemon.db.sample_file_dir(dir_id)
        daemon._unopened_dir_names[dir_id] = row.name
        failed = SampleDirectoryFailedError(
            f"sample file directory {row.name!r} ({row.path}) can't be opened: "
            f"{e.strerror or e}"
        )
        log.error("%s; its streams don't record", failed)
        daemon.dir_errors[dir_id] = failed
        daemon.fatal_error = daemon.fatal_error or failed
        return
    daemon.sample_file_dirs[dir_id] = opened
    daemon.syncers[dir_id] = opened.start_syncer(
        on_fatal=lambda error: daemon._on_fatal(dir_id, error)
    )


def run_cameras(
    data_dir: str,
    *,
    duration_sec: float | None = None,
    stop: threading.Event | None = None,
    camera_names: list[str] | None = None,
    on_started: Callable[[Daemon], Callable[[], None]] | None = None,
    **start_options: Any,
) -> int:
    """Record until ``stop`` is set or ``duration_sec`` passes; 0, or non-zero on storage failure.

    Set ``stop`` from a signal handler for ``moonfire run``; shutdown is orderly
    either way (see the module docstring).  ``on_started(daemon)`` runs once recording
    has started (``moonfire run`` starts the web server there) and returns what stops
    it, which runs before the daemon shuts down; ``start_options`` go to ``start_daemon``.
    """
    raise_open_file_limit()
    warn_if_core_not_compiled()
    daemon = start_daemon(data_dir, stop=stop, camera_names=camera_names, **start_options)
    deadline = None if duration_sec is None else time.monotonic() + duration_sec
    stop_services: Callable[[], None] | None = None
    try:
        if on_started is not None:
            stop_services = on_started(daemon)
        # Short waits keep the main thread responsive to signal handlers that set ``stop``.
        next_archive_check = time.monotonic() + ARCHIVE_CHECK_INTERVAL_SEC
        while not daemon.stop_event.is_set():
            if time.monotonic() >= next_archive_check:
                next_archive_check = time.monotonic() + ARCHIVE_CHECK_INTERVAL_SEC
                start_new_uploaders(daemon)
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if remaining <= 0:
                break
            daemon.wait(remaining)
            if daemon.no_camera_can_record():
                break
    finally:
        try:
            if stop_services is not None:
                stop_services()
        finally:
            code = daemon.shutdown()
    return code


def warn_if_core_not_compiled() -> None:
    """Log a warning when the compiled core failed to import and its pure-Python twins
    record instead: recording then costs several times the CPU (ten times, for a file),
    which an owner should learn from the log rather than from a hot machine.  Chosen on
    purpose (``MOONFIRE_NO_EXTENSIONS=1``) it is only noted."""
    import moonfire_core

    if moonfire_core.NO_EXTENSIONS:
        log.info("recording with the pure-Python core (MOONFIRE_NO_EXTENSIONS is set)")
    elif moonfire_core.FALLBACKS:
        log.warning(
            "the compiled core is missing (%s from %s): recording with the pure-Python "
            "twins costs several times the CPU; reinstall moonfire to build it",
            ", ".join(sorted(moonfire_core.FALLBACKS)),
            os.path.dirname(moonfire_core.__file__),
        )


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the limit in force.

    Each stream holds a few fds (its camera's socket, its sample file) and the syncer's pool
    of files made ahead holds one per stream and some, so hundreds of streams outgrow the
    common soft limit of 1024 long before the hard one.  An unraisable limit is logged.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log.warning("can't raise the open-file limit from %d to %d: %s", soft, hard, e)
        return soft
    log.debug("open-file limit raised from %d to %d", soft, hard)
    return hard


#: One caller at a time adds streamers (the web UI's setup page may save twice at once).
_NEW_STREAMS_LOCK = threading.Lock()


def start_new_streams(daemon: Daemon) -> list[str]:
    """Start a streamer for each stream that records but has none in ``daemon``: a camera
    added, or a stream given a URL and budget, while ``moonfire run`` runs (the web UI's
    setup page).  Opens the stream's sample file directory if the daemon had none open
    (a failed open is reported like one at start: the stream is ``failed``, with why).
    Returns the new streams' names (``camera/main``); nothing once shutdown has begun.

    Streams the daemon already knows are left as they are (a changed URL is used at the
    next start).  With ``moonfire run --camera``, a stream of a camera left out at start
    starts here too if it records; the setup page saves one camera at a time, so this
    only happens to a camera the user just edited.  With a live view, a new stream kept
    for live view only gets its live-only streamer too (named in the result as well).
    """
    with _NEW_STREAMS_LOCK:
        if daemon._closed or daemon.stop_event.is_set():
            return []
        known = {s.stream.id for s in daemon.streamers} | {u.stream_id for u in daemon.unstarted}
        cameras = daemon.db.list_cameras()
        new = [(c, s) for c, s in _streams_to_record(cameras) if s.id not in known]
        started = []
        for camera, stream in new:
            dir_id = stream.sample_file_dir_id
            if dir_id not in daemon.syncers and dir_id not in daemon.dir_errors:
                _open_dir(daemon, dir_id)
            if dir_id not in daemon.syncers:
                daemon.unstarted.append(UnstartedStream(
                    camera.short_name, stream.type, str(daemon.dir_errors[dir_id]), stream.id))
                continue
            streamer = Streamer(camera, stream, daemon.db, daemon.syncers[dir_id],
                                live=daemon.live)
            daemon.streamers.append(streamer)
            streamer.start()
            started.append(streamer.name)
            log.info("recording %s (added while running)", streamer.name)
        if daemon.live is not None:
            for camera, stream in _streams_for_live_only(cameras):
                if stream.id in known:
                    continue
                streamer = _live_only_streamer(daemon, camera, stream)
                daemon.streamers.append(streamer)
                streamer.start()
                started.append(streamer.name)
                log.info("live view of %s ready (added while running)", streamer.name)
        return started


def start_new_uploaders(daemon: Daemon) -> list[str]:
    """Start an uploader for each archive a recorded stream was given while ``moonfire
    run`` runs (``camera edit --archive`` in another shell, or the setup page): the
    uploaders ``start_daemon`` started cover only the archives named then, and a new one's
    backlog would otherwise wait, with no error, for a restart.  ``run_cameras`` calls this
    every ``ARCHIVE_CHECK_INTERVAL_SEC`` (one database read).  Returns the archives'
    names; nothing once shutdown has begun."""
    with _NEW_STREAMS_LOCK:
        if daemon._closed or daemon.stop_event.is_set():
            return []
        recorded = {s.stream.id for s in daemon.streamers if not s.live_only}
        wanted = {s.archive_id for c in daemon.db.list_cameras() for s in c.streams
                  if s.id in recorded and s.archive_id is not None}
        new = wanted - {u.archive.id for u in daemon.uploaders}
        if not new:
            return []
        started = start_uploaders(daemon.db, new)
        daemon.uploaders.extend(started)
        for uploader in started:
            log.info("archiving to %r (given to a stream while running)", uploader.archive.name)
        return [u.archive.name for u in started]
