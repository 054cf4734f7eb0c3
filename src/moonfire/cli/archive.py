"""``moonfire archive add|list|remove|status|rebuild|follow``: S3-compatible archives of
recordings.

An archive is a bucket (and key prefix) at an S3-compatible endpoint; give a stream one
with ``camera add/edit --archive NAME`` and ``moonfire run`` uploads its committed
recordings there in the background (``moonfire.storage.archive``).  Only where the
archive is gets stored: credentials come from the S3 ecosystem's standard environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``...) or
credentials file (``~/.aws/credentials``), in ``moonfire run``'s environment.
``rebuild`` and ``follow`` recreate the catalog from an archive's manifests
(``moonfire.storage.archive_catalog``) on another machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db import ArchiveRow, Database
from moonfire.errors import MoonfireError
from moonfire.sizes import format_size
from moonfire.storage.data_dir import open_db


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "archive",
        help=command_help("archive"),
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
    _register_rebuild_and_follow(actions)


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
    archived_only, archived_only_bytes = db.archived_only_usage(archive.id)
    return {
        "name": archive.name, "url": archive.url, "endpoint": archive.endpoint,
        "region": archive.region, "streams": _streams_using(db, archive),
        "archived": db.archived_count(archive.id), "backlog": backlog,
        "backlogBytes": backlog_bytes, "archivedOnly": archived_only,
        "archivedOnlyBytes": archived_only_bytes, "lastError": archive.last_error,
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
        line = (f"{s['name']}: {s['archived']} recordings archived ({s['archivedOnly']} "
                f"only there, {format_size(s['archivedOnlyBytes'])}), backlog {s['backlog']} "
                f"({format_size(s['backlogBytes'])})")
        if s["lastError"]:
            ago = int(time.time()) - (s["lastErrorTimeSec"] or 0)
            line += f"; last error {ago} s ago: {s['lastError']}"
        print(line)
    return 0


# ---- rebuild and follow: the catalog from an archive's manifests ---------------------------


def _register_rebuild_and_follow(actions: argparse._SubParsersAction) -> None:
    rebuild = actions.add_parser(
        "rebuild", help="recreate cameras, streams and recordings from an archive's manifests",
        description="List the manifests under the archive's prefix and catalog every "
        "recording this database lacks (cameras and streams added as needed, recording "
        "nothing; the recordings play from the archive). For a new machine: `moonfire init`, "
        "`moonfire archive add`, then this. Rerunning adds only what is new. Exit code 1 if "
        "some manifest was bad (each is named; the others are still imported).",
    )
    add_data_dir_argument(rebuild)
    rebuild.add_argument("name", help="the archive to read")
    rebuild.set_defaults(func=rebuild_catalog)

    follow = actions.add_parser(
        "follow", help="serve the API and UI over archives' footage, picking up new recordings",
        description="Catalog every named archive's recordings (as `rebuild`), then serve the "
        "HTTP API and web UI over them until SIGINT or SIGTERM (on a data directory made with "
        "`moonfire init` and `moonfire archive add`), listing each archive for new "
        "manifests every --poll-seconds (1 + 2 x cameras LIST requests per archive when "
        "nothing is new; everything is listed again daily). Records nothing.",
    )
    add_data_dir_argument(follow)
    follow.add_argument("names", nargs="+", metavar="NAME", help="the archives to follow")
    follow.add_argument("--listen", default=None, metavar="ADDR:PORT",
                        help="serve here (default $MOONFIRE_LISTEN or 127.0.0.1:8080)")
    follow.add_argument("--poll-seconds", type=float, default=None, metavar="SECONDS",
                        help="seconds between listings for new manifests (default 30)")
    follow.add_argument("--allow-unauthenticated", action="store_true",
                        help="allow viewing without a login from other machines while no "
                        "user exists")
    follow.add_argument("--trust-forward-headers", action="store_true",
                        help="behind a reverse proxy: trust X-Forwarded-For/-Proto")
    follow.set_defaults(func=follow_archives)


def _print_sync(archive: ArchiveRow, report: Any) -> None:
    cameras = f"; cameras added: {', '.join(report.cameras_added)}" if report.cameras_added \
        else ""
    forgotten = (f", {report.forgotten} forgotten (their manifests are gone)"
                 if report.forgotten else "")
    print(f"archive {archive.name!r}: {report.added} recordings added, {report.known} "
          f"already cataloged{forgotten}{cameras}")
    for line in report.errors:
        print(f"moonfire: archive {archive.name!r}: {line}", file=sys.stderr)


def _sync_or_fail(catalog: Any) -> Any:
    from moonfire.storage.archive import describe_client_error

    try:
        return catalog.sync(full=True)
    except MoonfireError:
        raise
    except Exception as e:  # noqa: BLE001 - botocore's errors, told as the archive's
        raise CommandError(describe_client_error(catalog.archive, e)) from None


def rebuild_catalog(args: argparse.Namespace) -> int:
    from moonfire.storage.archive_catalog import ArchiveCatalog

    with open_db(args.data_dir) as db:
        archive = db.get_archive(args.name)
        report = _sync_or_fail(ArchiveCatalog(db, archive))
    _print_sync(archive, report)
    return 1 if report.errors else 0


def follow_archives(args: argparse.Namespace) -> int:
    import threading

    from moonfire.cli._stop import exit_code, stop_on_signals
    from moonfire.cli.run import default_listen, refuse_open_listen
    from moonfire.storage.archive_catalog import POLL_INTERVAL_SEC, ArchiveCatalog, ArchiveFollower
    from moonfire.web.app import build_app
    from moonfire.web.auth import Auth
    from moonfire.web.context import WebContext
    from moonfire.web.server import WebServer, parse_listen

    poll = POLL_INTERVAL_SEC if args.poll_seconds is None else args.poll_seconds
    if not poll > 0:
        raise CommandError(f"--poll-seconds must be a positive number, got {args.poll_seconds}")
    host, port = parse_listen(args.listen or default_listen())
    refuse_open_listen(args.data_dir, host, args.allow_unauthenticated)
    with open_db(args.data_dir) as db:
        catalogs = [ArchiveCatalog(db, db.get_archive(name)) for name in args.names]
        errors = 0
        for catalog in catalogs:
            report = _sync_or_fail(catalog)
            _print_sync(catalog.archive, report)
            errors += len(report.errors)
        ctx = WebContext.open(args.data_dir)
        try:
            auth = Auth(ctx.db, trust_forward_headers=args.trust_forward_headers,
                        allow_unauthenticated=args.allow_unauthenticated)
            server = WebServer(lambda: build_app(ctx, auth), host, port)
            server.start()
            follower = ArchiveFollower(catalogs, poll_interval_sec=poll)
            follower.start()
            print(f"following {', '.join(repr(c.archive.name) for c in catalogs)} (new "
                  f"manifests every {poll:g} s); serving {server.url}", flush=True)
            stop = threading.Event()
            try:
                with stop_on_signals(stop) as received:
                    stop.wait()
            finally:
                follower.stop()
                server.stop()
        finally:
            ctx.close()
    return exit_code(0, received)
