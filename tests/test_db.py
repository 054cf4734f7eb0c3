"""moonfire.db: cameras, the reservation lifecycle, queries and transactions.

Schema versions, pragmas and raw constraints are in ``test_db_schema.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from moonfire.db import (
    STATE_DELETING,
    STATE_WRITING,
    ConsistencyError,
    Database,
    DatabaseError,
    DuplicateCameraError,
    InvalidConfigError,
    RecordingRow,
    UnknownCameraError,
    UnknownRecordingError,
    UnknownVideoSampleEntryError,
)
from moonfire.db import database as database_module
from moonfire_core.records import FLAG_TRAILING_ZERO, RecordingToSave

START_90K = 1_500_000_000 * 90000  # 2017-07-14
SECOND_90K = 90000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.create(tmp_path / "db", str(tmp_path / "sample")) as database:
        yield database


@pytest.fixture
def entry_id(db: Database, testdata: Path) -> int:
    return db.insert_video_sample_entry(1920, 1080, (testdata / "avc1_1920x1080").read_bytes())


@pytest.fixture
def camera_id(db: Database) -> int:
    return db.add_camera("front", url="rtsp://192.0.2.1/main", retain_bytes=1 << 30).id


def make_recording(camera_id: int, uuid: bytes, entry_id: int, **fields: object) -> RecordingToSave:
    """A 1-second, 42-byte recording (brief's test_full_lifecycle) unless overridden."""
    values = dict(
        camera_id=camera_id, sample_file_uuid=uuid, fd=-1, run_offset=0, flags=0,
        sample_file_bytes=42, start_time_90k=START_90K, duration_90k=SECOND_90K,
        local_time_delta_90k=0, video_samples=1, video_sync_samples=1,
        video_sample_entry_id=entry_id, video_index=b"\x02\x54", sample_file_sha1=b"\x11" * 20,
    )
    values.update(fields)
    return RecordingToSave(**values)


def save(db: Database, camera_id: int, entry_id: int, **fields: object) -> int:
    """Reserves a uuid and inserts a recording with it in one transaction, like the syncer."""
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file()
        return tx.insert_recording(make_recording(camera_id, uuid, entry_id, **fields))


# ---- the reservation lifecycle (brief §1.4) --------------------------------------------


def test_full_lifecycle(db: Database, camera_id: int, entry_id: int, tmp_path: Path) -> None:
    with db.transaction() as tx:
        used, spare = tx.reserve_sample_file(), tx.reserve_sample_file()
    assert sorted(db.list_reserved_sample_files()) == sorted(
        [(used, STATE_WRITING), (spare, STATE_WRITING)]
    )

    with db.transaction() as tx:
        cid = tx.insert_recording(make_recording(camera_id, used, entry_id))
    assert cid == camera_id << 32 | 1
    assert db.list_reserved_sample_files() == [(spare, STATE_WRITING)]

    def assert_one_recording(database: Database) -> RecordingRow:
        row = database.get_recording(cid)
        assert (row.camera_id, row.recording_id) == (camera_id, 1)
        assert (row.sample_file_bytes, row.duration_90k, row.end_time_90k) == (
            42, SECOND_90K, START_90K + SECOND_90K)
        assert database.list_recordings(camera_id) == [row]
        assert list(database.list_oldest_recordings(camera_id)) == [(row, used)]
        assert database.camera_usage(camera_id) == (1, 42, SECOND_90K)
        assert database.list_all_recording_uuids() == {used: cid}
        playback = database.get_playback(cid)
        assert (playback.sample_file_uuid, playback.video_index) == (used, b"\x02\x54")
        return row

    row = assert_one_recording(db)
    db.close()
    with Database.open(tmp_path / "db") as reopened:
        assert assert_one_recording(reopened) == row
        assert reopened.get_camera(camera_id).next_recording_id == 2

        with reopened.transaction() as tx:
            assert tx.delete_recordings([row]) == [used]
        assert sorted(reopened.list_reserved_sample_files()) == sorted(
            [(used, STATE_DELETING), (spare, STATE_WRITING)]
        )
        assert reopened.camera_usage(camera_id) == (0, 0, 0)
        assert reopened.list_recordings(camera_id) == []
        assert reopened.list_all_recording_uuids() == {}
        with pytest.raises(UnknownRecordingError, match=f"no recording {camera_id}/1"):
            reopened.get_playback(cid)

        with reopened.transaction() as tx:
            tx.mark_sample_files_deleted([used, spare])
        assert reopened.list_reserved_sample_files() == []
        assert reopened.get_camera(camera_id).next_recording_id == 2


def test_recording_ids_are_per_camera_and_never_reused(
    db: Database, camera_id: int, entry_id: int
) -> None:
    back = db.add_camera("back").id
    first = save(db, camera_id, entry_id)
    second = save(db, camera_id, entry_id, start_time_90k=START_90K + SECOND_90K)
    other = save(db, back, entry_id)
    assert [first & 0xFFFFFFFF, second & 0xFFFFFFFF, other] == [1, 2, back << 32 | 1]

    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(second)])
    assert save(db, camera_id, entry_id) & 0xFFFFFFFF == 3


def test_insert_with_unreserved_uuid_leaves_nothing_behind(
    db: Database, camera_id: int, entry_id: int
) -> None:
    stranger = uuidlib.uuid4()
    with pytest.raises(ConsistencyError, match=f"uuid {stranger} is not reserved"):
        with db.transaction() as tx:
            tx.reserve_sample_file()
            tx.insert_recording(make_recording(camera_id, stranger.bytes, entry_id))
    assert db.list_reserved_sample_files() == []
    assert db.list_recordings(camera_id) == []
    assert db.get_camera(camera_id).next_recording_id == 1


def test_insert_needs_a_writing_not_a_deleting_reservation(
    db: Database, camera_id: int, entry_id: int
) -> None:
    cid = save(db, camera_id, entry_id)
    with db.transaction() as tx:
        (uuid,) = tx.delete_recordings([db.get_recording(cid)])
    with pytest.raises(ConsistencyError, match="is not reserved"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(camera_id, uuid, entry_id))
    assert db.list_reserved_sample_files() == [(uuid, STATE_DELETING)]


def test_caught_failure_still_rolls_back_the_whole_transaction(
    db: Database, camera_id: int, entry_id: int
) -> None:
    with pytest.raises(ConsistencyError, match="cannot commit"):
        with db.transaction() as tx:
            uuid = tx.reserve_sample_file()
            with pytest.raises(ConsistencyError):
                tx.mark_sample_files_deleted([uuidlib.uuid4().bytes])
            with pytest.raises(ConsistencyError, match="earlier operation"):
                tx.insert_recording(make_recording(camera_id, uuid, entry_id))
    assert db.list_reserved_sample_files() == []
    # The database is usable afterwards.
    assert save(db, camera_id, entry_id) == camera_id << 32 | 1


def test_transaction_rolls_back_on_any_exception(db: Database) -> None:
    with pytest.raises(KeyboardInterrupt):
        with db.transaction() as tx:
            tx.reserve_sample_file()
            raise KeyboardInterrupt
    assert db.list_reserved_sample_files() == []


def test_transaction_object_is_dead_after_the_block(db: Database) -> None:
    with db.transaction() as tx:
        pass
    with pytest.raises(DatabaseError, match="already ended"):
        tx.reserve_sample_file()


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration_90k", -1), ("duration_90k", 5 * 60 * SECOND_90K), ("sample_file_bytes", 0),
     ("video_samples", 0), ("start_time_90k", 0), ("sample_file_sha1", b"short")],
)
def test_insert_recording_refuses_rows_the_schema_forbids(
    db: Database, camera_id: int, entry_id: int, field: str, value: object
) -> None:
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file()
    with pytest.raises(ConsistencyError, match=f"uuid {uuidlib.UUID(bytes=uuid)}.*CHECK"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(camera_id, uuid, entry_id, **{field: value}))
    assert db.list_reserved_sample_files() == [(uuid, STATE_WRITING)]
    assert db.list_recordings(camera_id) == []


def test_insert_recording_for_unknown_camera(db: Database, entry_id: int) -> None:
    with pytest.raises(UnknownCameraError, match="no camera with id 9"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(9, tx.reserve_sample_file(), entry_id))
    assert db.list_reserved_sample_files() == []


def test_delete_of_a_missing_recording_undoes_earlier_deletes(
    db: Database, camera_id: int, entry_id: int
) -> None:
    row = db.get_recording(save(db, camera_id, entry_id))
    ghost = replace(row, composite_id=row.composite_id + 1)
    with pytest.raises(ConsistencyError, match=f"recording {camera_id}/2: deleted 0"):
        with db.transaction() as tx:
            tx.delete_recordings([row, ghost])
    assert db.list_recordings(camera_id) == [row]
    assert db.list_reserved_sample_files() == []


def test_mark_deleted_requires_each_uuid_to_be_reserved(db: Database) -> None:
    with db.transaction() as tx:
        reserved = tx.reserve_sample_file()
    stranger = uuidlib.uuid4()
    with pytest.raises(ConsistencyError, match=f"uuid {stranger} is not reserved"):
        with db.transaction() as tx:
            tx.mark_sample_files_deleted([reserved, stranger.bytes])
    assert db.list_reserved_sample_files() == [(reserved, STATE_WRITING)]


def test_trailing_zero_flag_and_run_fields_round_trip(
    db: Database, camera_id: int, entry_id: int
) -> None:
    cid = save(db, camera_id, entry_id, flags=FLAG_TRAILING_ZERO, run_offset=3,
               local_time_delta_90k=-17, video_samples=30, video_sync_samples=2)
    row = db.get_recording(cid)
    assert row.has_trailing_zero
    assert (row.run_offset, row.local_time_delta_90k, row.video_samples,
            row.video_sync_samples, row.video_sample_entry_id) == (3, -17, 30, 2, entry_id)


# ---- transactions and threads ---------------------------------------------------------


def test_transactions_do_not_nest(db: Database) -> None:
    with db.transaction():
        with pytest.raises(DatabaseError, match="do not nest"):
            with db.transaction():
                pass


def test_read_only_database_refuses_writes(db: Database, tmp_path: Path) -> None:
    with Database.open(tmp_path / "db", read_only=True) as reader:
        with pytest.raises(DatabaseError, match="read-only"):
            with reader.transaction():
                pass


def test_reader_sees_last_commit_while_writer_holds_a_transaction(
    db: Database, camera_id: int, tmp_path: Path
) -> None:
    with db.transaction() as tx:
        committed = tx.reserve_sample_file()
    with Database.open(tmp_path / "db", read_only=True) as reader:
        with db.transaction() as tx:
            tx.reserve_sample_file()
            started = time.monotonic()
            assert reader.list_reserved_sample_files() == [(committed, STATE_WRITING)]
            assert [c.id for c in reader.list_cameras()] == [camera_id]
            assert time.monotonic() - started < 1.0  # did not wait for the writer
        assert len(reader.list_reserved_sample_files()) == 2


def test_other_threads_never_see_an_open_transaction(db: Database) -> None:
    seen: list[list[tuple[bytes, int]]] = []
    reader = threading.Thread(target=lambda: seen.append(db.list_reserved_sample_files()))
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file()
        reader.start()
        reader.join(timeout=0.2)
        assert reader.is_alive(), "a read ran inside another thread's transaction"
    reader.join(timeout=10)
    assert seen == [[(uuid, STATE_WRITING)]]


def test_writer_of_another_process_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_SEC", 0.1)
    with Database.create(tmp_path / "db", str(tmp_path / "sample")) as db:
        other = sqlite3.connect(tmp_path / "db", isolation_level=None)
        other.execute("begin immediate")
        with pytest.raises(DatabaseError, match="is being written by another process"):
            with db.transaction():
                pass
        other.execute("rollback")
        other.close()
        with db.transaction() as tx:
            tx.reserve_sample_file()


def test_list_oldest_recordings_is_lazy_and_batched(
    db: Database, camera_id: int, entry_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "OLDEST_BATCH_ROWS", 2)
    ids = [save(db, camera_id, entry_id, start_time_90k=START_90K + i * SECOND_90K)
           for i in range(5)]
    other_camera = db.add_camera("back").id
    save(db, other_camera, entry_id)

    oldest = db.list_oldest_recordings(camera_id)
    first_row, _ = next(oldest)
    assert first_row.composite_id == ids[0]
    # The iterator holds no lock between items: another thread can write meanwhile.
    writer = threading.Thread(target=save, args=(db, camera_id, entry_id))
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive()
    rest = [row.composite_id for row, _ in oldest]
    assert rest[:4] == ids[1:]
    assert len(rest) == 5  # includes the recording saved mid-iteration


# ---- time ranges ----------------------------------------------------------------------


def test_list_recordings_by_time_overlap_is_half_open(
    db: Database, camera_id: int, entry_id: int
) -> None:
    # Three back-to-back 1-second recordings: [S, S+1), [S+1, S+2), [S+2, S+3).
    ids = [save(db, camera_id, entry_id, start_time_90k=START_90K + i * SECOND_90K)
           for i in range(3)]

    def found(start: int, end: int) -> list[int]:
        """Indexes of the recordings overlapping [S + start, S + end), in 90k units."""
        rows = db.list_recordings_by_time(camera_id, START_90K + start, START_90K + end)
        return [ids.index(row.composite_id) for row in rows]

    s = SECOND_90K
    assert found(0, 3 * s) == [0, 1, 2]
    assert found(s, 2 * s) == [1]  # touching neighbours are excluded on both sides
    assert found(s // 2, s) == [0]
    assert found(s - 1, s + 1) == [0, 1]
    assert found(3 * s, 4 * s) == []
    assert found(-s, 0) == []


def test_list_recordings_by_time_finds_a_long_recording_starting_before_the_range(
    db: Database, camera_id: int, entry_id: int
) -> None:
    longest = 5 * 60 * SECOND_90K - 1
    cid = save(db, camera_id, entry_id, duration_90k=longest)
    just_inside = START_90K + longest - 1
    assert [r.composite_id for r in db.list_recordings_by_time(
        camera_id, just_inside, just_inside + 1)] == [cid]
    assert db.list_recordings_by_time(camera_id, just_inside + 1, just_inside + 2) == []


# ---- cameras --------------------------------------------------------------------------


def test_add_and_get_camera_by_id_or_name(db: Database) -> None:
    camera = db.add_camera("front", url="rtsp://192.0.2.1/main", username="admin",
                           password="hunter2", retain_bytes=10**9, rotate_interval_sec=30,
                           description="front door")
    assert db.get_camera("front") == db.get_camera(camera.id) == camera
    assert (camera.url, camera.username, camera.password, camera.retain_bytes,
            camera.rotate_interval_sec, camera.next_recording_id) == (
        "rtsp://192.0.2.1/main", "admin", "hunter2", 10**9, 30, 1)
    assert len(camera.uuid) == 16
    assert db.list_cameras() == [camera]


def test_duplicate_camera_name_is_refused(db: Database, camera_id: int) -> None:
    with pytest.raises(DuplicateCameraError, match="camera 'front' already exists"):
        db.add_camera("front")
    other = db.add_camera("back")
    with pytest.raises(DuplicateCameraError, match="camera 'front' already exists"):
        db.update_camera(other.id, short_name="front")
    assert [c.short_name for c in db.list_cameras()] == ["front", "back"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"retain_bytes": -1}, "retain_bytes must be an integer from 0 to 2\\*\\*63 - 1, got -1"),
     ({"retain_bytes": 1.5}, "retain_bytes"),
     ({"retain_bytes": 1 << 63}, "retain_bytes"),
     ({"short_name": ""}, "short name must be a non-empty string"),
     ({"short_name": " front"}, "surrounding spaces"),
     ({"rotate_interval_sec": 0}, "rotate_interval_sec must be an integer from 1"),
     ({"rotate_interval_sec": 300}, "rotate_interval_sec"),
     ({"url": None}, "camera url must be a string")],
)
def test_invalid_camera_settings_are_refused(
    db: Database, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        db.add_camera(**{"short_name": "cam", **settings})
    existing = db.add_camera("existing", retain_bytes=5)
    with pytest.raises(InvalidConfigError, match=message):
        db.update_camera("existing", **settings)
    assert db.list_cameras() == [existing]


def test_unknown_camera(db: Database, camera_id: int) -> None:
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.get_camera("x")
    with pytest.raises(UnknownCameraError, match="no camera with id 7"):
        db.get_camera(7)
    with pytest.raises(UnknownCameraError, match="no camera with id 7"):
        db.camera_usage(7)
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.update_camera("x", retain_bytes=1)
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.delete_camera("x")


def test_update_camera_changes_only_what_is_given(db: Database, camera_id: int) -> None:
    before = db.get_camera(camera_id)
    after = db.update_camera("front", retain_bytes=5, short_name="porch", password=None)
    assert after == replace(before, retain_bytes=5, short_name="porch", password=None)
    assert db.get_camera("porch") == after
    with pytest.raises(TypeError, match="unknown camera settings: next_recording_id"):
        db.update_camera(camera_id, next_recording_id=0)


def test_delete_camera_refuses_while_it_has_recordings(
    db: Database, camera_id: int, entry_id: int
) -> None:
    cid = save(db, camera_id, entry_id)
    with pytest.raises(DatabaseError, match="camera 'front' still has 1 recordings"):
        db.delete_camera("front")
    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(cid)])
    db.delete_camera("front")
    assert db.list_cameras() == []


# ---- sample entries and the sample dir ------------------------------------------------


def test_video_sample_entries_are_deduplicated_by_sha1(db: Database, testdata: Path) -> None:
    data = (testdata / "avc1_1920x1080").read_bytes()
    entry_id = db.insert_video_sample_entry(1920, 1080, data)
    assert db.insert_video_sample_entry(1920, 1080, bytearray(data)) == entry_id
    other = db.insert_video_sample_entry(1920, 1080, data + b"\0")
    assert other != entry_id
    entry = db.get_video_sample_entry(entry_id)
    assert (entry.width, entry.height, entry.data, len(entry.sha1)) == (1920, 1080, data, 20)
    with pytest.raises(ConsistencyError, match="is 1920x1080, not 1280x720"):
        db.insert_video_sample_entry(1280, 720, data)
    with pytest.raises(InvalidConfigError, match="longer than 86 bytes"):
        db.insert_video_sample_entry(1920, 1080, data[:86])
    with pytest.raises(UnknownVideoSampleEntryError, match="no video sample entry with id 99"):
        db.get_video_sample_entry(99)


def test_sample_file_dir_records_an_absolute_path_and_two_uuids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Database.create(tmp_path / "db", "sample") as db:
        row = db.sample_file_dir()
    assert row.path == str(tmp_path / "sample")
    assert len(row.uuid) == len(row.db_uuid) == 16 and row.uuid != row.db_uuid
    with Database.open(tmp_path / "db", read_only=True) as reader:
        assert reader.sample_file_dir() == row


def test_create_defaults_the_sample_dir_to_sample_next_to_the_database(tmp_path):
    with Database.create(tmp_path / "db") as db:
        assert db.sample_file_dir().path == str(tmp_path / "sample")
