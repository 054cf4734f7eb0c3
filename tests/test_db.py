"""moonfire.db: cameras and their streams, sample file directories, the reservation
lifecycle, queries and transactions.

Schema versions, pragmas and raw constraints are in ``test_db_schema.py``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from moonfire.db import (
    MAIN,
    STATE_DELETING,
    STATE_WRITING,
    SUB,
    Camera,
    ConsistencyError,
    Database,
    DatabaseError,
    DuplicateCameraError,
    InvalidConfigError,
    RecordingRejectedError,
    RecordingRow,
    SampleFileDirInUseError,
    UnknownCameraError,
    UnknownRecordingError,
    UnknownSampleFileDirError,
    UnknownStreamError,
    UnknownVideoSampleEntryError,
)
from moonfire.db import database as database_module
from moonfire.db.camera_settings import MAX_AGE_DAYS
from moonfire.db.schema import DEFAULT_DIR_NAME
from moonfire_core.records import FLAG_TRAILING_ZERO, RecordingToSave

START_90K = 1_500_000_000 * 90000  # 2017-07-14
SECOND_90K = 90000
MAIN_URL = "rtsp://192.0.2.1/main"
SUB_URL = "rtsp://192.0.2.1/sub"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.create(tmp_path / "db", str(tmp_path / "sample")) as database:
        yield database


@pytest.fixture
def dir_id(db: Database) -> int:
    """The id of the database's first sample file directory."""
    return db.sample_file_dir(DEFAULT_DIR_NAME).id


@pytest.fixture
def disk2(db: Database, tmp_path: Path) -> int:
    """The id of a second sample file directory, ``disk2``."""
    return db.add_sample_file_dir("disk2", tmp_path / "disk2").id


@pytest.fixture
def entry_id(db: Database, testdata: Path) -> int:
    return db.insert_video_sample_entry(1920, 1080, (testdata / "avc1_1920x1080").read_bytes())


@pytest.fixture
def camera(db: Database) -> Camera:
    return db.add_camera("front", url=MAIN_URL, retain_bytes=1 << 30)


@pytest.fixture
def stream_id(camera: Camera) -> int:
    """The id of camera ``front``'s main stream."""
    return camera.main.id


def make_recording(stream_id: int, uuid: bytes, entry_id: int, **fields: object) -> RecordingToSave:
    """A 1-second, 42-byte recording (brief's test_full_lifecycle) unless overridden."""
    values = dict(
        stream_id=stream_id, sample_file_uuid=uuid, fd=-1, run_offset=0, flags=0,
        sample_file_bytes=42, start_time_90k=START_90K, duration_90k=SECOND_90K,
        local_time_delta_90k=0, video_samples=1, video_sync_samples=1,
        video_sample_entry_id=entry_id, video_index=b"\x02\x54", sample_file_sha1=b"\x11" * 20,
    )
    values.update(fields)
    return RecordingToSave(**values)


def save(db: Database, stream_id: int, entry_id: int, **fields: object) -> int:
    """Reserves a uuid in the stream's directory and inserts a recording with it in one
    transaction, like the syncer."""
    dir_id = db.get_stream(stream_id).sample_file_dir_id
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file(dir_id)
        return tx.insert_recording(make_recording(stream_id, uuid, entry_id, **fields))


# ---- the reservation lifecycle (brief §1.4) --------------------------------------------


def test_full_lifecycle(
    db: Database, stream_id: int, dir_id: int, entry_id: int, tmp_path: Path
) -> None:
    with db.transaction() as tx:
        used, spare = tx.reserve_sample_file(dir_id), tx.reserve_sample_file(dir_id)
    assert sorted(db.list_reserved_sample_files(dir_id)) == sorted(
        [(used, STATE_WRITING), (spare, STATE_WRITING)]
    )

    with db.transaction() as tx:
        cid = tx.insert_recording(make_recording(stream_id, used, entry_id))
    assert cid == stream_id << 32 | 1
    assert db.list_reserved_sample_files(dir_id) == [(spare, STATE_WRITING)]

    def assert_one_recording(database: Database) -> RecordingRow:
        row = database.get_recording(cid)
        assert (row.stream_id, row.recording_id) == (stream_id, 1)
        assert (row.sample_file_bytes, row.duration_90k, row.end_time_90k) == (
            42, SECOND_90K, START_90K + SECOND_90K)
        assert database.list_recordings(stream_id) == [row]
        assert database.last_recording(stream_id) == row
        assert list(database.list_oldest_recordings(stream_id)) == [(row, used)]
        assert database.stream_usage(stream_id) == (1, 42, SECOND_90K)
        assert database.list_all_recording_uuids(dir_id) == {used: cid}
        playback = database.get_playback(cid)
        assert (playback.sample_file_uuid, playback.video_index) == (used, b"\x02\x54")
        return row

    row = assert_one_recording(db)
    db.close()
    with Database.open(tmp_path / "db") as reopened:
        assert assert_one_recording(reopened) == row
        assert reopened.get_stream(stream_id).next_recording_id == 2
        assert reopened.get_camera("front").main.next_recording_id == 2

        with reopened.transaction() as tx:
            assert tx.delete_recordings([row]) == [used]
        assert sorted(reopened.list_reserved_sample_files(dir_id)) == sorted(
            [(used, STATE_DELETING), (spare, STATE_WRITING)]
        )
        assert reopened.stream_usage(stream_id) == (0, 0, 0)
        assert reopened.list_recordings(stream_id) == []
        assert reopened.last_recording(stream_id) is None
        assert reopened.list_all_recording_uuids(dir_id) == {}
        with pytest.raises(UnknownRecordingError, match=f"no recording {stream_id}/1"):
            reopened.get_playback(cid)

        with reopened.transaction() as tx:
            tx.mark_sample_files_deleted([used, spare])
        assert reopened.list_reserved_sample_files(dir_id) == []
        assert reopened.get_stream(stream_id).next_recording_id == 2


def test_recording_ids_are_per_stream_and_never_reused(
    db: Database, stream_id: int, entry_id: int
) -> None:
    sub = db.update_camera("front", sub_url=SUB_URL, sub_retain_bytes=1 << 20).sub
    assert sub is not None
    back = db.add_camera("back").main.id
    first = save(db, stream_id, entry_id)
    second = save(db, stream_id, entry_id, start_time_90k=START_90K + SECOND_90K)
    other = save(db, back, entry_id)
    on_sub = save(db, sub.id, entry_id)
    assert [first & 0xFFFFFFFF, second & 0xFFFFFFFF, other, on_sub] == [
        1, 2, back << 32 | 1, sub.id << 32 | 1]
    assert [r.composite_id for r in db.list_recordings(stream_id)] == [first, second]
    assert [r.composite_id for r in db.list_recordings(sub.id)] == [on_sub]

    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(second)])
    assert save(db, stream_id, entry_id) & 0xFFFFFFFF == 3


def test_insert_with_unreserved_uuid_leaves_nothing_behind(
    db: Database, stream_id: int, dir_id: int, entry_id: int
) -> None:
    stranger = uuidlib.uuid4()
    with pytest.raises(ConsistencyError, match=f"uuid {stranger} is not reserved"):
        with db.transaction() as tx:
            tx.reserve_sample_file(dir_id)
            tx.insert_recording(make_recording(stream_id, stranger.bytes, entry_id))
    assert db.list_reserved_sample_files(dir_id) == []
    assert db.list_recordings(stream_id) == []
    assert db.get_stream(stream_id).next_recording_id == 1


def test_insert_needs_a_writing_not_a_deleting_reservation(
    db: Database, stream_id: int, dir_id: int, entry_id: int
) -> None:
    cid = save(db, stream_id, entry_id)
    with db.transaction() as tx:
        (uuid,) = tx.delete_recordings([db.get_recording(cid)])
    with pytest.raises(ConsistencyError, match="is not reserved"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(stream_id, uuid, entry_id))
    assert db.list_reserved_sample_files(dir_id) == [(uuid, STATE_DELETING)]


def test_caught_failure_still_rolls_back_the_whole_transaction(
    db: Database, stream_id: int, dir_id: int, entry_id: int
) -> None:
    with pytest.raises(ConsistencyError, match="cannot commit"):
        with db.transaction() as tx:
            uuid = tx.reserve_sample_file(dir_id)
            with pytest.raises(ConsistencyError):
                tx.mark_sample_files_deleted([uuidlib.uuid4().bytes])
            with pytest.raises(ConsistencyError, match="earlier operation"):
                tx.insert_recording(make_recording(stream_id, uuid, entry_id))
    assert db.list_reserved_sample_files(dir_id) == []
    # The database is usable afterwards.
    assert save(db, stream_id, entry_id) == stream_id << 32 | 1


def test_transaction_rolls_back_on_any_exception(db: Database, dir_id: int) -> None:
    with pytest.raises(KeyboardInterrupt):
        with db.transaction() as tx:
            tx.reserve_sample_file(dir_id)
            raise KeyboardInterrupt
    assert db.list_reserved_sample_files(dir_id) == []


def test_transaction_object_is_dead_after_the_block(db: Database, dir_id: int) -> None:
    with db.transaction() as tx:
        pass
    with pytest.raises(DatabaseError, match="already ended"):
        tx.reserve_sample_file(dir_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration_90k", -1), ("duration_90k", 5 * 60 * SECOND_90K), ("sample_file_bytes", 0),
     ("video_samples", 0), ("start_time_90k", 0), ("sample_file_sha1", b"short")],
)
def test_insert_recording_refuses_rows_the_schema_forbids(
    db: Database, stream_id: int, dir_id: int, entry_id: int, field: str, value: object
) -> None:
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file(dir_id)
    with pytest.raises(RecordingRejectedError, match=f"uuid {uuidlib.UUID(bytes=uuid)}.*CHECK"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(stream_id, uuid, entry_id, **{field: value}))
    assert db.list_reserved_sample_files(dir_id) == [(uuid, STATE_WRITING)]
    assert db.list_recordings(stream_id) == []


def test_insert_recording_for_unknown_stream(db: Database, dir_id: int, entry_id: int) -> None:
    with pytest.raises(UnknownStreamError, match="no stream with id 9"):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(9, tx.reserve_sample_file(dir_id), entry_id))
    assert db.list_reserved_sample_files(dir_id) == []


def test_reserving_in_an_unknown_sample_file_dir_is_refused(db: Database, dir_id: int) -> None:
    with pytest.raises(UnknownSampleFileDirError, match=f"no sample file directory with id "
                                                        f"{dir_id + 1}"):
        with db.transaction() as tx:
            tx.reserve_sample_file(dir_id + 1)
    assert db.list_reserved_sample_files(dir_id + 1) == []


def test_delete_of_a_missing_recording_undoes_earlier_deletes(
    db: Database, stream_id: int, dir_id: int, entry_id: int
) -> None:
    row = db.get_recording(save(db, stream_id, entry_id))
    ghost = replace(row, composite_id=row.composite_id + 1)
    with pytest.raises(ConsistencyError, match=f"recording {stream_id}/2: deleted 0"):
        with db.transaction() as tx:
            tx.delete_recordings([row, ghost])
    assert db.list_recordings(stream_id) == [row]
    assert db.list_reserved_sample_files(dir_id) == []


def test_mark_deleted_requires_each_uuid_to_be_reserved(db: Database, dir_id: int) -> None:
    with db.transaction() as tx:
        reserved = tx.reserve_sample_file(dir_id)
    stranger = uuidlib.uuid4()
    with pytest.raises(ConsistencyError, match=f"uuid {stranger} is not reserved"):
        with db.transaction() as tx:
            tx.mark_sample_files_deleted([reserved, stranger.bytes])
    assert db.list_reserved_sample_files(dir_id) == [(reserved, STATE_WRITING)]


def test_trailing_zero_flag_and_run_fields_round_trip(
    db: Database, stream_id: int, entry_id: int
) -> None:
    cid = save(db, stream_id, entry_id, flags=FLAG_TRAILING_ZERO, run_offset=3,
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
    db: Database, camera: Camera, dir_id: int, tmp_path: Path
) -> None:
    with db.transaction() as tx:
        committed = tx.reserve_sample_file(dir_id)
    with Database.open(tmp_path / "db", read_only=True) as reader:
        with db.transaction() as tx:
            tx.reserve_sample_file(dir_id)
            started = time.monotonic()
            assert reader.list_reserved_sample_files(dir_id) == [(committed, STATE_WRITING)]
            assert reader.list_cameras() == [camera]
            assert time.monotonic() - started < 1.0  # did not wait for the writer
        assert len(reader.list_reserved_sample_files(dir_id)) == 2


def test_other_threads_never_see_an_open_transaction(db: Database, dir_id: int) -> None:
    seen: list[list[tuple[bytes, int]]] = []
    reader = threading.Thread(target=lambda: seen.append(db.list_reserved_sample_files(dir_id)))
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file(dir_id)
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
        dir_id = db.sample_file_dir(DEFAULT_DIR_NAME).id
        other = sqlite3.connect(tmp_path / "db", isolation_level=None)
        other.execute("begin immediate")
        with pytest.raises(DatabaseError, match="is being written by another process"):
            with db.transaction():
                pass
        other.execute("rollback")
        other.close()
        with db.transaction() as tx:
            tx.reserve_sample_file(dir_id)


def test_list_oldest_recordings_is_lazy_and_batched(
    db: Database, stream_id: int, entry_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "OLDEST_BATCH_ROWS", 2)
    ids = [save(db, stream_id, entry_id, start_time_90k=START_90K + i * SECOND_90K)
           for i in range(5)]
    other_stream = db.add_camera("back").main.id
    save(db, other_stream, entry_id)

    oldest = db.list_oldest_recordings(stream_id)
    first_row, _ = next(oldest)
    assert first_row.composite_id == ids[0]
    # The iterator holds no lock between items: another thread can write meanwhile.
    writer = threading.Thread(target=save, args=(db, stream_id, entry_id))
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive()
    rest = [row.composite_id for row, _ in oldest]
    assert rest[:4] == ids[1:]
    assert len(rest) == 5  # includes the recording saved mid-iteration


# ---- time ranges ----------------------------------------------------------------------


def test_list_recordings_by_time_overlap_is_half_open(
    db: Database, stream_id: int, entry_id: int
) -> None:
    # Three back-to-back 1-second recordings: [S, S+1), [S+1, S+2), [S+2, S+3).
    ids = [save(db, stream_id, entry_id, start_time_90k=START_90K + i * SECOND_90K)
           for i in range(3)]

    def found(start: int, end: int) -> list[int]:
        """Indexes of the recordings overlapping [S + start, S + end), in 90k units."""
        rows = db.list_recordings_by_time(stream_id, START_90K + start, START_90K + end)
        return [ids.index(row.composite_id) for row in rows]

    s = SECOND_90K
    assert found(0, 3 * s) == [0, 1, 2]
    assert found(s, 2 * s) == [1]  # touching neighbours are excluded on both sides
    assert found(s // 2, s) == [0]
    assert found(s - 1, s + 1) == [0, 1]
    assert found(3 * s, 4 * s) == []
    assert found(-s, 0) == []


def test_list_recordings_by_time_finds_a_long_recording_starting_before_the_range(
    db: Database, stream_id: int, entry_id: int
) -> None:
    longest = 5 * 60 * SECOND_90K - 1
    cid = save(db, stream_id, entry_id, duration_90k=longest)
    just_inside = START_90K + longest - 1
    assert [r.composite_id for r in db.list_recordings_by_time(
        stream_id, just_inside, just_inside + 1)] == [cid]
    assert db.list_recordings_by_time(stream_id, just_inside + 1, just_inside + 2) == []


def test_list_recordings_by_time_keeps_streams_apart(
    db: Database, stream_id: int, entry_id: int
) -> None:
    sub = db.update_camera("front", sub_url=SUB_URL, sub_retain_bytes=1).sub
    assert sub is not None
    main_cid = save(db, stream_id, entry_id)
    sub_cid = save(db, sub.id, entry_id)  # the very same time
    end = START_90K + SECOND_90K
    assert [r.composite_id for r in db.list_recordings_by_time(stream_id, START_90K, end)] == [
        main_cid]
    assert [r.composite_id for r in db.list_recordings_by_time(sub.id, START_90K, end)] == [
        sub_cid]


# ---- cameras --------------------------------------------------------------------------


def test_add_and_get_camera_by_id_or_name(db: Database, dir_id: int) -> None:
    camera = db.add_camera("front", url=MAIN_URL, username="admin",
                           password="hunter2", retain_bytes=10**9, rotate_interval_sec=30,
                           description="front door")
    assert db.get_camera("front") == db.get_camera(camera.id) == camera
    assert (camera.short_name, camera.description, camera.username, camera.password,
            camera.rotate_interval_sec) == ("front", "front door", "admin", "hunter2", 30)
    main = camera.main
    assert (main.camera_id, main.type, main.url, main.record, main.retain_bytes,
            main.max_age_days, main.sample_file_dir_id, main.next_recording_id) == (
        camera.id, MAIN, MAIN_URL, True, 10**9, None, dir_id, 1)
    assert camera.sub is None and camera.streams == [main]
    assert db.get_stream(main.id) == main
    assert len(camera.uuid) == 16
    assert db.list_cameras() == [camera]


def test_duplicate_camera_name_is_refused(db: Database, camera: Camera) -> None:
    with pytest.raises(DuplicateCameraError, match="camera 'front' already exists"):
        db.add_camera("front")
    other = db.add_camera("back")
    with pytest.raises(DuplicateCameraError, match="camera 'front' already exists"):
        db.update_camera(other.id, short_name="front")
    assert [c.short_name for c in db.list_cameras()] == ["front", "back"]
    assert len(db.list_streams()) == 2  # the refused one added no stream


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"retain_bytes": -1}, "retain_bytes must be an integer from 0 to 2\\*\\*63 - 1, got -1"),
     ({"retain_bytes": 1.5}, "retain_bytes"),
     ({"retain_bytes": 1 << 63}, "retain_bytes"),
     ({"short_name": ""}, "short name must be a non-empty string"),
     ({"short_name": " front"}, "surrounding spaces"),
     ({"rotate_interval_sec": 0}, "rotate_interval_sec must be an integer from 1"),
     ({"rotate_interval_sec": 300}, "rotate_interval_sec"),
     ({"url": None}, "camera url must be a string"),
     ({"max_age_days": 0},
      f"^max_age_days must be None or an integer from 1 to {MAX_AGE_DAYS}, got 0$"),
     ({"max_age_days": -3}, "^max_age_days must be None or an integer .*, got -3$"),
     ({"max_age_days": MAX_AGE_DAYS + 1}, f"^max_age_days .*, got {MAX_AGE_DAYS + 1}$"),
     ({"max_age_days": 1.5}, "^max_age_days .*, got 1.5$"),
     ({"max_age_days": True}, "^max_age_days .*, got True$"),
     ({"sample_file_dir": 1.5}, "^sample_file_dir must name a sample file directory")],
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


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"sub_max_age_days": 0}, f"^sub_max_age_days must be None or an integer from 1 to "
                               f"{MAX_AGE_DAYS}, got 0$"),
     ({"sub_max_age_days": MAX_AGE_DAYS + 1}, "^sub_max_age_days "),
     ({"sub_retain_bytes": -1}, "^sub_retain_bytes must be an integer from 0"),
     ({"sub_sample_file_dir": 2.5}, "^sub_sample_file_dir must name a sample file directory")],
)
def test_invalid_sub_stream_settings_are_refused_naming_the_sub_setting(
    db: Database, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        db.add_camera("cam", url=MAIN_URL, sub_url=SUB_URL, **settings)
    assert db.list_cameras() == []
    existing = db.add_camera("existing", url=MAIN_URL, sub_url=SUB_URL, sub_retain_bytes=5)
    with pytest.raises(InvalidConfigError, match=message):
        db.update_camera("existing", **settings)
    assert db.list_cameras() == [existing]


def test_max_age_days_is_set_and_removed_per_stream(db: Database, camera: Camera) -> None:
    aged = db.update_camera("front", max_age_days=MAX_AGE_DAYS, sub_url=SUB_URL,
                            sub_retain_bytes=1, sub_max_age_days=7)
    assert aged.sub is not None
    assert (aged.main.max_age_days, aged.sub.max_age_days) == (MAX_AGE_DAYS, 7)
    unlimited = db.update_camera("front", max_age_days=None)
    assert unlimited.main.max_age_days is None
    assert unlimited.sub == aged.sub


def test_unknown_camera(db: Database, camera: Camera) -> None:
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.get_camera("x")
    with pytest.raises(UnknownCameraError, match="no camera with id 7"):
        db.get_camera(7)
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.update_camera("x", retain_bytes=1)
    with pytest.raises(UnknownCameraError, match="no camera 'x'"):
        db.delete_camera("x")


def test_unknown_stream(db: Database, camera: Camera) -> None:
    missing = max(s.id for s in db.list_streams()) + 1
    with pytest.raises(UnknownStreamError, match=f"no stream with id {missing}"):
        db.get_stream(missing)
    with pytest.raises(UnknownStreamError, match=f"no stream with id {missing}"):
        db.stream_usage(missing)
    assert db.stream_name(missing) == f"stream {missing}"
    with pytest.raises(UnknownStreamError, match="camera 'front' has no sub stream"):
        camera.stream(SUB)
    with pytest.raises(UnknownStreamError, match="no stream type 'third'"):
        camera.stream("third")


def test_update_camera_changes_only_what_is_given(db: Database, camera: Camera) -> None:
    after = db.update_camera("front", retain_bytes=5, short_name="porch", password=None)
    assert after == replace(camera, short_name="porch", password=None,
                            main=replace(camera.main, retain_bytes=5))
    assert db.get_camera("porch") == after
    with pytest.raises(TypeError, match="unknown camera settings: next_recording_id"):
        db.update_camera(camera.id, next_recording_id=0)
    with pytest.raises(TypeError, match="unknown camera settings: sub_record"):
        db.update_camera(camera.id, sub_record=True)
    assert db.get_camera(camera.id) == after


def test_delete_camera_refuses_while_it_has_recordings(
    db: Database, stream_id: int, entry_id: int
) -> None:
    sub = db.update_camera("front", sub_url=SUB_URL, sub_retain_bytes=1).sub
    assert sub is not None
    cid = save(db, stream_id, entry_id)
    on_sub = save(db, sub.id, entry_id)
    with pytest.raises(DatabaseError, match="camera 'front' still has 2 recordings"):
        db.delete_camera("front")
    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(cid)])
    with pytest.raises(DatabaseError, match="camera 'front' still has 1 recordings"):
        db.delete_camera("front")  # its sub stream's count too
    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(on_sub)])
    db.delete_camera("front")
    assert db.list_cameras() == []


# ---- streams --------------------------------------------------------------------------


def test_add_camera_with_a_sub_stream_in_another_dir(
    db: Database, dir_id: int, disk2: int
) -> None:
    camera = db.add_camera("front", url=MAIN_URL, retain_bytes=10**9, max_age_days=30,
                           sub_url=SUB_URL, sub_retain_bytes=10**8, sub_max_age_days=7,
                           sub_sample_file_dir="disk2")
    main, sub = camera.main, camera.sub
    assert sub is not None
    assert (main.type, main.url, main.record, main.retain_bytes, main.max_age_days,
            main.sample_file_dir_id, main.next_recording_id) == (
        MAIN, MAIN_URL, True, 10**9, 30, dir_id, 1)
    assert (sub.type, sub.url, sub.record, sub.retain_bytes, sub.max_age_days,
            sub.sample_file_dir_id, sub.next_recording_id) == (
        SUB, SUB_URL, True, 10**8, 7, disk2, 1)
    assert main.camera_id == sub.camera_id == camera.id and main.id != sub.id
    assert camera.streams == [main, sub]
    assert (camera.stream(MAIN), camera.stream(SUB)) == (main, sub)
    assert db.get_camera("front") == camera
    assert (db.get_stream(main.id), db.get_stream(sub.id)) == (main, sub)
    assert db.list_streams() == [main, sub]
    assert (db.list_streams(dir_id), db.list_streams(disk2)) == ([main], [sub])
    assert [db.stream_name(s.id) for s in camera.streams] == ["front/main", "front/sub"]


def test_streams_of_new_cameras_get_their_own_ids(db: Database) -> None:
    """Ids are allocated per table: the second camera's main stream is not stream 2."""
    first = db.add_camera("front", url=MAIN_URL, sub_url=SUB_URL)
    second = db.add_camera("back", url=MAIN_URL)
    assert first.sub is not None
    assert len({first.main.id, first.sub.id, second.main.id}) == 3
    assert db.get_stream(second.main.id).camera_id == second.id
    assert db.stream_name(second.main.id) == "back/main"


@pytest.mark.parametrize(
    ("settings", "main_records", "sub_records"),
    [({"url": MAIN_URL, "sub_url": SUB_URL, "sub_retain_bytes": 1}, True, True),
     # A sub stream without a budget is there for live view only.
     ({"url": MAIN_URL, "sub_url": SUB_URL, "sub_retain_bytes": 0}, True, False),
     ({"url": MAIN_URL, "retain_bytes": 0, "sub_url": SUB_URL}, True, False),
     ({"url": "", "sub_url": "", "sub_retain_bytes": 1}, False, False)],
    ids=["both", "sub-without-budget", "no-budgets", "no-urls"],
)
def test_which_streams_record(
    db: Database, settings: dict[str, object], main_records: bool, sub_records: bool
) -> None:
    camera = db.add_camera("front", **settings)  # type: ignore[arg-type]
    assert camera.sub is not None
    assert (camera.main.record, camera.sub.record) == (main_records, sub_records)
    assert db.get_camera("front") == camera


def test_a_sub_stream_records_once_it_has_a_budget(db: Database) -> None:
    camera = db.add_camera("front", url=MAIN_URL, retain_bytes=5, sub_url=SUB_URL)
    assert camera.sub is not None and not camera.sub.record
    budgeted = db.update_camera("front", sub_retain_bytes=10)
    assert budgeted.sub == replace(camera.sub, retain_bytes=10, record=True)
    assert budgeted.main == camera.main
    no_url = db.update_camera("front", sub_url="")
    assert no_url.sub is not None and not no_url.sub.record
    again = db.update_camera("front", sub_url=SUB_URL, sub_retain_bytes=0)
    assert again.sub is not None and not again.sub.record
    assert db.update_camera("front", url="").main.record is False


def test_update_camera_adds_a_missing_sub_stream(
    db: Database, camera: Camera, dir_id: int, disk2: int
) -> None:
    assert camera.sub is None
    updated = db.update_camera("front", sub_url=SUB_URL, sub_retain_bytes=1 << 20,
                               sub_sample_file_dir=disk2)
    sub = updated.sub
    assert sub is not None
    assert (sub.camera_id, sub.type, sub.url, sub.record, sub.retain_bytes, sub.max_age_days,
            sub.sample_file_dir_id, sub.next_recording_id) == (
        camera.id, SUB, SUB_URL, True, 1 << 20, None, disk2, 1)
    assert updated.main == camera.main and sub.id != camera.main.id
    assert db.list_streams() == [camera.main, sub]
    # A second edit changes that same sub stream, adding no other.
    edited = db.update_camera("front", sub_retain_bytes=7)
    assert edited.sub == replace(sub, retain_bytes=7)
    assert len(db.list_streams()) == 2


def test_delete_camera_removes_its_streams(db: Database, disk2: int) -> None:
    camera = db.add_camera("front", url=MAIN_URL, sub_url=SUB_URL, sub_retain_bytes=1,
                           sub_sample_file_dir="disk2")
    kept = db.add_camera("back", url=MAIN_URL)
    db.delete_camera("front")
    for stream in camera.streams:
        with pytest.raises(UnknownStreamError, match=f"no stream with id {stream.id}"):
            db.get_stream(stream.id)
    assert db.list_streams() == [kept.main]
    assert db.list_cameras() == [kept]
    assert db.list_streams(disk2) == []
    db.remove_sample_file_dir("disk2")  # no stream uses it any more


# ---- sample file directories ----------------------------------------------------------


def test_sample_file_dir_records_an_absolute_path_and_two_uuids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Database.create(tmp_path / "db", "sample") as db:
        row = db.sample_file_dir(DEFAULT_DIR_NAME)
        assert db.sample_file_dir(row.id) == row
        assert db.list_sample_file_dirs() == [row]
    assert (row.name, row.path) == (DEFAULT_DIR_NAME, str(tmp_path / "sample"))
    assert len(row.uuid) == len(row.db_uuid) == 16 and row.uuid != row.db_uuid
    with Database.open(tmp_path / "db", read_only=True) as reader:
        assert reader.sample_file_dir(DEFAULT_DIR_NAME) == row


def test_create_defaults_the_sample_dir_to_sample_next_to_the_database(tmp_path: Path) -> None:
    with Database.create(tmp_path / "db") as db:
        assert db.sample_file_dir(DEFAULT_DIR_NAME).path == str(tmp_path / "sample")


def test_add_and_remove_sample_file_dirs(db: Database, dir_id: int, tmp_path: Path) -> None:
    default = db.sample_file_dir(dir_id)
    disk2 = db.add_sample_file_dir("disk2", tmp_path / "disk2")
    elsewhere = Path(os.path.abspath(os.sep)) / "moonfire-test-disk3"  # a path, never created
    disk3 = db.add_sample_file_dir("disk3", str(elsewhere))
    assert (disk2.name, disk2.path, disk3.name, disk3.path) == (
        "disk2", str(tmp_path / "disk2"), "disk3", str(elsewhere))
    assert len({default.id, disk2.id, disk3.id}) == 3
    assert len({default.uuid, disk2.uuid, disk3.uuid}) == 3
    assert default.db_uuid == disk2.db_uuid == disk3.db_uuid
    # Stored relative inside the database's folder, absolute elsewhere.
    assert db.stored_sample_file_dir_path(disk2.id) == "disk2"
    assert db.stored_sample_file_dir_path(disk3.id) == str(elsewhere)
    assert db.list_sample_file_dirs() == [default, disk2, disk3]
    assert db.sample_file_dir(disk2.id) == db.sample_file_dir("disk2") == disk2
    assert not (tmp_path / "disk2").exists()  # SampleFileDir.create makes the directory

    assert db.remove_sample_file_dir("disk2") == disk2
    assert db.remove_sample_file_dir(disk3.id) == disk3
    assert db.list_sample_file_dirs() == [default]
    with pytest.raises(UnknownSampleFileDirError, match="no sample file directory 'disk2'"):
        db.sample_file_dir("disk2")
    with pytest.raises(UnknownSampleFileDirError,
                       match=f"no sample file directory with id {disk2.id}"):
        db.sample_file_dir(disk2.id)
    with pytest.raises(UnknownSampleFileDirError, match="no sample file directory 'disk2'"):
        db.remove_sample_file_dir("disk2")
    with pytest.raises(TypeError, match="by its id \\(int\\) or name \\(str\\)"):
        db.sample_file_dir(1.0)  # type: ignore[arg-type]


def test_a_duplicate_sample_file_dir_name_or_path_is_refused(
    db: Database, tmp_path: Path
) -> None:
    disk2 = db.add_sample_file_dir("disk2", tmp_path / "disk2")
    with pytest.raises(InvalidConfigError,
                       match="sample file directory 'disk2' already has the name 'disk2'"):
        db.add_sample_file_dir("disk2", tmp_path / "disk3")
    with pytest.raises(InvalidConfigError, match="sample file directory 'disk2' already has the "
                                                 f"path {re.escape(str(tmp_path / 'disk2'))}"):
        db.add_sample_file_dir("disk3", tmp_path / "disk2")
    # The first directory, spelt another way.
    with pytest.raises(InvalidConfigError,
                       match=f"sample file directory '{DEFAULT_DIR_NAME}' already has the path"):
        db.add_sample_file_dir("disk3", str(tmp_path / "x" / ".." / "sample"))
    for name in ("", " disk3", "disk3 "):
        with pytest.raises(InvalidConfigError, match="non-empty string without surrounding"):
            db.add_sample_file_dir(name, tmp_path / "disk3")
    assert [d.name for d in db.list_sample_file_dirs()] == [DEFAULT_DIR_NAME, disk2.name]


def test_a_sample_file_dir_in_use_cannot_be_removed(
    db: Database, dir_id: int, disk2: int
) -> None:
    db.add_camera("front", url=MAIN_URL, sample_file_dir="disk2", sub_url=SUB_URL,
                  sub_retain_bytes=1, sub_sample_file_dir=disk2)
    with pytest.raises(SampleFileDirInUseError,
                       match="'disk2' .* is used by streams front/main, front/sub; move them"):
        db.remove_sample_file_dir("disk2")
    db.update_camera("front", sample_file_dir=DEFAULT_DIR_NAME)  # no recordings: it may move
    with pytest.raises(SampleFileDirInUseError, match="is used by stream front/sub; move it"):
        db.remove_sample_file_dir(disk2)
    db.update_camera("front", sub_sample_file_dir=dir_id)
    assert db.list_streams(disk2) == []

    with db.transaction() as tx:
        uuid = tx.reserve_sample_file(disk2)
    with pytest.raises(SampleFileDirInUseError, match="'disk2' .* still has 1 reserved sample"):
        db.remove_sample_file_dir("disk2")
    with db.transaction() as tx:
        tx.mark_sample_files_deleted([uuid])
    db.remove_sample_file_dir("disk2")
    assert [d.name for d in db.list_sample_file_dirs()] == [DEFAULT_DIR_NAME]


def test_a_stream_with_recordings_cannot_move_to_another_dir(
    db: Database, stream_id: int, dir_id: int, disk2: int, entry_id: int
) -> None:
    cid = save(db, stream_id, entry_id)
    before = db.get_camera("front")
    with pytest.raises(SampleFileDirInUseError,
                       match="stream front/main has 1 recordings in its sample file directory"):
        db.update_camera("front", sample_file_dir="disk2", retain_bytes=5)
    assert db.get_camera("front") == before  # nothing changed, not even the budget
    # Its own directory is no move.
    assert db.update_camera("front", sample_file_dir=dir_id).main == before.main

    with db.transaction() as tx:
        tx.mark_sample_files_deleted(tx.delete_recordings([db.get_recording(cid)]))
    moved = db.update_camera("front", sample_file_dir="disk2")
    assert moved.main == replace(before.main, sample_file_dir_id=disk2)
    cid = save(db, stream_id, entry_id)
    assert cid & 0xFFFFFFFF == 2  # ids go on
    assert set(db.list_all_recording_uuids(disk2).values()) == {cid}
    assert db.list_all_recording_uuids(dir_id) == {}


def test_a_file_reserved_in_another_dir_than_its_streams_is_rejected(
    db: Database, stream_id: int, dir_id: int, disk2: int, entry_id: int
) -> None:
    with db.transaction() as tx:
        uuid = tx.reserve_sample_file(dir_id)
    db.update_camera("front", sample_file_dir="disk2")  # moved while the file was written
    with pytest.raises(
        RecordingRejectedError,
        match=f"uuid {uuidlib.UUID(bytes=uuid)} was reserved in sample file directory {dir_id}, "
              f"but stream {stream_id} records to directory {disk2}",
    ):
        with db.transaction() as tx:
            tx.insert_recording(make_recording(stream_id, uuid, entry_id))
    assert db.list_recordings(stream_id) == []
    # The reservation stays where its file is, for that directory's recovery to unlink.
    assert db.list_reserved_sample_files(dir_id) == [(uuid, STATE_WRITING)]
    assert db.list_reserved_sample_files(disk2) == []
    assert db.get_stream(stream_id).next_recording_id == 1


def test_deleted_recordings_are_reserved_in_their_streams_dir(
    db: Database, dir_id: int, disk2: int, entry_id: int
) -> None:
    camera = db.add_camera("front", url=MAIN_URL, sub_url=SUB_URL, sub_retain_bytes=1,
                           sub_sample_file_dir="disk2")
    assert camera.sub is not None
    on_main = save(db, camera.main.id, entry_id)
    on_sub = save(db, camera.sub.id, entry_id)
    uuids = db.list_all_recording_uuids(dir_id), db.list_all_recording_uuids(disk2)
    assert [set(u.values()) for u in uuids] == [{on_main}, {on_sub}]
    with db.transaction() as tx:
        tx.delete_recordings([db.get_recording(on_main), db.get_recording(on_sub)])
    assert db.list_reserved_sample_files(dir_id) == [(u, STATE_DELETING) for u in uuids[0]]
    assert db.list_reserved_sample_files(disk2) == [(u, STATE_DELETING) for u in uuids[1]]


# ---- sample entries -------------------------------------------------------------------


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


@pytest.mark.parametrize("where", ["inside", "around"])
def test_a_sample_file_dir_inside_or_around_another_is_refused(
    db: Database, tmp_path: Path, where: str
) -> None:
    first = db.list_sample_file_dirs()[0].path
    path = os.path.join(first, "nested") if where == "inside" else os.path.dirname(first)
    with pytest.raises(InvalidConfigError, match="one inside the other"):
        db.add_sample_file_dir("disk2", path)
    assert [d.path for d in db.list_sample_file_dirs()] == [first]
