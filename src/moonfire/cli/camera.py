"""``moonfire camera add|list|edit|remove``: configure the cameras to record.

A camera has a main stream and optionally a sub stream (``--sub-url``); each
stream has its own budget, maximum age and sample file directory.  The plain
options (``--url``, ``--retain``, ``--max-days``, ``--dir``) are the main
stream's, the ``--sub-`` ones the sub stream's.  A sub stream with a budget of 0
is kept for live view and not recorded.

A URL is checked when given (``check_camera_url``: it parses, its scheme is
rtsp, rtsps, testsrc or a file path, a file exists), and ``--probe`` (or ``camera
probe URL``) connects once and refuses a camera moonfire can't record, so a bad
camera shows at setup, not as a night of retries.  ``--transport`` picks RTSP
over TCP, UDP or ``auto`` (TCP, then UDP if the camera refuses TCP).

Budgets are human sizes (``moonfire.sizes``).  Anything that deletes video
(lowering a budget or maximum age, ``remove --delete-recordings``) goes through
the syncer's initial rotation, the one code path that deletes sample files
durably, and only while no recorder holds the sample file directory's lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db import Camera, Database, Stream
from moonfire.ingest.probe import probe_stream
from moonfire.ingest.sources import TRANSPORTS, SourceError, check_camera_url, redact_url
from moonfire.sizes import format_size, parse_size
from moonfire.storage.data_dir import open_db
from moonfire.storage.retention import DAY_90K, budget_holds_90k
from moonfire.storage.sample_file_dir import SampleFileDir
from moonfire.time import format_duration

SIZE_HELP = "bytes, or a size like 500MB or 1.5T (SI, powers of 1000) or 10GiB (IEC, 1024)"

#: (option suffix, ``add_camera`` keyword suffix) of the per-stream options.
_STREAM_OPTIONS = (("url", "url"), ("retain", "retain_bytes"), ("max_days", "max_age_days"),
                   ("dir", "sample_file_dir"), ("transport", "transport"),
                   ("archive", "archive"), ("archive_days", "archive_days"))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "camera",
        help=command_help("camera"),
        description="Configure the cameras that `moonfire run` records.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="add a camera",
        description="Add a camera to record. The --sub- options add its sub stream (low "
        "resolution, for long cheap history and live view), with its own budget and directory.",
    )
    add_data_dir_argument(add)
    add.add_argument("name", help="short name, unique among cameras")
    add.add_argument(
        "--url", required=True,
        help="main stream: rtsp:// URL, file path, or testsrc://?size=1280x720&fps=30",
    )
    _add_setting_arguments(add, adding=True)
    add.add_argument(
        "--probe", action="store_true",
        help="connect to the main stream first and refuse to add a camera moonfire can't "
        "record (see `moonfire camera probe`)",
    )
    add.set_defaults(func=add_camera)

    probe = actions.add_parser(
        "probe",
        help="connect to a camera once and say what it sends and whether moonfire can record it",
        description="Connect to URL once and print its codec, profile, resolution, frame rate, "
        "B-frames, audio and the transport used, and whether moonfire can record it (and why "
        "not). Exit code 0 if it can, 1 if not.",
    )
    probe.add_argument("url", help="rtsp:// URL, file path, or testsrc://...")
    probe.add_argument("--username", help="for the camera's authentication")
    probe.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of standard input (never on the command "
        "line, where other users can see it)",
    )
    probe.add_argument("--transport", choices=TRANSPORTS, default="auto",
                       help="RTSP over tcp, udp, or auto (TCP, then UDP; default)")
    probe.add_argument("--timeout", type=float, default=10.0, metavar="SEC",
                       help="how long to wait for the camera to answer (default 10)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of text")
    probe.set_defaults(func=probe_camera)

    ls = actions.add_parser(
        "list",
        help="list cameras' streams with their budgets, usage and forecast",
        description="List every camera's streams: directory, budget, maximum age, usage, and "
        "how long the budget holds at the bitrate recorded so far.",
    )
    add_data_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=list_cameras)

    edit = actions.add_parser(
        "edit",
        help="change some of a camera's settings",
        description="Change the given settings of a camera; the others stay as they are. "
        "A lowered budget or maximum age is applied at once if no recorder is running, else by "
        "the running recorder when it next saves a recording; a running recorder picks up a "
        "new URL, credentials, rotation interval, directory or sub stream when it restarts. A "
        "password needs a username. A stream can move to another directory only while it has "
        "no recordings.",
    )
    add_data_dir_argument(edit)
    edit.add_argument("name", help="the camera to change")
    edit.add_argument("--rename", metavar="NEW_NAME", help="a new short name")
    edit.add_argument("--url", help="a new main stream URL")
    _add_setting_arguments(edit, adding=False)
    edit.set_defaults(func=edit_camera)

    remove = actions.add_parser(
        "remove",
        help="remove a camera",
        description="Remove a camera and its streams. Refuses while it has recordings unless "
        "--delete-recordings is given. The recorder must not be running.",
    )
    add_data_dir_argument(remove)
    remove.add_argument("name", help="the camera to remove")
    remove.add_argument(
        "--delete-recordings", action="store_true",
        help="also delete all of its recordings (and forget those only its archive holds: "
        "their objects stay in the bucket)"
    )
    remove.set_defaults(func=remove_camera)


def _add_setting_arguments(p: argparse.ArgumentParser, adding: bool) -> None:
    p.add_argument("--username", help="for the camera's authentication ('' clears it)")
    p.add_argument(
        "--password", help="for the camera's authentication; needs a username ('' clears it)"
    )
    p.add_argument(
        "--retain",
        required=adding,
        metavar="SIZE",
        help=f"main stream's byte budget; the oldest recordings go beyond it ({SIZE_HELP})",
    )
    p.add_argument(
        "--max-days",
        type=int,
        metavar="N",
        help="also delete main stream recordings older than N days, even within the budget"
        + ("" if adding else " (0 removes the limit)"),
    )
    p.add_argument("--dir", metavar="NAME", help="main stream's sample file directory "
                   "(`moonfire dir list`; default: the first)")
    p.add_argument("--transport", choices=TRANSPORTS, help="main stream's RTSP transport: tcp, "
                   "udp, or auto (TCP, then UDP if the camera refuses TCP)"
                   + ("; default auto" if adding else ""))
    p.add_argument("--sub-url", metavar="URL", help="the sub stream's URL"
                   + ("" if adding else " ('' stops recording it)"))
    p.add_argument("--sub-retain", metavar="SIZE",
                   help="sub stream's byte budget (0: not recorded, kept for live view)")
    p.add_argument("--sub-max-days", type=int, metavar="N",
                   help="the sub stream's maximum age in days")
    p.add_argument("--sub-dir", metavar="NAME", help="the sub stream's sample file directory")
    p.add_argument("--sub-transport", choices=TRANSPORTS,
                   help="the sub stream's RTSP transport (like --transport)")
    p.add_argument("--archive", metavar="NAME", help="also upload the main stream's recordings "
                   "to this archive (`moonfire archive list`)"
                   + ("" if adding else "; '' stops archiving"))
    p.add_argument("--archive-days", type=int, metavar="N",
                   help="keep the main stream's archived recordings N days (default: forever)")
    p.add_argument("--sub-archive", metavar="NAME", help="the sub stream's archive")
    p.add_argument("--sub-archive-days", type=int, metavar="N",
                   help="the sub stream's archive retention in days")
    p.add_argument(
        "--rotate-seconds",
        type=int,
        default=60 if adding else None,
        metavar="N",
        help="start a new recording every N seconds, at a key frame (1-299"
        + ("; default 60)" if adding else ")"),
    )
    p.add_argument("--description", help="free text")


def _stream_changes(args: argparse.Namespace, adding: bool) -> dict[str, Any]:
    """The per-stream options given, as ``add_camera``/``update_camera`` keywords."""
    changes: dict[str, Any] = {}
    for prefix in ("", "sub_"):
        for option, keyword in _STREAM_OPTIONS:
            value = getattr(args, prefix + option)
            if value is None:
                continue
            if option == "url" and value:
                try:
                    check_camera_url(value)
                except SourceError as e:
                    raise CommandError(f"--{prefix.replace('_', '-')}url {e}") from None
            elif option == "retain":
                value = parse_size(value)
            elif option in ("max_days", "archive_days"):
                if value < 0 or (value == 0 and adding):
                    raise CommandError(
                        f"--{(prefix + option).replace('_', '-')} must be a positive number of "
                        f"days{'' if adding else ', or 0 for no limit'}, got {value}"
                    )
                value = value or None
            changes[prefix + keyword] = value
    if adding and "sub_url" not in changes:
        # Named as the person typed them (--sub-dir), not as add_camera's keywords.
        given = [f"--sub-{option.replace('_', '-')}" for option, keyword in _STREAM_OPTIONS
                 if "sub_" + keyword in changes]
        if given:
            raise CommandError(f"{given[0]} needs --sub-url (the sub stream's URL)")
    if adding and "sub_url" in changes and "sub_retain_bytes" not in changes:
        raise CommandError("--sub-url needs --sub-retain SIZE (0 to keep it for live view only)")
    return changes


def add_camera(args: argparse.Namespace) -> int:
    _refuse_password_without_username(args.name, args.username or None, args.password or None)
    changes = _stream_changes(args, adding=True)
    if args.probe:
        report = probe_stream(
            args.url, args.username or None, args.password or None,
            transport=args.transport or "auto",
        )
        print("\n".join(report.describe()))
        if not report.recordable:
            raise CommandError(
                f"camera {args.name!r} not added: moonfire can't record {report.url}: "
                f"{report.reason}"
            )
    with open_db(args.data_dir) as db:
        camera = db.add_camera(
            args.name,
            username=args.username or None,
            password=args.password or None,
            rotate_interval_sec=args.rotate_seconds,
            description=args.description or "",
            **changes,
        )
        described = "; ".join(_describe_stream(db, camera, s) for s in camera.streams)
    print(
        f"added camera {camera.short_name!r} (id {camera.id}): {described}; a new recording "
        f"every {camera.rotate_interval_sec} s"
    )
    return 0


def probe_camera(args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if password and not args.username:
            raise CommandError("--password-stdin needs --username (a password alone can't "
                               "reach the camera)")
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    report = probe_stream(args.url, args.username or None, password or None,
                          transport=args.transport, timeout_sec=args.timeout)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.describe()))
    return 0 if report.recordable else 1


def _describe_stream(db: Database, camera: Camera, stream: Stream) -> str:
    if not stream.record:
        return f"{stream.type} stream not recorded"
    age = f", at most {stream.max_age_days} days" if stream.max_age_days else ""
    directory = db.sample_file_dir(stream.sample_file_dir_id).name
    return f"{stream.type} stream budget {format_size(stream.retain_bytes)}{age} in {directory!r}"


def list_cameras(args: argparse.Namespace) -> int:
    with open_db(args.data_dir, read_only=True) as db:
        summaries = [_summary(db, c) for c in db.list_cameras()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no cameras; add one with `moonfire camera add NAME --url URL --retain SIZE`")
        return 0
    header = ("STREAM", "URL", "DIR", "BUDGET", "MAX AGE", "HOLDS", "USAGE", "RECORDINGS",
              "DURATION", "ROTATE")
    rows = [
        (
            f"{c['name']}/{s['type']}",
            s["url"],
            s["dir"],
            format_size(s["retain_bytes"]) if s["record"] else "not recorded",
            f"{s['max_age_days']} days" if s["max_age_days"] else "-",
            s["budget_holds"] or "?",
            format_size(s["usage_bytes"]),
            str(s["recordings"]),
            s["duration"],
            f"{c['rotate_interval_sec']} s",
        )
        for c in summaries
        for s in c["streams"]
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    for c in summaries:
        for s in c["streams"]:
            if s["forecast"]:
                print(f"{c['name']}/{s['type']}: {s['forecast']}")
    return 0


def _summary(db: Database, camera: Camera) -> dict[str, Any]:
    """What ``list`` shows of a camera and its streams; never the password."""
    return {
        "id": camera.id,
        "name": camera.short_name,
        "description": camera.description,
        "username": camera.username,
        "has_password": camera.password is not None,
        "rotate_interval_sec": camera.rotate_interval_sec,
        "streams": [_stream_summary(db, s) for s in camera.streams],
    }


def _stream_summary(db: Database, stream: Stream) -> dict[str, Any]:
    recordings, usage_bytes, duration_90k = db.stream_usage(stream.id)
    holds = budget_holds_90k(stream.retain_bytes, usage_bytes, duration_90k)
    return {
        "id": stream.id,
        "type": stream.type,
        "url": redact_url(stream.url),
        "transport": stream.transport,
        "record": stream.record,
        "dir": db.sample_file_dir(stream.sample_file_dir_id).name,
        "retain_bytes": stream.retain_bytes,
        "max_age_days": stream.max_age_days,
        "recordings": recordings,
        "usage_bytes": usage_bytes,
        "duration_90k": duration_90k,
        "duration": format_duration(duration_90k),
        "budget_holds_90k": holds,
        "budget_holds": format_duration(holds) if holds is not None else None,
        "forecast": forecast(stream, holds),
    }


def forecast(stream: Stream, holds_90k: int | None) -> str | None:
    """With a maximum age, whether the budget is enough for it at the bitrate so far; None
    when there is nothing to say (no maximum, or nothing recorded yet)."""
    if not stream.record or stream.max_age_days is None or holds_90k is None:
        return None
    wanted = stream.max_age_days * DAY_90K
    if holds_90k >= wanted:
        return (
            f"the budget holds {format_duration(holds_90k)}, more than the maximum age of "
            f"{stream.max_age_days} days: recordings go at {stream.max_age_days} days"
        )
    needed = stream.retain_bytes * wanted // holds_90k
    return (
        f"the budget holds only {format_duration(holds_90k)}, less than the maximum age of "
        f"{stream.max_age_days} days: the budget deletes first; {format_size(needed)} would "
        f"keep {stream.max_age_days} days"
    )


def edit_camera(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.rename is not None:
        changes["short_name"] = args.rename
    for name in ("username", "password"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value or None
    if args.rotate_seconds is not None:
        changes["rotate_interval_sec"] = args.rotate_seconds
    if args.description is not None:
        changes["description"] = args.description
    changes |= _stream_changes(args, adding=False)
    if not changes:
        raise CommandError("camera edit: nothing to change; give at least one setting option")
    with open_db(args.data_dir) as db:
        before = db.get_camera(args.name)
        _refuse_password_without_username(
            before.short_name,
            changes.get("username", before.username),
            changes.get("password", before.password),
        )
        camera = db.update_camera(before.id, **changes)
        print(f"updated camera {camera.short_name!r}: {', '.join(sorted(changes))}")
        _apply_now(db, camera, [s for s in camera.streams if _deletes_more(before, s)])
    return 0


def _deletes_more(before: Camera, stream: Stream) -> bool:
    """The stream's budget or maximum age is now stricter than it was."""
    old = before.main if stream.type == "main" else before.sub
    if old is None:
        return False
    if stream.retain_bytes < old.retain_bytes:
        return True
    return stream.max_age_days is not None and (
        old.max_age_days is None or stream.max_age_days < old.max_age_days
    )


def _refuse_password_without_username(
    name: str, username: str | None, password: str | None
) -> None:
    """A URL's userinfo can't carry a password alone, so it would never reach the camera."""
    if password is not None and username is None:
        raise CommandError(
            f"camera {name!r}: a password needs a username; give --username too "
            "(or --password '' to clear the password)"
        )


def _apply_now(db: Database, camera: Camera, streams: list[Stream]) -> None:
    """Apply stricter budgets or ages at once unless a recorder holds the directory."""
    for stream in streams:
        recordings, usage, _ = db.stream_usage(stream.id)
        if not recordings:
            continue
        catalogued = db.stream_usage(stream.id, local_only=False)[0]
        name = f"{camera.short_name}/{stream.type}"
        if not _rotate_now(db, stream.sample_file_dir_id):
            print(
                f"the recorder is running: the new limits of {name} (now using "
                f"{format_size(usage)}) take effect when it next saves a recording"
            )
            continue
        after, after_usage, _ = db.stream_usage(stream.id)
        # An archived recording loses only its local file: it stays in the catalog.
        kept = (recordings - after) - (catalogued - db.stream_usage(stream.id, local_only=False)[0])
        print(
            f"deleted {recordings - after} of {name}'s oldest recordings "
            f"({format_size(usage - after_usage)}) to fit its budget of "
            f"{format_size(stream.retain_bytes)}"
            + (f" and maximum age of {stream.max_age_days} days" if stream.max_age_days else "")
            + (f"; {kept} of them still play from the archive" if kept else "")
        )


def remove_camera(args: argparse.Namespace) -> int:
    with open_db(args.data_dir) as db:
        camera = db.get_camera(args.name)
        # Archived-only recordings included: removing the camera forgets them too.
        usages = [db.stream_usage(s.id, local_only=False) for s in camera.streams]
        recordings = sum(u[0] for u in usages)
        usage = sum(u[1] for u in usages)
        if recordings and not args.delete_recordings:
            raise CommandError(
                f"camera {camera.short_name!r} has {recordings} recordings "
                f"({format_size(usage)}); give --delete-recordings to delete them too"
            )
        dir_ids = sorted({s.sample_file_dir_id for s in camera.streams})
        with contextlib.ExitStack() as held:
            opened = []
            for dir_id in dir_ids:  # every lock first: nothing changes under a recorder
                try:
                    opened.append(held.enter_context(SampleFileDir.open(db, dir_id)))
                except BlockingIOError:
                    raise CommandError(
                        f"can't remove camera {camera.short_name!r} while `moonfire run` is "
                        f"recording from {args.data_dir}; stop it first"
                    ) from None
            if recordings:
                # If this is interrupted, the camera is left with zero budgets and fewer
                # recordings, never with a row lacking its file; running remove again finishes.
                # No archive either: recordings still waiting to be uploaded would
                # otherwise be kept for it (they go now, as asked).
                zero: dict[str, Any] = {"retain_bytes": 0, "max_age_days": None, "archive": ""}
                if camera.sub is not None:
                    zero.update(sub_retain_bytes=0, sub_archive="")
                db.update_camera(camera.id, **zero)
                for sample_file_dir in opened:
                    sample_file_dir.start_syncer().close()
            db.delete_camera(camera.id, forget_archived=args.delete_recordings)
    deleted = f" and its {recordings} recordings ({format_size(usage)})" if recordings else ""
    print(f"removed camera {camera.short_name!r}{deleted}")
    return 0


def _rotate_now(db: Database, dir_id: int) -> bool:
    """Bring every stream of a directory within its budget and age: a syncer's start is
    exactly that rotation.  False if a recorder holds the directory's lock."""
    try:
        sample_file_dir = SampleFileDir.open(db, dir_id)
    except BlockingIOError:
        return False
    with sample_file_dir:
        sample_file_dir.start_syncer().close()
    return True
