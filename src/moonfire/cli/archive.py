"""``moonfire archive add|list|remove|status``: S3-compatible archives of recordings.

An archive is a bucket (and key prefix) at an S3-compatible endpoint; give a stream one
with ``camera add/edit --archive NAME`` and ``moonfire run`` uploads its committed
recordings there in the background (``moonfire.storage.archive``).  Only where the
archive is gets stored: credentials come from the S3 ecosystem's standard environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``...) or
credentials file (``~/.aws/credentials``), in ``moonfire run``'s environment.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from moonfire.cli.main import add_data_dir_argument
from moonfire.db import ArchiveRow, Database
from moonfire.sizes import format_size
from moonfire.storage.data_dir import open_db


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "archive",
        help="add, list, remove or inspect S3-compatible archives",
        description="Copy recordings to S3-compatible object storage, off this machine.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add", help="add an archive",
        description="Add an archive. Credentials are not given here: `moonfire run` takes them "
        "from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials.",
    )
    add_data_dir_argument(add)
    add.add_argument("name", help="a short name, unique among archives")
    add.add_argument("--url", required=True, metavar="s3://BUCKET/PREFIX",
                     help="the bucket and an optional key prefix")
    add.add_argument("--endpoint", metavar="URL",
                     help="the store's endpoint for a non-AWS store (MinIO, Ceph, ...)")
    add.add_argument("--region", metavar="R", help="the bucket's region (default us-east-1)")
    add.set_defaults(func=add_archive)

    ls = actions.add_parser("list", help="list archives and the streams using them")
    add_data_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls.set_defaults(func=list_archives)

    remove = actions.add_parser(
        "remove", help="forget an archive no stream uses (its objects stay in the bucket)")
    add_data_dir_argument(remove)
    remove.add_argument("name", help="the archive to forget")
    remove.set_defaults(func=remove_archive)

    status = actions.add_parser(
        "status", help="each archive's backlog and latest upload error")
    add_data_dir_argument(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=archive_status)


def add_archive(args: argparse.Namespace) -> int:
    with open_db(args.data_dir) as db:
        archive = db.add_archive(args.name, args.url, args.endpoint, args.region)
    where = f" at {archive.endpoint}" if archive.endpoint else ""
    print(f"added archive {archive.name!r}: {archive.url}{where}; give streams it with "
          f"`moonfire camera edit CAMERA --archive {archive.name}`")
    return 0


def _streams_using(db: Database, archive: ArchiveRow) -> list[str]:
    return [f"{c.short_name}/{s.type}" for c in db.list_cameras() for s in c.streams
            if s.archive_id == archive.id]


def _summary(db: Database, archive: ArchiveRow) -> dict[str, Any]:
    backlog, backlog_bytes = db.archive_backlog(archive.id)
    return {
        "name": archive.name, "url": archive.url, "endpoint": archive.endpoint,
        "region": archive.region, "streams": _streams_using(db, archive),
        "archived": db.archived_count(archive.id), "backlog": backlog,
        "backlogBytes": backlog_bytes, "lastError": archive.last_error,
        "lastErrorTimeSec": archive.last_error_time_sec,
    }


def list_archives(args: argparse.Namespace) -> int:
    with open_db(args.data_dir, read_only=True) as db:
        summaries = [_summary(db, a) for a in db.list_archives()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no archives; add one with `moonfire archive add NAME --url s3://BUCKET/PREFIX`")
    for s in summaries:
        where = f" at {s['endpoint']}" if s["endpoint"] else ""
        print(f"{s['name']}: {s['url']}{where}; streams: {', '.join(s['streams']) or 'none'}")
    return 0


def remove_archive(args: argparse.Namespace) -> int:
    with open_db(args.data_dir) as db:
        db.remove_archive(args.name)
    print(f"removed archive {args.name!r} (its objects stay in the bucket)")
    return 0


def archive_status(args: argparse.Namespace) -> int:
    with open_db(args.data_dir, read_only=True) as db:
        summaries = [_summary(db, a) for a in db.list_archives()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    for s in summaries:
        line = (f"{s['name']}: {s['archived']} recordings archived, backlog {s['backlog']} "
                f"({format_size(s['backlogBytes'])})")
        if s["lastError"]:
            ago = int(time.time()) - (s["lastErrorTimeSec"] or 0)
            line += f"; last error {ago} s ago: {s['lastError']}"
        print(line)
    return 0
