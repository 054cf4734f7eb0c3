"""The storage engine's two durable-path costs, each against its unavoidable floor, same run.

* One full save: a closed recording of ~330 KB is handed to the syncer (``Writer.close``)
  and waited for (``syncer.flush()``): fsync(file) + fsync(dir) + one transaction.  The
  baseline (``bare``) does only what any durable save must: ``os.fsync`` of a same-size
  file, ``os.fsync`` of the directory and the same SQL on a bare ``sqlite3`` connection to
  a WAL, ``synchronous=FULL`` database.  Both write their file outside the timing, so the
  ratio is the engine's overhead over the fsyncs and the WAL commit.
* Startup (crash recovery = the initial rotation) with 100,000 recordings in the database:
  ``datadir.open_for_recording`` (``Database.open`` + ``SampleFileDir.open``) +
  ``start_syncer()`` + ``close()``.  ``with_leftovers`` recreates, outside the timing, 50
  reservations whose files exist (what a crash mid-write leaves), so every round unlinks
  them, fsyncs the directory and drops the reservations; ``steady_state`` is a restart
  after an orderly shutdown.  Target: < 1 s.  Baseline: a fresh connection's
  ``select count(*), sum(sample_file_bytes) from recording`` on the same database.

The engine is pure Python over ``moonfire_core`` (the writer comes from the selector), so
there is no ``impl`` parametrization here.  Each test sets its group (``save``,
``startup_100k``), so run with the default ``--benchmark-group-by=group`` and compare rows
within each table.
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sizes import TINY
from moonfire.db import Database
from moonfire.storage import data_dir as datadir
from moonfire.storage.sample_file_dir import SampleFileDir, uuid_name

T0_90K = 1_700_000_000 * 90000
FRAME_90K = 3000
ENTRY = bytes(range(90))  # any blob > 86 bytes serves as a sample entry
SAVE_ROUNDS = 3 if TINY else 100
STARTUP_ROUNDS = 1 if TINY else 10
RECORDINGS = 2_000 if TINY else 100_000
LEFTOVER_RESERVATIONS = 5 if TINY else 50
MINUTE_90K = 60 * 90000
RECORDING_BYTES = 3_000_000


def packets() -> list[tuple[bytes, bool]]:
    """2.5 s at 30 fps: key frames of 16 KiB each second, 4 KiB otherwise (~330 KB)."""
    rng = random.Random(7)
    key, delta = rng.randbytes(16 * 1024), rng.randbytes(4 * 1024)
    return [(key, True) if i % 30 == 0 else (delta, False) for i in range(75)]


PACKETS = packets()
PACKET_BYTES = sum(len(p) for p, _ in PACKETS)


# ---- one full save -------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Database, SampleFileDir, int, int]]:
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    stream_id = db.add_camera("front", retain_bytes=1 << 40).main.id
    yield db, sample_file_dir, stream_id, entry_id
    sample_file_dir.close()
    db.close()


@pytest.mark.benchmark(group="save")
def test_full_save_engine(benchmark, engine) -> None:
    """``Writer.close`` (final buffer flush + hand-over) + ``syncer.flush()``, per recording."""
    db, sample_file_dir, stream_id, entry_id = engine
    with sample_file_dir.start_syncer() as syncer:
        starts = iter(range(T0_90K, T0_90K + 10**6 * MINUTE_90K, MINUTE_90K))
        prev: list[Any] = [None]

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            writer = syncer.create_writer(prev[0], stream_id, entry_id)
            start = next(starts)
            for i, (data, key) in enumerate(PACKETS):
                writer.write(data, start + i * FRAME_90K, i * FRAME_90K, key)
            return (writer,), {}

        def save(writer: Any) -> None:
            prev[0] = writer.close(len(PACKETS) * FRAME_90K)
            syncer.flush()

        benchmark.pedantic(save, setup=setup, rounds=SAVE_ROUNDS, iterations=1, warmup_rounds=2)
    rows = db.list_recordings(stream_id)
    assert len(rows) == SAVE_ROUNDS + 2
    assert {r.sample_file_bytes for r in rows} == {PACKET_BYTES}
    assert db.list_reserved_sample_files(1) == []
    benchmark.extra_info["sample_file_bytes"] = PACKET_BYTES


@pytest.mark.benchmark(group="save")
def test_full_save_baseline_bare_syscalls_and_sql(benchmark, tmp_path: Path) -> None:
    """fsync(file) + fsync(dir) + the save's SQL on bare ``sqlite3``: the unavoidable cost."""
    db = Database.create(tmp_path / "db", str(tmp_path / "sample"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    stream_id = db.add_camera("front", retain_bytes=1 << 40).main.id
    db.close()
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    conn.execute("pragma synchronous = full")
    conn.execute("pragma foreign_keys = on")
    sample_file_dir_path = tmp_path / "sample"
    sample_file_dir_path.mkdir()
    dir_fd = os.open(sample_file_dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    contents = b"".join(p for p, _ in PACKETS)
    video_index = random.Random(1).randbytes(3 * len(PACKETS))  # ~ a real index's size
    sha1 = b"\x11" * 20
    starts = iter(range(T0_90K, T0_90K + 10**6 * MINUTE_90K, MINUTE_90K))
    reserved = [uuidlib.uuid4().bytes]  # like the syncer's cached uuid, reserved last save
    conn.execute("insert into reserved_sample_files values (?, 1, 0)", (reserved[0],))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        uuid = reserved.pop()
        fd = os.open(sample_file_dir_path / uuid_name(uuid),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(fd, contents)
        return (fd, uuid), {}

    def save(fd: int, uuid: bytes) -> None:
        os.fsync(fd)
        os.close(fd)
        os.fsync(dir_fd)
        next_uuid = uuidlib.uuid4().bytes
        conn.execute("begin immediate")
        conn.execute("insert into reserved_sample_files values (?, 1, 0)", (next_uuid,))
        deleted = conn.execute(
            "delete from reserved_sample_files where uuid = ? and state = 0", (uuid,)).rowcount
        (next_id,) = conn.execute(
            "select next_recording_id from stream where id = ?", (stream_id,)).fetchone()
        cid = stream_id << 32 | next_id
        conn.execute("insert into recording values (?, ?, 0, 0, ?, ?, ?, 0, ?, ?, ?, null)",
                     (cid, stream_id, len(contents), next(starts), len(PACKETS) * FRAME_90K,
                      len(PACKETS), 3, entry_id))
        conn.execute("insert into recording_playback values (?, ?, ?, ?)",
                     (cid, uuid, sha1, video_index))
        conn.execute("update stream set next_recording_id = next_recording_id + 1 where id = ?",
                     (stream_id,))
        conn.execute("commit")
        reserved.append(next_uuid)
        assert deleted == 1

    try:
        benchmark.pedantic(save, setup=setup, rounds=SAVE_ROUNDS, iterations=1, warmup_rounds=2)
    finally:
        os.close(dir_fd)
    (count,) = conn.execute("select count(*) from recording").fetchone()
    assert count == SAVE_ROUNDS + 2
    conn.close()


# ---- startup with 100,000 recordings ----------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir_100k(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """A data dir whose camera has ``RECORDINGS`` rows (files absent) and a budget for all.

    The ``video_index`` blobs are short (a real one-minute index is ~5 KB, which would make
    this a 500 MB database); startup never reads them.
    """
    data_dir = str(tmp_path_factory.mktemp("startup100k") / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    stream_id = db.add_camera("front", retain_bytes=RECORDINGS * RECORDING_BYTES).main.id
    with db.transaction() as tx:  # bulk load: one transaction, raw statements
        cids = [stream_id << 32 | i for i in range(1, RECORDINGS + 1)]
        tx.conn.executemany(
            "insert into recording values (?, ?, 0, 0, ?, ?, ?, 0, 1800, 60, ?, null)",
            ((cid, stream_id, RECORDING_BYTES, T0_90K + i * MINUTE_90K, MINUTE_90K, entry_id)
             for i, cid in enumerate(cids)))
        tx.conn.executemany(
            "insert into recording_playback values (?, ?, zeroblob(20), ?)",
            ((cid, uuidlib.uuid4().bytes, b"\x29\xd0\x0f" * 8) for cid in cids))
        tx.conn.execute("update stream set next_recording_id = ?", (RECORDINGS + 1,))
    db.close()
    return data_dir, stream_id


def leave_reservations(data_dir: str) -> list[str]:
    """What a crash mid-write leaves: reservations whose files exist. Returns the file paths."""
    db = datadir.open_db(data_dir)
    try:
        with db.transaction() as tx:
            uuids = [tx.reserve_sample_file(1) for _ in range(LEFTOVER_RESERVATIONS)]
        sample_path = db.sample_file_dir(1).path
    finally:
        db.close()
    paths = [os.path.join(sample_path, uuid_name(u)) for u in uuids]
    for path in paths:
        with open(path, "xb") as f:
            f.write(b"half a recording" * 256)
    return paths


def start_and_stop(data_dir: str) -> None:
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    try:
        sample_file_dir.start_syncer().close()
    finally:
        sample_file_dir.close()
        db.close()


def assert_recovered(data_dir: str, stream_id: int, leftovers: list[str]) -> None:
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.list_reserved_sample_files(1) == []
        assert db.stream_usage(stream_id)[0] == RECORDINGS
    assert not any(os.path.exists(p) for p in leftovers)


@pytest.mark.benchmark(group="startup_100k")
def test_startup_100k_with_leftovers(benchmark, data_dir_100k) -> None:
    data_dir, stream_id = data_dir_100k
    leftovers: list[str] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        leftovers.extend(leave_reservations(data_dir))
        return (data_dir,), {}

    benchmark.pedantic(start_and_stop, setup=setup, rounds=STARTUP_ROUNDS, iterations=1)
    assert_recovered(data_dir, stream_id, leftovers)
    assert benchmark.stats.stats.max < 1.0, "startup with 100k recordings must take < 1 s"


@pytest.mark.benchmark(group="startup_100k")
def test_startup_100k_steady_state(benchmark, data_dir_100k) -> None:
    data_dir, stream_id = data_dir_100k
    benchmark.pedantic(start_and_stop, args=(data_dir,), rounds=STARTUP_ROUNDS, iterations=1)
    assert_recovered(data_dir, stream_id, [])
    assert benchmark.stats.stats.max < 1.0, "startup with 100k recordings must take < 1 s"


@pytest.mark.benchmark(group="startup_100k")
def test_startup_100k_baseline_count_and_sum(benchmark, data_dir_100k) -> None:
    """The least a startup must read: the camera's usage, on a fresh connection."""
    data_dir, _ = data_dir_100k

    def usage() -> tuple[int, int]:
        conn = sqlite3.connect(datadir.db_path(data_dir))
        try:
            return conn.execute(
                "select count(*), sum(sample_file_bytes) from recording").fetchone()
        finally:
            conn.close()

    assert benchmark.pedantic(usage, rounds=STARTUP_ROUNDS * 4, iterations=1) == (
        RECORDINGS, RECORDINGS * RECORDING_BYTES)
