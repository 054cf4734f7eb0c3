"""The recording daemon: every camera of a data directory, recorded until told to stop.

Start-up and shut-down happen in a fixed order so that an orderly stop leaves
the data directory exactly as ``moonfire check`` wants it:

1. open the database and lock the sample file directory (a second daemon on the
   same directory fails here, before touching anything);
2. start the syncer, whose constructor first recovers from the last run and
   enforces retention, synchronously, before any writer exists;
3. start one ``Streamer`` per camera, camera *i* of *N* rotating at offset
   ``interval·i//N`` so rotations (and their fsyncs) are staggered (§3.3);
4. wait for the stop event, the time limit, or a fatal storage error;
5. stop and join every streamer (each ends its run: its last recording is
   saved with a trailing zero), close the syncer (it drains its queue and drops
   every reservation), then close the directory and the database.

A fatal storage error (the syncer could not fsync the directory) sets the stop
event through ``on_fatal``; the daemon then shuts down and returns non-zero.

A streamer still running after its join timeout may yet write through the
syncer, the directory and the database, so none of them is closed under it:
shutdown logs the camera and returns non-zero so the process exits (its
threads are daemons); the next start recovers whatever it left half done.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from moonfire.db import Camera, Database
from moonfire.ingest import status_file
from moonfire.ingest.sources import Source, open_source
from moonfire.ingest.streamer import CameraStatus, Streamer
from moonfire.storage.data_dir import open_for_recording
from moonfire.storage.sample_file_dir import SampleFileDir
from moonfire.storage.syncer import Syncer, SyncerStoppedError, SyncerStuckError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STORAGE_FAILURE = 1
#: A streamer did not stop in time; `moonfire run` documents 1 for "recording failed".
EXIT_STREAMER_STUCK = 1

#: How long shutdown waits for each streamer to end its session (a read blocked on a
#: silent camera ends within the source's read timeout).
STREAMER_JOIN_TIMEOUT_SEC = 30.0
#: How long shutdown waits for the syncer to finish its last saves (each one fsyncs).
SYNCER_CLOSE_TIMEOUT_SEC = 60.0


class Daemon:
    """A running set of streamers over one data directory; see ``start_daemon``."""

    def __init__(
        self,
        db: Database,
        sample_file_dir: SampleFileDir,
        stop: threading.Event,
        data_dir: str | None = None,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.sample_file_dir = sample_file_dir
        self.stop_event = stop
        self.syncer: Syncer | None = None
        self.streamers: list[Streamer] = []
        self.fatal_error: BaseException | None = None
        #: Names of cameras whose streamer was still running when shutdown gave up on it.
        self.stuck_streamers: list[str] = []
        self._closed = False
        self._publisher: _StatusPublisher | None = None

    def _on_fatal(self, error: BaseException) -> None:
        self.fatal_error = error
        self.stop_event.set()  # first: nothing below may keep the daemon from stopping
        log.critical("storage failed, shutting down: %s", error)
        if self._publisher is not None:
            self._publisher.publish()  # at once: "failed" is visible before shutdown ends

    def status_doc(self, running: bool) -> dict[str, Any]:
        """What ``moonfire status`` reads (see ``moonfire.ingest.status_file``)."""
        fatal = None if self.fatal_error is None else str(self.fatal_error)
        cameras = []
        for s in self.statuses():
            state, reason = s.state, s.reason
            if fatal is not None:
                state, reason = status_file.FAILED, fatal
            cameras.append(
                {
                    "name": s.camera,
                    "state": state,
                    "reason": reason,
                    "recordings": s.recordings,
                    "errors": s.errors,
                }
            )
        return {
            "pid": os.getpid(),
            "updated": time.time(),
            "running": running,
            "publish_every_sec": status_file.PUBLISH_EVERY_SEC,
            "sample_file_dir": self.sample_file_dir.path,
            "storage_error": fatal,
            "cameras": cameras,
        }

    def start_publishing(self) -> None:
        if self.data_dir is not None:
            self._publisher = _StatusPublisher(self, self.data_dir)
            self._publisher.start()

    def statuses(self) -> list[CameraStatus]:
        """The latest status of every camera, in camera order."""
        return [s.status() for s in self.streamers]

    def no_camera_can_record(self) -> bool:
        """Every streamer has stopped on its own (storage failed under it): time to exit 1.

        A streamer only ends without being told to when its syncer stopped, so
        ``moonfire run`` then exits non-zero for a service manager to restart it.
        """
        if not self.streamers or self.stop_event.is_set():
            return False
        if any(s.running for s in self.streamers):
            return False
        log.error("no camera can record any more; exiting")
        if self.fatal_error is None:
            self.fatal_error = SyncerStoppedError("every camera stopped recording")
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stopped (or ``timeout`` seconds); True if the stop event is set."""
        return self.stop_event.wait(timeout)

    def shutdown(self) -> int:
        """Stop everything in order; 0, or non-zero after a fatal storage error or stuck streamer.

        A streamer that outlives its join timeout leaves the syncer, directory and
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
        for streamer in self.streamers:
            streamer.stop()
        deadline = time.monotonic() + STREAMER_JOIN_TIMEOUT_SEC  # shared: N stuck cameras
        for streamer in self.streamers:  # don't take N times as long
            if not streamer.join(max(0.0, deadline - time.monotonic())):
                self.stuck_streamers.append(streamer.name)
        if self.stuck_streamers:
            log.error(
                "camera%s %s did not stop within %.0f s; leaving the syncer, sample file "
                "directory and database open under %s and exiting: the next start recovers",
                "" if len(self.stuck_streamers) == 1 else "s",
                ", ".join(self.stuck_streamers),
                STREAMER_JOIN_TIMEOUT_SEC,
                "it" if len(self.stuck_streamers) == 1 else "them",
            )
            return self._exit_code()
        syncer_stuck = False
        try:
            if self.syncer is not None:
                try:
                    self.syncer.close(timeout=SYNCER_CLOSE_TIMEOUT_SEC)
                except SyncerStuckError as e:
                    # Closing the directory or the database under a busy syncer could
                    # corrupt what it is doing; the next start's recovery finishes it.
                    log.error("%s; leaving the sample file directory and database open", e)
                    self.fatal_error = self.fatal_error or e
                    syncer_stuck = True
                except SyncerStoppedError as e:
                    self.fatal_error = self.fatal_error or e
        finally:
            if not syncer_stuck:
                self.sample_file_dir.close()
                self.db.close()
        if syncer_stuck:
            return self._exit_code()
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
    return (doc["storage_error"], [(c["name"], c["state"], c["reason"]) for c in doc["cameras"]])


def _select_cameras(db: Database, camera_names: list[str] | None) -> list[Camera]:
    if camera_names is None:
        return db.list_cameras()
    cameras = [db.get_camera(name) for name in camera_names]  # unknown names raise here
    return list({c.id: c for c in cameras}.values())  # a camera named twice is recorded once


def start_daemon(
    data_dir: str,
    *,
    stop: threading.Event | None = None,
    camera_names: list[str] | None = None,
    source_factory: Callable[[str, str | None, str | None], Source] = open_source,
) -> Daemon:
    """Open ``data_dir`` for recording and start its syncer and streamers.

    Raises (having released everything) if the directory is missing, locked by
    another recorder, or a named camera does not exist.
    """
    db, sample_file_dir = open_for_recording(data_dir)
    daemon = Daemon(db, sample_file_dir, stop or threading.Event(), data_dir=data_dir)
    try:
        cameras = _select_cameras(db, camera_names)
        daemon.syncer = sample_file_dir.start_syncer(on_fatal=daemon._on_fatal)
        recordable = [c for c in cameras if c.url]
        for camera in cameras:
            if not camera.url:
                log.warning("camera %s: no URL configured; not recording it", camera.short_name)
        if not recordable:
            log.warning("no cameras to record in %s", data_dir)
        for i, camera in enumerate(recordable):
            daemon.streamers.append(
                Streamer(
                    camera,
                    db,
                    daemon.syncer,
                    rotate_offset_sec=camera.rotate_interval_sec * i // len(recordable),
                    source_factory=source_factory,
                )
            )
        for streamer in daemon.streamers:
            streamer.start()
        daemon.start_publishing()
    except BaseException:
        daemon.shutdown()
        raise
    count = len(daemon.streamers)
    log.info("recording %d camera%s from %s", count, "" if count == 1 else "s", data_dir)
    return daemon


def run_cameras(
    data_dir: str,
    *,
    duration_sec: float | None = None,
    stop: threading.Event | None = None,
    camera_names: list[str] | None = None,
) -> int:
    """Record until ``stop`` is set or ``duration_sec`` passes; 0, or non-zero on storage failure.

    Set ``stop`` from a signal handler for ``moonfire run``; shutdown is orderly
    either way (see the module docstring).
    """
    raise_open_file_limit()
    daemon = start_daemon(data_dir, stop=stop, camera_names=camera_names)
    deadline = None if duration_sec is None else time.monotonic() + duration_sec
    try:
        # Short waits keep the main thread responsive to signal handlers that set ``stop``.
        while not daemon.stop_event.is_set():
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if remaining <= 0:
                break
            daemon.wait(remaining)
            if daemon.no_camera_can_record():
                break
    finally:
        code = daemon.shutdown()
    return code


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
