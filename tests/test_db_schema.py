"""moonfire.db schema: connection pragmas, constraints, versions and the v1 -> v2 -> v3 -> v4
-> v5 upgrade (v2 -> ... and v3 -> ... on the releases' own data directories, ``tests/data``:
``tests/test_open_scheme.py``; v4 -> v5 on a version-4 database built here)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from moonfire.db import (
    MAIN,
    SCHEMA_VERSION,
    SUB,
    Database,
    DatabaseError,
    DatabaseVersionError,
    NotAMoonfireDatabaseError,
    schema,
)
from moonfire.db.errors import InvalidConfigError
from moonfire.db.schema import DEFAULT_DIR_NAME
from tests.support.implementations import FIXTURE_V2, TESTDATA

FIXTURE_V3 = TESTDATA / "schema-v3"

# Era 1's schema.sql (brief §1.2, commit c82f038), written out independently of the
# module's copy so the upgrade is tested against what era 1 really created.
ERA1_SCHEMA = """
create table version (id integer primary key, unix_time integer not null, notes text);
create table camera (
  id integer primary key,
  uuid blob unique not null check (length(uuid) = 16),
  short_name text not null,
  description text, host text, username text, password text,
  main_rtsp_path text, sub_rtsp_path text,
  retain_bytes integer not null check (retain_bytes >= 0),
  next_recording_id integer not null check (next_recording_id >= 0)
);
create table recording (
  composite_id integer primary key,
  camera_id integer not null references camera (id),
  run_offset integer not null,
  flags integer not null,
  sample_file_bytes integer not null check (sample_file_bytes > 0),
  start_time_90k integer not null check (start_time_90k > 0),
  duration_90k integer not null check (duration_90k >= 0 and duration_90k < 5*60*90000),
  local_time_delta_90k integer not null,
  video_samples integer not null check (video_samples > 0),
  video_sync_samples integer not null check (video_sync_samples > 0),
  video_sample_entry_id integer references video_sample_entry (id),
  check (composite_id >> 32 = camera_id)
);
create index recording_cover on recording (
  camera_id, start_time_90k, duration_90k, video_samples, video_sample_entry_id,
  sample_file_bytes
);
create table recording_playback (
  composite_id integer primary key references recording (composite_id),
  sample_file_uuid blob not null check (length(sample_file_uuid) = 16),
  sample_file_sha1 blob not null check (length(sample_file_sha1) = 20),
  video_index blob not null check (length(video_index) > 0)
);
create table reserved_sample_files (
  uuid blob primary key check (length(uuid) = 16),
  state integer not null
) without rowid;
create table video_sample_entry (
  id integer primary key,
  sha1 blob unique not null check (length(sha1) = 20),
  width integer not null check (width > 0),
  height integer not null check (height > 0),
  data blob not null check (length(data) > 86)
);
insert into version (id, unix_time, notes)
  values (1, cast(strftime('%s', 'now') as int), 'db creation');
"""

CAMERA_UUID = uuidlib.UUID("6b0e0b4b-1e0f-4a1b-9c3e-2a1f0c9d8e7f").bytes
SAMPLE_UUID = uuidlib.UUID("00000000-0000-4000-8000-000000000001").bytes
ENTRY = b"\0\0\0\x57avc1" + b"\0" * 79  # 87 bytes: the shortest the schema allows
START_90K = 1_486_000_000 * 90000  # 2017-02-02


def make_era1_database(path: Path, *camera_names: str, sub_rtsp_path: str | None = None) -> None:
    """An era-1 database (as `moonfire-nvr init` made it) holding one recording per camera."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma page_size = 16384")
    conn.execute("pragma journal_mode = wal")
    conn.executescript(ERA1_SCHEMA)
    conn.execute("insert into video_sample_entry (id, sha1, width, height, data)"
                 " values (1, ?, 1920, 1080, ?)", (b"\x01" * 20, ENTRY))
    for camera_id, name in enumerate(camera_names, start=1):
        conn.execute(
            "insert into camera (id, uuid, short_name, host, username, password,"
            " main_rtsp_path, sub_rtsp_path, retain_bytes, next_recording_id)"
            " values (?, ?, ?, '192.0.2.1', 'admin', 'pw', '/main', ?, 1000000, 2)",
            (camera_id, CAMERA_UUID[:-1] + bytes([camera_id]), name, sub_rtsp_path),
        )
        cid = camera_id << 32 | 1
        conn.execute("insert into recording values (?, ?, 0, 1, 42, ?, 90000, 5, 1, 1, 1)",
                     (cid, camera_id, START_90K))
        conn.execute("insert into recording_playback values (?, ?, ?, x'0254')",
                     (cid, SAMPLE_UUID[:-1] + bytes([camera_id]), b"\x22" * 20))
    conn.execute("insert into reserved_sample_files values (?, 1)", (b"\x33" * 16,))
    conn.close()


def normalized_sql(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """Every table's and index's ``create`` statement as ``sqlite_master`` has it, with
    whitespace and identifier quotes (``alter table ... rename`` adds them) normalized."""
    def normalize(sql: str) -> str:
        sql = re.sub(r"\s+", " ", sql.replace('"', "")).strip().lower()
        return re.sub(r"\( | \)", lambda m: m.group(0).strip(), sql)

    return {
        (kind, name): normalize(sql)
        for kind, name, sql in conn.execute(
            "select type, name, sql from sqlite_master where sql is not null")
    }


def schema_shape(conn: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns and indexes with their columns, for comparing schemas."""
    names = [name for (name,) in conn.execute(
        "select name from sqlite_master where name not like 'sqlite_%' order by name")]
    shape: dict[str, object] = {}
    for name in names:
        shape[name] = (conn.execute(f"pragma table_info({name})").fetchall()
                       + conn.execute(f"pragma index_list({name})").fetchall()
                       + conn.execute(f"pragma index_xinfo({name})").fetchall())
    return shape


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "db"
    Database.create(path, str(tmp_path / "sample")).close()
    yield path


@pytest.fixture
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection (foreign keys on) to a fresh database with one camera, its main
    stream 1 in sample file directory 1, and a sample entry."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("pragma foreign_keys = on")
    conn.execute("insert into camera (id, uuid, short_name) values (1, ?, 'front')",
                 (CAMERA_UUID,))
    conn.execute("insert into stream (id, camera_id, type, url, record, retain_bytes,"
                 " sample_file_dir_id, next_recording_id) values (1, 1, 'main', '', 1, 0, 1, 1)")
    conn.execute("insert into video_sample_entry (id, sha1, width, height, data)"
                 " values (1, ?, 1920, 1080, ?)", (b"\x01" * 20, ENTRY))
    yield conn
    conn.close()


# ---- connection setup -----------------------------------------------------------------


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_connections_use_wal_full_sync_and_foreign_keys(db_path: Path, read_only: bool) -> None:
    with Database.open(db_path, read_only=read_only) as db:
        conn = db._conn
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
        assert conn.execute("pragma synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("pragma foreign_keys").fetchone() == (1,)
        assert conn.execute("pragma page_size").fetchone() == (16384,)


def test_fresh_database_has_one_version_row_and_one_meta_row(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    assert conn.execute("select id, notes from version").fetchall() == [
        (SCHEMA_VERSION, "db creation")]
    assert conn.execute("select count(*) from meta").fetchone() == (1,)
    conn.close()


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("precious")
    with pytest.raises(DatabaseError, match="already exists"):
        Database.create(tmp_path / "db", str(tmp_path / "sample"))
    assert (tmp_path / "db").read_text() == "precious"


# ---- constraints ----------------------------------------------------------------------


def insert_recording_row(conn: sqlite3.Connection, **overrides: object) -> None:
    values = dict(composite_id=1 << 32 | 1, stream_id=1, run_offset=0, flags=0,
                  sample_file_bytes=42, start_time_90k=START_90K, duration_90k=90000,
                  local_time_delta_90k=0, video_samples=1, video_sync_samples=1,
                  video_sample_entry_id=1)
    values.update(overrides)
    conn.execute(f"insert into recording ({', '.join(values)})"
                 f" values ({', '.join('?' * len(values))})", tuple(values.values()))


@pytest.mark.parametrize(
    "overrides",
    [{"duration_90k": -1}, {"duration_90k": 27_000_000}, {"sample_file_bytes": 0},
     {"start_time_90k": 0}, {"video_samples": 0}, {"video_sync_samples": 0},
     {"composite_id": 2 << 32 | 1}],
    ids=["negative-duration", "five-minutes", "zero-bytes", "zero-start", "no-samples",
         "no-sync-samples", "composite-id-mismatch"],
)
def test_recording_checks_reject_bad_rows(
    raw: sqlite3.Connection, overrides: dict[str, object]
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        insert_recording_row(raw, **overrides)
    insert_recording_row(raw, duration_90k=27_000_000 - 1)  # the limit itself is exclusive


@pytest.mark.parametrize(
    "statement",
    ["insert into reserved_sample_files values (x'00', 1, 0)",
     "insert into reserved_sample_files values (zeroblob(16), 2, 0)",  # no directory 2
     "insert into recording_playback values (1, x'00', x'00', x'00')",
     "update stream set retain_bytes = -1",
     "update stream set record = 2",
     "update stream set max_age_days = 0",
     "update stream set type = 'third'",
     "update stream set sample_file_dir_id = 2",
     "update stream set camera_id = 2",
     "update stream set next_recording_id = -1",
     "insert into stream (camera_id, type, record, retain_bytes, sample_file_dir_id,"
     " next_recording_id) values (1, 'main', 1, 0, 1, 1)",  # a second main stream
     "update camera set rotate_interval_sec = 0",
     "insert into camera (uuid, short_name) values (x'00', 'short-uuid')",
     "insert into video_sample_entry (sha1, width, height, data)"
     " values (zeroblob(20), 1, 1, zeroblob(86))",
     "insert into video_sample_entry (sha1, width, height, data)"
     " values (zeroblob(20), 0, 1, zeroblob(87))",
     "insert into sample_file_dir (name, path, uuid) values ('x', '/x', zeroblob(15))",
     "insert into sample_file_dir (name, path, uuid) values ('', '/x', zeroblob(16))",
     f"insert into sample_file_dir (name, path, uuid) values ('{DEFAULT_DIR_NAME}', '/x',"
     " zeroblob(16))",
     "insert into sample_file_dir (name, path, uuid) values ('x', 'sample', zeroblob(16))",
     "insert into meta (db_uuid) values (zeroblob(15))"],
)
def test_other_checks_reject_bad_rows(raw: sqlite3.Connection, statement: str) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute(statement)


def test_camera_short_names_are_unique(raw: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE.*short_name"):
        raw.execute("insert into camera (uuid, short_name) values (zeroblob(16), 'front')")


def test_foreign_keys_forbid_deleting_a_recording_before_its_playback(
    raw: sqlite3.Connection,
) -> None:
    insert_recording_row(raw)
    raw.execute("insert into recording_playback values (?, zeroblob(16), zeroblob(20), x'01')",
                (1 << 32 | 1,))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        raw.execute("delete from recording")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        insert_recording_row(raw, composite_id=1 << 32 | 2, video_sample_entry_id=9)


@pytest.mark.parametrize(
    ("query", "params"),
    [("select count(*), coalesce(sum(sample_file_bytes), 0), coalesce(sum(duration_90k), 0)"
      " from recording where stream_id = ?", (1,)),
     ("select composite_id, stream_id, run_offset, flags, sample_file_bytes, start_time_90k,"
      " duration_90k, local_time_delta_90k, video_samples, video_sync_samples,"
      " video_sample_entry_id from recording where stream_id = ? and start_time_90k > ?"
      " and start_time_90k < ? and start_time_90k + duration_90k > ?"
      " order by start_time_90k", (1, 0, 10, 5))],
    ids=["stream_usage", "list_recordings_by_time"],
)
def test_listing_queries_read_only_the_covering_index(
    raw: sqlite3.Connection, query: str, params: tuple[int, ...]
) -> None:
    plan = " ".join(row[-1] for row in raw.execute(f"explain query plan {query}", params))
    assert "USING COVERING INDEX recording_cover" in plan
    assert "TEMP B-TREE" not in plan


# ---- versions -------------------------------------------------------------------------


def test_missing_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(NotAMoonfireDatabaseError, match="no such database file"):
        Database.open(tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_text_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not SQLite\n" * 100)
    with pytest.raises(NotAMoonfireDatabaseError, match=f"{path} is not a moonfire database"):
        Database.open(path)


def test_sqlite_file_without_version_table(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("create table unrelated (x)").connection.close()
    with pytest.raises(NotAMoonfireDatabaseError, match="it has no version table"):
        Database.open(path)


@pytest.mark.parametrize(
    ("version", "message"),
    [(0, "database schema version 0 is too old"),
     (SCHEMA_VERSION + 1,
      rf"database schema version {SCHEMA_VERSION + 1} is newer than this moonfire supports "
      rf"\({SCHEMA_VERSION}\); upgrade moonfire")],
)
@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_unusable_versions_are_refused(
    db_path: Path, version: int, message: str, read_only: bool
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("delete from version")
    conn.execute("insert into version values (?, 0, 'test')", (version,))
    conn.close()
    with pytest.raises(DatabaseVersionError, match=message):
        Database.open(db_path, read_only=read_only)


def test_upgrade_from_era1_keeps_recordings_and_adds_the_new_schema(tmp_path: Path) -> None:
    path = tmp_path / "db"
    make_era1_database(path, "front")
    with Database.open(path) as db:
        camera = db.get_camera("front")
        main = camera.main
        assert (camera.username, camera.password, camera.rotate_interval_sec) == (
            "admin", "pw", 60)
        assert (main.id, main.type, main.url, main.record, main.retain_bytes,
                main.max_age_days, main.next_recording_id) == (
            camera.id, MAIN, "rtsp://192.0.2.1/main", True, 1000000, None, 2)
        assert camera.sub is None  # era 1 had no sub stream path
        (row, uuid), = db.list_oldest_recordings(main.id)
        assert (row.composite_id, row.stream_id, row.sample_file_bytes, row.start_time_90k,
                row.local_time_delta_90k, row.has_trailing_zero) == (
            1 << 32 | 1, main.id, 42, START_90K, 5, True)
        assert uuid == SAMPLE_UUID[:-1] + b"\x01"
        assert db.stream_usage(main.id) == (1, 42, 90000)
        (directory,) = db.list_sample_file_dirs()
        assert (directory.name, directory.path) == (DEFAULT_DIR_NAME, str(tmp_path / "sample"))
        assert main.sample_file_dir_id == directory.id
        assert db.list_reserved_sample_files(directory.id) == [(b"\x33" * 16, 1)]
        assert db.add_camera("back").id == 2

    conn = sqlite3.connect(path)
    assert [v for (v,) in conn.execute("select id from version order by id")] == [
        1, 2, 3, 4, 5, 6, 7]
    upgraded = schema_shape(conn)
    conn.close()
    fresh = sqlite3.connect(tmp_path / "fresh")
    Database.create(tmp_path / "fresh", "/sample").close()
    assert upgraded == schema_shape(fresh)
    fresh.close()


def test_upgrade_from_era1_makes_a_sub_stream_path_a_sub_stream_that_does_not_record(
    tmp_path: Path,
) -> None:
    make_era1_database(tmp_path / "db", "front", "back", sub_rtsp_path="/sub")
    with Database.open(tmp_path / "db") as db:
        for camera in db.list_cameras():
            assert camera.main.id == camera.id
            sub = camera.sub
            assert sub is not None
            assert (sub.camera_id, sub.type, sub.url, sub.record, sub.retain_bytes,
                    sub.sample_file_dir_id, sub.next_recording_id) == (
                camera.id, SUB, "rtsp://192.0.2.1/sub", False, 0, camera.main.sample_file_dir_id,
                1)
            assert db.list_recordings(sub.id) == []
        assert len({s.id for s in db.list_streams()}) == 4


def _upgraded_copy(source: Path, tmp_path: Path) -> Path:
    """A copy of a release's data directory (never the fixture itself), opened read-write
    once: upgraded."""
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    Database.open(copy / "db").close()
    return copy / "db"


def test_created_and_upgraded_databases_have_identical_schemas(tmp_path: Path) -> None:
    """Every upgrade path ends in exactly the statements ``create`` runs: same tables, same
    columns, same CHECKs and foreign keys, same indexes."""
    Database.create(tmp_path / "fresh", str(tmp_path / "sample")).close()
    make_era1_database(tmp_path / "era1", "front")
    Database.open(tmp_path / "era1").close()
    upgraded = {
        "era 1": tmp_path / "era1",
        "schema 2": _upgraded_copy(FIXTURE_V2, tmp_path),
        "schema 3": _upgraded_copy(FIXTURE_V3, tmp_path),
    }
    with closing(sqlite3.connect(tmp_path / "fresh")) as conn:
        created = normalized_sql(conn)
        assert conn.execute("select max(id) from version").fetchone() == (SCHEMA_VERSION,)
    assert {name for kind, name in created if kind == "table"} >= {
        "camera", "stream", "sample_file_dir", "recording", "reserved_sample_files"}
    assert "camera_id integer not null references camera" in created[("table", "stream")]
    for what, path in upgraded.items():
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("select max(id) from version").fetchone() == (SCHEMA_VERSION,)
            assert normalized_sql(conn) == created, what
            assert conn.execute("pragma foreign_key_check").fetchall() == [], what
            assert conn.execute("pragma integrity_check").fetchall() == [("ok",)], what


def test_upgrade_stores_the_given_sample_dir(tmp_path: Path) -> None:
    make_era1_database(tmp_path / "db", "front")
    with Database.open(tmp_path / "db", upgrade_sample_dir_path="/srv/video") as db:
        assert db.sample_file_dir(DEFAULT_DIR_NAME).path == "/srv/video"


def test_read_only_open_does_not_upgrade(tmp_path: Path) -> None:
    make_era1_database(tmp_path / "db", "front")
    with pytest.raises(DatabaseVersionError, match="version 1 must be upgraded"):
        Database.open(tmp_path / "db", read_only=True)


def test_failed_upgrade_leaves_the_database_at_version_1(tmp_path: Path) -> None:
    path = tmp_path / "db"
    make_era1_database(path, "front", "front")
    with pytest.raises(DatabaseVersionError, match="'front' appear more than once"):
        Database.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("select max(id) from version").fetchone() == (1,)
    columns = [c[1] for c in conn.execute("pragma table_info(camera)")]
    assert "url" not in columns
    conn.close()
    assert (tmp_path / "db.v1-backup").is_file()  # copied aside before the attempt


# ---- version 5: a stream's RTSP transport ----------------------------------------------


def make_v4_database(path: Path, sample_dir: Path) -> None:
    """A version-4 database as the previous release created it (its steps, then version 4),
    with a camera and a main stream recording a UDP-only camera's URL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma page_size = 16384")
    conn.execute("pragma journal_mode = wal")
    conn.execute("begin")
    for statement in schema.V1_TABLES:
        conn.execute(statement)
    schema._apply_v1_to_v2(conn, str(sample_dir))
    schema._apply_v2_to_v3(conn)
    schema._apply_v3_to_v4(conn)
    schema._record_version(conn, 4, "db creation")
    conn.execute("insert into camera (id, uuid, short_name) values (1, ?, 'front')",
                 (CAMERA_UUID,))
    conn.execute("insert into stream (id, camera_id, type, url, record, retain_bytes,"
                 " sample_file_dir_id, next_recording_id)"
                 " values (1, 1, 'main', 'rtsp://192.0.2.1/main', 1, 1000, 1, 7)")
    conn.execute("commit")
    conn.close()


def test_upgrade_from_v4_gives_streams_auto_transport_after_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "db"
    make_v4_database(path, tmp_path / "sample")
    with Database.open(path) as db:
        stream = db.get_camera("front").main
        assert (stream.transport, stream.url, stream.next_recording_id) == (
            "auto", "rtsp://192.0.2.1/main", 7)
    assert (tmp_path / "db.v4-backup").is_file()
    with closing(sqlite3.connect(tmp_path / "db.v4-backup")) as backup:
        assert backup.execute("select max(id) from version").fetchone() == (4,)
    Database.create(tmp_path / "fresh", str(tmp_path / "sample")).close()
    with closing(sqlite3.connect(path)) as upgraded, \
            closing(sqlite3.connect(tmp_path / "fresh")) as fresh:
        assert [v for (v,) in upgraded.execute("select id from version order by id")] == [
            4, 5, 6, 7]
        assert normalized_sql(upgraded) == normalized_sql(fresh)


def test_transport_is_stored_per_stream_and_checked(tmp_path: Path, raw) -> None:
    with Database.open(tmp_path / "db") as db:
        camera = db.add_camera("udp-cam", url="rtsp://192.0.2.9/main", retain_bytes=1,
                               transport="udp", sub_url="rtsp://192.0.2.9/sub",
                               sub_retain_bytes=1, sub_transport="tcp")
        assert (camera.main.transport, camera.sub.transport) == ("udp", "tcp")
        assert db.update_camera("udp-cam", transport="auto").main.transport == "auto"
        with pytest.raises(InvalidConfigError, match=r"sub_transport must be one of auto, "
                           r"tcp, udp, got 'http'"):
            db.update_camera("udp-cam", sub_transport="http")
        assert db.get_camera("udp-cam").sub.transport == "tcp"
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute("update stream set transport = 'http' where id = 1")


# ---- version 6: archives -----------------------------------------------------------------


def test_upgrade_from_v5_adds_archives_after_a_backup(tmp_path: Path) -> None:
    """A version-5 database gets the archive tables; its streams archive nowhere."""
    path = tmp_path / "db"
    make_v4_database(path, tmp_path / "sample")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("begin")
    schema._apply_v4_to_v5(conn)
    schema._record_version(conn, 5, "upgrade from version 4")
    conn.execute("commit")
    conn.close()
    with Database.open(path) as db:
        stream = db.get_camera("front").main
        assert (stream.archive_id, stream.archive_days, stream.next_recording_id) == (
            None, None, 7)
        assert db.list_archives() == []
        archive = db.add_archive("offsite", "s3://bucket/site", "http://127.0.0.1:9000")
        assert (archive.bucket, archive.prefix) == ("bucket", "site")
        assert db.update_camera("front", archive="offsite", archive_days=3).main.archive_id \
            == archive.id
    with closing(sqlite3.connect(tmp_path / "db.v5-backup")) as backup:
        assert backup.execute("select max(id) from version").fetchone() == (5,)
    Database.create(tmp_path / "fresh", str(tmp_path / "sample")).close()
    with closing(sqlite3.connect(path)) as upgraded, \
            closing(sqlite3.connect(tmp_path / "fresh")) as fresh:
        assert [v for (v,) in upgraded.execute("select id from version order by id")] == [
            4, 5, 6, 7]
        assert normalized_sql(upgraded) == normalized_sql(fresh)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            upgraded.execute("update stream set archive_days = 0")


# ---- version 7: recordings that live only in the archive ---------------------------------


def test_upgrade_from_v6_lets_archived_recordings_outlive_their_local_file(
        tmp_path: Path) -> None:
    """A version-6 database's archived recordings all still have their local file."""
    path = tmp_path / "db"
    make_v4_database(path, tmp_path / "sample")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("begin")
    schema._apply_v4_to_v5(conn)
    schema._record_version(conn, 5, "upgrade from version 4")
    schema._apply_v5_to_v6(conn)
    schema._record_version(conn, 6, "upgrade from version 5")
    conn.execute("insert into archive (name, url) values ('offsite', 's3://bucket/site')")
    conn.execute(
        "insert into recording_archive (composite_id, archive_id, data_key, manifest_key,"
        " archived_time_sec, sample_file_sha1) values (1 << 32, 1, 'd', 'm', 0, ?)",
        (b"\x01" * 20,))
    conn.execute("commit")
    conn.close()
    Database.open(path).close()
    with closing(sqlite3.connect(tmp_path / "db.v6-backup")) as backup:
        assert backup.execute("select max(id) from version").fetchone() == (6,)
    Database.create(tmp_path / "fresh", str(tmp_path / "sample")).close()
    with closing(sqlite3.connect(path)) as upgraded, \
            closing(sqlite3.connect(tmp_path / "fresh")) as fresh:
        assert upgraded.execute(
            "select composite_id, local_deleted_time_sec from recording_archive").fetchall() \
            == [(1 << 32, None)]
        assert normalized_sql(upgraded) == normalized_sql(fresh)
