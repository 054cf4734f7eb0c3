"""``moonfire camera add|list|edit|remove``: configure the cameras to record.

Budgets are human sizes (``moonfire.sizes``).  Anything that deletes video
(lowering a budget, ``remove --delete-recordings``) goes through the syncer's
initial rotation, the one code path that deletes sample files durably, and
only while no recorder holds the sample file directory's lock.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument
from moonfire.db import Camera, Database
from moonfire.ingest.sources import redact_url
from moonfire.sizes import format_size, parse_size
from moonfire.storage.data_dir import open_db
from moonfire.storage.sample_file_dir import SampleFileDir
from moonfire.time import format_duration

SIZE_HELP = "bytes, or a size like 500MB or 1.5T (SI, powers of 1000) or 10GiB (IEC, 1024)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "camera",
        help="add, list, edit or remove cameras",
        description="Configure the cameras that `moonfire run` records.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a camera", description="Add a camera to record.")
    add_data_dir_argument(add)
    add.add_argument("name", help="short name, unique among cameras")
    add.add_argument(
        "--url", required=True, help="rtsp:// URL, file path, or testsrc://?size=1280x720&fps=30"
    )
    _add_setting_arguments(add, retain_required=True)
    add.set_defaults(func=add_camera)

    ls = actions.add_parser(
        "list", help="list cameras with their budgets and usage", description="List cameras."
    )
    add_data_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=list_cameras)

    edit = actions.add_parser(
        "edit",
        help="change some of a camera's settings",
        description="Change the given settings of a camera; the others stay as they are. "
        "A lowered budget is applied at once if no recorder is running, else by the running "
        "recorder when it next saves a recording; a running recorder picks up a new URL, "
        "credentials or rotation interval when it restarts. A password needs a username.",
    )
    add_data_dir_argument(edit)
    edit.add_argument("name", help="the camera to change")
    edit.add_argument("--rename", metavar="NEW_NAME", help="a new short name")
    edit.add_argument("--url", help="a new source URL")
    _add_setting_arguments(edit, retain_required=False)
    edit.set_defaults(func=edit_camera)

    remove = actions.add_parser(
        "remove",
        help="remove a camera",
        description="Remove a camera. Refuses while it has recordings unless "
        "--delete-recordings is given. The recorder must not be running.",
    )
    add_data_dir_argument(remove)
    remove.add_argument("name", help="the camera to remove")
    remove.add_argument(
        "--delete-recordings", action="store_true", help="also delete all of its recordings"
    )
    remove.set_defaults(func=remove_camera)


def _add_setting_arguments(p: argparse.ArgumentParser, retain_required: bool) -> None:
    p.add_argument("--username", help="for the camera's authentication ('' clears it)")
    p.add_argument(
        "--password", help="for the camera's authentication; needs a username ('' clears it)"
    )
    p.add_argument(
        "--retain",
        required=retain_required,
        metavar="SIZE",
        help=f"byte budget; the oldest recordings are deleted beyond it ({SIZE_HELP})",
    )
    p.add_argument(
        "--rotate-seconds",
        type=int,
        default=60 if retain_required else None,
        metavar="N",
        help="start a new recording every N seconds, at a key frame (1-299"
        + ("; default 60)" if retain_required else ")"),
    )
    p.add_argument("--description", help="free text")


def add_camera(args: argparse.Namespace) -> int:
    _refuse_password_without_username(args.name, args.username or None, args.password or None)
    retain_bytes = parse_size(args.retain)
    with open_db(args.data_dir) as db:
        camera = db.add_camera(
            args.name,
            url=args.url,
            username=args.username or None,
            password=args.password or None,
            retain_bytes=retain_bytes,
            rotate_interval_sec=args.rotate_seconds,
            description=args.description or "",
        )
    print(
        f"added camera {camera.short_name!r} (id {camera.id}): budget "
        f"{format_size(camera.retain_bytes)}, a new recording every "
        f"{camera.rotate_interval_sec} s"
    )
    return 0


def list_cameras(args: argparse.Namespace) -> int:
    with open_db(args.data_dir, read_only=True) as db:
        summaries = [_summary(db, c) for c in db.list_cameras()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no cameras; add one with `moonfire camera add NAME --url URL --retain SIZE`")
        return 0
    header = ("NAME", "URL", "BUDGET", "HOLDS", "USAGE", "RECORDINGS", "DURATION", "ROTATE")
    rows = [
        (
            s["name"],
            s["url"],
            format_size(s["retain_bytes"]),
            s["budget_holds"] or "?",
            format_size(s["usage_bytes"]),
            str(s["recordings"]),
            s["duration"],
            f"{s['rotate_interval_sec']} s",
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _summary(db: Database, camera: Camera) -> dict[str, Any]:
    """What ``list`` shows of a camera; never the password."""
    recordings, usage_bytes, duration_90k = db.camera_usage(camera.id)
    return {
        "id": camera.id,
        "name": camera.short_name,
        "description": camera.description,
        "url": redact_url(camera.url),
        "username": camera.username,
        "has_password": camera.password is not None,
        "retain_bytes": camera.retain_bytes,
        "rotate_interval_sec": camera.rotate_interval_sec,
        "recordings": recordings,
        "usage_bytes": usage_bytes,
        "duration_90k": duration_90k,
        "duration": format_duration(duration_90k),
        "budget_holds_90k": (
            holds := budget_holds_90k(camera.retain_bytes, usage_bytes, duration_90k)
        ),
        "budget_holds": format_duration(holds) if holds is not None else None,
    }


def budget_holds_90k(retain_bytes: int, usage_bytes: int, duration_90k: int) -> int | None:
    """How much video the budget keeps at the bitrate recorded so far; None before any."""
    if usage_bytes <= 0 or duration_90k <= 0:
        return None
    return retain_bytes * duration_90k // usage_bytes


def edit_camera(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.rename is not None:
        changes["short_name"] = args.rename
    if args.url is not None:
        changes["url"] = args.url
    for name in ("username", "password"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value or None
    if args.retain is not None:
        changes["retain_bytes"] = parse_size(args.retain)
    if args.rotate_seconds is not None:
        changes["rotate_interval_sec"] = args.rotate_seconds
    if args.description is not None:
        changes["description"] = args.description
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
        if camera.retain_bytes < before.retain_bytes:
            _apply_lowered_budget(db, camera)
    return 0


def _refuse_password_without_username(
    name: str, username: str | None, password: str | None
) -> None:
    """A URL's userinfo can't carry a password alone, so it would never reach the camera."""
    if password is not None and username is None:
        raise CommandError(
            f"camera {name!r}: a password needs a username; give --username too "
            "(or --password '' to clear the password)"
        )


def _apply_lowered_budget(db: Database, camera: Camera) -> None:
    recordings, usage, _ = db.camera_usage(camera.id)
    if usage <= camera.retain_bytes:
        return
    sample_file_dir = _open_unless_recording(db)
    if sample_file_dir is None:
        print(
            f"the recorder is running: the budget of {format_size(camera.retain_bytes)} "
            f"(now using {format_size(usage)}) takes effect when it next saves a recording"
        )
        return
    try:
        _rotate_now(sample_file_dir)
    finally:
        sample_file_dir.close()
    after, after_usage, _ = db.camera_usage(camera.id)
    print(
        f"deleted {recordings - after} of {camera.short_name!r}'s oldest recordings "
        f"({format_size(usage - after_usage)}) to fit the budget of "
        f"{format_size(camera.retain_bytes)}"
    )


def remove_camera(args: argparse.Namespace) -> int:
    with open_db(args.data_dir) as db:
        camera = db.get_camera(args.name)
        recordings, usage, _ = db.camera_usage(camera.id)
        if recordings and not args.delete_recordings:
            raise CommandError(
                f"camera {camera.short_name!r} has {recordings} recordings "
                f"({format_size(usage)}); give --delete-recordings to delete them too"
            )
        sample_file_dir = _open_unless_recording(db)
        if sample_file_dir is None:
            raise CommandError(
                f"can't remove camera {camera.short_name!r} while `moonfire run` is recording "
                f"from {args.data_dir}; stop it first"
            )
        try:
            if recordings:
                # If this is interrupted, the camera is left with a zero budget and fewer
                # recordings, never with a row lacking its file; running remove again finishes.
                db.update_camera(camera.id, retain_bytes=0)
                _rotate_now(sample_file_dir)
            db.delete_camera(camera.id)
        finally:
            sample_file_dir.close()
    deleted = f" and its {recordings} recordings ({format_size(usage)})" if recordings else ""
    print(f"removed camera {camera.short_name!r}{deleted}")
    return 0


def _open_unless_recording(db: Database) -> SampleFileDir | None:
    """The locked sample file directory, or ``None`` if a recorder holds its lock."""
    try:
        return SampleFileDir.open(db.sample_file_dir().path, db)
    except BlockingIOError:
        return None


def _rotate_now(sample_file_dir: SampleFileDir) -> None:
    """Bring every camera within its budget: a syncer's start is exactly that rotation."""
    sample_file_dir.start_syncer().close()
