"""``moonfire status``: is the recorder running, and is each stream recording?

Reads the status file the running daemon publishes (``moonfire.ingest.status_file``)
and the database (read-only) for each stream's last recording.  One line per
recorded stream (``front/main``, ``front/sub``): ``recording``, ``retrying`` or
``failed`` with the reason, and the time its last recording ends; a line per
failed sample file directory first.  Without a live daemon (no status file, a
stale one, or one written at shutdown) it says ``not running`` and still lists
each stream's last recording.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from moonfire.cli.main import add_data_dir_argument, command_help
from moonfire.ingest import status_file
from moonfire.storage.data_dir import open_db
from moonfire.time import format_time

NOT_RUNNING = "not running"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help=command_help("status"),
        description="One line per stream: recording, retrying or failed (with the reason) and "
        "when its last recording ends. Says 'not running' when no recorder is publishing its "
        "status.",
    )
    add_data_dir_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for line in status_lines(args.data_dir):
        print(line)
    return 0


def status_lines(data_dir: str, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    doc = status_file.read_status(data_dir)
    live = status_file.is_live(doc, now)
    published: dict[str, dict[str, Any]] = {}
    if live and doc is not None:
        lines = [f"running (pid {doc['pid']}, status of {now - float(doc['updated']):.0f} s ago)"]
        for name, error in sorted(doc.get("storage_errors", {}).items()):
            lines.append(f"sample file directory {name} failed: {error}")
        published = {c["name"]: c for c in doc.get("streams", [])}
    elif doc is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(doc.get("updated", 0))))
        how = "stopped" if not doc.get("running") else "stale status file"
        lines = [f"{NOT_RUNNING} (last seen {when}: {how})"]
        for name, error in sorted(doc.get("storage_errors", {}).items()):
            lines.append(f"sample file directory {name} had failed: {error}")
    else:
        lines = [NOT_RUNNING]
    with open_db(data_dir, read_only=True) as db:
        for camera in db.list_cameras():
            for stream in camera.streams:
                name = f"{camera.short_name}/{stream.type}"
                last = db.last_recording(stream.id)
                if not stream.record and last is None and name not in published:
                    continue  # a sub stream kept for live view, which no daemon streams
                last_text = "no recordings"
                if last is not None:
                    last_text = f"last recording ends {format_time(last.end_time_90k)}"
                entry = published.get(name)
                if not live:
                    state = NOT_RUNNING
                elif entry is None:
                    state = "not recorded by this daemon"
                elif entry.get("reason"):
                    state = f"{entry['state']}: {entry['reason']}"
                else:
                    state = str(entry["state"])
                lines.append(f"{name}: {state}; {last_text}")
    return lines
