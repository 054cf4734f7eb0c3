"""``Database``: the one writer connection, its reads, and the configuration of cameras,
their streams and the sample file directories.

All statements on a ``Database`` run under one lock, so a thread never sees another
thread's open transaction; writes go through ``transaction()`` (``BEGIN IMMEDIATE``
... ``COMMIT``).  Other processes, e.g. ``moonfire check``, open their own
read-only ``Database``; in WAL mode they read the last commit without waiting.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from . import schema
from .camera_settings import (
    CAMERA_SETTINGS,
    STREAM_SETTINGS,
    SUB_PREFIX,
    SUB_STREAM_SETTINGS,
    validate_camera_settings,
)
from .errors import (
    ArchiveInUseError,
    ConsistencyError,
    DatabaseError,
    DatabaseVersionError,
    DuplicateCameraError,
    InvalidConfigError,
    NotAMoonfireDatabaseError,
    SampleFileDirInUseError,
    UnknownArchiveError,
    UnknownRecordingError,
    UnknownSampleFileDirError,
    UnknownStreamError,
    UnknownVideoSampleEntryError,
)
from .rows import (
    ARCHIVE_COLUMNS,
    CAMERA_COLUMNS,
    MAIN,
    PLAYBACK_COLUMNS,
    RECORDING_COLUMNS,
    STREAM_COLUMNS,
    SUB,
    VIDEO_SAMPLE_ENTRY_COLUMNS,
    ArchiveRow,
    Camera,
    Open,
    Playback,
    RecordingRow,
    SampleFileDirRow,
    Stream,
    VideoSampleEntry,
    composite_id,
    stream_from_row,
)
from .transaction import (
    STATE_DELETING,
    HasCompositeId,
    Transaction,
    camera_with_streams,
    lookup_camera,
)

#: How long to wait for another process's write lock before failing with "database is locked".
BUSY_TIMEOUT_SEC = 10.0
#: ``list_oldest_recordings`` fetches this many rows per lock hold.
OLDEST_BATCH_ROWS = 1024


class Database:
    """The metadata database of one data directory.  Use ``create`` or ``open``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.read_only = read_only
        #: A read-only open's relocations of sample file directories, by id (see
        #: ``set_sample_file_dir_path``); the others use their stored paths.
        self._relocated_dir_paths: dict[int, str] = {}

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
            with _without_foreign_keys(conn):
                schema.create(conn, stored_dir_path(path, sample_dir_path))
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

    # ---- sample file directories ----------------------------------------------------

    def list_sample_file_dirs(self) -> list[SampleFileDirRow]:
        """Every sample file directory, by id, paths made absolute (a stored relative path
        is relative to the database's folder)."""
        with self._lock:
            rows = self._conn.execute(
                "select d.id, d.name, d.path, d.uuid, m.db_uuid from sample_file_dir d, meta m"
                " order by d.id"
            ).fetchall()
        return [self._dir_row(row) for row in rows]

    def sample_file_dir(self, id_or_name: int | str) -> SampleFileDirRow:
        """The sample file directory with this id (``int``) or name (``str``)."""
        column, missing = _dir_key(id_or_name)
        with self._lock:
            row = self._conn.execute(
                "select d.id, d.name, d.path, d.uuid, m.db_uuid from sample_file_dir d, meta m"
                f" where d.{column} = ?",
                (id_or_name,),
            ).fetchone()
        if row is None:
            raise UnknownSampleFileDirError(missing)
        return self._dir_row(row)

    def _dir_row(self, row: tuple[Any, ...]) -> SampleFileDirRow:
        dir_id, name, stored, uuid, db_uuid = row
        path = self._relocated_dir_paths.get(dir_id) or self._absolute(stored)
        return SampleFileDirRow(dir_id, name, path, uuid, db_uuid)

    def add_sample_file_dir(self, name: str, path: str | os.PathLike[str]) -> SampleFileDirRow:
        """Record a new sample file directory (its ``meta`` file is written by
        ``SampleFileDir.create``, which must follow)."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise InvalidConfigError(
                f"a sample file directory's name must be a non-empty string without "
                f"surrounding spaces, got {name!r}"
            )
        stored = stored_dir_path(self.path, os.fspath(path))
        with self.transaction() as tx:
            clash = tx.conn.execute(
                "select name, path from sample_file_dir where name = ? or path = ?",
                (name, stored),
            ).fetchone()
            if clash is not None:
                what = f"name {name!r}" if clash[0] == name else f"path {os.fspath(path)}"
                raise InvalidConfigError(
                    f"sample file directory {clash[0]!r} already has the {what}"
                )
            new = os.path.abspath(os.fspath(path))
            for other in self.list_sample_file_dirs():
                inside = os.path.commonpath([new, other.path]) in (new, other.path)
                if inside:
                    raise InvalidConfigError(
                        f"{new} and sample file directory {other.name!r} ({other.path}) would "
                        "be one inside the other; each needs a directory of its own"
                    )
            cursor = tx.conn.execute(
                "insert into sample_file_dir (name, path, uuid) values (?, ?, ?)",
                (name, stored, uuidlib.uuid4().bytes),
            )
            dir_id = _inserted_rowid(cursor, "sample_file_dir")
        return self.sample_file_dir(dir_id)

    def remove_sample_file_dir(self, id_or_name: int | str) -> SampleFileDirRow:
        """Forget a sample file directory no stream uses and no recording or reservation is
        in (its files, the ``meta`` included, are the caller's to remove)."""
        with self.transaction() as tx:
            row = self.sample_file_dir(id_or_name)
            users = [
                f"{camera}/{stream_type}"
                for camera, stream_type in tx.conn.execute(
                    "select c.short_name, s.type from stream s join camera c on c.id = s.camera_id"
                    " where s.sample_file_dir_id = ? order by c.short_name, s.type",
                    (row.id,),
                )
            ]
            if users:
                raise SampleFileDirInUseError(
                    f"sample file directory {row.name!r} ({row.path}) is used by stream"
                    f"{'s' if len(users) > 1 else ''} {', '.join(users)}; move "
                    f"{'them' if len(users) > 1 else 'it'} to another directory first"
                )
            (reserved,) = tx.conn.execute(
                "select count(*) from reserved_sample_files where sample_file_dir_id = ?",
                (row.id,),
            ).fetchone()
            if reserved:
                raise SampleFileDirInUseError(
                    f"sample file directory {row.name!r} ({row.path}) still has {reserved} "
                    "reserved sample files; start and stop `moonfire run` once to clean them up"
                )
            tx.conn.execute("delete from sample_file_dir where id = ?", (row.id,))
        return row

    def stored_sample_file_dir_path(self, dir_id: int) -> str:
        """A sample file directory's path exactly as stored: relative or absolute."""
        with self._lock:
            row = self._conn.execute(
                "select path from sample_file_dir where id = ?", (dir_id,)
            ).fetchone()
        if row is None:
            raise UnknownSampleFileDirError(f"no sample file directory with id {dir_id}")
        return str(row[0])

    def set_sample_file_dir_path(self, dir_id: int, sample_dir_path: str) -> None:
        """Record a new path for the same sample file directory (moved, or copied along with
        the database); a read-only open uses it until closed without storing it."""
        if self.read_only:
            self._relocated_dir_paths[dir_id] = os.path.abspath(sample_dir_path)
            return
        stored = stored_dir_path(self.path, sample_dir_path)
        with self.transaction() as tx:
            count = tx.conn.execute(
                "update sample_file_dir set path = ? where id = ?", (stored, dir_id)
            ).rowcount
            if count != 1:
                raise UnknownSampleFileDirError(f"no sample file directory with id {dir_id}")

    def _absolute(self, stored: str) -> str:
        if os.path.isabs(stored):
            return stored
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.path)), stored))

    # ---- opens (brief §5.3) ------------------------------------------------------------

    def last_complete_open(self, dir_id: int) -> Open | None:
        """The open the sample file directory's ``meta`` file must name; None before the
        first read-write open of it in schema version 3 or later."""
        with self._lock:
            row = self._conn.execute(
                "select o.id, o.uuid from sample_file_dir d join open o"
                " on o.id = d.last_complete_open_id where d.id = ?",
                (dir_id,),
            ).fetchone()
        return None if row is None else Open(*row)

    def insert_open(self) -> Open:
        """Record a new read-write open of a sample file directory (not yet complete)."""
        uuid = uuidlib.uuid4().bytes
        with self.transaction() as tx:
            cursor = tx.conn.execute(
                "insert into open (uuid, start_time_90k) values (?, ?)",
                (uuid, _now_90k()),
            )
            open_id = _inserted_rowid(cursor, "open")
        return Open(open_id, uuid)

    def set_last_complete_open(self, dir_id: int, current: Open) -> None:
        """Record that the directory's ``meta`` file names ``current`` (its in-progress open)."""
        with self.transaction() as tx:
            count = tx.conn.execute(
                "update sample_file_dir set last_complete_open_id = ? where id = ?",
                (current.id, dir_id),
            ).rowcount
            if count != 1:
                raise UnknownSampleFileDirError(f"no sample file directory with id {dir_id}")

    # ---- cameras and their streams ----------------------------------------------------

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
        max_age_days: int | None = None,
        sample_file_dir: int | str | None = None,
        transport: str = "auto",
        sub_url: str | None = None,
        sub_retain_bytes: int = 0,
        sub_max_age_days: int | None = None,
        sub_sample_file_dir: int | str | None = None,
        sub_transport: str = "auto",
        archive: str | None = None,
        archive_days: int | None = None,
        sub_archive: str | None = None,
        sub_archive_days: int | None = None,
    ) -> Camera:
        """Adds a camera with its main stream and, given ``sub_url``, its sub stream.

        The plain stream settings are the main stream's, the ``sub_`` ones the sub
        stream's.  A stream records when it has a URL and (for the sub stream) a
        budget; its directory defaults to the first one; ``archive`` names the archive its
        recordings are uploaded to (none by default).  Recording ids start at 1.
        """
        camera_settings = {
            "short_name": short_name, "description": description, "username": username,
            "password": password, "rotate_interval_sec": rotate_interval_sec,
        }
        main = {"url": url, "retain_bytes": retain_bytes, "max_age_days": max_age_days,
                "sample_file_dir": sample_file_dir, "transport": transport,
                "archive": archive, "archive_days": archive_days}
        sub = {"url": sub_url, "retain_bytes": sub_retain_bytes,
               "max_age_days": sub_max_age_days, "sample_file_dir": sub_sample_file_dir,
               "transport": sub_transport, "archive": sub_archive,
               "archive_days": sub_archive_days}
        validate_camera_settings(camera_settings)
        validate_camera_settings({k: v for k, v in main.items()})
        if sub_url is not None:
            validate_camera_settings({SUB_PREFIX + k: v for k, v in sub.items()})
        with self.transaction() as tx:
            _refuse_duplicate_name(tx.conn, short_name, except_id=None)
            columns = ", ".join(camera_settings)
            marks = ", ".join("?" * len(camera_settings))
            cursor = tx.conn.execute(
                f"insert into camera (uuid, {columns}) values (?, {marks})",
                (uuidlib.uuid4().bytes, *camera_settings.values()),
            )
            camera_id = _inserted_rowid(cursor, "camera")
            self._insert_stream(tx.conn, camera_id, MAIN, main)
            if sub_url is not None:
                self._insert_stream(tx.conn, camera_id, SUB, sub)
        return self.get_camera(camera_id)

    def _insert_stream(
        self, conn: sqlite3.Connection, camera_id: int, stream_type: str, settings: dict[str, Any]
    ) -> None:
        dir_id = self._dir_id(conn, settings["sample_file_dir"])
        archive_id = _archive_id(conn, settings.get("archive"))
        url = settings["url"] or ""
        conn.execute(
            "insert into stream (camera_id, type, url, record, retain_bytes, max_age_days,"
            " sample_file_dir_id, next_recording_id, transport, archive_id, archive_days)"
            " values (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (camera_id, stream_type, url, _records(stream_type, url, settings["retain_bytes"]),
             settings["retain_bytes"], settings["max_age_days"], dir_id,
             settings.get("transport") or "auto", archive_id, settings.get("archive_days")),
        )

    def _dir_id(self, conn: sqlite3.Connection, id_or_name: int | str | None) -> int:
        """The id of the named sample file directory; the first one for None."""
        if id_or_name is None:
            row = conn.execute("select min(id) from sample_file_dir").fetchone()
            if row is None or row[0] is None:
                raise ConsistencyError(f"{self.path}: there is no sample file directory")
            return int(row[0])
        column, missing = _dir_key(id_or_name)
        row = conn.execute(
            f"select id from sample_file_dir where {column} = ?", (id_or_name,)
        ).fetchone()
        if row is None:
            raise UnknownSampleFileDirError(missing + "; `moonfire dir list` shows them")
        return int(row[0])

    def get_camera(self, id_or_name: int | str) -> Camera:
        """The camera with this id (an ``int``) or short name (a ``str``)."""
        with self._lock:
            return lookup_camera(self._conn, id_or_name)

    def list_cameras(self) -> list[Camera]:
        """All cameras, by id."""
        with self._lock:
            rows = self._conn.execute(f"select {CAMERA_COLUMNS} from camera order by id")
            return [camera_with_streams(self._conn, row) for row in rows.fetchall()]

    def get_stream(self, stream_id: int) -> Stream:
        with self._lock:
            row = self._conn.execute(
                f"select {STREAM_COLUMNS} from stream where id = ?", (stream_id,)
            ).fetchone()
        if row is None:
            raise UnknownStreamError(f"no stream with id {stream_id}")
        return stream_from_row(row)

    def list_streams(self, sample_file_dir_id: int | None = None) -> list[Stream]:
        """Every stream (or those in one sample file directory), by id."""
        where, params = ("", ()) if sample_file_dir_id is None else (
            " where sample_file_dir_id = ?", (sample_file_dir_id,))
        with self._lock:
            rows = self._conn.execute(
                f"select {STREAM_COLUMNS} from stream{where} order by id", params
            ).fetchall()
        return [stream_from_row(row) for row in rows]

    def stream_name(self, stream_id: int) -> str:
        """``camera/main`` or ``camera/sub``, for messages and logs."""
        with self._lock:
            row = self._conn.execute(
                "select c.short_name, s.type from stream s join camera c on c.id = s.camera_id"
                " where s.id = ?",
                (stream_id,),
            ).fetchone()
        return f"stream {stream_id}" if row is None else f"{row[0]}/{row[1]}"

    def update_camera(self, id_or_name: int | str, **changes: Any) -> Camera:
        """Changes some of a camera's settings and its streams' (the keyword names of
        ``add_camera``); a ``sub_`` setting on a camera without a sub stream adds one.

        A stream holding recordings can't change directory: its rows would name files
        in the old one (refused with ``SampleFileDirInUseError``).
        """
        unknown = sorted(set(changes) - CAMERA_SETTINGS - STREAM_SETTINGS - SUB_STREAM_SETTINGS)
        if unknown:
            raise TypeError(f"update_camera() got unknown camera settings: {', '.join(unknown)}")
        validate_camera_settings(changes)
        own = {k: v for k, v in changes.items() if k in CAMERA_SETTINGS}
        main = {k: v for k, v in changes.items() if k in STREAM_SETTINGS}
        sub = {k[len(SUB_PREFIX):]: v for k, v in changes.items() if k in SUB_STREAM_SETTINGS}
        with self.transaction() as tx:
            camera = lookup_camera(tx.conn, id_or_name)
            if own:
                if "short_name" in own:
                    _refuse_duplicate_name(tx.conn, own["short_name"], except_id=camera.id)
                assignments = ", ".join(f"{name} = ?" for name in own)
                tx.conn.execute(
                    f"update camera set {assignments} where id = ?", (*own.values(), camera.id)
                )
            if main:
                self._update_stream(tx.conn, camera, camera.main, main)
            if sub and camera.sub is None:
                self._insert_stream(
                    tx.conn, camera.id, SUB,
                    {"url": "", "retain_bytes": 0, "max_age_days": None,
                     "sample_file_dir": None} | sub,
                )
            elif sub:
                assert camera.sub is not None
                self._update_stream(tx.conn, camera, camera.sub, sub)
        return self.get_camera(camera.id)

    def _update_stream(
        self, conn: sqlite3.Connection, camera: Camera, stream: Stream, changes: dict[str, Any]
    ) -> None:
        columns = {k: v for k, v in changes.items() if k not in ("sample_file_dir", "archive")}
        if "url" in columns and columns["url"] is None:
            columns["url"] = ""
        if "archive" in changes:
            columns["archive_id"] = _archive_id(conn, changes["archive"])
        if "sample_file_dir" in changes:
            dir_id = self._dir_id(conn, changes["sample_file_dir"])
            if dir_id != stream.sample_file_dir_id:
                (count,) = conn.execute(
                    "select count(*) from recording where stream_id = ?", (stream.id,)
                ).fetchone()
                if count:
                    raise SampleFileDirInUseError(
                        f"stream {camera.short_name}/{stream.type} has {count} recordings in "
                        f"its sample file directory; it can move to another only without any "
                        f"(set its budget to 0 and let them rotate away, or export them first)"
                    )
            columns["sample_file_dir_id"] = dir_id
        url = columns.get("url", stream.url)
        retain = columns.get("retain_bytes", stream.retain_bytes)
        columns["record"] = _records(stream.type, url, retain)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"update stream set {assignments} where id = ?", (*columns.values(), stream.id)
        )

    def delete_camera(self, id_or_name: int | str, *, forget_archived: bool = False) -> None:
        """Removes a camera whose streams have no recordings with a local file (rotate them
        away first).  Recordings only an archive holds (schema 7) are refused too, unless
        ``forget_archived``: then their rows go, and their objects stay in the bucket
        (``moonfire archive rebuild`` can catalogue them again)."""
        with self.transaction() as tx:
            camera = lookup_camera(tx.conn, id_or_name)
            archived_only = [
                cid for (cid,) in tx.conn.execute(
                    "select r.composite_id from recording r join stream s on s.id = r.stream_id"
                    " join recording_archive a on a.composite_id = r.composite_id"
                    " where s.camera_id = ? and a.local_deleted_time_sec is not null",
                    (camera.id,),
                )
            ]
            (recordings,) = tx.conn.execute(
                "select count(*) from recording r join stream s on s.id = r.stream_id"
                " where s.camera_id = ?",
                (camera.id,),
            ).fetchone()
            if recordings > len(archived_only):
                raise DatabaseError(
                    f"camera {camera.short_name!r} still has "
                    f"{recordings - len(archived_only)} recordings; "
                    "set its budgets to 0 and let rotation delete them first"
                )
            if archived_only and not forget_archived:
                raise DatabaseError(
                    f"camera {camera.short_name!r} still has {len(archived_only)} recordings "
                    "that only its archive holds; `moonfire camera remove "
                    f"{camera.short_name} --delete-recordings` forgets them (their objects "
                    "stay in the bucket)"
                )
            for table in ("recording_playback", "recording", "recording_archive"):
                tx.conn.executemany(f"delete from {table} where composite_id = ?",
                                    [(cid,) for cid in archived_only])
            tx.conn.execute("delete from stream where camera_id = ?", (camera.id,))
            tx.conn.execute("delete from camera where id = ?", (camera.id,))

    def stream_usage(self, stream_id: int, *, local_only: bool = True) -> tuple[int, int, int]:
        """(recordings, sample_file_bytes, duration_90k) summed over a stream's recordings
        whose sample files are on the local disk: what its budget, the forecast and
        ``camera list`` count.  Archived-only recordings (schema 7) are not counted, unless
        ``local_only`` is false (the API's totals: every recording it lists and plays).

        All of the stream's rows (one aggregate over the ``recording_cover`` index, no table
        rows read) less its archived-only ones (found through their partial index, usually
        none): start-up asks this of every stream, and a ``not exists`` per row instead
        doubled its time with 1 M recordings (benchmarks/test_bench_startup.py).
        """
        with self._lock:
            self.get_stream(stream_id)
            total = self._conn.execute(
                "select count(*), coalesce(sum(sample_file_bytes), 0),"
                " coalesce(sum(duration_90k), 0) from recording where stream_id = ?",
                (stream_id,),
            ).fetchone()
            if not local_only:
                return total
            archived_only = self._conn.execute(
                "select count(*), coalesce(sum(r.sample_file_bytes), 0),"
                " coalesce(sum(r.duration_90k), 0) from recording_archive a"
                " join recording r on r.composite_id = a.composite_id"
                " where a.local_deleted_time_sec is not null"
                " and a.composite_id >= ? and a.composite_id < ?",
                (composite_id(stream_id, 0), composite_id(stream_id + 1, 0)),
            ).fetchone()
        return (total[0] - archived_only[0], total[1] - archived_only[1],
                total[2] - archived_only[2])

    def stream_time_range(self, stream_id: int) -> tuple[int | None, int | None, int]:
        """(earliest start, latest end, bytes on disk rounded up to 4 KiB blocks) of a stream's
        recordings; (None, None, 0) without any.  For the API's ``minStartTime90k``,
        ``maxEndTime90k`` (archived-only recordings included: they play) and ``fsBytes``
        (local files only)."""
        # As in ``stream_usage``: every row's sum less the archived-only ones' (through their
        # partial index), not a ``not exists`` per row, which a GET /api/ pays per stream.
        with self._lock:
            row = self._conn.execute(
                "select min(start_time_90k), max(start_time_90k + duration_90k),"
                " coalesce(sum((sample_file_bytes + 4095) / 4096 * 4096), 0)"
                " from recording where stream_id = ?",
                (stream_id,),
            ).fetchone()
            (archived_only,) = self._conn.execute(
                "select coalesce(sum((r.sample_file_bytes + 4095) / 4096 * 4096), 0)"
                " from recording_archive a join recording r on r.composite_id = a.composite_id"
                " where a.local_deleted_time_sec is not null"
                " and a.composite_id >= ? and a.composite_id < ?",
                (composite_id(stream_id, 0), composite_id(stream_id + 1, 0)),
            ).fetchone()
        return row[0], row[1], row[2] - archived_only

    # ---- archives (schema 6; ``moonfire.storage.archive`` uploads) ----------------------

    def add_archive(
        self, name: str, url: str, endpoint: str | None = None, region: str | None = None
    ) -> ArchiveRow:
        """Adds an S3-compatible archive.  Only where it is: credentials are never stored."""
        _validate_archive(name, url, endpoint)
        with self.transaction() as tx:
            if tx.conn.execute("select 1 from archive where name = ?", (name,)).fetchone():
                raise InvalidConfigError(f"archive {name!r} already exists")
            tx.conn.execute(
                "insert into archive (name, url, endpoint, region) values (?, ?, ?, ?)",
                (name, url, endpoint, region),
            )
        return self.get_archive(name)

    def get_archive(self, id_or_name: int | str) -> ArchiveRow:
        column = "name" if isinstance(id_or_name, str) else "id"
        with self._lock:
            row = self._conn.execute(
                f"select {ARCHIVE_COLUMNS} from archive where {column} = ?", (id_or_name,)
            ).fetchone()
        if row is None:
            raise UnknownArchiveError(
                f"no archive {id_or_name!r}; `moonfire archive list` shows them"
            )
        return ArchiveRow(*row)

    def list_archives(self) -> list[ArchiveRow]:
        with self._lock:
            rows = self._conn.execute(
                f"select {ARCHIVE_COLUMNS} from archive order by id"
            ).fetchall()
        return [ArchiveRow(*row) for row in rows]

    def remove_archive(self, name: str) -> None:
        """Forgets an archive no stream uses and that holds no archived-only recording.
        Its objects stay in the bucket; the rows saying which recordings were uploaded
        there go (those recordings' local files still exist)."""
        with self.transaction() as tx:
            archive = self._archive_in(tx.conn, name)
            users = [
                f"{camera}/{type_}" for camera, type_ in tx.conn.execute(
                    "select c.short_name, s.type from stream s join camera c"
                    " on c.id = s.camera_id where s.archive_id = ? order by s.id",
                    (archive.id,),
                )
            ]
            if users:
                raise ArchiveInUseError(
                    f"archive {name!r} is used by stream{'s' if len(users) > 1 else ''} "
                    f"{', '.join(users)}; `moonfire camera edit CAMERA --archive ''` first"
                )
            (only_there,) = tx.conn.execute(
                "select count(*) from recording_archive a join recording r"
                " on r.composite_id = a.composite_id"
                " where a.archive_id = ? and a.local_deleted_time_sec is not null",
                (archive.id,),
            ).fetchone()
            if only_there:
                raise ArchiveInUseError(
                    f"archive {name!r} holds the only copy of {only_there} recording"
                    f"{'s' if only_there > 1 else ''} (their local files were deleted by "
                    f"retention); removing it would lose them"
                )
            tx.conn.execute("delete from recording_archive where archive_id = ?", (archive.id,))
            tx.conn.execute("delete from archive where id = ?", (archive.id,))

    def _archive_in(self, conn: sqlite3.Connection, name: str) -> ArchiveRow:
        row = conn.execute(
            f"select {ARCHIVE_COLUMNS} from archive where name = ?", (name,)
        ).fetchone()
        if row is None:
            raise UnknownArchiveError(f"no archive {name!r}; `moonfire archive list` shows them")
        return ArchiveRow(*row)

    def set_archive_error(self, archive_id: int, error: str | None) -> None:
        """Records the uploader's latest failure (None: the last attempt succeeded)."""
        with self.transaction() as tx:
            tx.conn.execute(
                "update archive set last_error = ?, last_error_time_sec ="
                " case when ? is null then null else cast(strftime('%s', 'now') as int) end"
                " where id = ?",
                (error, error, archive_id),
            )

    def list_archive_backlog(
        self, archive_id: int, limit: int, *, exclude: Iterable[int] = (),
        cursor: BacklogCursor | None = None,
    ) -> list[tuple[RecordingRow, Playback, int]]:
        """Up to ``limit`` committed recordings of streams archived to ``archive_id`` that
        are not archived yet (nor in ``exclude``, composite ids), oldest (by start time)
        first, each with its playback fields and sample file directory id.

        Index-driven, as the uploader calls it every second next to the recorder: each
        stream is scanned by composite id from where ``cursor`` says the last call found its
        first candidate (from the stream's start without one), ``BACKLOG_SCAN_IDS`` ids per
        statement with the lock released between them, and the streams' candidates are
        merged by start time.  One sorted scan of every recording held the recorder's lock
        for 0.5-0.8 s per call on 1 M recordings."""
        cursor = cursor if cursor is not None else BacklogCursor()
        excluded = json.dumps(sorted(exclude))
        now_90k = _now_90k()
        with self._lock:
            streams = self._conn.execute(
                "select id, sample_file_dir_id, archive_days from stream where archive_id = ?",
                (archive_id,),
            ).fetchall()
        width = len(RECORDING_COLUMNS.split(","))
        found: list[tuple[RecordingRow, Playback, int]] = []
        for stream_id, dir_id, archive_days in streams:
            if cursor.archive_days.get(stream_id, archive_days) != archive_days:
                cursor.positions.pop(stream_id, None)  # older recordings may be in range now
            cursor.archive_days[stream_id] = archive_days
            low = cursor.positions.get(stream_id, composite_id(stream_id, 0))
            end = composite_id(stream_id + 1, 0)
            rows: list[Any] = []
            while True:
                high = min(low + BACKLOG_SCAN_IDS, end)
                with self._lock:
                    rows += self._conn.execute(
                        _BACKLOG_QUERY, (low, high, excluded, archive_days, now_90k,
                                         archive_days, limit - len(rows)),
                    ).fetchall()
                    last = None if len(rows) >= limit else self._conn.execute(
                        "select max(composite_id) from recording"
                        " where composite_id >= ? and composite_id < ?", (low, end),
                    ).fetchone()[0]
                if last is None or last < high:
                    break
                low = high
                if not rows:
                    cursor.positions[stream_id] = low
                time.sleep(0)  # lets a thread waiting for the lock (the recorder) take it
            # The next call starts at the first candidate, or past everything scanned (a
            # recording committed later gets a higher id).
            if rows:
                cursor.positions[stream_id] = rows[0][0]
            elif last is not None:
                cursor.positions[stream_id] = last + 1
            found += [(RecordingRow(*row[:width]), Playback(*row[width:]), dir_id)
                      for row in rows]
        found.sort(key=lambda item: (item[0].start_time_90k, item[0].composite_id))
        return found[:limit]

    def archive_backlog(self, archive_id: int) -> tuple[int, int]:
        """(recordings, bytes) waiting to be uploaded to ``archive_id`` (not those already
        older than their stream's ``archive_days``: they would expire on arrival)."""
        with self._lock:
            row = self._conn.execute(
                "select count(*), coalesce(sum(r.sample_file_bytes), 0) from recording r"
                " join stream s on s.id = r.stream_id"
                " left join recording_archive a on a.composite_id = r.composite_id"
                " where s.archive_id = ? and a.composite_id is null and " + _WITHIN_ARCHIVE_DAYS,
                (archive_id, _now_90k()),
            ).fetchone()
        return int(row[0]), int(row[1])

    def archived_count(self, archive_id: int) -> int:
        with self._lock:
            (count,) = self._conn.execute(
                "select count(*) from recording_archive where archive_id = ?", (archive_id,)
            ).fetchone()
        return int(count)

    def mark_archived(
        self, composite_id: int, archive_id: int, data_key: str, manifest_key: str,
        sample_file_sha1: bytes,
    ) -> bool:
        """Records that a recording's objects are stored and checked (done once per
        recording: a second call is an ``IntegrityError``, a bug in the caller).  False,
        recording nothing, if the recording's row went meanwhile (the free-space floor
        deleted it during the upload): a row for it would be an orphan that ``archive
        rebuild`` counts as known, so its objects are left for a rebuild to catalog."""
        with self.transaction() as tx:
            inserted = tx.conn.execute(
                "insert into recording_archive (composite_id, archive_id, data_key,"
                " manifest_key, archived_time_sec, sample_file_sha1)"
                f" select ?, ?, ?, ?, {schema._NOW}, ?"
                " where exists (select 1 from recording where composite_id = ?)",
                (composite_id, archive_id, data_key, manifest_key, sample_file_sha1,
                 composite_id),
            ).rowcount
        return inserted == 1

    def list_expired_archived(self, archive_id: int) -> list[tuple[int, str, str]]:
        """(composite id, data key, manifest key) of recordings archived to ``archive_id``
        longer ago than their stream's ``archive_days``."""
        with self._lock:
            return self._conn.execute(
                "select a.composite_id, a.data_key, a.manifest_key from recording_archive a"
                " join stream s on s.id = a.composite_id >> 32"
                " where a.archive_id = ? and " + _ARCHIVE_EXPIRED + " order by a.composite_id",
                (archive_id,),
            ).fetchall()

    def claim_expired_archived(self, composite_id: int) -> tuple[str, str] | None:
        """The first step of expiring a recording, in ONE transaction, before any object
        is touched: re-checks ``_ARCHIVE_EXPIRED`` now (its stream's ``archive_days`` may have
        changed, or the clock stepped, since ``list_expired_archived``); if it still holds,
        deletes an archived-only recording's rows, and the ``recording_archive`` row in any
        case (so ``delete_local_files`` can no longer make a local one archived-only).
        Returns the (data key, manifest key) the caller then deletes, or None to leave the
        recording alone.  A kill -9 after the commit leaves only orphan objects, never a row
        without its file or objects."""
        with self.transaction() as tx:
            found = tx.conn.execute(
                "select a.data_key, a.manifest_key, a.local_deleted_time_sec is not null"
                " from recording_archive a join stream s on s.id = a.composite_id >> 32"
                " where a.composite_id = ? and " + _ARCHIVE_EXPIRED,
                (composite_id,),
            ).fetchone()
            if found is None:
                return None
            data_key, manifest_key, archived_only = found
            if archived_only:
                tx.conn.execute("delete from recording_playback where composite_id = ?",
                                (composite_id,))
                tx.conn.execute("delete from recording where composite_id = ?",
                                (composite_id,))
            tx.conn.execute("delete from recording_archive where composite_id = ?",
                            (composite_id,))
        return data_key, manifest_key

    def archive_holding(self, composite_id: int) -> str | None:
        """The name of the archive holding a live copy of a recording whose local file
        exists (its ``recording_archive`` row, not archived-only, not ``_ARCHIVE_EXPIRED``),
        or None: whether losing the local file still leaves the recording playable."""
        with self._lock:
            found = self._conn.execute(
                "select x.name from recording_archive a"
                " join stream s on s.id = a.composite_id >> 32"
                " join archive x on x.id = a.archive_id"
                " where a.composite_id = ? and a.local_deleted_time_sec is null"
                " and not " + _ARCHIVE_EXPIRED,
                (composite_id,),
            ).fetchone()
        return None if found is None else str(found[0])

    def forget_archived(self, composite_id: int) -> None:
        """Drops a recording's ``recording_archive`` row once its objects are deleted."""
        with self.transaction() as tx:
            tx.conn.execute("delete from recording_archive where composite_id = ?",
                            (composite_id,))

    def list_archived(self, archive_id: int) -> list[tuple[int, str, str, bytes]]:
        """(composite id, data key, manifest key, SHA-1) of every recording archived to
        ``archive_id``, by composite id."""
        with self._lock:
            return self._conn.execute(
                "select composite_id, data_key, manifest_key, sample_file_sha1"
                " from recording_archive where archive_id = ? order by composite_id",
                (archive_id,),
            ).fetchall()

    # ---- archived-only recordings (schema 7) -------------------------------------------
    #
    # ``recording_archive.local_deleted_time_sec`` set = the recording's local sample file is
    # gone and its archive objects are its only copy ("archived-only").  Local retention
    # (``storage.syncer``) makes rows archived-only instead of deleting them; the uploader's
    # ``archive_days`` expiry deletes them with their objects.

    def list_oldest_local_recordings(
        self, stream_id: int
    ) -> Iterator[tuple[RecordingRow, bytes, ArchiveState]]:
        """A stream's recordings with a local sample file, oldest (lowest id) first, each
        with its sample file uuid and what deleting that file would cost
        (``ArchiveState``).  Lazy and batched like ``list_oldest_recordings``."""
        low, high = composite_id(stream_id, 0), composite_id(stream_id + 1, 0)
        while True:
            now_90k = _now_90k()
            with self._lock:
                batch = self._conn.execute(
                    _LOCAL_OLDEST_QUERY, (now_90k, low, high, OLDEST_BATCH_ROWS)
                ).fetchall()
            for row in batch:
                yield RecordingRow(*row[:-2]), row[-2], ArchiveState(row[-1])
            if len(batch) < OLDEST_BATCH_ROWS:
                return
            low = batch[-1][0] + 1

    def delete_local_files(self, tx: Transaction, rows: Iterable[HasCompositeId]) -> list[bytes]:
        """In ``tx``, for rows retention found ``ArchiveState.ARCHIVED`` (or ``WAITING``: an
        upload may have completed since they were listed): sets
        ``local_deleted_time_sec`` and turns the sample file into a "deleting" reservation,
        keeping the recording row (now archived-only).  Returns the uuids to unlink, as
        ``Transaction.delete_recordings`` does, and the same steps follow (unlink, directory
        fsync, ``mark_sample_files_deleted``): both changes are in one transaction, so a
        kill -9 leaves either a local recording or an archived-only one whose file is
        reserved for deletion, never a row without its file or objects.

        A row whose archive copy expired (``archive_days``) or went since it was listed is
        deleted whole instead, like a recording of a stream without an archive: the
        uploader's expiry may be deleting its objects, so they can't be its only copy.
        The check is in the same statement as the update, with the expiry's own clock
        (SQLite's), so the two never disagree."""
        uuids: list[bytes] = []
        whole: list[HasCompositeId] = []
        try:
            for row in rows:
                cid = row.composite_id
                updated = tx.conn.execute(
                    f"update recording_archive set local_deleted_time_sec = {schema._NOW}"
                    " where composite_id = ? and local_deleted_time_sec is null and not exists"
                    " (select 1 from recording_archive a join stream s on s.id = ?"
                    " where a.composite_id = recording_archive.composite_id and "
                    + _ARCHIVE_EXPIRED + ")",
                    (cid, cid >> 32),
                ).rowcount
                if updated != 1:
                    whole.append(row)
                    continue
                found = tx.conn.execute(
                    "select sample_file_uuid from recording_playback where composite_id = ?",
                    (cid,),
                ).fetchone()
                if found is None:
                    raise ConsistencyError(f"recording {cid >> 32}/{cid & 0xFFFF_FFFF} has no "
                                           "recording_playback row")
                try:
                    tx.conn.execute(
                        "insert into reserved_sample_files (uuid, sample_file_dir_id, state)"
                        " select ?, sample_file_dir_id, ? from stream where id = ?",
                        (found[0], STATE_DELETING, cid >> 32),
                    )
                except sqlite3.IntegrityError as e:
                    raise ConsistencyError(
                        f"uuid {uuidlib.UUID(bytes=found[0])} of recording {cid} is already "
                        "reserved") from e
                uuids.append(found[0])
        except BaseException:
            tx.must_rollback = True
            raise
        return uuids + tx.delete_recordings(whole)

    def stream_archive_backlog(self, stream_id: int) -> tuple[int, int]:
        """(recordings, bytes) of one stream waiting for its archive
        (``ArchiveState.WAITING``): what its local budget may not delete."""
        with self._lock:
            row = self._conn.execute(
                "select count(*), coalesce(sum(r.sample_file_bytes), 0) from recording r"
                " join stream s on s.id = r.stream_id"
                " left join recording_archive a on a.composite_id = r.composite_id"
                " where r.stream_id = ? and s.archive_id is not null and a.composite_id is null"
                " and " + _WITHIN_ARCHIVE_DAYS,
                (stream_id, _now_90k()),
            ).fetchone()
        return int(row[0]), int(row[1])

    def archived_only_usage(self, archive_id: int) -> tuple[int, int]:
        """(recordings, bytes) whose only copy is in ``archive_id``."""
        with self._lock:
            row = self._conn.execute(
                "select count(*), coalesce(sum(r.sample_file_bytes), 0) from recording_archive a"
                " join recording r on r.composite_id = a.composite_id"
                " where a.archive_id = ? and a.local_deleted_time_sec is not null",
                (archive_id,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def delete_archived_only_rows(self, composite_id: int) -> bool:
        """The first step of expiring an archived recording: if it is archived-only, deletes
        its ``recording`` and ``recording_playback`` rows (the objects go next, then the
        ``recording_archive`` row, ``forget_archived``); a recording with its local file
        keeps its rows.  True if rows went.  Idempotent, so an expiry redone after a kill -9
        finds nothing left to do here."""
        with self.transaction() as tx:
            only = tx.conn.execute(
                "select 1 from recording_archive where composite_id = ?"
                " and local_deleted_time_sec is not null",
                (composite_id,),
            ).fetchone()
            if only is None:
                return False
            tx.conn.execute("delete from recording_playback where composite_id = ?",
                            (composite_id,))
            count = tx.conn.execute("delete from recording where composite_id = ?",
                                    (composite_id,)).rowcount
        return count == 1

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

    def list_oldest_recordings(self, stream_id: int) -> Iterator[tuple[RecordingRow, bytes]]:
        """A stream's recordings that have a local sample file, with their sample file uuids,
        oldest (lowest id) first; archived-only ones (schema 7) are not listed: no file of
        theirs is to be found, kept or deleted here.

        Lazy: rows are fetched in batches, each under the lock but none held across a
        ``yield``, so a caller may stop early or write between batches.
        """
        for row, sample_file_uuid, _state in self.list_oldest_local_recordings(stream_id):
            yield row, sample_file_uuid

    def list_recordings_by_time(
        self, stream_id: int, start_90k: int, end_90k: int
    ) -> list[RecordingRow]:
        """Recordings overlapping ``[start_90k, end_90k)``, by start time.

        A recording ``[s, s + d)`` overlaps when ``s < end`` and ``s + d > start``; since
        ``d`` is under 5 minutes, ``s > start - 5 min`` bounds the index range scanned.
        """
        with self._lock:
            rows = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where stream_id = ?"
                " and start_time_90k > ? and start_time_90k < ?"
                " and start_time_90k + duration_90k > ? order by start_time_90k",
                (stream_id, start_90k - schema.MAX_RECORDING_DURATION_90K, end_90k, start_90k),
            ).fetchall()
        return [RecordingRow(*row) for row in rows]

    def list_recordings_by_id(
        self, stream_id: int, first_id: int, last_id: int
    ) -> list[RecordingRow]:
        """A stream's recordings with ids ``first_id..last_id`` (inclusive), by id; missing
        ones are simply absent."""
        with self._lock:
            rows = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording"
                " where composite_id between ? and ? order by composite_id",
                (composite_id(stream_id, first_id), composite_id(stream_id, last_id)),
            ).fetchall()
        return [RecordingRow(*row) for row in rows]

    def list_recordings(self, stream_id: int) -> list[RecordingRow]:
        """All of a stream's recordings, by start time."""
        with self._lock:
            rows = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where stream_id = ?"
                " order by start_time_90k",
                (stream_id,),
            ).fetchall()
        return [RecordingRow(*row) for row in rows]

    def last_recording(self, stream_id: int) -> RecordingRow | None:
        """The stream's latest recording by start time, or None (for ``moonfire status``)."""
        with self._lock:
            row = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where stream_id = ?"
                " order by start_time_90k desc limit 1",
                (stream_id,),
            ).fetchone()
        return None if row is None else RecordingRow(*row)

    def runs_started_before(self, stream_id: int, start_time_90k: int) -> int:
        """How many of the stream's stored runs began before ``start_time_90k`` (``X-Runs``;
        runs whose first recording retention deleted are not counted)."""
        with self._lock:
            (count,) = self._conn.execute(
                "select count(*) from recording where stream_id = ? and run_offset = 0"
                " and start_time_90k < ?",
                (stream_id, start_time_90k),
            ).fetchone()
        return int(count)

    def get_recording(self, composite_id: int) -> RecordingRow:
        with self._lock:
            row = self._conn.execute(
                f"select {RECORDING_COLUMNS} from recording where composite_id = ?",
                (composite_id,),
            ).fetchone()
        if row is None:
            raise UnknownRecordingError(_no_recording(composite_id))
        return RecordingRow(*row)

    def list_playback_by_id(
        self, stream_id: int, first_id: int, last_id: int
    ) -> dict[int, Playback]:
        """Composite id -> ``Playback`` of a stream's recordings ``first_id..last_id``, in one
        query (a 24-hour ``view.mp4`` names 1440; one query each cost ~40 µs apiece)."""
        with self._lock:
            rows = self._conn.execute(
                f"select {PLAYBACK_COLUMNS} from recording_playback"
                " where composite_id between ? and ?",
                (composite_id(stream_id, first_id), composite_id(stream_id, last_id)),
            ).fetchall()
        return {row[0]: Playback(*row) for row in rows}

    def get_playback(self, composite_id: int) -> Playback:
        with self._lock:
            row = self._conn.execute(
                f"select {PLAYBACK_COLUMNS} from recording_playback where composite_id = ?",
                (composite_id,),
            ).fetchone()
        if row is None:
            raise UnknownRecordingError(_no_recording(composite_id))
        return Playback(*row)

    def list_reserved_sample_files(self, dir_id: int) -> list[tuple[bytes, int]]:
        """(uuid, state) of every reservation in a sample file directory: 0 = writing,
        1 = deleting."""
        with self._lock:
            return self._conn.execute(
                "select uuid, state from reserved_sample_files where sample_file_dir_id = ?",
                (dir_id,),
            ).fetchall()

    def list_all_recording_uuids(self, dir_id: int) -> dict[bytes, int]:
        """Sample file uuid -> composite id of every recording in a sample file directory
        (for ``moonfire check``)."""
        with self._lock:
            return dict(
                self._conn.execute(
                    "select p.sample_file_uuid, p.composite_id from recording_playback p"
                    " join stream s on s.id = p.composite_id >> 32"
                    " where s.sample_file_dir_id = ?",
                    (dir_id,),
                )
            )

    # ---- archive rebuild (schema 7) -------------------------------------------------------
    # ``moonfire.storage.archive_catalog`` recreates cameras, streams and the recording
    # catalog from an archive's manifests; ``moonfire.storage.archive_reader`` plays the
    # recordings whose local file is gone.  An "archived-only" recording is a ``recording``
    # row whose ``recording_archive`` row has ``local_deleted_time_sec`` set.

    def list_archived_only(
        self, stream_id: int, first_id: int, last_id: int
    ) -> dict[int, tuple[int, str, bytes]]:
        """Composite id -> (archive id, data key, SHA-1) of a stream's recordings
        ``first_id..last_id`` that only an archive holds (their local file is gone)."""
        with self._lock:
            rows = self._conn.execute(
                "select composite_id, archive_id, data_key, sample_file_sha1"
                " from recording_archive where composite_id between ? and ?"
                " and local_deleted_time_sec is not null",
                (composite_id(stream_id, first_id), composite_id(stream_id, last_id)),
            ).fetchall()
        return {cid: (archive_id, key, sha1) for cid, archive_id, key, sha1 in rows}

    def list_archived_manifest_keys(self, archive_id: int) -> dict[str, tuple[int, bool]]:
        """Manifest key -> (composite id, archived only) of every recording archived to
        ``archive_id`` that the catalog still has (a ``recording_archive`` row whose
        recording row went, e.g. dropped by an older ``check --repair``, is not "known": a
        rebuild catalogs its manifest again): what a catalog rebuild already has."""
        with self._lock:
            rows = self._conn.execute(
                "select a.manifest_key, a.composite_id, a.local_deleted_time_sec is not null"
                " from recording_archive a join recording r on r.composite_id = a.composite_id"
                " where a.archive_id = ?",
                (archive_id,),
            ).fetchall()
        return {key: (cid, bool(only)) for key, cid, only in rows}

    def find_camera_by_uuid(self, camera_uuid: bytes) -> Camera | None:
        with self._lock:
            row = self._conn.execute(
                "select id from camera where uuid = ?", (camera_uuid,)).fetchone()
        return None if row is None else self.get_camera(int(row[0]))

    def add_cataloged_stream(self, camera_uuid: bytes, short_name: str, stream_type: str) -> Stream:
        """The ``stream_type`` stream of the camera with ``camera_uuid``, adding the camera
        (named ``short_name``) and the stream as needed.  Added streams record nothing: no
        URL, no budget, no archive of their own (the manifests hold no camera URL and no
        credentials); their recordings come from the archive."""
        with self.transaction() as tx:
            row = tx.conn.execute(
                "select id from camera where uuid = ?", (camera_uuid,)).fetchone()
            if row is None:
                _refuse_duplicate_name(tx.conn, short_name, except_id=None)
                cursor = tx.conn.execute(
                    "insert into camera (uuid, short_name, description) values (?, ?, ?)",
                    (camera_uuid, short_name, "recreated from an archive's manifests"),
                )
                camera_id = _inserted_rowid(cursor, "camera")
            else:
                camera_id = int(row[0])
            found = tx.conn.execute(
                "select id from stream where camera_id = ? and type = ?",
                (camera_id, stream_type),
            ).fetchone()
            if found is None:
                cursor = tx.conn.execute(
                    "insert into stream (camera_id, type, url, record, retain_bytes,"
                    " sample_file_dir_id, next_recording_id) values (?, ?, '', 0, 0, ?, 1)",
                    (camera_id, stream_type, self._dir_id(tx.conn, None)),
                )
                stream_id = _inserted_rowid(cursor, "stream")
            else:
                stream_id = int(found[0])
        return self.get_stream(stream_id)

    def add_archived_only_recordings(
        self,
        archive_id: int,
        recordings: Sequence[tuple[RecordingRow, bytes, str, str, bytes]],
    ) -> int:
        """Catalogs recordings that only ``archive_id`` holds, in one transaction: each
        (row, video_index, data key, manifest key, SHA-1) becomes a ``recording`` row (its
        ``composite_id``, ``stream_id`` and ``video_sample_entry_id`` already this
        database's; ``open_id`` null: no open here committed it), its playback row (a fresh
        sample file uuid that names no file) and a ``recording_archive`` row with
        ``local_deleted_time_sec`` set.  A composite id already present is skipped; each
        stream's ``next_recording_id`` moves past the ids added.  Returns how many were
        added."""
        added = 0
        with self.transaction() as tx:
            for row, video_index, data_key, manifest_key, sha1 in recordings:
                if tx.conn.execute("select 1 from recording where composite_id = ?",
                                   (row.composite_id,)).fetchone():
                    continue
                tx.conn.execute(
                    f"insert into recording ({RECORDING_COLUMNS})"
                    " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
                    (row.composite_id, row.stream_id, row.run_offset, row.flags,
                     row.sample_file_bytes, row.start_time_90k, row.duration_90k,
                     row.local_time_delta_90k, row.video_samples, row.video_sync_samples,
                     row.video_sample_entry_id),
                )
                tx.conn.execute(
                    "insert into recording_playback (composite_id, sample_file_uuid,"
                    " sample_file_sha1, video_index) values (?, ?, ?, ?)",
                    (row.composite_id, uuidlib.uuid4().bytes, sha1, video_index),
                )
                tx.conn.execute(
                    "insert or replace into recording_archive (composite_id, archive_id,"
                    " data_key, manifest_key, archived_time_sec, sample_file_sha1,"
                    f" local_deleted_time_sec) values (?, ?, ?, ?, {schema._NOW}, ?,"
                    f" {schema._NOW})",
                    (row.composite_id, archive_id, data_key, manifest_key, sha1),
                )
                tx.conn.execute(
                    "update stream set next_recording_id = max(next_recording_id, ?)"
                    " where id = ?",
                    (row.recording_id + 1, row.stream_id),
                )
                added += 1
        return added

    def latest_archived_ids(self, archive_id: int) -> dict[int, int]:
        """Stream id -> the highest recording id archived to ``archive_id`` (where a
        following catalog's next listing of that stream's manifests starts)."""
        # Per stream, down its primary-key range from the top to the first row of this
        # archive (usually the first row looked at), not a group-by over every row.
        latest = {}
        with self._lock:
            for (stream_id,) in self._conn.execute("select id from stream").fetchall():
                row = self._conn.execute(
                    "select composite_id from recording_archive where composite_id >= ?"
                    " and composite_id < ? and archive_id = ? order by composite_id desc"
                    " limit 1",
                    (composite_id(stream_id, 0), composite_id(stream_id + 1, 0), archive_id),
                ).fetchone()
                if row is not None:
                    latest[int(stream_id)] = int(row[0]) & 0xFFFF_FFFF
        return latest


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
    with _without_foreign_keys(conn):
        version = schema.read_version(conn, path)
        if version < schema.SCHEMA_VERSION:
            schema.upgrade(conn, version, sample_dir_path)


@contextmanager
def _without_foreign_keys(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction with foreign keys off, as SQLite's table rebuild needs (the pragma
    is a no-op inside a transaction); the schema step checks them before the commit."""
    conn.execute("pragma foreign_keys = off")
    try:
        conn.execute("begin immediate")
        try:
            yield
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
    finally:
        conn.execute("pragma foreign_keys = on")


def _inserted_rowid(cursor: sqlite3.Cursor, table: str) -> int:
    """The rowid of the row an ``insert`` just made; ``None`` there would be a bug here."""
    if cursor.lastrowid is None:
        raise RuntimeError(f"insert into {table} gave no rowid; nothing was inserted")
    return cursor.lastrowid


def _refuse_duplicate_name(conn: sqlite3.Connection, name: str, except_id: int | None) -> None:
    row = conn.execute("select id from camera where short_name = ?", (name,)).fetchone()
    if row is not None and row[0] != except_id:
        raise DuplicateCameraError(f"camera {name!r} already exists")


def _records(stream_type: str, url: str, retain_bytes: int) -> bool:
    """Whether a stream records: with a URL, and a sub stream only with a budget (one
    without is there for live view)."""
    return bool(url) and (stream_type == MAIN or retain_bytes > 0)


#: The expiry condition on a ``recording_archive`` row ``a`` of stream ``s``: archived longer
#: ago than the stream's ``archive_days`` (SQLite's clock).  The ONE place it is written: the
#: uploader's expiry lists and claims with it, and local retention stops counting such a copy
#: (``list_oldest_local_recordings``, ``delete_local_files``), so the two never disagree.
_ARCHIVE_EXPIRED = (
    f"(s.archive_days is not null and a.archived_time_sec < {schema._NOW}"
    " - s.archive_days * 86400)"
)

#: The backlog's condition on ``r`` (recording) and ``s`` (stream), given now in 90 kHz units:
#: a recording older than its stream's ``archive_days`` is not uploaded.
_WITHIN_ARCHIVE_DAYS = (
    "(s.archive_days is null or r.start_time_90k > ? - s.archive_days * 86400 * 90000)"
)

#: Composite ids one statement of ``list_archive_backlog`` scans (under the lock).
BACKLOG_SCAN_IDS = 1024

#: ``list_archive_backlog``, one stream's chunk: the composite id range, the excluded ids
#: (JSON), the stream's ``archive_days`` twice around now (90 kHz), the limit.
_BACKLOG_QUERY = (
    "select " + ", ".join(f"r.{c.strip()}" for c in RECORDING_COLUMNS.split(","))
    + ", " + ", ".join(f"p.{c.strip()}" for c in PLAYBACK_COLUMNS.split(","))
    + " from recording r join recording_playback p on p.composite_id = r.composite_id"
    " where r.composite_id >= ? and r.composite_id < ?"
    " and not exists (select 1 from recording_archive a where a.composite_id = r.composite_id)"
    " and r.composite_id not in (select value from json_each(?))"
    " and (? is null or r.start_time_90k > ? - ? * 86400 * 90000)"
    " order by r.composite_id limit ?"
)


@dataclass
class BacklogCursor:
    """Where ``list_archive_backlog`` resumes each stream's scan: below
    ``positions[stream_id]`` the last calls found nothing to upload (archived, older than
    ``archive_days``, or excluded).  A changed ``archive_days`` restarts that stream's
    scan; ``reset`` restarts every one (the uploader does, now and then, for what else
    could bring a recording back: a clock step, an expired copy's stream given longer
    ``archive_days`` and back)."""

    positions: dict[int, int] = field(default_factory=dict)
    archive_days: dict[int, int | None] = field(default_factory=dict)

    def reset(self) -> None:
        self.positions.clear()


class ArchiveState(IntEnum):
    """What deleting a recording's local sample file costs (``list_oldest_local_recordings``)."""

    #: No archive copy to keep it: the whole recording goes (a stream without an archive,
    #: one older than its ``archive_days``, or whose archive copy has expired).
    NOT_ARCHIVED = 0
    #: Its archive objects are stored and checked, and not expiring: the row stays,
    #: archived-only.
    ARCHIVED = 1
    #: Its stream's archive doesn't have it yet: only the free-space floor deletes it, and
    #: it is then lost for the archive.
    WAITING = 2


#: ``list_oldest_local_recordings``: now (90 kHz) for the backlog's ``archive_days``, then the
#: composite id range and the batch size.  An archive copy counts unless ``_ARCHIVE_EXPIRED``.
_LOCAL_OLDEST_QUERY = (
    "select " + ", ".join(f"r.{c.strip()}" for c in RECORDING_COLUMNS.split(","))
    + ", p.sample_file_uuid, case"
    " when a.composite_id is not null then (case when " + _ARCHIVE_EXPIRED
    + " then 0 else 1 end)"
    " when s.archive_id is not null and " + _WITHIN_ARCHIVE_DAYS + " then 2 else 0 end"
    " from recording r"
    " join recording_playback p on p.composite_id = r.composite_id"
    " join stream s on s.id = r.stream_id"
    " left join recording_archive a on a.composite_id = r.composite_id"
    " where r.composite_id >= ? and r.composite_id < ? and a.local_deleted_time_sec is null"
    " order by r.composite_id limit ?"
)


def _archive_id(conn: sqlite3.Connection, name: str | None) -> int | None:
    """The id of the archive named ``name``; None for None or '' (not archived)."""
    if not name:
        return None
    row = conn.execute("select id from archive where name = ?", (name,)).fetchone()
    if row is None:
        raise UnknownArchiveError(f"no archive {name!r}; `moonfire archive list` shows them")
    return int(row[0])


#: What a refused archive URL or endpoint with credentials in it is told (never echoed).
_ARCHIVE_CREDENTIALS_HINT = (
    "credentials are never stored: give them to `moonfire run` as AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or in the credentials file (~/.aws/credentials, AWS_PROFILE)")


def _validate_archive(name: str, url: str, endpoint: str | None) -> None:
    """Checks ``archive add``'s arguments.  A URL or endpoint holding userinfo
    (``http://KEY:SECRET@host``) is refused before anything else, and without echoing it:
    stored, it would be printed by ``archive list`` and quoted in connection errors."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidConfigError(f"archive name must be a non-empty string without surrounding "
                                 f"spaces, got {name!r}")
    if endpoint is not None and "@" in endpoint.split("://", 1)[-1].split("/", 1)[0]:
        host = endpoint.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[1]
        raise InvalidConfigError(f"archive {name!r}: the endpoint must not hold a user name or "
                                 f"password (user:password@{host}); {_ARCHIVE_CREDENTIALS_HINT}")
    if "@" in url[len("s3://"):].split("/", 1)[0]:
        raise InvalidConfigError(f"archive {name!r}: the URL must be s3://BUCKET or "
                                 f"s3://BUCKET/PREFIX, without a user name or password; "
                                 f"{_ARCHIVE_CREDENTIALS_HINT}")
    bucket = url[len("s3://"):].split("/", 1)[0] if url.startswith("s3://") else ""
    if not bucket:
        raise InvalidConfigError(f"archive URL must be s3://BUCKET or s3://BUCKET/PREFIX, "
                                 f"got {url!r}")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise InvalidConfigError(f"archive endpoint must be an http:// or https:// URL, "
                                 f"got {endpoint!r}")


def _dir_key(id_or_name: int | str) -> tuple[str, str]:
    """The column naming a sample file directory by ``id_or_name``, and the message if none."""
    if isinstance(id_or_name, str):
        return "name", f"no sample file directory {id_or_name!r}"
    if isinstance(id_or_name, int) and not isinstance(id_or_name, bool):
        return "id", f"no sample file directory with id {id_or_name}"
    raise TypeError(f"a sample file directory is named by its id (int) or name (str), "
                    f"not {id_or_name!r}")


def _no_recording(cid: int) -> str:
    return f"no recording {cid >> 32}/{cid & 0xFFFF_FFFF} (composite id {cid})"
