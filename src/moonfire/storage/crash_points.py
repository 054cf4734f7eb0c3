"""Named crash points, so tests can SIGKILL the recorder at every step that matters.

The storage engine calls ``crash_point("save.after_file_fsync")`` and friends
between the steps of a save, a rotation and recovery.  Normally that is one
global check.  A test starts the recorder with ``MOONFIRE_CRASH_AT=name`` (or
``name:N`` for the N-th time the point is reached) and the process kills
itself with SIGKILL right there, exactly like a power cut as far as the
database and the page cache of *this process* are concerned.

The list of points is ``CRASH_POINTS``; the crash tests iterate over it, so a
new point added to the engine without being listed fails those tests.  The archive
uploader's points (``ARCHIVE_CRASH_POINTS``: between the steps of one upload and of one
expiry) are listed apart, since only a recorder with an archive reaches them;
``tests/test_archive_crash.py`` kills there.

``observe(callback)`` lets an in-process test see every point reached (for
instance, that ``recovery.*`` points are reached only while recovering).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENV_VAR = "MOONFIRE_CRASH_AT"

#: Every crash point the storage engine reaches, in the order of a save.
CRASH_POINTS = (
    "open.after_in_progress_meta",
    "open.after_db_update",
    "recovery.after_delete_transaction",
    "recovery.after_unlink",
    "recovery.after_dir_fsync",
    "recovery.after_mark_transaction",
    "rotation.after_delete_transaction",
    "rotation.after_unlink",
    "rotation.after_dir_fsync",
    "rotation.after_mark_transaction",
    "save.after_some_file_fsyncs",
    "save.after_file_fsync",
    "save.after_dir_fsync",
    "save.after_commit",
    "save.after_unlink",
    "save.after_creating_files",
    "abandon.after_unlink",
    "shutdown.after_unlink",
    "shutdown.after_dir_fsync",
    "shutdown.after_commit",
)

#: Every crash point the archive uploader (``storage/archive.py``) reaches, in the order of
#: an upload (data object, a multipart part of it, manifest, the database row) and then of an
#: expiry (the claim: archived-only rows and the ``recording_archive`` row in one transaction;
#: then the objects).
ARCHIVE_CRASH_POINTS = (
    "archive.after_part",
    "archive.after_data_put",
    "archive.after_manifest_put",
    "archive.after_mark",
    "archive.after_expire_rows",
    "archive.after_expire_objects",
)


def _parse(spec: str | None) -> tuple[str | None, int]:
    if not spec:
        return None, 0
    name, _, count = spec.partition(":")
    if name not in CRASH_POINTS and name not in ARCHIVE_CRASH_POINTS:
        raise ValueError(f"{ENV_VAR}={spec!r}: unknown crash point {name!r}")
    return name, int(count) if count else 1


_target, _remaining = _parse(os.environ.get(ENV_VAR))
_lock = threading.Lock()
_observer: Callable[[str], None] | None = None


@contextmanager
def observe(callback: Callable[[str], None]) -> Iterator[None]:
    """Call ``callback(name)`` at every crash point reached (any thread) while inside."""
    global _observer
    previous, _observer = _observer, callback
    try:
        yield
    finally:
        _observer = previous


def crash_point(name: str) -> None:
    """SIGKILL this process if ``MOONFIRE_CRASH_AT`` names this point (and hit count)."""
    global _remaining
    if _observer is not None:
        _observer(name)
    if _target is None or name != _target:
        return
    with _lock:
        _remaining -= 1
        if _remaining > 0:
            return
    os.kill(os.getpid(), signal.SIGKILL)
