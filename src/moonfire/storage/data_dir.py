"""Where a moonfire installation keeps its files.

A data directory holds the SQLite database ``db`` and, unless ``init`` was
told otherwise (say, a directory on another disk), the first sample file
directory ``sample`` (named ``default``); ``moonfire dir add`` records more,
typically one per disk.  The database records each sample directory's path, so
every other command needs only ``--data-dir``: relative to the data directory
when it lies inside it, so that a copy (``cp -a``) or a restored backup of the
whole data directory works on its own files, never on the original's.

Databases written before that stored the absolute path.  ``open_db`` moves such a
path to the relative form, and when the stored path lies outside the data
directory but the data directory holds a ``sample`` directory whose ``meta``
names the same directory and database, it takes that one: the data directory
was copied or moved, and the files beside the database are its own.
"""

from __future__ import annotations

import logging
import os

from moonfire.db import Database, SampleFileDirRow
from moonfire.db.schema import DEFAULT_DIR_NAME, SAMPLE_DIR_NAME
from moonfire.errors import MoonfireError
from moonfire.storage.dir_meta import DirectoryMismatchError, DirMeta, read_meta
from moonfire.storage.sample_file_dir import SampleFileDir

DB_NAME = "db"

log = logging.getLogger(__name__)


class DataDirError(MoonfireError):
    """The data directory is missing or not set up."""


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, DB_NAME)


def init(data_dir: str, sample_file_dir_path: str | None = None) -> tuple[Database, SampleFileDir]:
    """Create the database and bind a new sample file directory to it."""
    sample_file_dir_path = os.path.abspath(
        sample_file_dir_path or os.path.join(data_dir, SAMPLE_DIR_NAME)
    )
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = db_path(data_dir)
    if os.path.exists(path):
        raise DataDirError(f"{data_dir} already has a moonfire database ({path})")
    db = Database.create(path, sample_file_dir_path)
    try:
        return db, SampleFileDir.create(db, DEFAULT_DIR_NAME)
    except BaseException:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        raise


def open_db(data_dir: str, read_only: bool = False) -> Database:
    path = db_path(data_dir)
    if not os.path.exists(path):
        raise DataDirError(
            f"no moonfire database at {path}; run `moonfire init --data-dir {data_dir}`"
        )
    db = Database.open(path, read_only=read_only)
    try:
        _adopt_own_sample_dir(db, data_dir)
    except BaseException:
        db.close()
        raise
    return db


def _adopt_own_sample_dir(db: Database, data_dir: str) -> None:
    """Point a database that stores an absolute sample-directory path (an older release)
    at the sample directory inside its own data directory, when that is the one it means.

    Only the first directory can be that one (``init`` makes it; ``dir add`` stores a
    directory inside the data directory relative from the start).

    The data directory's own ``sample`` is taken when its ``meta`` names the database's
    directory and the stored path is gone or is another data directory's own (``sample``
    beside a ``db``: the original this one was copied from).  When both exist and neither
    is another's, the start is refused naming both: moonfire can't tell which is stale.
    """
    first = db.list_sample_file_dirs()[0]
    stored = db.stored_sample_file_dir_path(first.id)
    if not os.path.isabs(stored):
        return
    data_dir = os.path.abspath(data_dir)
    local = os.path.join(data_dir, SAMPLE_DIR_NAME)
    inside = os.path.commonpath([stored, data_dir]) == data_dir and stored != data_dir
    if inside and (stored == local or not _is_a_data_dirs_own(stored, data_dir)):
        if not db.read_only:
            db.set_sample_file_dir_path(first.id, stored)  # the same place, now relative
        return
    found = _read_meta_at(local)
    row = first
    if found is None or (found.db_uuid, found.dir_uuid) != (row.db_uuid, row.uuid):
        return  # a sample directory elsewhere (another disk): the stored path is right
    if os.path.exists(stored) and os.path.samefile(stored, local):
        if not db.read_only:
            db.set_sample_file_dir_path(first.id, local)  # one directory, reached another way
        return
    if os.path.exists(stored) and not _is_a_data_dirs_own(stored, data_dir):
        raise DataDirError(
            f"{db.path} names sample file directory {stored}, but its data directory also "
            f"holds a copy of that directory at {local}; refusing to choose between them. "
            "Remove or rename the stale copy; nothing was deleted"
        )
    log.warning(
        "%s names sample file directory %s, but its data directory holds that directory's "
        "own copy at %s (the data directory was copied or moved); using %s",
        db.path,
        stored,
        local,
        local,
    )
    db.set_sample_file_dir_path(first.id, local)


def _is_a_data_dirs_own(sample_dir_path: str, data_dir: str) -> bool:
    """``sample_dir_path`` is the ``sample`` of another data directory (one with a ``db``)."""
    parent = os.path.dirname(sample_dir_path)
    return (
        os.path.basename(sample_dir_path) == SAMPLE_DIR_NAME
        and parent != data_dir
        and os.path.exists(os.path.join(parent, DB_NAME))
    )


def _read_meta_at(path: str) -> DirMeta | None:
    """The ``meta`` of the directory at ``path``; None if there is none or it can't be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return read_meta(fd, path)
    except (OSError, DirectoryMismatchError):
        return None
    finally:
        os.close(fd)


def open_for_recording(
    data_dir: str, id_or_name: int | str | None = None
) -> tuple[Database, SampleFileDir]:
    """Open the database read-write and lock and verify one sample file directory (the
    first unless named); the daemon opens each directory its streams use itself."""
    db = open_db(data_dir)
    try:
        if id_or_name is None:
            id_or_name = db.list_sample_file_dirs()[0].id
        return db, SampleFileDir.open(db, id_or_name)
    except BaseException:
        db.close()
        raise


def add_dir(data_dir: str, name: str, path: str) -> SampleFileDirRow:
    """Record a new sample file directory and bind it (its ``meta``); a failure to bind
    forgets it again, so a half-added directory never stays."""
    path = os.path.abspath(path)
    with open_db(data_dir) as db:
        row = db.add_sample_file_dir(name, path)
        try:
            SampleFileDir.create(db, row.id).close()
        except BaseException:
            db.remove_sample_file_dir(row.id)
            raise
    return row
