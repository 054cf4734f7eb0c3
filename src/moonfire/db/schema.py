"""The SQLite schema: creation, version check and upgrade.

Version 1 is Moonfire NVR's era-1 ``schema.sql`` (brief §1.2).  Version 2 adds
what this recorder needs on top: ``camera.url`` and ``camera.rotate_interval_sec``,
unique camera short names, the ``meta`` and ``sample_file_dir`` tables, and a
``recording_cover`` index that really covers ``RecordingRow``.  Version 3 adds
Moonfire's ``open`` table (one row per read-write open of the sample file
directory) and ``sample_file_dir.last_complete_open_id``, which the directory's
``meta`` file repeats (brief §5.3), so a restored older database or a copy
sharing the directory is refused before it can delete anything.

A new database is built by running the version-1 tables and then the very same
upgrade step an existing version-1 database gets, so a created and an upgraded
database have identical schemas by construction (tests compare them).  The
``version`` table gets one row per creation or upgrade; its ``id`` is the version.
"""

from __future__ import annotations

import os
import sqlite3
import uuid as uuidlib
from pathlib import Path

from .errors import DatabaseVersionError, NotAMoonfireDatabaseError

SCHEMA_VERSION = 3
OLDEST_UPGRADABLE_VERSION = 1
#: Set before the first table exists; it cannot change once the file is in WAL mode.
PAGE_SIZE = 16384
#: Recordings are shorter than 5 minutes (brief §1.2), so a time-range query only
#: needs to look this far before the range start.
MAX_RECORDING_DURATION_90K = 5 * 60 * 90000

_NOW = "cast(strftime('%s', 'now') as int)"

#: The era-1 tables, without their ``version`` row (the caller inserts that).
V1_TABLES: tuple[str, ...] = (
    """create table version (
         id integer primary key,
         unix_time integer not null,
         notes text
       )""",
    """create table camera (
         id integer primary key,
         uuid blob unique not null check (length(uuid) = 16),
         short_name text not null,
         description text,
         host text,
         username text,
         password text,
         main_rtsp_path text,
         sub_rtsp_path text,
         retain_bytes integer not null check (retain_bytes >= 0),
         next_recording_id integer not null check (next_recording_id >= 0)
       )""",
    f"""create table recording (
         composite_id integer primary key,
         camera_id integer not null references camera (id),
         run_offset integer not null,
         flags integer not null,
         sample_file_bytes integer not null check (sample_file_bytes > 0),
         start_time_90k integer not null check (start_time_90k > 0),
         duration_90k integer not null
             check (duration_90k >= 0 and duration_90k < {MAX_RECORDING_DURATION_90K}),
         local_time_delta_90k integer not null,
         video_samples integer not null check (video_samples > 0),
         video_sync_samples integer not null check (video_sync_samples > 0),
         video_sample_entry_id integer references video_sample_entry (id),
         check (composite_id >> 32 = camera_id)
       )""",
    """create index recording_cover on recording (
         camera_id, start_time_90k,
         duration_90k, video_samples, video_sample_entry_id, sample_file_bytes
       )""",
    """create table recording_playback (
         composite_id integer primary key references recording (composite_id),
         sample_file_uuid blob not null check (length(sample_file_uuid) = 16),
         sample_file_sha1 blob not null check (length(sample_file_sha1) = 20),
         video_index blob not null check (length(video_index) > 0)
       )""",
    """create table reserved_sample_files (
         uuid blob primary key check (length(uuid) = 16),
         state integer not null
       ) without rowid""",
    """create table video_sample_entry (
         id integer primary key,
         sha1 blob unique not null check (length(sha1) = 20),
         width integer not null check (width > 0),
         height integer not null check (height > 0),
         data blob not null check (length(data) > 86)
       )""",
)

#: Schema changes from version 1 to 2 (rows for ``meta``/``sample_file_dir`` come after).
V1_TO_V2: tuple[str, ...] = (
    # The full source: rtsp://host/path, a file path, or testsrc://...
    "alter table camera add column url text",
    """alter table camera add column rotate_interval_sec integer not null default 60
         check (rotate_interval_sec > 0)""",
    # Era 1 recorded rtsp://host + main_rtsp_path; credentials stay in their columns.
    """update camera set url = 'rtsp://' || host || coalesce(main_rtsp_path, '')
         where host is not null""",
    # SQLite cannot add UNIQUE to an existing column; a unique index is the same constraint.
    "create unique index camera_short_name on camera (short_name)",
    # da4e439's three columns (era-1 list queries read them), plus local_time_delta_90k,
    # which RecordingRow carries: without it every listed row would cost a table lookup.
    "drop index recording_cover",
    """create index recording_cover on recording (
         camera_id, start_time_90k,
         duration_90k, video_samples, video_sample_entry_id, sample_file_bytes,
         video_sync_samples, run_offset, flags, local_time_delta_90k
       )""",
    # Exactly one row: this database's uuid, repeated in the sample directory's meta file.
    "create table meta (db_uuid blob not null check (length(db_uuid) = 16))",
    """create table sample_file_dir (
         id integer primary key check (id = 1),
         path text not null,
         uuid blob not null check (length(uuid) = 16)
       )""",
)

#: Schema changes from version 2 to 3.
V2_TO_V3: tuple[str, ...] = (
    # One row per read-write open of the sample file directory (brief §5.3); end_time_90k
    # stays null (this release does not record when an open ends).
    """create table open (
         id integer primary key,
         uuid blob unique not null check (length(uuid) = 16),
         start_time_90k integer not null,
         end_time_90k integer
       )""",
    # The last open that completed the dance with the directory's meta file; null until
    # the first read-write open after the upgrade.
    "alter table sample_file_dir add column last_complete_open_id integer references open (id)",
)


def create(conn: sqlite3.Connection, sample_dir_path: str) -> None:
    """Builds the current schema in an empty database, inside the caller's transaction."""
    for statement in V1_TABLES:
        conn.execute(statement)
    _apply_v1_to_v2(conn, sample_dir_path)
    _apply_v2_to_v3(conn)
    _record_version(conn, SCHEMA_VERSION, "db creation")


def upgrade(conn: sqlite3.Connection, from_version: int, sample_dir_path: str) -> None:
    """Brings a version-1 or -2 database to ``SCHEMA_VERSION`` inside the caller's
    transaction (1 -> 2 -> 3)."""
    if from_version == 1:
        _upgrade_v1_to_v2(conn, sample_dir_path)
    elif from_version != 2:
        raise AssertionError(f"no upgrade path from schema version {from_version}")
    _apply_v2_to_v3(conn)
    _record_version(conn, 3, "upgrade from version 2")


def _upgrade_v1_to_v2(conn: sqlite3.Connection, sample_dir_path: str) -> None:
    duplicates = [
        name
        for (name,) in conn.execute(
            "select short_name from camera group by short_name having count(*) > 1"
        )
    ]
    if duplicates:
        raise DatabaseVersionError(
            f"cannot upgrade to schema version 2: camera short names must be unique, "
            f"but {', '.join(map(repr, duplicates))} appear more than once"
        )
    _apply_v1_to_v2(conn, sample_dir_path)
    _record_version(conn, 2, "upgrade from version 1")


#: The sample file directory's name inside a data directory (design.md), unless ``init`` is told
#: otherwise; ``moonfire.storage.data_dir`` uses it too.
SAMPLE_DIR_NAME = "sample"


def default_sample_dir_path(db_path: Path) -> str:
    """``<data-dir>/sample`` next to ``<data-dir>/db`` (design.md), for upgraded databases."""
    return os.path.join(os.path.dirname(os.path.abspath(db_path)), SAMPLE_DIR_NAME)


def read_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of the database at ``path``; refuses non-moonfire files."""
    try:
        (version,) = conn.execute("select max(id) from version").fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" not in str(e):
            raise
        raise NotAMoonfireDatabaseError(
            f"{path} is not a moonfire database: it has no version table"
        ) from e
    except sqlite3.DatabaseError as e:  # "file is not a database"
        raise NotAMoonfireDatabaseError(f"{path} is not a moonfire database: {e}") from e
    if version is None:
        raise NotAMoonfireDatabaseError(
            f"{path} is not a moonfire database: its version table is empty"
        )
    return version


def check_version(version: int, path: Path) -> None:
    """Raises ``DatabaseVersionError`` unless ``version`` is usable (possibly after upgrade)."""
    if version > SCHEMA_VERSION:
        raise DatabaseVersionError(
            f"{path}: database schema version {version} is newer than this moonfire "
            f"supports ({SCHEMA_VERSION}); upgrade moonfire"
        )
    if version < OLDEST_UPGRADABLE_VERSION:
        raise DatabaseVersionError(
            f"{path}: database schema version {version} is too old (this moonfire "
            f"upgrades versions {OLDEST_UPGRADABLE_VERSION} to {SCHEMA_VERSION})"
        )


def _apply_v1_to_v2(conn: sqlite3.Connection, sample_dir_path: str) -> None:
    for statement in V1_TO_V2:
        conn.execute(statement)
    conn.execute("insert into meta (db_uuid) values (?)", (uuidlib.uuid4().bytes,))
    conn.execute(
        "insert into sample_file_dir (id, path, uuid) values (1, ?, ?)",
        (sample_dir_path, uuidlib.uuid4().bytes),
    )


def _apply_v2_to_v3(conn: sqlite3.Connection) -> None:
    for statement in V2_TO_V3:
        conn.execute(statement)


def _record_version(conn: sqlite3.Connection, version: int, notes: str) -> None:
    conn.execute(
        f"insert into version (id, unix_time, notes) values (?, {_NOW}, ?)", (version, notes)
    )
