"""The SQLite schema: creation, version check and upgrade.

Version 1 is Moonfire NVR's era-1 ``schema.sql`` (brief §1.2).  Version 2 adds
what this recorder needs on top: ``camera.url`` and ``camera.rotate_interval_sec``,
unique camera short names, the ``meta`` and ``sample_file_dir`` tables, and a
``recording_cover`` index that really covers ``RecordingRow``.  Version 3 adds
Moonfire's ``open`` table (one row per read-write open of the sample file
directory) and ``sample_file_dir.last_complete_open_id``, which the directory's
``meta`` file repeats (brief §5.3), so a restored older database or a copy
sharing the directory is refused before it can delete anything.  Version 4
gives cameras streams (brief §5.1): a ``stream`` row per main or sub stream
holds what a camera's row used to (URL, byte budget, next recording id) plus
whether it records, a maximum age and its sample file directory; recordings
belong to a stream (``composite_id = stream_id << 32 | recording_id``); a data
directory may have several named sample file directories; a reservation names
the directory its file is in.  The upgrade gives each camera's main stream the
camera's id, so every composite id (and every exported URL) stays the same.
Version 4 also adds the web API's users and their login sessions (``users.py``).
Version 5 gives each stream its RTSP transport (``stream.transport``: ``tcp``,
``udp`` or ``auto``, TCP then UDP); upgraded streams get ``auto``.
Version 6 adds the S3 archive tier (``moonfire.storage.archive``): named ``archive``
rows (a bucket URL, endpoint and region; never credentials), a stream's
``archive_id``/``archive_days``, and ``recording_archive``, one row per recording whose
objects are stored and checked.  Upgraded streams archive nowhere.
Version 7 lets a recording outlive its local file: ``recording_archive.local_deleted_time_sec``
is set when local retention deletes the sample file of an archived recording (or when
``moonfire archive rebuild`` catalogs a recording that only the archive holds), and the
row then plays from the archive; it is null while the local file exists.

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

SCHEMA_VERSION = 7
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


#: Schema changes from version 3 to 4: tables rebuilt (SQLite can't drop a CHECK or a
#: column used by one), each copied from its predecessor by ``_apply_v3_to_v4``.
V4_TABLES: tuple[str, ...] = (
    # Named, so that streams and the CLI can say which disk; path and uuid unique, so that
    # two rows can't name one directory.
    """create table sample_file_dir_v4 (
         id integer primary key,
         name text unique not null check (length(name) > 0),
         path text unique not null,
         uuid blob unique not null check (length(uuid) = 16),
         last_complete_open_id integer references open (id)
       )""",
    # What is the camera's whatever its streams: names, credentials, rotation.
    """create table camera_v4 (
         id integer primary key,
         uuid blob unique not null check (length(uuid) = 16),
         short_name text not null,
         description text,
         username text,
         password text,
         rotate_interval_sec integer not null default 60 check (rotate_interval_sec > 0)
       )""",
    """create table stream (
         id integer primary key,
         camera_id integer not null references camera (id),
         type text not null check (type in ('main', 'sub')),
         url text not null default '',
         record integer not null check (record in (0, 1)),
         retain_bytes integer not null check (retain_bytes >= 0),
         max_age_days integer check (max_age_days is null or max_age_days > 0),
         sample_file_dir_id integer not null references sample_file_dir (id),
         next_recording_id integer not null check (next_recording_id >= 0),
         unique (camera_id, type)
       )""",
    f"""create table recording_v4 (
         composite_id integer primary key,
         stream_id integer not null references stream (id),
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
         -- The read-write open of the sample file directory that committed it (the API's
         -- openId); null for recordings committed before schema version 4.
         open_id integer references open (id),
         check (composite_id >> 32 = stream_id)
       )""",
    # The directory a reserved file is (to be) in: each directory's syncer recovers its own.
    """create table reserved_sample_files_v4 (
         uuid blob primary key check (length(uuid) = 16),
         sample_file_dir_id integer not null references sample_file_dir (id),
         state integer not null
       ) without rowid""",
    # New in version 4, nothing to copy: the web API's users (web-api.md §1, ``users.py``).
    # ``password_hash`` is a PHC string ``$scrypt$ln=..,r=..,p=..$salt$key`` (null: no
    # password, no login); permissions and preferences are JSON objects.
    """create table user (
         id integer primary key,
         username text unique not null check (length(username) > 0),
         password_hash text,
         disabled integer not null default 0 check (disabled in (0, 1)),
         permissions text not null default '{}',
         preferences text not null default '{}',
         creation_time_sec integer not null
       )""",
    # A login's session, kept after revocation (for the record).  The cookie's 48 random
    # bytes are not stored, only their SHA-256; ``seed`` derives the CSRF token.
    """create table user_session (
         session_id_hash blob primary key check (length(session_id_hash) = 32),
         user_id integer not null references user (id),
         seed blob not null check (length(seed) = 32),
         domain text,
         creation_time_sec integer not null,
         creation_peer_addr text,
         creation_user_agent text,
         last_use_time_sec integer,
         last_use_peer_addr text,
         last_use_user_agent text,
         use_count integer not null default 0,
         revocation_time_sec integer,
         revocation_reason text,
         revocation_peer_addr text,
         revocation_user_agent text
       ) without rowid""",
    "create index user_session_user on user_session (user_id)",
)

#: Schema changes from version 4 to 5.
V4_TO_V5: tuple[str, ...] = (
    # How to ask the camera for RTP: 'auto' tries TCP, then UDP if the camera refuses TCP.
    """alter table stream add column transport text not null default 'auto'
         check (transport in ('auto', 'tcp', 'udp'))""",
)

#: Schema changes from version 5 to 6: the archive tier.
V5_TO_V6: tuple[str, ...] = (
    # Where recordings are archived: ``s3://BUCKET/PREFIX`` at an S3-compatible endpoint.
    # Credentials are never stored: they come from the S3 ecosystem's environment variables
    # or credentials file.  ``last_error`` is the uploader's latest failure (null after a
    # success), for ``moonfire archive status`` in another process.
    """create table archive (
         id integer primary key,
         name text unique not null check (length(name) > 0),
         url text not null check (url like 's3://_%'),
         endpoint text,
         region text,
         last_error text,
         last_error_time_sec integer
       )""",
    "alter table stream add column archive_id integer references archive (id)",
    """alter table stream add column archive_days integer
         check (archive_days is null or archive_days > 0)""",
    # A recording whose sample data and manifest objects are stored and checked.  No
    # foreign key to ``recording``: the row is the database's record of objects in the
    # bucket, which outlive a local deletion.
    """create table recording_archive (
         composite_id integer primary key,
         archive_id integer not null references archive (id),
         data_key text not null,
         manifest_key text not null,
         archived_time_sec integer not null,
         sample_file_sha1 blob not null check (length(sample_file_sha1) = 20)
       )""",
    "create index recording_archive_by_archive on recording_archive (archive_id)",
)

#: Schema changes from version 6 to 7: recordings that live only in the archive.
V6_TO_V7: tuple[str, ...] = (
    # When the local sample file of an archived recording was deleted (null: it is still
    # there).  The ``recording`` row stays, so the catalog keeps it and playback reads the
    # archive's objects instead; such rows no longer count against the stream's local budget.
    "alter table recording_archive add column local_deleted_time_sec integer",
    """create index recording_archive_local_deleted on recording_archive (composite_id)
         where local_deleted_time_sec is not null""",
)

#: The name ``init`` gives the first sample file directory (and the upgrade, the old one).
DEFAULT_DIR_NAME = "default"


def create(conn: sqlite3.Connection, sample_dir_path: str) -> None:
    """Builds the current schema in an empty database, inside the caller's transaction.

    The caller has turned foreign keys off (``without_foreign_keys``), as the
    version-4 step rebuilds tables.
    """
    for statement in V1_TABLES:
        conn.execute(statement)
    _apply_v1_to_v2(conn, sample_dir_path)
    _apply_v2_to_v3(conn)
    _apply_v3_to_v4(conn)
    _apply_v4_to_v5(conn)
    _apply_v5_to_v6(conn)
    _apply_v6_to_v7(conn)
    _record_version(conn, SCHEMA_VERSION, "db creation")


def upgrade(conn: sqlite3.Connection, from_version: int, sample_dir_path: str) -> None:
    """Brings a version-1 to -6 database to ``SCHEMA_VERSION`` inside the caller's
    transaction (1 -> 2 -> ... -> 7), foreign keys off (``without_foreign_keys``)."""
    if not OLDEST_UPGRADABLE_VERSION <= from_version < SCHEMA_VERSION:
        raise AssertionError(f"no upgrade path from schema version {from_version}")
    if from_version == 1:
        _upgrade_v1_to_v2(conn, sample_dir_path)
    if from_version <= 2:
        _apply_v2_to_v3(conn)
        _record_version(conn, 3, "upgrade from version 2")
    if from_version <= 3:
        _apply_v3_to_v4(conn)
        _record_version(conn, 4, "upgrade from version 3")
    if from_version <= 4:
        _apply_v4_to_v5(conn)
        _record_version(conn, 5, "upgrade from version 4")
    if from_version <= 5:
        _apply_v5_to_v6(conn)
        _record_version(conn, 6, "upgrade from version 5")
    _apply_v6_to_v7(conn)
    _record_version(conn, 7, "upgrade from version 6")


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


def _apply_v3_to_v4(conn: sqlite3.Connection) -> None:
    """Streams and named directories: each table rebuilt and its rows copied.

    Each camera's main stream gets the camera's id, URL, budget and next recording id, so
    composite ids don't change; an era-1 camera's sub stream path becomes a sub stream
    that doesn't record.  Foreign keys are checked once everything is in place.
    """
    for statement in V4_TABLES:
        conn.execute(statement)
    conn.execute(
        "insert into sample_file_dir_v4 (id, name, path, uuid, last_complete_open_id)"
        " select id, ?, path, uuid, last_complete_open_id from sample_file_dir",
        (DEFAULT_DIR_NAME,),
    )
    (dir_id,) = conn.execute("select min(id) from sample_file_dir").fetchone()
    conn.execute(
        "insert into stream (id, camera_id, type, url, record, retain_bytes,"
        " sample_file_dir_id, next_recording_id)"
        " select id, id, 'main', coalesce(url, ''), 1, retain_bytes, ?, next_recording_id"
        " from camera",
        (dir_id,),
    )
    conn.execute(
        "insert into stream (camera_id, type, url, record, retain_bytes,"
        " sample_file_dir_id, next_recording_id)"
        " select id, 'sub', 'rtsp://' || host || sub_rtsp_path, 0, 0, ?, 1 from camera"
        " where host is not null and sub_rtsp_path is not null and sub_rtsp_path != ''",
        (dir_id,),
    )
    conn.execute(
        "insert into camera_v4 (id, uuid, short_name, description, username, password,"
        " rotate_interval_sec) select id, uuid, short_name, description, username, password,"
        " rotate_interval_sec from camera"
    )
    conn.execute(
        "insert into recording_v4 select composite_id, camera_id, run_offset, flags,"
        " sample_file_bytes, start_time_90k, duration_90k, local_time_delta_90k,"
        " video_samples, video_sync_samples, video_sample_entry_id, null from recording"
    )
    conn.execute(
        "insert into reserved_sample_files_v4 (uuid, sample_file_dir_id, state)"
        " select uuid, ?, state from reserved_sample_files",
        (dir_id,),
    )
    for table in ("sample_file_dir", "camera", "recording", "reserved_sample_files"):
        conn.execute(f"drop table {table}")  # its indexes go with it
        conn.execute(f"alter table {table}_v4 rename to {table}")
    conn.execute("create unique index camera_short_name on camera (short_name)")
    conn.execute(
        """create index recording_cover on recording (
             stream_id, start_time_90k,
             duration_90k, video_samples, video_sample_entry_id, sample_file_bytes,
             video_sync_samples, run_offset, flags, local_time_delta_90k, open_id
           )"""
    )
    problems = conn.execute("pragma foreign_key_check").fetchall()
    if problems:
        raise DatabaseVersionError(
            f"cannot upgrade to schema version 4: {len(problems)} rows reference missing "
            f"rows, e.g. table {problems[0][0]} row {problems[0][1]} -> {problems[0][2]}"
        )


def _apply_v4_to_v5(conn: sqlite3.Connection) -> None:
    for statement in V4_TO_V5:
        conn.execute(statement)


def _apply_v5_to_v6(conn: sqlite3.Connection) -> None:
    for statement in V5_TO_V6:
        conn.execute(statement)


def _apply_v6_to_v7(conn: sqlite3.Connection) -> None:
    for statement in V6_TO_V7:
        conn.execute(statement)


def _record_version(conn: sqlite3.Connection, version: int, notes: str) -> None:
    conn.execute(
        f"insert into version (id, unix_time, notes) values (?, {_NOW}, ?)", (version, notes)
    )
