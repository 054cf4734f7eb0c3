"""What every handler shares: the web side's own database connection and its executor.

The web server never uses the recorder's connection: a slow query (a month of
``days``) must not hold the lock the syncer's transactions take.  It opens its
own connection to the same database (WAL: readers never block the writer) and
runs every query on ONE executor thread, so the loop never blocks on SQLite
and the connection is used by one thread at a time.  Sample file reads for
``view.mp4`` go to a separate pool, so a long download doesn't queue the API
behind it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from moonfire.db import Database
from moonfire.storage.data_dir import db_path

T = TypeVar("T")

#: Threads reading sample files for HTTP responses.
READ_THREADS = 4


@dataclass
class WebContext:
    """The database and thread pools of the web side; ``close`` when the server stops."""

    db: Database
    data_dir: str
    db_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="web-db")
    )
    read_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(READ_THREADS, thread_name_prefix="web-read")
    )

    @classmethod
    def open(cls, data_dir: str) -> WebContext:
        """A new read-write connection to ``data_dir``'s database (sessions are written)."""
        return cls(Database.open(db_path(data_dir)), os.path.abspath(data_dir))

    async def query(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_executor, fn, self.db)

    def close(self) -> None:
        self.db_executor.shutdown(wait=True)
        self.read_executor.shutdown(wait=True)
        self.db.close()
