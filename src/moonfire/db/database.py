"""``Database``: the one writer connection, its reads, and camera configuration.

All statements on a ``Database`` run under one lock, so a thread never sees another
thread's open transaction; writes go through ``transaction()`` (``BEGIN IMMEDIATE``
... ``COMMIT``).  Other processes, e.g. ``moonfire check``, open their own
read-only ``Database``; in WAL mode they read the last commit without waiting.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import schema
from .camera_settings import CAMERA_SETTINGS, validate_camera_settings
from .errors import (
    ConsistencyError,
    DatabaseError,
    DatabaseVersionError,
    DuplicateCameraError,
    InvalidConfigError,
    NotAMoonfireDatabaseError,
    UnknownRecordingError,
    UnknownVideoSampleEntryError,
)
from .rows import (
    CAMERA_COLUMNS,
    PLAYBACK_COLUMNS,
    RECORDING_COLUMNS,
    VIDEO_SAMPLE_ENTRY_COLUMNS,
    Camera,
    Open,
    Playback,
    RecordingRow,
    SampleFileDirRow,
    VideoSampleEntry,
    composite_id,
)
from .transaction import Transaction, lookup_camera

#: How long to wait for another process's write lock before failing with "database is locked".
BUSY_TIMEOUT_SEC = 10.0
#: ``list_oldest_recordings`` fetches this many rows per lock hold.
OLDEST_BATCH_ROWS = 1024

_OLDEST_QUERY = (
    "select " + ", ".join(f"r.{c.strip()}" for c in RECORDING_COLUMNS.split(","))
    + ", p.sample_file_uuid from recording r"
    " join recording_playback p on p.composite_id = r.composite_id"
    " where r.composite_id >= ? and r.composite_id < ? order by r.composite_id limit ?"
)


class Database:
    """The metadata database of one data directory.  Use ``create`` or ``open``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.read_only = read_only
        #: A read-only open's relocation of the sample file directory (see
        #: ``set_sample_file_dir_path``); None to use the stored path.
        self._relocated_dir_path: str | None = None

    # ---- lifecycle -------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], sample_dir_path: str | os.PathLike[str] | None = None
    ) -> Database:
        """Creates a new database file at ``path`` for sample files in ``sample_dir_path``.

        ``sample_dir_path`` defaults to ``sample`` next to the database file.

        A sample directory inside the database's folder is stored relative to that folder,
        so a copied data directory works on its own files (not the original's); one
        elsewhere (another disk) is stored absolute.  Refuses to touch an existing non-empty
        file.
        """
        path = Path(path)
        if sample_dir_path is None:
            sample_dir_path = schema.default_sample_dir_path(path)
        if isinstance(sample_dir_path, os.PathLike):
            sample_dir_path = os.fspath(sample_dir_path)
        if not isinstance(sample_dir_path, str) or not sample_dir_path:
            raise InvalidConfigError(f"sample file directory path must be a non-empty string, "
                                     f"got {sample_dir_path!r}")
        if path.exists() and path.stat().st_size > 0:
            raise DatabaseError(f"{path} already exists; refusing to overwrite it")
        conn = _connect(path, "rwc")
        try:
            conn.execute(f"pragma page_size = {schema.PAGE_SIZE}")
            _configure(conn, read_only=False)
            conn.execute("begin immediate")
            try:
                schema.create(conn, stored_dir_path(path, sample_dir_path))
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, read_only=False)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        read_only: bool = False,
        *,
        upgrade_sample_dir_path: str | None = None,
    ) -> Database:
        """Opens an existing database, upgrading an older one in a single transaction.

        Before upgrading, the database is copied aside (``db.v2-backup`` beside it, for a
        version-2 ``db``; see ``backup_path``), so a failed upgrade leaves the original
        untouched twice over: the transaction rolls back, and the copy is there.
        Era-1 databases do not record their sample directory; the upgrade stores
        ``upgrade_sample_dir_path``, by default ``sample`` next to the database file.
        A read-only open refuses a database that still needs the upgrade.
        """
        path = Path(path)
        if not path.is_file():
            raise NotAMoonfireDatabaseError(f"{path}: no such database file")
        conn = _connect(path, "ro" if read_only else "rw")
        try:
            version = schema.read_version(conn, path)
            schema.check_version(version, path)
            _configure(conn, read_only)
            if version < schema.SCHEMA_VERSION:
                if read_only:
                    raise DatabaseVersionError(
                        f"{path}: database schema version {version} must be upgraded to "
                        f"{schema.SCHEMA_VERSION}; open it read-write once"
                    )
                dir_path = upgrade_sample_dir_path or schema.default_sample_dir_path(path)
                _back_up(conn, backup_path(path, version))
                _upgrade(conn, path, stored_dir_path(path, dir_path))
            (meta_rows,) = conn.execute("select count(*) from meta").fetchone()
            if meta_rows != 1:
                raise ConsistencyError(f"{path}: table meta has {meta_rows} rows; expected 1")
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, read_only)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"<Database {str(self.path)!r} {mode}>"

    # ---- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: commits if the block succeeds, else rolls back.

        Holds the writer lock throughout, so keep the block short.  If an operation
        inside fails, the transaction rolls back even if the block caught the error.
        Transactions do not nest.
        """
        if self.read_only:
            raise DatabaseError(f"{self.path} is open read-only")
        with self._lock:
            if self._conn.in_transaction:
                raise DatabaseError("a transaction is already open on this thread; "
                                    "transactions do not nest")
            try:
                self._conn.execute("begin immediate")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    raise
                raise DatabaseError(f"{self.path} is being written by another process "
                                    f"(waited {BUSY_TIMEOUT_SEC:g} s): {e}") from e
            tx = Transaction(self._conn)
            try:
                yield tx
                if tx.must_rollback:
                    raise ConsistencyError("transaction rolled back: an operation inside it "
                                           "failed, so it cannot commit")
                self._conn.execute("commit")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("rollback")
                raise
            finally:
                tx.finish()

    # ---- sample file directory -------------------------------------------------------

    def sample_file_dir(self) -> SampleFileDirRow:
        """The sample file directory, its path made absolute (a stored relative path is
        relative to the database's folder)."""
        with self._lock:
            row = self._conn.execute(
                "select d.path, d.uuid, m.db_uuid from sample_file_dir d, meta m"
            ).fetchone()
        if row is None:
            raise ConsistencyError(f"{self.path}: table sample_file_dir is empty")
        stored, uuid, db_uuid = row
        path = self._relocated_dir_path or self._absolute(stored)
        return SampleFileDirRow(path, uuid, db_uuid)

    def stored_sample_file_dir_path(self) -> str:
        """The sample file directory's path exactly as stored: relative or absolute."""
        with self._lock:
            row = self._conn.execute("select path from sample_file_dir").fetchone()
        if row is None:
            raise ConsistencyError(f"{self.path}: table sample_file_dir is empty")
        return str(row[0])

    def set_sample_file_dir_path(self, sample_dir_path: str) -> None:
        """Record a new path for the same sample file directory (moved, or copied along with
        the database); a read-only open uses it until closed without storing it."""
        if self.read_only:
            self._relocated_dir_path = os.path.abspath(sample_dir_path)
            return
        stored = stored_dir_path(self.path, sample_dir_path)
        with self._lock:
            with self._conn:
                self._conn.execute("update sample_file_dir set path = ?", (stored,))

    def _absolute(self, stored: str) -> str:
        if os.path.isabs(stored):
            return stored
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.path)), stored))

    # ---- opens (brief §5.3) ------------------------------------------------------------

    def last_complete_open(self) -> Open | None:
        """The open the sample file directory's ``meta`` file must name; None before the
        first read-write open of this schema version."""
        with self._lock:
            row = self._conn.execute(
                "select o.id, o.uuid from sample_file_dir d join open o"
                " on o.id = d.last_complete_open_id"
            ).fetchone()
        return None if row is None else Open(*row)

    def insert_open(self) -> Open:
        """Record a new read-write open of the sample file directory (not yet complete)."""
        uuid = uuidlib.uuid4().bytes
        with self.transaction() as tx:
            cursor = tx.conn.execute(
                "insert into open (uuid, start_time_90k) values (?, ?)",
                (uuid, _now_90k()),
            )
            open_id = _inserted_rowid(cursor, "open")
        return Open(open_id, uuid)

    def set_last_complete_open(self, current: Open) -> None:
        """Record that the directory's ``meta`` file names ``current`` (its in-progress open)."""
        with self.transaction() as tx:
            count = tx.conn.execute(
                "update sample_file_dir set last_complete_open_id = ?", (current.id,)
            ).rowcount
            if count != 1:
                raise ConsistencyError(f"{self.path}: table sample_file_dir has {count} rows")

    # ---- cameras ---------------------------------------------------------------------

    def add_camera(
        self,
        short_name: str,
        *,
        url: str = "",
        username: str | None = None,
        password: str | None = None,
        retain_bytes: int = 0,
        rotate_interval_sec: int = 60,
        description: str = "",
    ) -> Camera:
        """Adds a camera; its recording ids start at 1."""
        settings = {
            "short_name": short_name, "description": description, "url": url,
            "username": username, "password": password, "retain_bytes": retain_bytes,
            "rotate_interval_sec": rotate_interval_sec,
        }
        validate_camera_settings(settings)
        with self.transaction() as tx:
            _refuse_duplicate_name(tx.conn, short_name, except_id=None)
            columns = ", ".join(settings)
            marks = ", ".join("?" * len(settings))
            cursor = tx.conn.execute(
                f"insert into camera (uuid, next_recording_id, {columns})"
                f" values (?, 1, {marks})",
                (uuidlib.uuid4().bytes, *settings.values()),
            )
            camera_id = _inserted_rowid(cursor, "camera")
        return self.get_camera(camera_id)

    def get_camera(self, id_or_name: int | str) -> Camera:
        """The camera with this id (an ``int``) or short name (a ``str``)."""
        with self._lock:
            return lookup_camera(self._conn, id_or_name)

    def list_cameras(self) -> list[Camera]:
        """All cameras, by id."""
        with self._lock:
            rows = self._conn.execute(f"select {CAMERA_COLUMNS} from camera order by id")
            return [Camera(*row) for row in rows]

    def update_camera(self, id_or_name: int | str, **changes: Any) -> Camera:
        """Changes some of a camera's settings (the keyword names of ``add_camera``)."""
        unknown = sorted(set(changes) - CAMERA_SETTINGS)
        if unknown:
            raise TypeError(f"update_camera() got unknown camera settings: {', '.join(unknown)}")
        validate_camera_settings(changes)
        with self.transaction() as tx:
            camera = lookup_camera(tx.conn, id_or_name)
            if changes:
                if "short_name" in changes:
                    _refuse_duplicate_name(tx.conn, changes["short_name"], except_id=camera.id)
                assignments = ", ".join(f"{name} = ?" for name in changes)
                tx.conn.execute(
                    f"update camera set {assignments} where id = ?", (*changes.values(), camera.id)
                )
        return self.get_camera(camera.id)

    def delete_camera(self, id_or_name: int | str) -> None:
        """Removes a camera that has no recordings (rotate them away first)."""
        with self.transaction() as tx:
            camera = lookup_camera(tx.conn, id_or_name)
            (recordings,) = tx.conn.execute(
                "select count(*) from recording where camera_id = ?", (camera.id,)
            ).fetchone()
            if recordings:
                raise DatabaseError(
                    f"camera {camera.short_name!r} still has {recordings} recordings; "
                    "set its retain_bytes to 0 and let rotation delete them first"
                )
            tx.conn.execute("delete from camera where id = ?", (camera.id,))

    def camera_usage(self, camera_id: int) -> tuple[int, int, int]:
        """(recordings, sample_file_bytes, duration_90k) summed over a camera's recordings.

        One aggregate query over the ``recording_cover`` index; no table rows are read.
        """
        with self._lock:
            lookup_camera(self._conn, camera_id)
            row = self._conn.execute(
                "select count(*), coalesce(sum(sample_file_bytes), 0),"
                " coalesce(sum(duration_90k), 0) from recording where camera_id = ?",
                (camera_id,),
            ).fetchone()
        return row

    # ---- video sample entries --------------------------------------------------------

    def insert_video_sample_entry(self, width: int, height: int, data: bytes) -> int:
        """The id of the entry holding ``data``, inserting it unless an equal one exists.

        Entries are shared by SHA-1 of ``data``; the same bytes with other dimensions
        mean a bug in whoever computed them.
        """
        data = bytes(data)
        sha1 = hashlib.sha1(data).digest()
        with self.transaction() as tx:
            existing = tx.conn.execute(
                "select id, width, height from video_sample_entry where sha1 = ?", (sha1,)
            ).fetchone()
            if existing is not None:
                entry_id, old_width, old_height = existing
                if (old_width, old_height) != (width, height):
                    raise ConsistencyError(
                        f"video sample entry {entry_id} (sha1 {sha1.hex()}) is "
                        f"{old_width}x{old_height}, not {width}x{height}"
                    )
                return entry_id
            try:
                cursor = tx.conn.execute(
                    "insert into video_sample_entry (sha1, width, height, data)"
                    " values (?, ?, ?, ?)",
                    (sha1, width, height, data),
                )
            except sqlite3.IntegrityError as e:
                raise InvalidConfigError(
                    f"invalid video sample entry {width}x{height} of {len(data)} bytes "
                    f"(dimensions must be > 0, data longer than 86 bytes): {e}"
                ) from e
            return _inserted_rowid(cursor, "video_sample_entry")

    def get_video_sample_entry(self, entry_id: int) -> VideoSampleEntry:
        with self._lock:
            row = self._conn.execute(
                f"select {VIDEO_SAMPLE_ENTRY_COLUMNS} from video_sample_entry where id = ?",
                (entry_id,),
            ).fetchone()
        if row is None:
            raise UnknownVideoSampleEntryError(f"no video sample entry with id {entry_id}")
        return VideoSampleEntry(*row)

    # ---- recordings ------------------------------------------------------------------

    def list_oldest_recordings(self, camera_id: int) -> Iterator[tuple[RecordingRow, bytes]]:
        """A camera's recordings with their sample file uuids, oldest (lowest id) first.

        Lazy: rows are fetched in batches, each under the lock but none held across a
        ``yield``, so a caller may stop early or write between batches.
        """
        low, high = composite_id(camera_id, 0), composite_id(camera_id + 1, 0)
        while True:
            with self._lock:
                batch = self._conn.execute(_OLDEST_QUERY, (low, high, OLDEST_BATCH_ROWS)).fetchall()
            for row in batch:
                yield RecordingRow(*row[:-1]), row[-1]
            if len(batch) < OLDEST_BATCH_ROWS:
                return
            low = batch[-1][0] + 1

    def list_recordings_by_time(
        self, camera_id: int, start_90k: int, end_90k: int
    ) -> list[RecordingRow]:
        """Recordings overlapping ``[start_90k, end_90k)``, by start time.

        A recording ``[s, s + d)`` overlaps when ``s < end`` and ``s + d > start``; since
        ``d`` is under 5 minutes, ``s > start - 5 min`` bounds the index range scanned.
        """
        with self._lock:
            rows = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where camera_id = ?"
                " and start_time_90k > ? and start_time_90k < ?"
                " and start_time_90k + duration_90k > ? order by start_time_90k",
                (camera_id, start_90k - schema.MAX_RECORDING_DURATION_90K, end_90k, start_90k),
            ).fetchall()
        return [RecordingRow(*row) for row in rows]

    def list_recordings(self, camera_id: int) -> list[RecordingRow]:
        """All of a camera's recordings, by start time."""
        with self._lock:
            rows = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where camera_id = ?"
                " order by start_time_90k",
                (camera_id,),
            ).fetchall()
        return [RecordingRow(*row) for row in rows]

    def last_recording(self, camera_id: int) -> RecordingRow | None:
        """The camera's latest recording by start time, or None (for ``moonfire status``)."""
        with self._lock:
            row = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where camera_id = ?"
                " order by start_time_90k desc limit 1",
                (camera_id,),
            ).fetchone()
        return None if row is None else RecordingRow(*row)

    def get_recording(self, composite_id: int) -> RecordingRow:
        with self._lock:
            row = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where composite_id = ?",
                (composite_id,),
            ).fetchone()
        if row is None:
            raise UnknownRecordingError(_no_recording(composite_id))
        return RecordingRow(*row)

    def get_playback(self, composite_id: int) -> Playback:
        with self._lock:
            row = self._conn.execute(
                f"select {PLAYBACK_COLUMNS} from recording_playback where composite_id = ?",
                (composite_id,),
            ).fetchone()
        if row is None:
            raise UnknownRecordingError(_no_recording(composite_id))
        return Playback(*row)

    def list_reserved_sample_files(self) -> list[tuple[bytes, int]]:
        """(uuid, state) of every reservation: 0 = writing, 1 = deleting."""
        with self._lock:
            return self._conn.execute("select uuid, state from reserved_sample_files").fetchall()

    def list_all_recording_uuids(self) -> dict[bytes, int]:
        """Sample file uuid -> composite id of every recording (for ``moonfire check``)."""
        with self._lock:
            return dict(
                self._conn.execute("select sample_file_uuid, composite_id from recording_playback")
            )


def stored_dir_path(db_path: str | os.PathLike[str], sample_dir_path: str) -> str:
    """How a sample directory's path is stored: relative to the database's folder when it
    lies inside it (``sample``), else absolute."""
    absolute = os.path.abspath(sample_dir_path)
    base = os.path.dirname(os.path.abspath(db_path))
    if absolute != base and os.path.commonpath([absolute, base]) == base:
        return os.path.relpath(absolute, base)
    return absolute


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), usable from any thread."""
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?mode={mode}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_SEC,
    )


def _configure(conn: sqlite3.Connection, read_only: bool) -> None:
    """WAL (readers never block the writer), fsync on every commit, foreign keys enforced."""
    if not read_only:
        (mode,) = conn.execute("pragma journal_mode = wal").fetchone()
        if mode != "wal":
            raise DatabaseError(f"could not switch the database to WAL mode (got {mode!r})")
    conn.execute("pragma synchronous = full")
    conn.execute("pragma foreign_keys = on")


def backup_path(path: str | os.PathLike[str], version: int) -> Path:
    """Where the copy of a version-``version`` database is kept before upgrading it:
    ``db.v2-backup``, or ``db.v2-backup.2``, ``.3``, ... if that name is taken."""
    base = Path(f"{os.fspath(path)}.v{version}-backup")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}.{n}")
    return candidate


def _back_up(conn: sqlite3.Connection, dest: Path) -> None:
    """Copy the database (committed state, WAL included) to ``dest`` with SQLite's backup
    API, and make the copy durable before the upgrade may start."""
    tmp = Path(f"{dest}.tmp")
    if tmp.exists():
        tmp.unlink()
    target = sqlite3.connect(tmp)
    try:
        conn.backup(target)
    finally:
        target.close()
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _now_90k() -> int:
    return int(time.time() * 90000)


def _upgrade(conn: sqlite3.Connection, path: Path, sample_dir_path: str) -> None:
    """Upgrades to the current schema in one transaction (re-reading the version under lock)."""
    conn.execute("begin immediate")
    try:
        version = schema.read_version(conn, path)
        if version < schema.SCHEMA_VERSION:
            schema.upgrade(conn, version, sample_dir_path)
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def _inserted_rowid(cursor: sqlite3.Cursor, table: str) -> int:
    """The rowid of the row an ``insert`` just made; ``None`` there would be a bug here."""
    if cursor.lastrowid is None:
        raise RuntimeError(f"insert into {table} gave no rowid; nothing was inserted")
    return cursor.lastrowid


def _refuse_duplicate_name(conn: sqlite3.Connection, name: str, except_id: int | None) -> None:
    row = conn.execute("select id from camera where short_name = ?", (name,)).fetchone()
    if row is not None and row[0] != except_id:
        raise DuplicateCameraError(f"camera {name!r} already exists")


def _no_recording(cid: int) -> str:
    return f"no recording {cid >> 32}/{cid & 0xFFFF_FFFF} (composite id {cid})"
