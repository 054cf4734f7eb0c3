"""The running daemon's state, published for ``moonfire status`` in another process.

``moonfire run`` writes ``<data-dir>/status.json`` atomically (a temporary
file renamed over it) every ``PUBLISH_EVERY_SEC`` seconds and within a second
of any camera's state changing, and a last time at shutdown with ``running``
false.  Each copy carries the writer's pid and the wall time it was written,
so a reader tells a live daemon from a stale file (a daemon killed with
SIGKILL leaves one behind): older than ``STALE_AFTER_SEC`` or its pid gone
means not running.  This module imports nothing heavy (no PyAV).

Each recorded stream (``streams``: ``camera/main``, ``camera/sub``) is
``recording`` (connected and writing), ``retrying`` (not connected: starting,
or backing off after an error, with the error as its reason) or ``failed``
(its sample file directory stopped or could not be opened: it will not record
again in this process, with the reason) or ``ended`` (a file used as a camera
reached its end: it is not reopened).  A stream kept for live view only (a sub
stream with no budget) is ``live only``: connected while someone watches (no
reason), else idle (the reason says so) or ``retrying`` while a viewer waits for
a camera that fails.  ``storage_errors`` maps each failed directory's name to why.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

STATUS_NAME = "status.json"
PUBLISH_EVERY_SEC = 5.0
STALE_AFTER_SEC = 3 * PUBLISH_EVERY_SEC

RECORDING = "recording"
RETRYING = "retrying"
FAILED = "failed"
ENDED = "ended"
#: A stream kept for live view only: never recorded, connected while it is watched.
LIVE_ONLY = "live only"


def status_path(data_dir: str) -> str:
    return os.path.join(data_dir, STATUS_NAME)


def write_status(data_dir: str, doc: dict[str, Any]) -> None:
    """Replace the status file atomically (a reader never sees half of it)."""
    path = status_path(data_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_status(data_dir: str) -> dict[str, Any] | None:
    """The last status written, or None if there is none (or it can't be parsed)."""
    try:
        with open(status_path(data_dir)) as f:
            doc = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_live(doc: dict[str, Any] | None, now: float | None = None) -> bool:
    """The status is a running daemon's: marked running, fresh, and its process exists."""
    if doc is None or not doc.get("running"):
        return False
    now = time.time() if now is None else now
    if now - float(doc.get("updated", 0)) > STALE_AFTER_SEC:
        return False
    try:
        os.kill(int(doc["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        pass  # another user's process still counts; a missing pid is judged by time alone
    return True
