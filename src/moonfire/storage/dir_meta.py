"""The ``meta`` file that binds a sample file directory to its database (brief §5.3).

The database stores the directory's UUID and its own; the directory stores both
in a small JSON file.  Opening a directory whose ``meta`` disagrees with the
database (the wrong disk mounted at the path, an old backup of either restored,
two databases pointed at one directory) is refused before anything can be
deleted: the recorder only ever unlinks names its database gives it, and that
is only safe if it is *this* directory the database is describing.

The file is replaced atomically: write ``meta.tmp``, fsync it, rename over
``meta``, fsync the directory.
"""

from __future__ import annotations

import json
import os
import uuid as uuidlib
from dataclasses import dataclass

from moonfire.errors import MoonfireError

META_NAME = "meta"
META_TMP_NAME = "meta.tmp"
#: Names in a sample file directory that are not sample files.
NON_SAMPLE_NAMES = frozenset({META_NAME, META_TMP_NAME})


class DirectoryMismatchError(MoonfireError):
    """The directory does not belong to this database; nothing was touched."""


@dataclass(frozen=True)
class DirMeta:
    db_uuid: bytes
    dir_uuid: bytes

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "db_uuid": str(uuidlib.UUID(bytes=self.db_uuid)),
                    "dir_uuid": str(uuidlib.UUID(bytes=self.dir_uuid)),
                },
                sort_keys=True,
            ).encode()
            + b"\n"
        )


def read_meta(dir_fd: int, dir_path: str) -> DirMeta | None:
    """The directory's meta, or None if it has no ``meta`` file."""
    try:
        fd = os.open(META_NAME, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        raw = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    path = os.path.join(dir_path, META_NAME)
    try:
        obj = json.loads(raw)
        return DirMeta(
            db_uuid=uuidlib.UUID(obj["db_uuid"]).bytes, dir_uuid=uuidlib.UUID(obj["dir_uuid"]).bytes
        )
    except (ValueError, KeyError, TypeError) as e:
        raise DirectoryMismatchError(f"{path} is not a moonfire directory meta file: {e}") from e


def write_meta(dir_fd: int, meta: DirMeta) -> None:
    """Atomically replace the directory's ``meta`` file and make it durable."""
    fd = os.open(
        META_TMP_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    try:
        data = meta.to_json()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(META_TMP_NAME, META_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def verify_meta(found: DirMeta | None, expected: DirMeta, dir_path: str) -> None:
    """Raise ``DirectoryMismatchError`` unless the directory is the database's own."""
    if found is None:
        raise DirectoryMismatchError(
            f"{dir_path} has no {META_NAME} file, so it is not the sample file directory of this "
            "database (is the right disk mounted there?); refusing to use it"
        )
    if found.db_uuid != expected.db_uuid:
        raise DirectoryMismatchError(
            f"{dir_path} belongs to another database (db uuid {uuidlib.UUID(bytes=found.db_uuid)}, "
            f"expected {uuidlib.UUID(bytes=expected.db_uuid)}): was a backup restored or another "
            "disk mounted? Refusing to use it; nothing was deleted"
        )
    if found.dir_uuid != expected.dir_uuid:
        raise DirectoryMismatchError(
            f"{dir_path} is a different sample file directory (uuid "
            f"{uuidlib.UUID(bytes=found.dir_uuid)}, expected "
            f"{uuidlib.UUID(bytes=expected.dir_uuid)}); refusing to use it; nothing was deleted"
        )
