"""``moonfire run``: record every camera until SIGINT or SIGTERM (or ``--for`` seconds), and
serve the HTTP API and web UI from the same process (``--listen``, loopback by default).

The web server starts once recording has started and stops before the
recorder shuts down; it has its own thread, event loop and database
connection (``moonfire.web``), so recording never waits for it.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from moonfire.cli._stop import exit_code, stop_on_signals
from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.storage.data_dir import open_db

if TYPE_CHECKING:
    from moonfire.ingest.daemon import Daemon
    from moonfire.ingest.live import LiveFeeds
    from moonfire.storage.syncer import Syncer
    from moonfire.web.recorder import StreamStatus
    from moonfire.web.unsaved import RecorderState

DEFAULT_LISTEN = "127.0.0.1:8080"


def default_listen() -> str:
    """``--listen``'s default: ``$MOONFIRE_LISTEN`` if set (a service's environment, or a
    test run with several recorders at once), else loopback port 8080."""
    return os.environ.get("MOONFIRE_LISTEN") or DEFAULT_LISTEN


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help=command_help("run"),
        description="Record cameras until SIGINT or SIGTERM, then shut down in order: every "
        "open recording is saved and no reservation is left. Exit code 0 after SIGTERM or "
        "--for, 130 after SIGINT, 1 if recording failed.",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--for", dest="for_seconds", type=float, metavar="SECONDS", help="stop after this long"
    )
    p.add_argument(
        "--listen",
        default=default_listen(),
        metavar="ADDR:PORT",
        help=f"serve the HTTP API and web UI here (default $MOONFIRE_LISTEN or {DEFAULT_LISTEN}; "
        "[::1]:8080 for IPv6)",
    )
    p.add_argument("--no-listen", action="store_true", help="don't serve HTTP at all")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="allow viewing without a login from other machines while no user exists "
        "(otherwise a non-loopback --listen needs `moonfire user add` first)",
    )
    p.add_argument(
        "--trust-forward-headers",
        action="store_true",
        help="behind a reverse proxy: trust X-Forwarded-For/-Proto (for the client address and "
        "the cookie's Secure flag)",
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
    from moonfire.ingest.live import LiveFeeds
    from moonfire.web.server import parse_listen

    listen = None if args.no_listen else parse_listen(args.listen)
    if listen is not None:
        refuse_open_listen(args.data_dir, listen[0], args.allow_unauthenticated)
    start_web = None if listen is None else web_starter(
        args.data_dir, listen,
        trust_forward_headers=args.trust_forward_headers,
        allow_unauthenticated=args.allow_unauthenticated,
    )

    stop = threading.Event()
    with stop_on_signals(stop) as received:
        code = run_cameras(
            args.data_dir,
            duration_sec=args.for_seconds,
            stop=stop,
            camera_names=args.camera,
            on_started=start_web,
            # Each frame goes out as it arrives (its duration estimated from the one before), not
            # a frame later: live latency stays a few ms instead of a frame interval.
            live=None if listen is None else LiveFeeds(estimate_durations=True),
        )
    return exit_code(code, received)


def web_starter(
    data_dir: str,
    listen: tuple[str, int],
    *,
    trust_forward_headers: bool = False,
    allow_unauthenticated: bool = False,
    on_listening: Callable[[str, Daemon], None] | None = None,
) -> Callable[[Daemon], Callable[[], None]]:
    """What ``run_cameras`` calls once recording runs: start the web server on ``listen``
    (its own connection and thread) and return what stops it.  ``on_listening(url,
    daemon)`` is told the server's URL once it listens (``moonfire demo`` prints it)."""
    from moonfire.web.app import build_app
    from moonfire.web.auth import Auth
    from moonfire.web.context import WebContext
    from moonfire.web.server import WebServer

    def start_web(daemon: Daemon) -> Callable[[], None]:
        ctx = WebContext.open(data_dir)
        auth = Auth(
            ctx.db,
            trust_forward_headers=trust_forward_headers,
            allow_unauthenticated=allow_unauthenticated,
        )
        server = WebServer(lambda: build_app(ctx, auth, recorder=DaemonView(daemon)), *listen)
        try:
            server.start()
        except BaseException:
            ctx.close()
            raise
        if on_listening is not None:
            on_listening(server.url, daemon)

        def stop_web() -> None:
            server.stop()
            ctx.close()

        return stop_web

    return start_web


class DaemonView:
    """The ``moonfire.web.recorder.RecorderView`` of a running ``Daemon``: its stream
    states (those ``moonfire status`` prints), syncers, failed directories and live feeds."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    @property
    def live(self) -> LiveFeeds | None:
        return self._daemon.live

    def stream_statuses(self) -> Mapping[int, StreamStatus]:
        from moonfire.web.recorder import StreamStatus

        return {
            stream_id: StreamStatus(
                state=s["state"], reason=s["reason"], frames=s["frames"], errors=s["errors"],
                last_frame_age_sec=s["last_frame_age_sec"],
            )
            for stream_id, s in self._daemon.statuses_by_stream_id().items()
        }

    def syncers(self) -> Mapping[int, Syncer]:
        return self._daemon.syncers

    def dir_errors(self) -> Mapping[int, str]:
        return {dir_id: str(error) for dir_id, error in self._daemon.dir_errors.items()}

    def recorder_state(self, stream_id: int) -> RecorderState | None:
        from moonfire.web.unsaved import RecorderState

        for streamer in self._daemon.streamers:
            if streamer.stream.id != stream_id or streamer.live_only:
                continue
            syncer = self._daemon.syncers.get(streamer.stream.sample_file_dir_id)
            if syncer is None:
                return None
            # This order (the writer's snapshot, then the syncer's queue) is the one
            # moonfire.web.unsaved needs to see each recording at least once.
            growing = streamer.recorder.growing
            return RecorderState(growing, syncer.uncommitted(stream_id), syncer.open_id)
        return None

    def start_new_streams(self) -> list[str]:
        from moonfire.ingest.daemon import start_new_streams

        return start_new_streams(self._daemon)


def refuse_open_listen(data_dir: str, host: str, allow_unauthenticated: bool) -> None:
    """Listening beyond loopback with no user would let anyone on the network watch."""
    from moonfire.db.users import count_users
    from moonfire.web.auth import is_loopback

    if is_loopback(host) or allow_unauthenticated:
        return
    with open_db(data_dir, read_only=True) as db:
        if count_users(db) == 0:
            raise CommandError(
                f"--listen {host} is reachable from other machines, but no user exists, so "
                "anyone could watch; add one with `moonfire user add NAME --admin`, or give "
                "--allow-unauthenticated"
            )


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
