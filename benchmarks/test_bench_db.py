"""``moonfire.db`` costs on the syncer's paths (pure Python: no twins, no ``impl``).

* One save transaction (reserve + insert_recording + COMMIT with ``synchronous=FULL``),
  against a same-run baseline: the very same SQL on a bare ``sqlite3`` connection, so
  the ratio is the cost of this layer over SQLite's own work and the WAL fsync.
* The startup queries over a camera with 100,000 recordings (about 70 camera-days of
  one-minute recordings): ``stream_usage``, ``list_oldest_recordings`` (first rows and
  full scan) and ``list_reserved_sample_files``.  The rows are bulk-loaded with short
  ``video_index`` blobs; the listing queries never read the blobs.
"""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest

from benchmarks.sizes import TINY
from moonfire.db import Database
from moonfire_core.records import RecordingToSave

RECORDINGS = 2_000 if TINY else 100_000
RESERVATIONS = 20 if TINY else 1_000
MINUTE_90K = 60 * 90000
START_90K = 1_500_000_000 * 90000


def recording(stream_id: int, uuid: bytes, entry_id: int, start_90k: int) -> RecordingToSave:
    return RecordingToSave(
        stream_id=stream_id, sample_file_uuid=uuid, fd=-1, run_offset=0, flags=0,
        sample_file_bytes=3_000_000, start_time_90k=start_90k, duration_90k=MINUTE_90K,
        local_time_delta_90k=0, video_samples=1800, video_sync_samples=60,
        video_sample_entry_id=entry_id, video_index=b"\x29\xd0\x0f" * 8,
        sample_file_sha1=b"\x11" * 20,
    )


def new_database(directory: Path, testdata: Path) -> tuple[Database, int, int]:
    db = Database.create(directory / "db", str(directory / "sample"))
    stream_id = db.add_camera("front", retain_bytes=1 << 40).main.id
    entry_id = db.insert_video_sample_entry(
        1920, 1080, (testdata / "avc1_1920x1080").read_bytes())
    return db, stream_id, entry_id


@pytest.fixture
def fresh(tmp_path: Path, testdata: Path) -> Iterator[tuple[Database, int, int]]:
    db, stream_id, entry_id = new_database(tmp_path, testdata)
    yield db, stream_id, entry_id
    db.close()


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> Iterator[tuple[Database, int]]:
    """A database whose camera has ``RECORDINGS`` rows and ``RESERVATIONS`` reservations."""
    db, stream_id, entry_id = new_database(tmp_path_factory.mktemp("db100k"), testdata)
    with db.transaction() as tx:  # bulk load: one transaction, raw statements
        cids = [stream_id << 32 | i for i in range(1, RECORDINGS + 1)]
        tx.conn.executemany(
            "insert into recording values (?, ?, 0, 0, 3000000, ?, ?, 0, 1800, 60, ?, null)",
            ((cid, stream_id, START_90K + i * MINUTE_90K, MINUTE_90K, entry_id)
             for i, cid in enumerate(cids)))
        tx.conn.executemany(
            "insert into recording_playback values (?, ?, zeroblob(20), x'29d00f')",
            ((cid, uuidlib.uuid4().bytes) for cid in cids))
        tx.conn.execute("update stream set next_recording_id = ?", (RECORDINGS + 1,))
        for _ in range(RESERVATIONS):
            tx.reserve_sample_file(1)
    yield db, stream_id
    db.close()


def test_save_transaction(benchmark, fresh) -> None:
    db, stream_id, entry_id = fresh
    starts = iter(range(START_90K, START_90K + 10**9 * MINUTE_90K, MINUTE_90K))

    @benchmark
    def _save() -> None:
        with db.transaction() as tx:
            uuid = tx.reserve_sample_file(1)
            tx.insert_recording(recording(stream_id, uuid, entry_id, next(starts)))

    assert db.stream_usage(stream_id)[0] > 0


def test_save_transaction_baseline_bare_sqlite(benchmark, fresh) -> None:
    """The same statements as ``test_save_transaction`` with no layer above ``sqlite3``."""
    db, stream_id, entry_id = fresh
    db.close()
    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.execute("pragma synchronous = full")
    conn.execute("pragma foreign_keys = on")
    starts = iter(range(START_90K, START_90K + 10**9 * MINUTE_90K, MINUTE_90K))

    @benchmark
    def _save() -> None:
        rec = recording(stream_id, uuidlib.uuid4().bytes, entry_id, next(starts))
        conn.execute("begin immediate")
        conn.execute("insert into reserved_sample_files values (?, 1, 0)", (rec.sample_file_uuid,))
        conn.execute("delete from reserved_sample_files where uuid = ? and state = 0",
                     (rec.sample_file_uuid,))
        (next_id,) = conn.execute("select next_recording_id from stream where id = ?",
                                  (stream_id,)).fetchone()
        cid = stream_id << 32 | next_id
        conn.execute("insert into recording values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
                     (cid, stream_id, rec.run_offset, rec.flags, rec.sample_file_bytes,
                      rec.start_time_90k, rec.duration_90k, rec.local_time_delta_90k,
                      rec.video_samples, rec.video_sync_samples, rec.video_sample_entry_id))
        conn.execute("insert into recording_playback values (?, ?, ?, ?)",
                     (cid, rec.sample_file_uuid, rec.sample_file_sha1, rec.video_index))
        conn.execute("update stream set next_recording_id = next_recording_id + 1"
                     " where id = ?", (stream_id,))
        conn.execute("commit")

    conn.close()


def test_stream_usage_100k(benchmark, loaded) -> None:
    db, stream_id = loaded
    assert benchmark(db.stream_usage, stream_id) == (
        RECORDINGS, RECORDINGS * 3_000_000, RECORDINGS * MINUTE_90K)


def test_list_oldest_recordings_first_10_of_100k(benchmark, loaded) -> None:
    db, stream_id = loaded
    rows = benchmark(lambda: list(islice(db.list_oldest_recordings(stream_id), 10)))
    assert [row.recording_id for row, _ in rows] == list(range(1, 11))


def test_list_oldest_recordings_all_100k(benchmark, loaded) -> None:
    db, stream_id = loaded
    count = benchmark.pedantic(
        lambda: sum(1 for _ in db.list_oldest_recordings(stream_id)), rounds=3)
    assert count == RECORDINGS


def test_list_reserved_sample_files_1k(benchmark, loaded) -> None:
    db, _ = loaded
    assert len(benchmark(db.list_reserved_sample_files, 1)) == RESERVATIONS
