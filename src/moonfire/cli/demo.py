"""``moonfire demo``: the whole system with no camera, in one command.

It (1) creates a data directory, or reuses one a previous demo made, (2) adds
the synthetic camera ``demo`` (an H.264 test pattern encoded in real time)
with a short rotation interval so a few seconds show rotation, (3) records it
while serving the HTTP API and the player on loopback (``--listen``, as
``moonfire run`` does) and prints the URL to watch it live, and (4) prints what
was recorded and the ``moonfire export`` command that turns it into an ``.mp4``.
It uses its own data directory, never ``$MOONFIRE_DATA_DIR``, so trying it
cannot touch real recordings.
"""

from __future__ import annotations

import argparse
import os
import shlex
import threading

from moonfire.cli._stop import exit_code, stop_on_signals
from moonfire.cli.main import CommandError, command_help
from moonfire.cli.recordings import split_runs
from moonfire.cli.run import DEFAULT_LISTEN, default_listen, refuse_open_listen, web_starter
from moonfire.db import Camera, RecordingRow, UnknownCameraError
from moonfire.sizes import format_size
from moonfire.storage import data_dir as datadir
from moonfire.time import format_duration, format_time

DEFAULT_DEMO_DIR = "./moonfire-demo"
DEMO_CAMERA = "demo"
DEMO_URL = "testsrc://?size=1280x720&fps=30&bitrate=2M&gop=30"
#: Short, so a 20-second demo shows rotation: the first recording of a run spans
#: one to two intervals (brief §3.3), then one every interval.
DEMO_ROTATE_SEC = 5
#: At 2 Mbit/s this keeps over an hour of demo video before rotation deletes any.
DEMO_RETAIN_BYTES = 1 << 30


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help=command_help("demo"),
        description="Create a data directory (or reuse one a previous demo made), add the "
        f"synthetic camera {DEMO_CAMERA!r} ({DEMO_URL}), record it, then print what was "
        "recorded and the `moonfire export` command to run next.",
    )
    p.add_argument(
        "--data-dir",
        default=DEFAULT_DEMO_DIR,
        help=f"where to record (default: {DEFAULT_DEMO_DIR}; not $MOONFIRE_DATA_DIR)",
    )
    p.add_argument(
        "--seconds", type=float, default=20.0, help="how long to record (default: 20)"
    )
    p.add_argument(
        "--listen",
        default=default_listen(),
        metavar="ADDR:PORT",
        help="serve the web UI and API here while recording (loopback; default "
        f"$MOONFIRE_LISTEN or {DEFAULT_LISTEN})",
    )
    p.add_argument("--no-listen", action="store_true", help="don't serve HTTP")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise CommandError(f"--seconds must be a positive number, got {args.seconds}")
    prepare_data_dir(args.data_dir)
    camera = ensure_demo_camera(args.data_dir)
    from moonfire.ingest.daemon import run_cameras  # imports PyAV: only when recording
    from moonfire.ingest.live import LiveFeeds
    from moonfire.web.server import parse_listen

    listen = None if args.no_listen else parse_listen(args.listen)
    if listen is not None:
        refuse_open_listen(args.data_dir, listen[0], allow_unauthenticated=False)

    def say_where(url: str, _daemon: object) -> None:
        print(f"watch it live: {url}/#/live")
        print(f"play it back:  {url}/#/play?camera={DEMO_CAMERA}")
        print(f"the API:       {url}/api/?days=true")

    print(f"recording camera {DEMO_CAMERA!r} ({camera.main.url}) for {args.seconds:g} s ...")
    stop = threading.Event()
    with stop_on_signals(stop) as received:
        code = run_cameras(
            args.data_dir,
            duration_sec=args.seconds,
            stop=stop,
            camera_names=[DEMO_CAMERA],
            on_started=None if listen is None else web_starter(
                args.data_dir, listen, on_listening=say_where
            ),
            live=None if listen is None else LiveFeeds(estimate_durations=True),
        )
    with datadir.open_db(args.data_dir, read_only=True) as db:
        rows = [
            r
            for r in db.list_recordings(camera.main.id)
            if r.recording_id >= camera.main.next_recording_id
        ]
    if not rows:
        raise CommandError(
            f"nothing was recorded from camera {DEMO_CAMERA!r} (recorder exit code {code}); "
            "run `moonfire --verbose demo` to see why"
        )
    print_summary(args.data_dir, rows)
    return exit_code(code, received)


def prepare_data_dir(data_dir: str) -> None:
    """Reuse a moonfire data directory; otherwise create one."""
    if os.path.exists(datadir.db_path(data_dir)):
        print(f"using the existing data directory {data_dir}")
        return
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    db.close()
    print(f"created data directory {data_dir}")


def ensure_demo_camera(data_dir: str) -> Camera:
    """The ``demo`` camera, added unless a previous demo did."""
    with datadir.open_db(data_dir) as db:
        try:
            return db.get_camera(DEMO_CAMERA)
        except UnknownCameraError:
            pass
        camera = db.add_camera(
            DEMO_CAMERA,
            url=DEMO_URL,
            retain_bytes=DEMO_RETAIN_BYTES,
            rotate_interval_sec=DEMO_ROTATE_SEC,
            description="synthetic test pattern added by `moonfire demo`",
        )
    print(f"added camera {DEMO_CAMERA!r}: a new recording every {DEMO_ROTATE_SEC} s")
    return camera


def print_summary(data_dir: str, rows: list[RecordingRow]) -> None:
    """What this demo recorded, then the export command for all of it."""
    start, end = rows[0].start_time_90k, max(r.end_time_90k for r in rows)
    nbytes = sum(r.sample_file_bytes for r in rows)
    duration = sum(r.duration_90k for r in rows)
    runs = split_runs(rows)
    print(
        f"recorded {_count(len(rows), 'recording')} in {_count(len(runs), 'run')}: "
        f"{format_duration(duration)}, "
        f"{format_size(nbytes)}, from {format_time(start)} to {format_time(end)}"
    )
    for r in rows:
        print(
            f"  #{r.recording_id}: {format_time(r.start_time_90k)}, "
            f"{format_duration(r.duration_90k)}, {r.video_samples} frames, "
            f"{format_size(r.sample_file_bytes)}"
        )
    quoted = shlex.quote(data_dir)
    print("list them:   " + f"moonfire recordings {DEMO_CAMERA} --data-dir {quoted}")
    print(
        "export them: "
        + shlex.join(
            [
                "moonfire", "export", DEMO_CAMERA,
                "--start", format_time(start), "--end", format_time(end),
                "-o", "demo.mp4", "--data-dir", data_dir,
            ]
        )
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
