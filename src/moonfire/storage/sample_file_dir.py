"""The sample file directory of a database: locked, verified, and where its syncer starts.

``SampleFileDir`` wraps ``moonfire_core.sampledir.SampleDirectory`` (the
directory fd, ``flock`` and syscalls) with the policy of binding it to a
database: ``create`` writes the ``meta`` file of a new directory, ``open``
checks it.  Recordings are made durable and deleted by the syncer
(``moonfire.storage.syncer``), which ``start_syncer`` starts and which also
creates the writers; this module knows nothing of how.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from moonfire.db import Database
from moonfire.db.rows import format_uuid
from moonfire.storage.dir_meta import DirMeta, read_meta, verify_meta, write_meta
from moonfire.storage.syncer import Syncer
from moonfire_core.sampledir import SampleDirectory

#: A sample file's name: its UUID in canonical lowercase text form.
uuid_name = format_uuid


class SampleFileDir:
    """A locked sample file directory bound to a database.

    Opening takes an exclusive ``flock`` (a second recorder fails with a message
    saying the directory is in use) and verifies the ``meta`` file against the
    database before anything else happens.
    """

    def __init__(self, directory: SampleDirectory, db: Database) -> None:
        self.directory = directory
        self.db = db
        self.path = directory.path

    @classmethod
    def create(cls, path: str, db: Database) -> SampleFileDir:
        """Bind a new (empty or missing) directory to ``db``, which must name ``path``."""
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
            row = db.sample_file_dir()
            write_meta(directory.fileno(), DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid))
        except BaseException:
            directory.close()
            raise
        return cls(directory, db)

    @classmethod
    def open(cls, path: str, db: Database) -> SampleFileDir:
        """Lock ``path`` and check that it is ``db``'s sample file directory."""
        directory = SampleDirectory(path)
        try:
            row = db.sample_file_dir()
            found = read_meta(directory.fileno(), path)
            verify_meta(found, DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid), path)
        except BaseException:
            directory.close()
            raise
        return cls(directory, db)

    def start_syncer(self, on_fatal: Callable[[BaseException], None] | None = None) -> Syncer:
        """Recover from the last run, enforce retention, then start the syncer thread."""
        return Syncer(self.directory, self.db, on_fatal=on_fatal)

    def close(self) -> None:
        self.directory.close()

    def __enter__(self) -> SampleFileDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
