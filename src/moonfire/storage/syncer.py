"""The syncer: the one thread that makes recordings durable or deletes them (brief §1.4–1.7).

It does so in one fixed order so that a crash at any instant leaves the three
invariants of ``docs/design.md`` true:

* save:    unlink files deleted last time → fsync(file) → fsync(dir) → one
           transaction (mark those unlinks done, turn rotated rows into
           "deleting" reservations, reserve the next UUID, insert the row);
* delete:  row → reservation (transaction) → unlink → fsync(dir) → drop the
           reservation (in the *next* save's transaction, which follows a dir
           fsync);
* startup: every reservation left by the last run is unlinked, the directory
           fsynced and the reservations dropped, and every camera is brought
           within its budget, all before any writer exists.  Only this
           recovery reaches the ``recovery.*`` crash points.

*Which* rows go is decided by ``moonfire.storage.retention`` (pure functions);
this module only asks it and carries the answer out in the order above.

The syncer is also the one place that creates ``Writer`` objects
(``create_writer``): a writer's file is named by a UUID the syncer reserved
and the writer hands its recording back to the syncer (its *sink*), so the
reservation cache never leaves this module.  The dependency is one way:
``ingest`` → ``storage.sample_file_dir`` → ``storage.syncer`` →
``storage.retention``, ``moonfire.db``, ``moonfire_core``.

One pre-reserved UUID is kept cached so that a save costs exactly one file
fsync, one directory fsync and one transaction.  An orderly ``close`` drains
the queue and then removes the cached reservation and every pending deletion,
leaving no reservation rows (invariant 3; the 2017 code left some).

A failed file fsync abandons that one recording.  A failed directory fsync is
fatal: the kernel may already have dropped the dirty pages, so retrying could
report success for data that is gone.  The syncer stops, records the error
and calls ``on_fatal`` so the daemon exits non-zero.

A sample file directory that fails is never a silent stop either
(``_check_directory``): a writer's file that can't be created because the
directory is gone, read-only or its disk failed (``DIRECTORY_FAILURE_ERRNOS``),
or a save finding that the directory's path no longer leads to the directory
it holds (removed, renamed away, replaced, lazily unmounted) or that its
``meta`` file is not the one it opened, stops the syncer the same way.  The
recording being saved is not committed: a row for a file on a detached
filesystem would name a file the user can't reach.  Once stopped, an ERROR
naming the directory and the reason is logged every minute while the process
lives.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from moonfire.db import Database, RecordingRejectedError, RecordingRow
from moonfire.db.rows import format_uuid as uuid_name
from moonfire.db.transaction import HasCompositeId
from moonfire.errors import MoonfireError
from moonfire.storage import retention
from moonfire.storage.crash_points import crash_point
from moonfire.storage.dir_meta import META_NAME
from moonfire_core import sampledir
from moonfire_core.records import PreviousWriter, RecordingToSave
from moonfire_core.sampledir import SampleDirectory
from moonfire_core.writer import Writer

log = logging.getLogger(__name__)


class SyncerStoppedError(MoonfireError, RuntimeError):
    """The syncer is closed or was stopped by a fatal error; nothing more can be saved."""


class SampleDirectoryFailedError(MoonfireError):
    """The sample file directory is gone, replaced, detached or failing; it names the path."""


#: A sample file that can't be created with one of these means the directory itself failed
#: (removed, read-only, a stale NFS handle, a dead or removed disk): fatal, not retried.
DIRECTORY_FAILURE_ERRNOS = frozenset(
    {errno.ENOENT, errno.EROFS, errno.ESTALE, errno.EIO, errno.ENODEV}
)

#: While a stopped syncer's process lives, its ERROR is repeated this often.
FATAL_REMINDER_SEC = 60.0


@dataclass
class _Save:
    recording: RecordingToSave


@dataclass
class _Abandon:
    sample_file_uuid: bytes
    fd: int | None
    error: BaseException | None


@dataclass
class _Unused:
    """A reserved UUID whose file was never created: only its row needs to go."""

    sample_file_uuid: bytes


@dataclass
class _Barrier:
    """Flush: the queue up to here has been processed when ``done`` is set."""

    done: threading.Event


@dataclass
class _EnforceRetention:
    done: threading.Event


@dataclass
class _DirectoryFailed:
    """A writer found the directory failed: the syncer thread stops on it."""

    error: BaseException


@dataclass
class _MakeRoom:
    camera_id: int
    bytes_wanted: int


_STOP = object()


def _deletable(rows: Sequence[RecordingRow]) -> Sequence[HasCompositeId]:
    # ``HasCompositeId`` declares a settable attribute, which the frozen
    # ``RecordingRow`` can't match for mypy although it has the field.
    return cast("Sequence[HasCompositeId]", rows)


class Syncer:
    """One thread per sample file directory that makes recordings durable.

    Writers made by ``create_writer`` call ``save``/``abandon`` (through
    ``Writer.close``); both only enqueue.  Use as a context manager, or call
    ``close`` to drain and stop.  The constructor recovers from the last run
    (synchronously) before the thread starts.
    """

    def __init__(
        self,
        directory: SampleDirectory,
        db: Database,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._directory = directory
        self._db = db
        self._on_fatal = on_fatal
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._uuid_lock = threading.Lock()
        self._next_uuid: bytes | None = None
        #: UUIDs handed to writers and not yet saved or abandoned -> camera id.
        self._writing: dict[bytes, int] = {}
        self._to_unlink: list[bytes] = []
        self._to_mark_deleted: list[bytes] = []
        #: Camera id -> bytes of its committed recordings.
        self._usage: dict[int, int] = {}
        self.fatal_error: BaseException | None = None
        self._closed = False
        self._identity = self._directory_identity()
        self._recover()
        self._thread = threading.Thread(
            target=self._run, name=f"syncer-{directory.path}", daemon=True
        )
        self._thread.start()

    @property
    def path(self) -> str:
        return self._directory.path

    # ---- the writer-facing API (any thread) ----

    def create_writer(
        self, prev: PreviousWriter | None, camera_id: int, video_sample_entry_id: int
    ) -> Writer:
        """A writer for the next recording of ``camera_id``, named by a reserved UUID."""
        sample_file_uuid = self._take_uuid(camera_id)
        name = uuid_name(sample_file_uuid)
        try:
            fd = self._directory.create_file(name)
        except BaseException as e:
            self._put_back_uuid(sample_file_uuid)
            self._on_create_failed(camera_id, e)
            raise
        try:
            return Writer(
                self,
                fd,
                os.path.join(self.path, name),
                sample_file_uuid,
                camera_id,
                video_sample_entry_id,
                prev,
            )
        except BaseException as e:
            self.abandon(sample_file_uuid, fd, e)
            raise

    def save(self, recording: RecordingToSave) -> None:
        """Queue a closed recording to be made durable and committed (``Writer.close``)."""
        try:
            self._check_running()
        except SyncerStoppedError:
            # Its reservation stays, so the next start deletes the file.
            _close_quietly(recording.fd)
            raise
        self._queue.put(_Save(recording))

    def abandon(
        self, sample_file_uuid: bytes, fd: int | None, error: BaseException | None = None
    ) -> None:
        """Queue the deletion of a recording that will never be committed."""
        if self._closed or self.fatal_error is not None:
            if fd is not None:  # left reserved: the next start deletes it
                _close_quietly(fd)
            return
        self._queue.put(_Abandon(sample_file_uuid, fd, error))

    def make_room(self, camera_id: int, bytes_wanted: int = 1) -> None:
        """The disk filled up under ``camera_id``: delete its oldest recordings (queued)."""
        self._queue.put(_MakeRoom(camera_id, bytes_wanted))

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything queued so far is processed (for tests and shutdown)."""
        self._wait(_Barrier(threading.Event()), timeout)

    def enforce_retention(self, timeout: float | None = 60.0) -> None:
        """Bring every camera within its (possibly lowered) budget now."""
        self._wait(_EnforceRetention(threading.Event()), timeout)

    def close(self) -> None:
        """Drain the queue, clean up every reservation and stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self.fatal_error is not None:
            raise SyncerStoppedError(f"syncer stopped: {self.fatal_error}") from self.fatal_error

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the UUID reservation cache (any thread) ----

    def _take_uuid(self, camera_id: int) -> bytes:
        """A reserved UUID for a new sample file: the cached one, else a new reservation."""
        self._check_running()
        with self._uuid_lock:
            sample_file_uuid, self._next_uuid = self._next_uuid, None
        if sample_file_uuid is None:
            log.debug("committing extra transaction because there's no cached uuid")
            with self._db.transaction() as tx:
                sample_file_uuid = tx.reserve_sample_file()
        with self._uuid_lock:
            self._writing[sample_file_uuid] = camera_id
        return sample_file_uuid

    def _put_back_uuid(self, sample_file_uuid: bytes) -> None:
        """Return a UUID whose file could not be created, for the next writer."""
        with self._uuid_lock:
            self._writing.pop(sample_file_uuid, None)
            if self._next_uuid is None:
                self._next_uuid = sample_file_uuid
                return
        self._queue.put(_Unused(sample_file_uuid))

    # ---- internals (syncer thread, or the constructor before it starts) ----

    def _check_running(self) -> None:
        if self.fatal_error is not None:
            raise SyncerStoppedError(f"syncer stopped: {self.fatal_error}") from self.fatal_error
        if self._closed:
            raise SyncerStoppedError("syncer is closed")

    def _wait(self, command: Any, timeout: float | None) -> None:
        self._check_running()
        self._queue.put(command)
        while not command.done.wait(0.05 if timeout is None else min(timeout, 0.05)):
            if not self._thread.is_alive():
                self._check_running()
                raise SyncerStoppedError("syncer thread exited")
            if timeout is not None:
                timeout -= 0.05
                if timeout <= 0:
                    raise TimeoutError("syncer did not catch up in time")
        if self.fatal_error is not None:  # woken by _fail, not by doing the work
            raise SyncerStoppedError(f"syncer stopped: {self.fatal_error}") from self.fatal_error

    def _oldest(self, camera_id: int) -> Iterator[RecordingRow]:
        return (row for row, _sample_file_uuid in self._db.list_oldest_recordings(camera_id))

    def _recover(self) -> None:
        """Initial rotation = crash recovery, synchronously, before any writer (§1.6)."""
        self._to_unlink = [u for u, _state in self._db.list_reserved_sample_files()]
        for camera in self._db.list_cameras():
            self._usage[camera.id] = self._db.camera_usage(camera.id)[1]
        if self._to_unlink:
            log.info(
                "recovering: %d sample files left reserved by the last run", len(self._to_unlink)
            )
        self._rotate(self._rows_over_budget(), recovering=True)

    def _rows_over_budget(self) -> list[RecordingRow]:
        """Every camera's oldest rows that take it over its budget."""
        rows: list[RecordingRow] = []
        for camera in self._db.list_cameras():
            rows.extend(self._budget_deletion(camera.id, incoming_bytes=0).rows)
        return rows

    def _budget_deletion(
        self, camera_id: int, incoming_bytes: int
    ) -> retention.Deletion[RecordingRow]:
        retain = self._db.get_camera(camera_id).retain_bytes
        deletion = retention.to_fit_budget(
            self._oldest(camera_id), self._usage.get(camera_id, 0), retain, incoming_bytes
        )
        if deletion.needed and deletion.short:
            log.error(
                "camera %d: can't get within its budget of %d bytes: deleting all %d older "
                "recordings frees only %d of the %d bytes needed; recording goes on",
                camera_id,
                retain,
                len(deletion.rows),
                deletion.bytes_freed,
                deletion.bytes_needed,
            )
        return deletion

    def _free_space_deletion(
        self, camera_id: int, recording_bytes: int, chosen: list[RecordingRow]
    ) -> list[RecordingRow]:
        """More of the camera's oldest rows when the disk is nearly full.

        Budgets are set by hand and the disk may be shared, so the budget alone
        can't keep writes from failing with ENOSPC (which costs the recording
        being written).
        """
        stat = os.fstatvfs(self._directory.fileno())
        deletion = retention.for_free_space(
            self._oldest(camera_id), stat.f_bavail * stat.f_frsize, recording_bytes, chosen
        )
        rows: list[RecordingRow] = []
        if deletion.needed:
            log.warning(
                "sample file directory %s has only %d bytes free: deleting %d more of camera "
                "%d's oldest recordings (%d bytes) than its budget asks; lower the budget to fit "
                "the disk",
                self.path,
                deletion.free_bytes,
                len(deletion.rows),
                camera_id,
                deletion.bytes_freed,
            )
            rows = deletion.rows
        return rows + self._free_inode_deletion(camera_id, chosen + rows)

    def _free_inode_deletion(
        self, camera_id: int, chosen: list[RecordingRow]
    ) -> list[RecordingRow]:
        """More of the camera's oldest rows when the filesystem is nearly out of inodes."""
        stat = os.fstatvfs(self._directory.fileno())
        deletion = retention.for_free_inodes(
            self._oldest(camera_id), stat.f_favail, stat.f_files, len(self._usage), chosen
        )
        if not deletion.needed:
            return []
        log.warning(
            "sample file directory %s has only %d inodes free: deleting %d more of camera %d's "
            "oldest recordings (%d bytes) than its budget asks; camera %d's budget doesn't fit "
            "the disk's inodes (%d in all), lower it",
            self.path,
            deletion.free_inodes,
            len(deletion.rows),
            camera_id,
            deletion.bytes_freed,
            camera_id,
            stat.f_files,
        )
        return deletion.rows

    def _rotate(self, rows: list[RecordingRow], recovering: bool) -> None:
        """Delete ``rows`` and everything in ``to_unlink`` durably (brief's do_rotation).

        ``recovering`` is true only for the start's recovery: it alone reaches
        the ``recovery.*`` crash points, expects files to be missing, and a file
        that can't be unlinked aborts the start (recovery must finish before
        recording).  Later rotations (``enforce_retention``, ``make_room``) only
        log such a file and retry it at the next save, as a save does, so one
        stuck file doesn't stop every camera.
        """

        def reached(step: str) -> None:
            if recovering:
                crash_point(f"recovery.{step}")

        if rows:
            with self._db.transaction() as tx:
                self._to_unlink.extend(tx.delete_recordings(_deletable(rows)))
            for row in rows:
                self._usage[row.camera_id] -= row.sample_file_bytes
            reached("after_delete_transaction")
        if not self._to_unlink and not self._to_mark_deleted:
            return
        self._try_unlink(missing_is_expected=recovering)
        if self._to_unlink and recovering:
            raise OSError(
                errno.EIO,
                f"unable to unlink {len(self._to_unlink)} sample files, e.g. "
                f"{uuid_name(self._to_unlink[0])}",
                self.path,
            )
        if not self._to_mark_deleted:
            return
        reached("after_unlink")
        self._directory.sync()
        reached("after_dir_fsync")
        with self._db.transaction() as tx:
            tx.mark_sample_files_deleted(self._to_mark_deleted)
        self._to_mark_deleted = []
        reached("after_mark_transaction")

    def _try_unlink(self, missing_is_expected: bool = False) -> None:
        """Unlink every file in ``to_unlink``; the done ones move to ``to_mark_deleted``.

        A missing file is normal after a crash (it was never created, or its
        unlink was durable but its reservation row wasn't yet dropped), so
        recovery passes ``missing_is_expected`` to keep the log quiet.
        """
        still: list[bytes] = []
        for sample_file_uuid in self._to_unlink:
            name = uuid_name(sample_file_uuid)
            try:
                if not self._directory.unlink(name) and not missing_is_expected:
                    log.warning("sample file %s already deleted!", name)
            except OSError as e:
                log.error("unable to unlink sample file %s: %s", name, e)
                still.append(sample_file_uuid)
                continue
            self._to_mark_deleted.append(sample_file_uuid)
        self._to_unlink = still

    def _run(self) -> None:
        try:
            while True:
                command = self._queue.get()
                if command is _STOP:
                    self._shutdown()
                    return
                if isinstance(command, _Save):
                    self._save(command.recording)
                elif isinstance(command, _Abandon):
                    self._abandon(command)
                elif isinstance(command, _Unused):
                    self._to_mark_deleted.append(command.sample_file_uuid)
                elif isinstance(command, _DirectoryFailed):
                    raise command.error
                elif isinstance(command, _MakeRoom):
                    self._make_room(command.camera_id, command.bytes_wanted)
                elif isinstance(command, _EnforceRetention):
                    self._rotate(self._rows_over_budget(), recovering=False)
                    command.done.set()
                elif isinstance(command, _Barrier):
                    command.done.set()
        except BaseException as e:  # noqa: BLE001 - any failure here stops recording
            self._fail(e)

    def _fail(self, error: BaseException) -> None:
        self.fatal_error = error
        log.error(
            "sample file directory %s: syncer stopped, its cameras stop recording: %s",
            self.path,
            error,
            # The message says it all for a failed directory; anything else may be a bug.
            exc_info=None if isinstance(error, SampleDirectoryFailedError) else error,
        )
        if self._on_fatal is not None:  # before waking the waiters: they may look for it
            self._on_fatal(error)
        # Wake up anyone waiting on a flush; their commands will never run.
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(command, _Save):
                _close_quietly(command.recording.fd)
            elif isinstance(command, _Abandon) and command.fd is not None:
                _close_quietly(command.fd)
            done = getattr(command, "done", None)
            if done is not None:
                done.set()
        self._start_fatal_reminder(error)

    def _save(self, rec: RecordingToSave) -> None:
        name = uuid_name(rec.sample_file_uuid)
        with self._uuid_lock:
            self._writing.pop(rec.sample_file_uuid, None)
        self._try_unlink()
        crash_point("save.after_unlink")
        # Files that could not be unlinked (logged by _try_unlink) keep their
        # "deleting" reservations and are retried at every save; unlike the 2017
        # code, they don't cost the new recording, so recording goes on.
        try:
            sampledir.fsync(rec.fd, os.path.join(self.path, name))
        except OSError as e:
            # fsyncgate: after a failed fsync the kernel may have dropped the
            # pages, so the file's contents are unknown.  Never commit it.
            log.error("will discard recording %s due to error while saving: %s", name, e)
            _close_quietly(rec.fd)
            self._to_unlink.append(rec.sample_file_uuid)
            self._try_unlink()
            return
        _close_quietly(rec.fd)
        crash_point("save.after_file_fsync")
        self._directory.sync()  # failure is fatal: raises out of _run
        crash_point("save.after_dir_fsync")
        self._check_directory()  # a mismatch raises: the recording is never committed
        rows = self._budget_deletion(rec.camera_id, incoming_bytes=rec.sample_file_bytes).rows
        rows += self._free_space_deletion(rec.camera_id, rec.sample_file_bytes, rows)
        with self._uuid_lock:
            need_uuid = self._next_uuid is None
        try:
            with self._db.transaction() as tx:
                tx.mark_sample_files_deleted(self._to_mark_deleted)
                deleted = tx.delete_recordings(_deletable(rows))
                new_uuid = tx.reserve_sample_file() if need_uuid else None
                tx.insert_recording(rec)
        except RecordingRejectedError as e:
            # Rolled back whole: the deletions and marks are simply retried later.
            log.error("will discard recording %s: %s", name, e)
            self._to_unlink.append(rec.sample_file_uuid)
            return
        crash_point("save.after_commit")
        self._to_mark_deleted = []
        self._to_unlink.extend(deleted)
        for row in rows:
            self._usage[row.camera_id] -= row.sample_file_bytes
        self._usage[rec.camera_id] = self._usage.get(rec.camera_id, 0) + rec.sample_file_bytes
        if new_uuid is not None:
            with self._uuid_lock:
                if self._next_uuid is None:
                    self._next_uuid = new_uuid
                    new_uuid = None
            if new_uuid is not None:  # a writer reserved one meanwhile; keep only one cached
                self._to_mark_deleted.append(new_uuid)

    def _abandon(self, command: _Abandon) -> None:
        with self._uuid_lock:
            camera_id = self._writing.pop(command.sample_file_uuid, None)
        name = uuid_name(command.sample_file_uuid)
        size = 0
        if command.fd is not None:
            try:
                size = os.fstat(command.fd).st_size
            except OSError:
                pass
            _close_quietly(command.fd)
        log.warning("abandoning recording %s: %s", name, command.error or "no samples")
        self._to_unlink.append(command.sample_file_uuid)
        self._try_unlink()
        crash_point("abandon.after_unlink")
        if (
            camera_id is not None
            and isinstance(command.error, OSError)
            and command.error.errno == errno.ENOSPC
        ):
            self._make_room(camera_id, size)

    def _make_room(self, camera_id: int, bytes_wanted: int) -> None:
        """The disk filled before the budget did: delete the camera's oldest recordings.

        Deletes at least one recording and at least as many bytes as the lost
        recording had reached, so the next one has room to go on.
        """
        deletion = retention.to_make_room(self._oldest(camera_id), bytes_wanted)
        if not deletion.rows:
            log.error(
                "camera %d: sample file directory %s is full and the camera has no recordings "
                "to delete; other cameras' budgets exceed the disk",
                camera_id,
                self.path,
            )
            return
        log.error(
            "camera %d: sample file directory %s is full before the camera reached its budget; "
            "deleting its %d oldest recordings (%d bytes). Lower the budget to fit the disk.",
            camera_id,
            self.path,
            len(deletion.rows),
            deletion.bytes_freed,
        )
        self._rotate(deletion.rows, recovering=False)

    def _shutdown(self) -> None:
        """Leave no reservation rows: drop the cached UUID and finish pending deletions."""
        with self._uuid_lock:
            if self._next_uuid is not None:
                # No file was ever created under the cached name (create_writer
                # takes it out of the cache before creating), so there is
                # nothing to unlink: the reservation row just goes.
                self._to_mark_deleted.append(self._next_uuid)
                self._next_uuid = None
            still_writing = dict(self._writing)
        if still_writing:
            log.warning(
                "shutting down with %d writers still open; their files stay reserved until the "
                "next start",
                len(still_writing),
            )
        if not self._to_unlink and not self._to_mark_deleted:
            return
        self._try_unlink()
        crash_point("shutdown.after_unlink")
        self._directory.sync()
        crash_point("shutdown.after_dir_fsync")
        with self._db.transaction() as tx:
            tx.mark_sample_files_deleted(self._to_mark_deleted)
        self._to_mark_deleted = []
        crash_point("shutdown.after_commit")
        if self._to_unlink:
            log.error("%d sample files could not be unlinked at shutdown", len(self._to_unlink))

    # ---- a failed directory (any thread) ----

    def _directory_identity(self) -> tuple[tuple[int, int], tuple[int, int] | None, bytes | None]:
        """(dev, ino) of the held directory, and of its ``meta`` file with its contents."""
        held = os.fstat(self._directory.fileno())
        try:
            fd = os.open(META_NAME, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._directory.fileno())
        except FileNotFoundError:  # a bare SampleDirectory (tests): only the path is checked
            return (held.st_dev, held.st_ino), None, None
        try:
            meta = os.fstat(fd)
            return (held.st_dev, held.st_ino), (meta.st_dev, meta.st_ino), os.read(fd, 1 << 16)
        finally:
            os.close(fd)

    def _directory_mismatch(self) -> str | None:
        """Why the path no longer leads to the directory (and meta) opened; None if it does."""
        held, meta_id, meta_data = self._identity
        try:
            st = os.stat(self.path)
        except OSError as e:
            return f"can no longer be reached at its path ({e.strerror}): removed or unmounted?"
        if (st.st_dev, st.st_ino) != held:
            return (
                "no longer leads to the directory opened at start: renamed, replaced or "
                "unmounted?"
            )
        if meta_id is None:
            return None
        meta_path = os.path.join(self.path, META_NAME)
        try:
            fd = os.open(meta_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            return f"has lost its {META_NAME} file ({e.strerror})"
        try:
            st = os.fstat(fd)
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        if (st.st_dev, st.st_ino) != meta_id or data != meta_data:
            return f"has a {META_NAME} file other than the one opened at start"
        return None

    def _check_directory(self) -> None:
        """Raise ``SampleDirectoryFailedError`` unless the path still leads to our directory."""
        reason = self._directory_mismatch()
        if reason is not None:
            raise SampleDirectoryFailedError(
                f"sample file directory {self.path} {reason}; not committing recordings to it"
            )

    def _on_create_failed(self, camera_id: int, error: BaseException) -> None:
        """A writer's file couldn't be created: a failed directory stops the syncer."""
        if not isinstance(error, OSError):
            return
        if error.errno == errno.ENOSPC:  # out of space or inodes: make room for the next try
            self.make_room(camera_id)
            return
        if error.errno not in DIRECTORY_FAILURE_ERRNOS or self.fatal_error is not None:
            return
        reason = self._directory_mismatch() or "can't be written to"
        failed = SampleDirectoryFailedError(f"sample file directory {self.path} {reason}: {error}")
        log.error("%s", failed)
        self._queue.put(_DirectoryFailed(failed))
        raise SyncerStoppedError(f"syncer stopping: {failed}") from failed

    def _start_fatal_reminder(self, error: BaseException) -> None:
        """Repeat the ERROR every minute while the process lives: never a silent stop."""

        def remind() -> None:
            while True:
                time.sleep(FATAL_REMINDER_SEC)
                log.error(
                    "sample file directory %s: syncer stopped, nothing is being recorded: %s",
                    self.path,
                    error,
                )

        threading.Thread(target=remind, name=f"syncer-failed-{self.path}", daemon=True).start()



def _close_quietly(fd: int) -> None:
    try:
        sampledir.close_fd(fd)
    except OSError as e:
        log.warning("closing fd %d: %s", fd, e)
