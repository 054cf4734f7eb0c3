"""The syncer: the one thread that makes recordings durable or deletes them (brief §1.4–1.7).

It does so in one fixed order so that a crash at any instant leaves the three
invariants of ``docs/design.md`` true:

* save:    fsync(file) → fsync(dir) → one transaction (mark the last unlinks
           done, turn rotated rows into "deleting" reservations, refill the
           pool of reserved UUIDs, insert the row) → unlink the rotated files;
* delete:  row → reservation (transaction) → unlink → fsync(dir) → drop the
           reservation (in the *next* save's transaction, which follows a dir
           fsync);
* startup: every reservation left by the last run is unlinked, the directory
           fsynced and the reservations dropped, and every stream of the
           directory is brought within its budget and maximum age, all before
           any writer exists.  Only this recovery reaches the ``recovery.*``
           crash points.

*Which* rows go is decided by ``moonfire.storage.retention`` (pure functions);
this module only asks it and carries the answer out in the order above.

The syncer is also the one place that creates ``Writer`` objects
(``create_writer``): a writer's file is named by a UUID the syncer reserved
and the writer hands its recording back to the syncer (its *sink*), so the
reservation cache never leaves this module.  The dependency is one way:
``ingest`` → ``storage.sample_file_dir`` → ``storage.syncer`` →
``storage.retention``, ``moonfire.db``, ``moonfire_core``.

A *pool* of reserved UUIDs, sized to the directory's streams plus a margin
and refilled in every save's transaction, lets ``create_writer`` start a
writer without touching the database (streams that rotate together would
otherwise each wait for a synchronous transaction); the syncer thread also
creates the pool's files ahead, so starting a writer makes no syscall either.  An orderly ``close``
drains the queue and then removes the pool's reservations and every pending
deletion, leaving no reservation rows (invariant 3; the 2017 code left some).

*Group commit*: when the thread wakes it takes every save queued at that
moment (at most ``MAX_BATCH``), fsyncs each file (``FSYNC_THREADS`` at a time),
then does ONE directory fsync and ONE transaction for all of them.  The order
per recording is unchanged (file fsync → dir fsync → transaction).  Only when
the syncer is behind does a batch hold two saves of one stream; the later one
then goes in a second transaction (after the same dir fsync), so that the
budget may delete the earlier one as a save of its own would; the files the
first deleted are unlinked before the second is planned, so its ``statvfs``
sees them gone.  The free-space and inode floors are met once per
transaction, not once per stream saved (``_floor_deletion``).

One syncer serves one sample file directory (a data directory may have
several, one per disk): it recovers that directory's reservations and
rotates the recordings of the streams stored there, so a failed disk stops
only its own streams.  Recordings past their stream's maximum age are also
deleted when the syncer has been idle for ``RETENTION_CHECK_SEC`` (a stream
that stopped recording has no saves to trigger it).

A failed file fsync abandons that one recording; a row the database rejects
discards that one recording and the rest of the batch is committed without it.
A failed directory fsync is fatal: the kernel may already have dropped the
dirty pages, so retrying could report success for data that is gone.  The
syncer stops, records the error and calls ``on_fatal`` so the daemon exits
non-zero.

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

For ``/metrics`` the syncer times every file and directory fsync
(``SyncerStats.file_fsync``, ``dir_fsync``) and counts what it commits per
stream; only its own thread writes those, so they take no lock (a reader gets
a snapshot that may be one observation behind).
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, cast

from moonfire.db import Database, RecordingRejectedError, RecordingRow
from moonfire.db.database import ArchiveState
from moonfire.db.rows import format_uuid as uuid_name
from moonfire.db.transaction import HasCompositeId, Transaction
from moonfire.errors import MoonfireError
from moonfire.storage import retention
from moonfire.storage.crash_points import crash_point
from moonfire.storage.dir_meta import META_NAME, DirectoryMismatchError, DirMeta, read_meta
from moonfire_core import sampledir
from moonfire_core.records import PreviousWriter, RecordingToSave
from moonfire_core.sampledir import SampleDirectory
from moonfire_core.writer import Writer

log = logging.getLogger(__name__)

#: Most saves committed by one directory fsync and one transaction.
MAX_BATCH = 64
#: Threads fsyncing the files of one batch (the kernel merges their journal commits).
FSYNC_THREADS = 4
#: Reserved UUIDs kept beyond one per stream: a stream may rotate again before
#: the batch holding its last save refills the pool.
POOL_MARGIN_MIN = 4


def pool_target(streams: int) -> int:
    """How many reserved UUIDs the pool is refilled to for ``streams`` streams."""
    return streams + max(POOL_MARGIN_MIN, streams // 4)


#: Upper bounds (seconds) of the fsync latency histograms' buckets: a healthy disk's
#: file fsync takes about a millisecond (SSD) to tens of ms (HDD); seconds mean trouble.
FSYNC_BUCKETS_SEC = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class LatencyHistogram:
    """Counts of durations by bucket, for ``/metrics``: observed by ONE thread (the syncer's)
    without a lock, read by any (a reader may see an observation half done: one count ahead
    of the sum, for a moment, which a scrape can live with).

    ``counts[i]`` counts observations ≤ ``bounds[i]`` and > ``bounds[i-1]``; the last one,
    those above every bound (Prometheus's ``+Inf`` bucket).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = FSYNC_BUCKETS_SEC) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class SyncerStats:
    """Counters of the syncer's work, for tests, benchmarks, logs and ``/metrics`` (no
    locking: only the syncer thread writes them; readers get an advisory snapshot)."""

    batches: int = 0
    saved: int = 0
    largest_batch: int = 0
    #: Saves waiting in the queue when a batch was taken, at most.
    max_queue_depth: int = 0
    #: ``create_writer`` calls that found the pool empty and reserved synchronously.
    sync_reservations: int = 0
    #: Seconds from ``save`` to its commit, for the most recent saves.
    save_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    #: How long each sample file's fsync took, and each fsync of the directory.
    file_fsync: LatencyHistogram = field(default_factory=LatencyHistogram)
    dir_fsync: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: Stream id -> recordings this syncer committed for it, and their bytes.
    committed_recordings: dict[int, int] = field(default_factory=dict)
    committed_bytes: dict[int, int] = field(default_factory=dict)
    #: Archived recordings whose local files retention deleted, keeping their rows.
    made_archived_only: int = 0
    #: Recordings the free-space floor deleted before their archive had them.
    lost_for_archive: int = 0


class SyncerStoppedError(MoonfireError, RuntimeError):
    """The syncer is closed or was stopped by a fatal error; nothing more can be saved."""


class SyncerStuckError(SyncerStoppedError):
    """``close(timeout)`` ran out while the syncer thread was still busy (a hung syscall)."""


class SampleDirectoryFailedError(MoonfireError):
    """The sample file directory is gone, replaced, detached or failing; it names the path."""


#: A sample file that can't be created with one of these means the directory itself failed
#: (removed, read-only, a stale NFS handle, a dead or removed disk): fatal, not retried.
DIRECTORY_FAILURE_ERRNOS = frozenset(
    {errno.ENOENT, errno.EROFS, errno.ESTALE, errno.EIO, errno.ENODEV}
)
#: A ``stat`` of the directory's path (or its meta) failing with one of these means the
#: directory is gone from there; any other error (EMFILE, EACCES...) says nothing about it.
PATH_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV, errno.EIO})

#: While a stopped syncer's process lives, its ERROR is repeated this often.
FATAL_REMINDER_SEC = 60.0
#: An idle syncer applies the maximum ages this often (saves apply them too).
RETENTION_CHECK_SEC = 600.0


@dataclass
class _Save:
    recording: RecordingToSave
    queued_at: float = 0.0


@dataclass
class _Abandon:
    sample_file_uuid: bytes
    fd: int | None
    error: BaseException | None


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
class _Refill:
    """The pool fell below one UUID per stream between saves: reserve more now."""


@dataclass
class _MakeRoom:
    stream_id: int
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
        dir_id: int,
        on_fatal: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.time,
        open_id: int | None = None,
    ) -> None:
        self._directory = directory
        self._db = db
        #: The ``sample_file_dir`` row this directory is: its reservations and streams.
        self.dir_id = dir_id
        #: Wall-clock seconds, for maximum ages (tests pass their own).
        self._clock = clock
        #: The directory open its recordings are committed under (the API's ``openId``).
        self.open_id = open_id
        self._on_fatal = on_fatal
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._uuid_lock = threading.Lock()
        #: Reserved UUIDs (state writing) whose files were never created.
        self._pool: list[bytes] = []
        #: Reserved UUIDs whose (empty) files the syncer thread created ahead, with their fds.
        self._ready: list[tuple[bytes, int]] = []
        #: Stream ids the pool is sized for: the directory's streams, plus any a writer named.
        self._streams: set[int] = set()
        self.stats = SyncerStats()
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._refill_queued = False
        #: A command taken from the queue to end a batch, to run next.
        self._pending: Any = None
        #: UUIDs handed to writers and not yet saved or abandoned -> stream id.
        self._writing: dict[bytes, int] = {}
        #: Closed recordings queued and not yet committed (or dropped), oldest first, by
        #: UUID: the API lists them (``firstUncommitted``) and serves them from memory.
        self._uncommitted: dict[bytes, RecordingToSave] = {}
        self._to_unlink: list[bytes] = []
        self._to_mark_deleted: list[bytes] = []
        #: Stream id -> bytes of its committed recordings' local files.
        self._usage: dict[int, int] = {}
        #: Composite id -> archive state of each row a deletion being planned read
        #: (``_oldest``, ``_oldest_local``), to carry the deletion out (``_delete_in``).
        self._archive_states: dict[int, ArchiveState] = {}
        #: Streams over their budget because recordings wait for the archive (logged once).
        self._waiting_for_archive: set[int] = set()
        self.fatal_error: BaseException | None = None
        #: Set by ``close``: ends the every-minute ERROR of a failed syncer.
        self._reminder_stop = threading.Event()
        self._closed = False
        self._identity = self._directory_identity()
        self._recover()
        self._fill_pool()
        self._thread = threading.Thread(
            target=self._run, name=f"syncer-{directory.path}", daemon=True
        )
        self._thread.start()

    @property
    def path(self) -> str:
        return self._directory.path

    @property
    def queue_depth(self) -> int:
        """Commands waiting for the syncer thread (saves, mostly): a growing number means
        the disk can't keep up."""
        return self._queue.qsize()

    # ---- the writer-facing API (any thread) ----

    def create_writer(
        self, prev: PreviousWriter | None, stream_id: int, video_sample_entry_id: int
    ) -> Writer:
        """A writer for the next recording of ``stream_id`` (a stream of this directory),
        named by a reserved UUID."""
        sample_file_uuid, fd = self._take_uuid(stream_id)
        name = uuid_name(sample_file_uuid)
        if fd is None:  # no file made ahead by the syncer thread: create it here
            try:
                fd = self._directory.create_file(name)
            except BaseException as e:
                self._put_back_uuid(sample_file_uuid)
                self._on_create_failed(stream_id, e)
                raise
        try:
            return Writer(
                self,
                fd,
                os.path.join(self.path, name),
                sample_file_uuid,
                stream_id,
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
        with self._uuid_lock:
            self._uncommitted[recording.sample_file_uuid] = recording
        self._queue.put(_Save(recording, time.monotonic()))

    def uncommitted(self, stream_id: int) -> list[RecordingToSave]:
        """``stream_id``'s closed recordings not yet committed, oldest first (any thread).

        Their files hold every byte (``Writer.close`` flushed them) but may not be
        durable yet.  A recording leaves this list only after its transaction
        committed, or when it was dropped, so a caller that reads this list and
        then the database sees each recording at least once; it may see one in
        both (committed in between), which it recognises by its start time.
        """
        with self._uuid_lock:
            return [r for r in self._uncommitted.values() if r.stream_id == stream_id]

    def abandon(
        self, sample_file_uuid: bytes, fd: int | None, error: BaseException | None = None
    ) -> None:
        """Queue the deletion of a recording that will never be committed."""
        if self._closed or self.fatal_error is not None:
            if fd is not None:  # left reserved: the next start deletes it
                _close_quietly(fd)
            return
        self._queue.put(_Abandon(sample_file_uuid, fd, error))

    def make_room(self, stream_id: int, bytes_wanted: int = 1) -> None:
        """The disk filled up under ``stream_id``: delete its oldest recordings (queued)."""
        self._queue.put(_MakeRoom(stream_id, bytes_wanted))

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything queued so far is processed (for tests and shutdown)."""
        self._wait(_Barrier(threading.Event()), timeout)

    def enforce_retention(self, timeout: float | None = 60.0) -> None:
        """Bring every stream of the directory within its (possibly lowered) budget and
        maximum age now."""
        self._wait(_EnforceRetention(threading.Event()), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue, clean up every reservation and stop the thread.

        With a ``timeout``, a thread still busy after it (an fsync hung on a failing disk)
        raises ``SyncerStuckError``: the caller must then not close the directory or the
        database under it.  ``close`` may be called again to wait longer.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._reminder_stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SyncerStuckError(
                f"syncer for {self.path} did not stop within {timeout:g} s "
                "(an fsync hung on a failing disk?)"
            )
        if self.fatal_error is not None:
            raise SyncerStoppedError(f"syncer stopped: {self.fatal_error}") from self.fatal_error

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the pool of reserved UUIDs (any thread; no SQL unless it ran dry) ----

    def _take_uuid(self, stream_id: int) -> tuple[bytes, int | None]:
        """A reserved UUID for a new sample file, with its created file's fd if made ahead.

        From the files the syncer thread created ahead (no syscall at all), else
        from the pool of reservations, else (counted and logged) a new
        reservation in a transaction of its own.
        """
        self._check_running()
        fd: int | None = None
        sample_file_uuid: bytes | None = None
        with self._uuid_lock:
            self._streams.add(stream_id)
            if self._ready:
                sample_file_uuid, fd = self._ready.pop()
            elif self._pool:
                sample_file_uuid = self._pool.pop()
            # Below one per stream (e.g. right after the start's writers took
            # theirs): ask the syncer thread to refill before the next rotation.
            left = len(self._pool) + len(self._ready)
            refill = left < len(self._streams) and not self._refill_queued
            if refill:
                self._refill_queued = True
        if refill:
            self._queue.put(_Refill())
        if sample_file_uuid is None:
            self.stats.sync_reservations += 1
            count = self.stats.sync_reservations
            (log.warning if count & (count - 1) == 0 else log.debug)(
                "pool of reserved sample file uuids for %s is empty: reserving synchronously "
                "(%d times so far); the syncer is behind",
                self.path,
                count,
            )
            with self._db.transaction() as tx:
                sample_file_uuid = tx.reserve_sample_file(self.dir_id)
        with self._uuid_lock:
            self._writing[sample_file_uuid] = stream_id
        return sample_file_uuid, fd

    def _put_back_uuid(self, sample_file_uuid: bytes) -> None:
        """Return a UUID whose file could not be created to the pool, for the next writer."""
        with self._uuid_lock:
            self._writing.pop(sample_file_uuid, None)
            self._pool.append(sample_file_uuid)

    def _pool_shortfall(self) -> int:
        """How many reservations a transaction should add to bring the pool to its target."""
        with self._uuid_lock:
            target = pool_target(len(self._streams))
            return max(0, target - len(self._pool) - len(self._ready))

    def _add_to_pool(self, uuids: list[bytes]) -> None:
        with self._uuid_lock:
            self._pool.extend(uuids)

    def _fill_pool(self) -> None:
        """Bring the pool to its target in one transaction: at the start (after recovery,
        before any writer) and when ``create_writer`` found it low (syncer thread)."""
        with self._uuid_lock:
            self._refill_queued = False
            self._streams.update(self._usage)
        shortfall = self._pool_shortfall()
        if shortfall:
            with self._db.transaction() as tx:
                uuids = [tx.reserve_sample_file(self.dir_id) for _ in range(shortfall)]
            self._add_to_pool(uuids)

    def _create_files_ahead(self) -> None:
        """Create the pool's files now (syncer thread), so ``create_writer`` makes no syscall.

        Creating a file needs the filesystem's journal, which a busy disk's
        fsyncs can hold for milliseconds; here that costs the syncer, not a
        streamer.  The reservations are committed, so the files may exist
        (invariant 2); a crash leaves them for recovery to unlink.  A failure
        only leaves the rest to ``create_writer``.
        """
        while True:
            with self._uuid_lock:
                if not self._pool:
                    return
                sample_file_uuid = self._pool.pop()
            try:
                fd = self._directory.create_file(uuid_name(sample_file_uuid))
            except OSError as e:
                self._add_to_pool([sample_file_uuid])
                failed = self._directory_failure(e)
                if failed is not None:
                    raise failed from e
                log.warning("creating sample files ahead in %s: %s", self.path, e)
                return
            with self._uuid_lock:
                self._ready.append((sample_file_uuid, fd))

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

    def _oldest(self, stream_id: int) -> Iterator[RecordingRow]:
        """The stream's local recordings its budget and maximum age may delete, oldest
        first: not those waiting for its archive (the budget overruns until the uploader
        catches up); an archived one loses only its local file (``_delete_in``)."""
        for row, _sample_file_uuid, state in self._db.list_oldest_local_recordings(stream_id):
            if state is ArchiveState.WAITING:
                continue
            self._archive_states[row.composite_id] = state
            yield row

    def _oldest_local(self, stream_id: int, archived: bool) -> Iterator[RecordingRow]:
        """The stream's local recordings that are archived (``archived``) or not, oldest
        first."""
        for row, _sample_file_uuid, state in self._db.list_oldest_local_recordings(stream_id):
            if (state is ArchiveState.ARCHIVED) == archived:
                self._archive_states[row.composite_id] = state
                yield row

    def _for_the_disk(self, stream_ids: list[int]) -> Iterator[RecordingRow]:
        """What the disk's floors and a full disk delete: every local recording of the
        streams, the archived ones first (only their local files go), then the others,
        oldest first across the streams; those waiting for an archive are then lost for it."""
        yield from retention.oldest_across_streams(
            [self._oldest_local(c, archived=True) for c in stream_ids])
        yield from retention.oldest_across_streams(
            [self._oldest_local(c, archived=False) for c in stream_ids])

    def _delete_in(self, tx: Transaction, rows: list[RecordingRow]) -> list[bytes]:
        """Deletes ``rows`` in ``tx``; returns the uuids of their files to unlink.  An
        archived recording keeps its row, archived-only (``Database.delete_local_files``);
        so does one that was waiting for its archive when listed if its upload completed
        since (``delete_local_files`` checks in the statement, else deletes it whole); the
        others go whole, as they always did."""
        keep = (ArchiveState.ARCHIVED, ArchiveState.WAITING)
        archived = [r for r in rows if self._archive_states.get(r.composite_id) in keep]
        whole = [r for r in rows if self._archive_states.get(r.composite_id) not in keep]
        uuids = tx.delete_recordings(_deletable(whole))
        if archived:
            uuids += self._db.delete_local_files(tx, _deletable(archived))
        return uuids

    def _deleted(self, rows: list[RecordingRow]) -> None:
        """After the transaction deleting ``rows`` committed: local usage, counts, and a
        WARNING for each recording lost for its archive."""
        for row in rows:
            self._usage[row.stream_id] -= row.sample_file_bytes
            state = self._archive_states.get(row.composite_id)
            if state is ArchiveState.ARCHIVED:
                self.stats.made_archived_only += 1
            elif state is ArchiveState.WAITING and self._db.list_archived_only(
                    row.stream_id, row.recording_id, row.recording_id):
                self.stats.made_archived_only += 1  # its upload completed meanwhile
            elif state is ArchiveState.WAITING:
                self.stats.lost_for_archive += 1
                stream = self._db.get_stream(row.stream_id)
                archive = (self._db.get_archive(stream.archive_id).name
                           if stream.archive_id is not None else "?")
                log.warning(
                    "recording %s/%d was deleted locally before it could be archived to %r: "
                    "sample file directory %s ran short of free space or inodes; it is lost "
                    "for the archive",
                    self._db.stream_name(row.stream_id), row.recording_id, archive, self.path,
                )
        self._archive_states.clear()

    def _recover(self) -> None:
        """Initial rotation = crash recovery, synchronously, before any writer (§1.6)."""
        self._to_unlink = [u for u, _state in self._db.list_reserved_sample_files(self.dir_id)]
        for stream in self._db.list_streams(self.dir_id):
            self._usage[stream.id] = self._db.stream_usage(stream.id)[1]
        if self._to_unlink:
            log.info(
                "recovering: %d sample files left reserved by the last run", len(self._to_unlink)
            )
        self._rotate(self._rows_over_budget(), recovering=True)

    def _rows_over_budget(self) -> list[RecordingRow]:
        """Every stream's oldest rows that take it over its budget or maximum age."""
        self._archive_states.clear()
        rows: list[RecordingRow] = []
        for stream in self._db.list_streams(self.dir_id):
            rows.extend(self._budget_deletion(stream.id, incoming_bytes=0).rows)
        return rows

    def _budget_deletion(
        self, stream_id: int, incoming_bytes: int
    ) -> retention.Deletion[RecordingRow]:
        """The stream's own rules: its budget or its maximum age, whichever deletes more."""
        stream = self._db.get_stream(stream_id)
        budget, aged = retention.stream_deletion(
            lambda: self._oldest(stream_id),
            self._usage.get(stream_id, 0),
            stream.retain_bytes,
            stream.max_age_days,
            int(self._clock() * 90000),
            incoming_bytes,
        )
        if not (budget.needed and budget.short):
            self._waiting_for_archive.discard(stream_id)
        elif stream.archive_id is None or not self._over_budget_for_archive(
            stream_id, stream.retain_bytes, budget.bytes_needed - budget.bytes_freed
        ):
            log.error(
                "stream %s: can't get within its budget of %d bytes: deleting all %d older "
                "recordings frees only %d of the %d bytes needed; recording goes on",
                self._db.stream_name(stream_id),
                stream.retain_bytes,
                len(budget.rows),
                budget.bytes_freed,
                budget.bytes_needed,
            )
        if aged is not None and len(aged.rows) > len(budget.rows):
            log.info(
                "stream %s: deleting %d recordings older than its maximum age of %d days",
                self._db.stream_name(stream_id),
                len(aged.rows),
                stream.max_age_days,
            )
            return aged
        return budget

    def _over_budget_for_archive(self, stream_id: int, retain_bytes: int, over: int) -> bool:
        """True if recordings waiting for the stream's archive keep it ``over`` bytes over
        its budget: a WARNING the first time (until it is back within its budget)."""
        waiting, waiting_bytes = self._db.stream_archive_backlog(stream_id)
        if not waiting:
            return False
        if stream_id not in self._waiting_for_archive:
            self._waiting_for_archive.add(stream_id)
            log.warning(
                "stream %s goes %d bytes over its budget of %d bytes: it keeps %d "
                "recording(s) (%d bytes) its archive doesn't have yet until the uploader "
                "catches up (`moonfire archive status` shows the backlog)",
                self._db.stream_name(stream_id), over, retain_bytes, waiting, waiting_bytes,
            )
        return True

    def _floor_deletion(
        self, stream_ids: list[int], recording_bytes: int, chosen: list[RecordingRow]
    ) -> list[RecordingRow]:
        """More of the saving streams' oldest rows when the disk is nearly full of bytes or files.

        Budgets are set by hand and the disk may be shared, so the budget alone
        can't keep writes (or the next file's creation) from failing with
        ENOSPC, which costs the recording being written.  ONE ``statvfs``
        reading serves the whole group, and the shortfall is met once: by the
        oldest recordings of the streams saved (merged oldest first, archived ones
        before the others: ``_for_the_disk``), counting
        the rows already ``chosen`` (the budgets') as freed, bytes and inodes,
        since the group's deletions are unlinked right after its commit.
        """
        stat = os.fstatvfs(self._directory.fileno())
        space = retention.for_free_space(
            self._for_the_disk(stream_ids), stat.f_bavail * stat.f_frsize, recording_bytes, chosen
        )
        if space.needed:
            for stream_id, rows in _by_stream(space.rows, stream_ids).items():
                log.warning(
                    "sample file directory %s has only %d bytes free: deleting %d more of stream "
                    "%s's oldest recordings (%d bytes) than its budget asks; lower the budget to "
                    "fit the disk",
                    self.path,
                    space.free_bytes,
                    len(rows),
                    self._db.stream_name(stream_id),
                    sum(r.sample_file_bytes for r in rows),
                )
        inodes = retention.for_free_inodes(
            self._for_the_disk(stream_ids),
            stat.f_favail,
            stat.f_files,
            len(self._usage),
            chosen + space.rows,
        )
        if inodes.needed:
            for stream_id, rows in _by_stream(inodes.rows, stream_ids).items():
                log.warning(
                    "sample file directory %s has only %d inodes free: deleting %d more of stream "
                    "%s's oldest recordings (%d bytes) than its budget asks; stream %s's budget "
                    "doesn't fit the disk's inodes (%d in all), lower it",
                    self.path,
                    inodes.free_inodes,
                    len(rows),
                    self._db.stream_name(stream_id),
                    sum(r.sample_file_bytes for r in rows),
                    self._db.stream_name(stream_id),
                    stat.f_files,
                )
        return space.rows + inodes.rows

    def _rotate(self, rows: list[RecordingRow], recovering: bool) -> None:
        """Delete ``rows`` and everything in ``to_unlink`` durably (brief's do_rotation).

        ``recovering`` is true only for the start's recovery: it alone reaches
        the ``recovery.*`` crash points, expects files to be missing, and a file
        that can't be unlinked aborts the start (recovery must finish before
        recording).  Later rotations (``enforce_retention``, ``make_room``)
        reach the ``rotation.*`` points instead, and only log such a file and
        retry it at the next save, as a save does, so one stuck file doesn't
        stop every stream.
        """

        def reached(step: str) -> None:
            crash_point(f"{'recovery' if recovering else 'rotation'}.{step}")

        if rows:
            with self._db.transaction() as tx:
                self._to_unlink.extend(self._delete_in(tx, rows))
            self._deleted(rows)
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
        self._sync_directory()
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
                command, self._pending = self._pending, None
                if command is None:
                    try:
                        command = self._queue.get(timeout=RETENTION_CHECK_SEC)
                    except queue.Empty:
                        command = _EnforceRetention(threading.Event())
                if command is _STOP:
                    self._shutdown()
                    return
                if isinstance(command, _Save):
                    self._save_batch(self._take_batch(command))
                elif isinstance(command, _Abandon):
                    self._abandon(command)
                elif isinstance(command, _DirectoryFailed):
                    raise command.error
                elif isinstance(command, _Refill):
                    self._fill_pool()
                    self._create_files_ahead()
                elif isinstance(command, _MakeRoom):
                    self._make_room(command.stream_id, command.bytes_wanted)
                elif isinstance(command, _EnforceRetention):
                    self._rotate(self._rows_over_budget(), recovering=False)
                    command.done.set()
                elif isinstance(command, _Barrier):
                    command.done.set()
        except BaseException as e:  # noqa: BLE001 - any failure here stops recording
            self._fail(e)
        finally:
            if self._fsync_pool is not None:
                self._fsync_pool.shutdown(wait=True)

    def _fail(self, error: BaseException) -> None:
        self.fatal_error = error
        log.error(
            "sample file directory %s: syncer stopped, its streams stop recording: %s",
            self.path,
            error,
            # The message says it all for a failed directory; anything else may be a bug.
            exc_info=None if isinstance(error, SampleDirectoryFailedError) else error,
        )
        if self._on_fatal is not None:  # before waking the waiters: they may look for it
            try:
                self._on_fatal(error)
            except Exception:  # noqa: BLE001 - the cleanup below must happen regardless
                log.exception("sample file directory %s: on_fatal failed", self.path)
        # Wake up anyone waiting on a flush; their commands will never run.
        command, self._pending = self._pending, None
        while True:
            if command is None:
                try:
                    command = self._queue.get_nowait()
                except queue.Empty:
                    break
            if isinstance(command, _Save):
                _close_quietly(command.recording.fd)
                with self._uuid_lock:
                    self._uncommitted.pop(command.recording.sample_file_uuid, None)
            elif isinstance(command, _Abandon) and command.fd is not None:
                _close_quietly(command.fd)
            done = getattr(command, "done", None)
            if done is not None:
                done.set()
            command = None
        # The pool's files made ahead stay on disk with their reservations, for the
        # next start's recovery; their fds must not keep a failed filesystem pinned.
        with self._uuid_lock:
            ready, self._ready = self._ready, []
        for _uuid, fd in ready:
            _close_quietly(fd)
        self._start_fatal_reminder(error)

    # ---- group commit (syncer thread) ----

    def _take_batch(self, first: _Save) -> list[_Save]:
        """``first`` and every save queued right behind it, up to ``MAX_BATCH``.

        Another command ends the batch; it runs next (``_pending``), so the
        queue's order is kept.
        """
        self.stats.max_queue_depth = max(self.stats.max_queue_depth, self._queue.qsize() + 1)
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(command, _Save):
                self._pending = command
                break
            batch.append(command)
        return batch

    def _save_batch(self, batch: list[_Save]) -> None:
        """Make a batch durable: file fsyncs → ONE dir fsync → ONE transaction."""
        with self._uuid_lock:
            for save in batch:
                self._writing.pop(save.recording.sample_file_uuid, None)
        try:
            self._make_durable_and_commit(batch)
        finally:
            # Committed, rejected or lost to a failure: no longer waiting to be committed.
            with self._uuid_lock:
                for save in batch:
                    self._uncommitted.pop(save.recording.sample_file_uuid, None)

    def _make_durable_and_commit(self, batch: list[_Save]) -> None:
        durable = self._fsync_files(batch)
        if not durable:
            return
        crash_point("save.after_file_fsync")
        self._sync_directory()  # failure is fatal: raises out of _run
        crash_point("save.after_dir_fsync")
        self._check_directory()  # a mismatch raises: nothing of the batch is committed
        committed: list[_Save] = []
        groups = _one_per_stream(durable)
        unlinked: list[bytes] = []
        for i, group in enumerate(groups):
            committed += self._commit(group)
            if i + 1 < len(groups):
                unlinked += self._unlink_before_next_group()
        self._to_mark_deleted += unlinked
        committed_at = time.monotonic()
        # The files this batch's transaction deleted (and any left from before)
        # go now; their reservations are dropped by the next transaction, which
        # follows the next dir fsync.  Files that could not be unlinked (logged
        # by _try_unlink) keep their "deleting" reservations and are retried at
        # every save; unlike the 2017 code, they don't cost the new recording.
        self._try_unlink()
        crash_point("save.after_unlink")
        self._create_files_ahead()
        crash_point("save.after_creating_files")
        self.stats.batches += 1
        self.stats.saved += len(committed)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.save_latencies.extend(committed_at - save.queued_at for save in committed)

    def _unlink_before_next_group(self) -> list[bytes]:
        """Unlink the files a group's transaction deleted, before the next group plans.

        So the next group's ``statvfs`` counts them as free, as a save of its
        own would (without this the next group of the same stream found the
        same shortfall and deleted it again).  Their "deleting" reservations
        are committed; they are returned, kept out of ``_to_mark_deleted`` so
        that the next group's transaction doesn't drop them: that waits for a
        transaction after the next directory fsync, as for every unlink.
        """
        kept, self._to_mark_deleted = self._to_mark_deleted, []
        self._try_unlink()
        unlinked, self._to_mark_deleted = self._to_mark_deleted, kept
        return unlinked

    def _sync_directory(self) -> None:
        """fsync the directory, timed for ``stats.dir_fsync`` (syncer thread)."""
        started = time.perf_counter()
        try:
            self._directory.sync()
        finally:
            self.stats.dir_fsync.observe(time.perf_counter() - started)

    def _fsync_files(self, batch: list[_Save]) -> list[_Save]:
        """Fsync and close every file; those whose fsync failed are discarded, the rest returned."""

        def fsync(save: _Save) -> tuple[OSError | None, float]:
            """The error (None) and how long the fsync took: the pool's threads only measure,
            the syncer thread records (``LatencyHistogram`` has one writer)."""
            rec = save.recording
            started = time.perf_counter()
            try:
                sampledir.fsync(rec.fd, os.path.join(self.path, uuid_name(rec.sample_file_uuid)))
            except OSError as e:
                return e, time.perf_counter() - started
            finally:
                _close_quietly(rec.fd)
            return None, time.perf_counter() - started

        errors: dict[int, OSError | None] = {}
        if len(batch) == 1:
            errors[0], took = fsync(batch[0])
            self.stats.file_fsync.observe(took)
        else:
            if self._fsync_pool is None:
                self._fsync_pool = ThreadPoolExecutor(
                    FSYNC_THREADS, thread_name_prefix=f"syncer-fsync-{self.path}"
                )
            futures: dict[Future[tuple[OSError | None, float]], int] = {
                self._fsync_pool.submit(fsync, save): i for i, save in enumerate(batch)
            }
            for future in as_completed(futures):
                errors[futures[future]], took = future.result()
                self.stats.file_fsync.observe(took)
                if len(errors) == 1:
                    crash_point("save.after_some_file_fsyncs")
        durable = []
        for i, save in enumerate(batch):
            error = errors[i]
            if error is None:
                durable.append(save)
                continue
            # fsyncgate: after a failed fsync the kernel may have dropped the
            # pages, so the file's contents are unknown.  Never commit it.
            log.error(
                "will discard recording %s due to error while saving: %s",
                uuid_name(save.recording.sample_file_uuid),
                error,
            )
            self._to_unlink.append(save.recording.sample_file_uuid)
        if len(durable) < len(batch):
            self._try_unlink()
        return durable

    def _plan_deletions(self, group: list[_Save]) -> list[RecordingRow]:
        """The rows a group's transaction deletes: each stream's budget, then the floors.

        A group holds one save per stream (``_one_per_stream``).  The floors
        (free bytes, free inodes) are met once for the whole group.
        """
        incoming = {save.recording.stream_id: save.recording.sample_file_bytes for save in group}
        assert len(incoming) == len(group), "a group holds one save per stream"
        self._archive_states.clear()
        rows: list[RecordingRow] = []
        for stream_id, size in incoming.items():
            rows += self._budget_deletion(stream_id, incoming_bytes=size).rows
        return rows + self._floor_deletion(list(incoming), max(incoming.values()), rows)

    def _commit(self, batch: list[_Save]) -> list[_Save]:
        """ONE transaction for the batch; a rejected row is dropped and the rest retried.

        The transaction marks done the unlinks since the last one, turns the
        rotated rows into "deleting" reservations, refills the UUID pool and
        inserts every recording.  Returns the saves committed.
        """
        while batch:
            rows = self._plan_deletions(batch)
            refill = self._pool_shortfall()
            current: _Save | None = None
            try:
                with self._db.transaction() as tx:
                    tx.mark_sample_files_deleted(self._to_mark_deleted)
                    deleted = self._delete_in(tx, rows)
                    new_uuids = [tx.reserve_sample_file(self.dir_id) for _ in range(refill)]
                    for current in batch:
                        tx.insert_recording(current.recording, self.open_id)
            except RecordingRejectedError as e:
                # Rolled back whole: retried without it (deletions are planned again).
                assert current is not None
                name = uuid_name(current.recording.sample_file_uuid)
                log.error("will discard recording %s: %s", name, e)
                self._to_unlink.append(current.recording.sample_file_uuid)
                batch = [save for save in batch if save is not current]
                continue
            crash_point("save.after_commit")
            self._to_mark_deleted = []
            self._to_unlink.extend(deleted)
            self._add_to_pool(new_uuids)
            self._deleted(rows)
            committed_recordings = self.stats.committed_recordings
            committed_bytes = self.stats.committed_bytes
            for save in batch:
                stream_id, size = save.recording.stream_id, save.recording.sample_file_bytes
                self._usage[stream_id] = self._usage.get(stream_id, 0) + size
                committed_recordings[stream_id] = committed_recordings.get(stream_id, 0) + 1
                committed_bytes[stream_id] = committed_bytes.get(stream_id, 0) + size
            return batch
        return []

    def _abandon(self, command: _Abandon) -> None:
        with self._uuid_lock:
            stream_id = self._writing.pop(command.sample_file_uuid, None)
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
            stream_id is not None
            and isinstance(command.error, OSError)
            and command.error.errno == errno.ENOSPC
        ):
            self._make_room(stream_id, size)

    def _make_room(self, stream_id: int, bytes_wanted: int) -> None:
        """The disk filled before the budget did: delete the stream's oldest recordings.

        Deletes at least one recording and at least as many bytes as the lost
        recording had reached, so the next one has room to go on.
        """
        deletion = retention.to_make_room(self._for_the_disk([stream_id]), bytes_wanted)
        if not deletion.rows:
            log.error(
                "stream %s: sample file directory %s is full and the stream has no recordings "
                "to delete; other streams' budgets exceed the disk",
                self._db.stream_name(stream_id),
                self.path,
            )
            return
        log.error(
            "stream %s: sample file directory %s is full before the stream reached its budget; "
            "deleting its %d oldest recordings (%d bytes). Lower the budget to fit the disk.",
            self._db.stream_name(stream_id),
            self.path,
            len(deletion.rows),
            deletion.bytes_freed,
        )
        self._rotate(deletion.rows, recovering=False)

    def _shutdown(self) -> None:
        """Leave no reservation rows: drop the pool's UUIDs and finish pending deletions."""
        with self._uuid_lock:
            # The pool's names have no file (create_writer and the files made
            # ahead take them out of it first), so their rows just go.
            unused, self._pool = self._pool, []
            ready, self._ready = self._ready, []
            still_writing = dict(self._writing)
        for sample_file_uuid, fd in ready:  # created ahead, never written
            _close_quietly(fd)
            self._to_unlink.append(sample_file_uuid)
        if still_writing:
            log.warning(
                "shutting down with %d writers still open; their files stay reserved until the "
                "next start",
                len(still_writing),
            )
        if not self._to_unlink and not self._to_mark_deleted:
            if unused:  # no file to unlink, so no directory fsync to wait for
                with self._db.transaction() as tx:
                    tx.mark_sample_files_deleted(unused)
            return
        self._try_unlink()
        crash_point("shutdown.after_unlink")
        self._sync_directory()
        crash_point("shutdown.after_dir_fsync")
        with self._db.transaction() as tx:
            tx.mark_sample_files_deleted(self._to_mark_deleted + unused)
        self._to_mark_deleted = []
        crash_point("shutdown.after_commit")
        if self._to_unlink:
            log.error("%d sample files could not be unlinked at shutdown", len(self._to_unlink))

    # ---- a failed directory (any thread) ----

    def _directory_identity(self) -> tuple[tuple[int, int], DirMeta | None]:
        """(dev, ino) of the held directory, and the UUIDs its ``meta`` file names."""
        held = os.fstat(self._directory.fileno())
        # None for a bare SampleDirectory (tests): then only the path is checked.
        meta = read_meta(self._directory.fileno(), self.path)
        return (held.st_dev, held.st_ino), meta

    def _directory_mismatch(self) -> str | None:
        """Why the path no longer leads to the directory (and meta) opened; None if it does.

        Only errors that mean the directory is gone count (``PATH_GONE_ERRNOS``): a
        passing EMFILE, ENOMEM or EACCES says nothing about the directory, and stopping
        every stream on it would be a failure of our own making.  The meta file is
        compared by the UUIDs it names, not by inode (network and FUSE filesystems may
        renumber inodes), and read through the held fd once the path is known to lead
        to it, so the check needs no new fd.
        """
        held, meta = self._identity
        try:
            st = os.stat(self.path)
        except OSError as e:
            if e.errno not in PATH_GONE_ERRNOS:
                log.warning("sample file directory %s: can't check its path: %s", self.path, e)
                return None
            return f"can no longer be reached at its path ({e.strerror}): removed or unmounted?"
        if (st.st_dev, st.st_ino) != held:
            return (
                "no longer leads to the directory opened at start: renamed, replaced or "
                "unmounted?"
            )
        if meta is None:
            return None
        try:
            found = read_meta(self._directory.fileno(), self.path)
        except DirectoryMismatchError as e:  # unparseable
            return f"has a {META_NAME} file other than the one opened at start ({e})"
        except OSError as e:
            if e.errno not in PATH_GONE_ERRNOS:
                log.warning("sample file directory %s: can't read its %s: %s", self.path,
                            META_NAME, e)
                return None
            return f"has lost its {META_NAME} file ({e.strerror})"
        if found is None:
            return f"has lost its {META_NAME} file"
        if found != meta:
            return f"has a {META_NAME} file other than the one opened at start"
        return None

    def _check_directory(self) -> None:
        """Raise ``SampleDirectoryFailedError`` unless the path still leads to our directory."""
        reason = self._directory_mismatch()
        if reason is not None:
            raise SampleDirectoryFailedError(
                f"sample file directory {self.path} {reason}; not committing recordings to it"
            )

    def _on_create_failed(self, stream_id: int, error: BaseException) -> None:
        """A writer's file couldn't be created: a failed directory stops the syncer."""
        if not isinstance(error, OSError):
            return
        if error.errno == errno.ENOSPC:  # out of space or inodes: make room for the next try
            self.make_room(stream_id)
            return
        failed = self._directory_failure(error)
        if failed is None or self.fatal_error is not None:
            return
        self._queue.put(_DirectoryFailed(failed))  # ``_fail`` logs it, on the syncer thread
        raise SyncerStoppedError(f"syncer stopping: {failed}") from failed

    def _directory_failure(self, error: OSError) -> SampleDirectoryFailedError | None:
        """What a file creation failing with ``error`` says of the directory: a failed
        directory (``DIRECTORY_FAILURE_ERRNOS``), or None for a passing error."""
        if error.errno not in DIRECTORY_FAILURE_ERRNOS:
            return None
        reason = self._directory_mismatch() or "can't be written to"
        return SampleDirectoryFailedError(f"sample file directory {self.path} {reason}: {error}")

    def _start_fatal_reminder(self, error: BaseException) -> None:
        """Repeat the ERROR every minute until ``close``: never a silent stop."""

        def remind() -> None:
            while not self._reminder_stop.wait(FATAL_REMINDER_SEC):
                log.error(
                    "sample file directory %s: syncer stopped, nothing is being recorded: %s",
                    self.path,
                    error,
                )

        threading.Thread(target=remind, name=f"syncer-failed-{self.path}", daemon=True).start()



def _one_per_stream(batch: list[_Save]) -> list[list[_Save]]:
    """The batch split into groups holding at most one save per stream, in order.

    Usually one group; a stream's n-th save in the batch goes in the n-th.
    """
    groups: list[list[_Save]] = []
    seen: dict[int, int] = {}
    for save in batch:
        n = seen.get(save.recording.stream_id, 0)
        seen[save.recording.stream_id] = n + 1
        if n == len(groups):
            groups.append([])
        groups[n].append(save)
    return groups


def _by_stream(rows: list[RecordingRow], stream_ids: list[int]) -> dict[int, list[RecordingRow]]:
    """``rows`` by stream, for the log; a stream with none is listed only if all have none."""
    out: dict[int, list[RecordingRow]] = {}
    for row in rows:
        out.setdefault(row.stream_id, []).append(row)
    return out or {stream_id: [] for stream_id in stream_ids}


def _close_quietly(fd: int) -> None:
    try:
        sampledir.close_fd(fd)
    except OSError as e:
        log.warning("closing fd %d: %s", fd, e)
