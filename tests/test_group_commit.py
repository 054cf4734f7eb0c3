"""Group commit and the pool of reserved UUIDs (issue "Storage v2", §3).

Saves queued together are made durable by one directory fsync and one transaction; starting a
writer takes a UUID from a pool refilled by those transactions, so it never runs SQL on the
calling (streamer) thread; an orderly close leaves no reservation; a failed file fsync or a
rejected row costs only its own recording, never the rest of the batch.

To queue several saves before the syncer takes them, the tests first hand it one save and hold
it inside that save's directory fsync (a fault hook that waits), then close the others.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from moonfire.storage.crash_points import observe
from moonfire.storage.invariants import check
from moonfire.storage.retention import FREE_INODES_PER_STREAM
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.storage.syncer import MAX_BATCH, Syncer, pool_target
from moonfire_core import RecordingAbandonedError
from moonfire_core._fault_hook import set_fault_hook
from tests.support.engine import write_frames
from tests.support.synthetic_stream import verify_recording


def recorded_frames(db, sample_file_dir, stream_id: int, row) -> list[int]:
    playback = db.get_playback(row.composite_id)
    with open(f"{sample_file_dir.path}/{uuid_name(playback.sample_file_uuid)}", "rb") as f:
        return verify_recording(f.read(), playback.video_index, stream_id)


def violations(db, sample_file_dir) -> list[str]:
    """What ``moonfire check`` finds in the directory, contents hashed."""
    return [str(v) for v in check(db, db.sample_file_dir(sample_file_dir.id), hash_contents=True)]


def reserved(db, sample_file_dir) -> list[tuple[bytes, int]]:
    return db.list_reserved_sample_files(sample_file_dir.id)


class Syscalls:
    """A fault hook that counts syscalls by name and can hold the syncer in a dir fsync."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.fail_fsync_of: set[str] = set()
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, operation: str, path: str) -> None:
        with self._lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1
        if operation == "fsync" and path.rsplit("/", 1)[-1] in self.fail_fsync_of:
            raise OSError(errno.EIO, "Input/output error (injected)", path)
        if operation == "fsync_dir" and self.hold.is_set():
            self.hold.clear()
            self.held.set()
            assert self.release.wait(30)

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self.counts = self.counts, {}
        return counts


@contextmanager
def counting_transactions(db) -> Iterator[list[str]]:
    """The names of the threads that opened each transaction on ``db``."""
    names: list[str] = []
    original = db.transaction

    @contextmanager
    def transaction():
        names.append(threading.current_thread().name)
        with original() as tx:
            yield tx

    db.transaction = transaction
    try:
        yield names
    finally:
        del db.transaction


def queue_together(syncer: Syncer, hook: Syscalls, writers) -> None:
    """Close ``writers[0]``, hold the syncer in its dir fsync, close the rest, let go."""
    hook.hold.set()
    writers[0].close()
    assert hook.held.wait(30)
    for w in writers[1:]:
        w.close()
    hook.release.set()
    syncer.flush()


def test_writers_closed_together_commit_with_one_dir_fsync_and_one_transaction(engine):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(9)]
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
        for w, c in zip(writers, cameras, strict=True):
            write_frames(w, c.main.id)
        set_fault_hook(hook)
        hook.hold.set()
        writers[0].close()
        assert hook.held.wait(30)
        for w in writers[1:]:
            w.close()
        with counting_transactions(db) as transactions:
            hook.take()  # the first save's dir fsync, still held
            hook.release.set()
            syncer.flush()
        counts = hook.take()
        # The first save's transaction, then ONE batch: 8 file fsyncs, 1 dir fsync, 1 transaction.
        assert counts.get("fsync") == 8
        assert counts.get("fsync_dir") == 1
        assert len(transactions) == 2
        assert all(name.startswith("syncer-") for name in transactions)
        assert syncer.stats.largest_batch == 8
        set_fault_hook(None)
    assert [len(db.list_recordings(c.main.id)) for c in cameras] == [1] * 9
    assert violations(db, sample_file_dir) == []
    assert reserved(db, sample_file_dir) == []


def test_a_batch_is_bounded(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writers = []
        for i in range(MAX_BATCH + 6):
            w = syncer.create_writer(None, cam.main.id, entry_id)
            write_frames(w, cam.main.id, start=i * 3000, count=3)
            writers.append(w)
        set_fault_hook(hook)
        queue_together(syncer, hook, writers)
        assert syncer.stats.largest_batch == MAX_BATCH
        assert syncer.stats.saved == MAX_BATCH + 6
        set_fault_hook(None)
    assert len(db.list_recordings(cam.main.id)) == MAX_BATCH + 6
    assert reserved(db, sample_file_dir) == []


def test_create_writer_runs_no_sql(engine, monkeypatch):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(20)]
    with sample_file_dir.start_syncer() as syncer:
        caller = threading.current_thread()
        conn = db._conn

        class Guard:
            """Fails any SQL from the calling thread; the syncer's thread may run SQL."""

            def __getattr__(self, name):
                if threading.current_thread() is caller:
                    raise AssertionError(f"create_writer touched the database ({name})")
                return getattr(conn, name)

        monkeypatch.setattr(db, "_conn", Guard())
        for _round in range(3):  # every camera rotates together, three times
            writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
            for w, c in zip(writers, cameras, strict=True):
                write_frames(w, c.main.id, start=_round * 3000)
                w.close()
            monkeypatch.setattr(db, "_conn", conn)
            syncer.flush()
            monkeypatch.setattr(db, "_conn", Guard())
        monkeypatch.setattr(db, "_conn", conn)
        assert syncer.stats.sync_reservations == 0
    assert sum(len(db.list_recordings(c.main.id)) for c in cameras) == 60
    assert reserved(db, sample_file_dir) == []


def test_after_the_first_rotation_create_writer_makes_no_file_syscall(engine):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(10)]
    caller = threading.current_thread()
    from_caller: list[str] = []

    def hook(operation: str, path: str) -> None:
        if threading.current_thread() is caller:
            from_caller.append(operation)

    with sample_file_dir.start_syncer() as syncer:
        writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
        syncer.flush()  # the low pool's refill also creates the next files ahead
        set_fault_hook(hook)
        for _round in range(3):
            for n, c in enumerate(cameras):
                write_frames(writers[n], c.main.id, start=_round * 3000)
                writers[n].close()
                writers[n] = syncer.create_writer(None, c.main.id, entry_id)
            syncer.flush()
        assert "create" not in from_caller
        set_fault_hook(None)
        for w in writers:
            with pytest.raises(RecordingAbandonedError):
                w.close()
    assert reserved(db, sample_file_dir) == []
    committed = {
        uuid_name(db.get_playback(r.composite_id).sample_file_uuid)
        for c in cameras
        for r in db.list_recordings(c.main.id)
    }
    assert len(committed) == 30
    # The files made ahead and never written were unlinked by the orderly close.
    assert set(sample_file_dir.directory.list_names()) == committed | {"meta"}


def test_pool_is_refilled_to_at_least_the_streams(engine):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(12)]
    with sample_file_dir.start_syncer() as syncer:
        # The start fills it: every reservation is the pool's.
        pool = reserved(db, sample_file_dir)
        assert len(pool) == pool_target(12) >= 12
        assert {state for _u, state in pool} == {0}
        for _round in range(4):
            writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
            for w, c in zip(writers, cameras, strict=True):
                write_frames(w, c.main.id, start=_round * 3000)
                w.close()
            syncer.flush()
            # Refilled in the saves' transactions: no writer open, so all are pool.
            assert len(reserved(db, sample_file_dir)) >= len(cameras)
            assert len(reserved(db, sample_file_dir)) == pool_target(12)
        assert syncer.stats.sync_reservations == 0
    assert reserved(db, sample_file_dir) == []


def test_an_empty_pool_falls_back_to_a_counted_synchronous_reservation(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        # Holding the database's lock keeps the syncer thread from refilling the pool
        # (the fallback runs on this thread, so it may take the lock again).
        with db._lock:
            writers = [
                syncer.create_writer(None, cam.main.id, entry_id) for _ in range(pool_target(1) + 2)
            ]
        assert syncer.stats.sync_reservations == 2
        assert "reserving synchronously" in caplog.text
        for w in writers:
            with pytest.raises(RecordingAbandonedError):
                w.close()  # no samples
    assert reserved(db, sample_file_dir) == []
    assert sample_file_dir.directory.list_names() == ["meta"]


def test_a_low_pool_is_refilled_before_the_next_rotation(engine):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(40)]
    with sample_file_dir.start_syncer() as syncer:
        writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
        syncer.flush()  # no save yet: the low pool asked for a refill by itself
        assert len(reserved(db, sample_file_dir)) == len(cameras) + pool_target(40)
        for w, c in zip(writers, cameras, strict=True):
            write_frames(w, c.main.id)
            w.close()
    assert reserved(db, sample_file_dir) == []


def test_orderly_close_leaves_no_reservation_and_reaches_no_crash_point(engine):
    db, sample_file_dir, _entry_id = engine
    for i in range(5):
        db.add_camera(f"cam{i}", retain_bytes=10**9)
    reached: list[str] = []
    with observe(reached.append):
        syncer = sample_file_dir.start_syncer()
        assert len(reserved(db, sample_file_dir)) == pool_target(5)
        syncer.close()
    # No file was ever created under a pooled name: one transaction, no unlink, no dir fsync.
    assert reached == []
    assert reserved(db, sample_file_dir) == []


def test_a_crash_leaves_the_pool_as_reservations_that_recovery_cleans(engine):
    db, sample_file_dir, _entry_id = engine
    db.add_camera("front", retain_bytes=10**9)
    syncer = sample_file_dir.start_syncer()
    syncer._fail(RuntimeError("simulated crash"))  # stops without the orderly cleanup
    syncer._queue.put(object())  # unblock the thread's get: it exits on the unknown command
    syncer._closed = True
    assert len(reserved(db, sample_file_dir)) == pool_target(1)
    dir_row = db.sample_file_dir(sample_file_dir.id)
    assert [v.invariant for v in check(db, dir_row)] == [3] * pool_target(1)
    sample_file_dir.start_syncer().close()  # recovery, then a fill and an orderly close
    assert reserved(db, sample_file_dir) == []


def test_a_failed_file_fsync_in_a_batch_discards_only_that_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(6)]
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
        for w, c in zip(writers, cameras, strict=True):
            write_frames(w, c.main.id)
        bad = writers[3].path.rsplit("/", 1)[-1]
        hook.fail_fsync_of.add(bad)
        set_fault_hook(hook)
        queue_together(syncer, hook, writers)
        assert syncer.stats.largest_batch == 5
        set_fault_hook(None)
    assert "due to error while saving" in caplog.text
    assert [len(db.list_recordings(c.main.id)) for c in cameras] == [1, 1, 1, 0, 1, 1]
    assert bad not in sample_file_dir.directory.list_names()
    assert violations(db, sample_file_dir) == []
    assert reserved(db, sample_file_dir) == []


def test_a_rejected_row_in_a_batch_discards_only_that_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(6)]
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writers = [syncer.create_writer(None, c.main.id, entry_id) for c in cameras]
        for w, c in zip(writers, cameras, strict=True):
            write_frames(w, c.main.id)
        bad_uuid = writers[2].sample_file_uuid
        save = syncer.save

        def corrupting_save(recording):
            if recording.sample_file_uuid == bad_uuid:
                recording.duration_90k = -1  # violates the recording table's CHECK
            save(recording)

        syncer.save = corrupting_save  # type: ignore[method-assign]
        set_fault_hook(hook)
        queue_together(syncer, hook, writers)
        assert syncer.stats.largest_batch == 5
        set_fault_hook(None)
    assert "rejected by the database" in caplog.text
    assert [len(db.list_recordings(c.main.id)) for c in cameras] == [1, 1, 0, 1, 1, 1]
    for c in cameras:
        for row in db.list_recordings(c.main.id):
            assert recorded_frames(db, sample_file_dir, c.main.id, row) == list(range(10))
    assert violations(db, sample_file_dir) == []
    assert reserved(db, sample_file_dir) == []


def test_two_saves_of_one_camera_in_a_batch_keep_its_budget(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=1)  # every save deletes the older ones
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writers = []
        for i in range(4):
            w = syncer.create_writer(None, cam.main.id, entry_id)
            write_frames(w, cam.main.id, start=i * 3000)
            writers.append(w)
        set_fault_hook(hook)
        queue_together(syncer, hook, writers)
        set_fault_hook(None)
    (row,) = db.list_recordings(cam.main.id)  # the newest only: each save deleted the older
    assert recorded_frames(db, sample_file_dir, cam.main.id, row)[0] == 9000
    assert violations(db, sample_file_dir) == []
    assert reserved(db, sample_file_dir) == []


FakeStatvfs = namedtuple("FakeStatvfs", "f_bavail f_frsize f_favail f_files")


class HoldInUnlink:
    """A fault hook that holds the syncer in its next unlink (an abandoned writer's file)."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, operation: str, path: str) -> None:
        if operation == "unlink" and not self.held.is_set():
            self.held.set()
            assert self.release.wait(30)


@pytest.mark.parametrize(
    "saving", [[0, 1, 2, 3], [0, 0]], ids=["four cameras in one group", "one camera twice"]
)
def test_the_inode_floor_deletes_the_shortfall_once_per_batch(engine, monkeypatch, saving):
    """One statvfs reading for a batch: the floor deletes what's missing, not once per save.

    The directory is on a fake filesystem with one inode per file, two short of the floor
    when the batch is planned.  Saved one by one, that costs two recordings; it used to cost
    two per camera in a batch (8 for four cameras), and two per group for a camera saved
    twice (the second group saw the same reading: the first group's files weren't unlinked).
    """
    db, sample_file_dir, entry_id = engine
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**9) for i in range(4)]
    path = sample_file_dir.path
    inodes: list[int] = []  # the fake filesystem's inodes; none yet: plenty free

    def fstatvfs(fd: int) -> FakeStatvfs:
        free = inodes[0] - len(os.listdir(path)) if inodes else 10**6
        return FakeStatvfs(f_bavail=10**6, f_frsize=4096, f_favail=free, f_files=10**6)

    monkeypatch.setattr("moonfire.storage.syncer.os.fstatvfs", fstatvfs)
    hook = HoldInUnlink()
    with sample_file_dir.start_syncer() as syncer:
        for r in range(5):
            for c in cameras:
                w = syncer.create_writer(None, c.main.id, entry_id)
                write_frames(w, c.main.id, start=r * 3000)
                w.close()
                syncer.flush()
        writers = []
        for i, c in enumerate(cameras[n] for n in saving):
            w = syncer.create_writer(None, c.main.id, entry_id)
            write_frames(w, c.main.id, start=(5 + i) * 3000)
            writers.append(w)
        holder = syncer.create_writer(None, cameras[0].main.id, entry_id)
        syncer.flush()  # the pool's refill and its files made ahead are done
        before = sum(len(db.list_recordings(c.main.id)) for c in cameras)
        set_fault_hook(hook)
        with pytest.raises(RecordingAbandonedError):
            holder.close()  # no samples: abandoned, its file unlinked (held there)
        assert hook.held.wait(30)
        for w in writers:
            w.close()
        # Once the holder's file is gone, the batch finds 2 inodes fewer free than the floor.
        inodes.append(len(os.listdir(path)) - 1 + len(cameras) * FREE_INODES_PER_STREAM - 2)
        hook.release.set()
        syncer.flush()
        set_fault_hook(None)
        assert syncer.stats.largest_batch == len(saving)
        after = sum(len(db.list_recordings(c.main.id)) for c in cameras)
        assert before + len(saving) - after == 2
        # The deleted files are unlinked, their "deleting" reservations dropped only by a
        # transaction after the next dir fsync (not by the second group's).
        deleting = [u for u, state in reserved(db, sample_file_dir) if state == 1]
        assert len(deleting) == 2
        assert not any(os.path.exists(os.path.join(path, uuid_name(u))) for u in deleting)
        assert fstatvfs(-1).f_favail >= len(cameras) * FREE_INODES_PER_STREAM - len(cameras)
    assert violations(db, sample_file_dir) == []
    assert reserved(db, sample_file_dir) == []


def test_close_with_a_timeout_gives_up_on_a_syncer_stuck_in_an_fsync(engine):
    """A hung fsync on a failing disk must not hang shutdown: ``SyncerStuckError``."""
    from moonfire.storage.syncer import SyncerStuckError

    db, sample_file_dir, entry_id = engine
    camera = db.add_camera("front", retain_bytes=10**9)
    release = threading.Event()

    def hang_dir_fsync(operation: str, path: str) -> None:
        if operation == "fsync_dir":
            release.wait(30)

    syncer = sample_file_dir.start_syncer()
    writer = syncer.create_writer(None, camera.main.id, entry_id)
    write_frames(writer, camera.main.id)
    set_fault_hook(hang_dir_fsync)
    try:
        writer.close()
        with pytest.raises(SyncerStuckError, match="did not stop within 0.2 s"):
            syncer.close(timeout=0.2)
    finally:
        release.set()
        set_fault_hook(None)
    syncer.close(timeout=30)  # unstuck: it finishes in order
    assert len(db.list_recordings(camera.main.id)) == 1
    assert reserved(db, sample_file_dir) == []
