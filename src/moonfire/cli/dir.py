"""``moonfire dir add|list|remove``: the sample file directories of a data directory.

A data directory starts with one (``default``, ``DATA_DIR/sample``); add one per
disk and give each stream its own with ``camera add/edit --dir/--sub-dir``.  Each
directory has its own syncer when recording, so a failing disk stops only the
streams on it.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db import Database, SampleFileDirRow
from moonfire.sizes import format_size
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import META_NAME


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dir",
        help=command_help("dir"),
        description="Manage where the video of each stream is stored.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="add a sample file directory",
        description="Add a sample file directory (typically on another disk). It must be empty "
        "or missing; it is created and bound to this database.",
    )
    add_data_dir_argument(add)
    add.add_argument("name", help="a short name, unique among directories")
    add.add_argument("path", help="where the sample files go")
    add.set_defaults(func=add_dir)

    ls = actions.add_parser(
        "list",
        help="list sample file directories with their free space and streams",
        description="List each sample file directory: path, free space and inodes, what its "
        "recordings use, and which streams it holds.",
    )
    add_data_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=list_dirs)

    remove = actions.add_parser(
        "remove",
        help="remove a sample file directory no stream uses",
        description="Forget a sample file directory that no stream uses and that holds no "
        "recordings; its meta file is removed, the directory itself is left.",
    )
    add_data_dir_argument(remove)
    remove.add_argument("name", help="the directory to remove")
    remove.set_defaults(func=remove_dir)


def add_dir(args: argparse.Namespace) -> int:
    row = datadir.add_dir(args.data_dir, args.name, args.path)
    print(f"added sample file directory {row.name!r} at {row.path}")
    print(f"record a stream there with: moonfire camera edit NAME --dir {row.name}")
    return 0


def list_dirs(args: argparse.Namespace) -> int:
    with datadir.open_db(args.data_dir, read_only=True) as db:
        summaries = [dir_summary(db, row) for row in db.list_sample_file_dirs()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    header = ("NAME", "PATH", "FREE", "FREE INODES", "USAGE", "RECORDINGS", "STREAMS")
    rows = [
        (
            s["name"],
            s["path"],
            "?" if s["free_bytes"] is None else format_size(s["free_bytes"]),
            "?" if s["free_inodes"] is None else str(s["free_inodes"]),
            format_size(s["usage_bytes"]),
            str(s["recordings"]),
            ", ".join(s["streams"]) or "-",
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    for s in summaries:
        if s["error"]:
            print(f"{s['name']}: {s['error']}")
    return 0


def dir_summary(db: Database, row: SampleFileDirRow) -> dict[str, Any]:
    """What ``list`` shows of a directory: ``statvfs`` (None if unreachable) and its streams."""
    free_bytes = free_inodes = None
    error = None
    try:
        st = os.statvfs(row.path)
        free_bytes, free_inodes = st.f_bavail * st.f_frsize, st.f_favail
    except OSError as e:
        error = f"can't be reached: {e.strerror}"
    names = {c.id: c.short_name for c in db.list_cameras()}
    streams = db.list_streams(row.id)
    usages = [db.stream_usage(s.id) for s in streams]
    return {
        "id": row.id,
        "name": row.name,
        "path": row.path,
        "free_bytes": free_bytes,
        "free_inodes": free_inodes,
        "usage_bytes": sum(u[1] for u in usages),
        "recordings": sum(u[0] for u in usages),
        "streams": [f"{names[s.camera_id]}/{s.type}" for s in streams],
        "error": error,
    }


def remove_dir(args: argparse.Namespace) -> int:
    with datadir.open_db(args.data_dir) as db:
        if len(db.list_sample_file_dirs()) == 1:
            raise CommandError(
                f"sample file directory {args.name!r} is the only one; a data directory "
                "needs at least one"
            )
        row = db.remove_sample_file_dir(args.name)
    meta = os.path.join(row.path, META_NAME)
    try:
        os.unlink(meta)
    except FileNotFoundError:
        pass
    except OSError as e:
        print(f"could not remove {meta}: {e}; remove it by hand before reusing the directory")
    print(f"removed sample file directory {row.name!r}; {row.path} itself is left in place")
    return 0
