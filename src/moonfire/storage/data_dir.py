"""Where a moonfire installation keeps its files.

A data directory holds the SQLite database ``db`` and, unless ``init`` was
told otherwise (say, a directory on another disk), the sample file directory
``sample``.  The database records the sample directory's path, so every other
command needs only ``--data-dir``.
"""

from __future__ import annotations

import os

from moonfire.db import Database
from moonfire.db.schema import SAMPLE_DIR_NAME
from moonfire.errors import MoonfireError
from moonfire.storage.sample_file_dir import SampleFileDir

DB_NAME = "db"


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
        return db, SampleFileDir.create(sample_file_dir_path, db)
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
    return Database.open(path, read_only=read_only)


def open_for_recording(data_dir: str) -> tuple[Database, SampleFileDir]:
    """Open the database read-write and lock and verify its sample file directory."""
    db = open_db(data_dir)
    try:
        return db, SampleFileDir.open(db.sample_file_dir().path, db)
    except BaseException:
        db.close()
        raise
