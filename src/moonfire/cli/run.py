"""``moonfire run``: record every camera until SIGINT or SIGTERM (or ``--for`` seconds)."""

from __future__ import annotations

import argparse
import threading

from moonfire.cli._stop import exit_code, stop_on_signals
from moonfire.cli.main import CommandError, add_data_dir_argument
from moonfire.storage.data_dir import open_db


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="record every camera until SIGINT or SIGTERM",
        description="Record cameras until SIGINT or SIGTERM, then shut down in order: every "
        "open recording is saved and no reservation is left. Exit code 0 after SIGTERM or "
        "--for, 130 after SIGINT, 1 if recording failed.",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--for", dest="for_seconds", type=float, metavar="SECONDS", help="stop after this long"
    )
    p.add_argument(
        "--camera",
        action="append",
        metavar="NAME",
        help="record only this camera (repeatable; default: all)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.for_seconds is not None and not args.for_seconds > 0:
        raise CommandError(f"--for must be a positive number of seconds, got {args.for_seconds}")
    check_cameras(args.data_dir, args.camera)
    from moonfire.ingest.daemon import run_cameras  # imports PyAV: only when recording

    stop = threading.Event()
    with stop_on_signals(stop) as received:
        code = run_cameras(
            args.data_dir, duration_sec=args.for_seconds, stop=stop, camera_names=args.camera
        )
    return exit_code(code, received)


def check_cameras(data_dir: str, names: list[str] | None) -> None:
    """Refuse before recording starts: no cameras at all, or an unknown ``--camera`` name."""
    with open_db(data_dir, read_only=True) as db:
        if not db.list_cameras():
            raise CommandError(
                f"no cameras to record in {data_dir}; add one with "
                "`moonfire camera add NAME --url URL --retain SIZE`"
            )
        for name in names or []:
            db.get_camera(name)
