"""The ``meta`` file that binds a sample file directory to its database (brief §5.3).

The database stores the directory's UUID and its own; the directory stores both
in a small JSON file.  Opening a directory whose ``meta`` disagrees with the
database (the wrong disk mounted at the path, an old backup of either restored,
two databases pointed at one directory) is refused before anything can be
deleted: the recorder only ever unlinks names its database gives it, and that
is only safe if it is *this* directory the database is describing.

Each read-write open of the directory is also recorded (brief §5.3): the
database has a row per open and names the directory's ``last_complete_open``;
the file names ``last_complete_open`` and ``in_progress_open``.  A database
whose open is neither (a restored older copy, or a copy sharing the directory
with its original, which has opened it since) is refused the same way.  Files
written before those fields existed read as null.

The file is replaced atomically: write ``meta.tmp``, fsync it, rename over
``meta``, fsync the directory.
"""

from __future__ import annotations

import json
import os
import uuid as uuidlib
from dataclasses import dataclass, replace
from typing import Any

from moonfire.db.rows import Open
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
    last_complete_open: Open | None = None
    in_progress_open: Open | None = None

    def with_opens(self, last_complete: Open | None, in_progress: Open | None) -> DirMeta:
        return replace(self, last_complete_open=last_complete, in_progress_open=in_progress)

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "db_uuid": str(uuidlib.UUID(bytes=self.db_uuid)),
                    "dir_uuid": str(uuidlib.UUID(bytes=self.dir_uuid)),
                    "last_complete_open": _open_to_json(self.last_complete_open),
                    "in_progress_open": _open_to_json(self.in_progress_open),
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
            db_uuid=uuidlib.UUID(obj["db_uuid"]).bytes,
            dir_uuid=uuidlib.UUID(obj["dir_uuid"]).bytes,
            last_complete_open=_open_from_json(obj.get("last_complete_open")),
            in_progress_open=_open_from_json(obj.get("in_progress_open")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DirectoryMismatchError(f"{path} is not a moonfire directory meta file: {e}") from e


def _open_to_json(o: Open | None) -> dict[str, Any] | None:
    return None if o is None else {"id": o.id, "uuid": str(uuidlib.UUID(bytes=o.uuid))}


def _open_from_json(obj: Any) -> Open | None:
    if obj is None:
        return None
    open_id = obj["id"]
    if not isinstance(open_id, int) or isinstance(open_id, bool):
        raise TypeError(f"open id {open_id!r} is not an integer")
    return Open(open_id, uuidlib.UUID(obj["uuid"]).bytes)


def _describe(o: Open | None) -> str:
    return "none" if o is None else str(o)


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


def verify_meta(
    found: DirMeta | None, expected: DirMeta, dir_path: str, db_open: Open | None = None
) -> None:
    """Raise ``DirectoryMismatchError`` unless the directory is the database's own and
    ``db_open``, the database's last complete open of it, is the one its meta names."""
    verify_uuids(found, expected, dir_path)
    assert found is not None
    verify_open(found, db_open, dir_path)


def verify_uuids(found: DirMeta | None, expected: DirMeta, dir_path: str) -> None:
    """Raise ``DirectoryMismatchError`` unless the meta names the database and directory."""
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


REPAIR_HINT = (
    "was an older copy of the database restored, or does another copy of it share this "
    "directory? Refusing to use it; nothing was deleted. To adopt this database, stop the "
    "recorder and run `moonfire check --repair`"
)


def verify_open(found: DirMeta, db_open: Open | None, dir_path: str) -> None:
    """The open check of brief §5.3: the database's last complete open must be the meta's
    last complete or in-progress one; a database with none needs a meta with none."""
    if db_open is None:
        if found.last_complete_open is None:
            return
    elif db_open in (found.last_complete_open, found.in_progress_open):
        return
    raise DirectoryMismatchError(
        f"{dir_path} was last opened by another copy of this database: the database's last "
        f"complete open is {_describe(db_open)}, the directory's meta names last complete "
        f"{_describe(found.last_complete_open)} and in progress "
        f"{_describe(found.in_progress_open)}; {REPAIR_HINT}"
    )
