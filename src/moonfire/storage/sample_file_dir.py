"""A sample file directory of a database: locked, verified, and where its syncer starts.

``SampleFileDir`` wraps ``moonfire_core.sampledir.SampleDirectory`` (the
directory fd, ``flock`` and syscalls) with the policy of binding it to a
database: ``create`` writes the ``meta`` file of a new directory, ``open``
checks it, then records a new open in both (``record_open``, brief §5.3).
Recordings are made durable and deleted by the syncer (``moonfire.storage.syncer``),
which ``start_syncer`` starts and which also creates the writers; this module knows
nothing of how.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from moonfire.db import Database, Open, SampleFileDirRow
from moonfire.db.rows import format_uuid
from moonfire.storage.crash_points import crash_point
from moonfire.storage.dir_meta import DirMeta, read_meta, verify_meta, write_meta
from moonfire.storage.syncer import Syncer
from moonfire_core.sampledir import SampleDirectory

#: A sample file's name: its UUID in canonical lowercase text form.
uuid_name = format_uuid


class SampleFileDir:
    """A locked sample file directory bound to a database (one ``sample_file_dir`` row).

    Opening takes an exclusive ``flock`` (a second recorder fails with a message
    saying the directory is in use) and verifies the ``meta`` file against the
    database before anything else happens.
    """

    def __init__(
        self, directory: SampleDirectory, db: Database, row: SampleFileDirRow, current: Open
    ) -> None:
        self.directory = directory
        self.db = db
        self.path = directory.path
        self.id = row.id
        self.name = row.name
        #: This read-write open of the directory, which its syncer's recordings record.
        self.current_open = current

    @classmethod
    def create(cls, db: Database, id_or_name: int | str) -> SampleFileDir:
        """Bind the new (empty or missing) directory that ``db`` names to it."""
        row = db.sample_file_dir(id_or_name)
        path = row.path
        os.makedirs(path, mode=0o700, exist_ok=True)
        directory = SampleDirectory(path)
        try:
            foreign = [n for n in directory.list_names()]
            if foreign:
                raise FileExistsError(
                    errno.EEXIST,
                    f"sample file directory {path} is not empty ({len(foreign)} entries, "
                    f"e.g. {sorted(foreign)[0]!r}); refusing to take it over",
                    path,
                )
            meta = DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid)
            write_meta(directory.fileno(), meta)
            current = record_open(directory, db, row.id, meta)
        except BaseException:
            directory.close()
            raise
        return cls(directory, db, row, current)

    @classmethod
    def open(cls, db: Database, id_or_name: int | str) -> SampleFileDir:
        """Lock the sample file directory ``db`` names, check that it is that directory and
        that ``db`` is the copy that opened it last, then record this open in both.

        A mismatch raises ``DirectoryMismatchError`` before anything could be deleted.
        """
        row = db.sample_file_dir(id_or_name)
        directory = SampleDirectory(row.path)
        try:
            found = read_meta(directory.fileno(), row.path)
            expected = DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid)
            verify_meta(found, expected, row.path, db.last_complete_open(row.id))
            assert found is not None  # verify_meta refuses a missing meta
            current = record_open(directory, db, row.id, found)
        except BaseException:
            directory.close()
            raise
        return cls(directory, db, row, current)

    def start_syncer(self, on_fatal: Callable[[BaseException], None] | None = None) -> Syncer:
        """Recover from the last run, enforce retention, then start the syncer thread."""
        return Syncer(
            self.directory, self.db, self.id, on_fatal=on_fatal, open_id=self.current_open.id
        )

    def close(self) -> None:
        self.directory.close()

    def __enter__(self) -> SampleFileDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_open(directory: SampleDirectory, db: Database, dir_id: int, found: DirMeta) -> Open:
    """Brief §5.3's read-write open: a new ``open`` row; ``meta`` with it in progress; the
    database's ``last_complete_open_id`` set to it; ``meta`` with it as last complete.

    A crash between any two steps leaves the database naming the meta's last complete
    or in-progress open, which the next open's check accepts.  ``found`` is the
    directory's current (already verified) meta; the caller holds the exclusive lock.
    """
    current = db.insert_open()
    write_meta(directory.fileno(), found.with_opens(found.last_complete_open, current))
    crash_point("open.after_in_progress_meta")
    db.set_last_complete_open(dir_id, current)
    crash_point("open.after_db_update")
    write_meta(directory.fileno(), found.with_opens(current, None))
    return current
