"""The ``moonfire`` command: one entry point, one module per subcommand.

Each module in ``moonfire.cli`` named in ``COMMANDS`` provides
``register(subparsers)``, which adds its parser (with ``COMMANDS``' line as its
help) and sets ``func`` to a callable taking the parsed arguments and returning
the exit code.

Only the module of the command being run is imported: the others bring in the
database, PyAV, aiohttp or boto3, and importing all of them made ``moonfire
status`` take most of a second before it did anything.  ``moonfire --help``
lists every command from ``COMMANDS`` alone.

What escapes a subcommand is printed without a traceback (unless ``--verbose``,
which re-raises) and the exit code is 1:

* a ``MoonfireError`` or one of ``core_user_errors()``: ``moonfire: <message>``;
* an ``OSError`` (the machine: permission denied, disk full, a missing file):
  ``moonfire: <message>`` naming the file; one that names no file gets the
  ``--verbose`` hint too, since only the traceback says which file it was;
* anything else is a bug: ``moonfire: internal error (TypeName): <message>``
  and a second line ``moonfire: rerun with --verbose for the traceback``, so a
  bug is never mistaken for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import moonfire
from moonfire.errors import MoonfireError, core_user_errors

#: Every subcommand (its module is ``moonfire.cli.<name>``) and the line ``moonfire --help``
#: lists it with, in that order.
COMMANDS: dict[str, str] = {
    "init": "create the database and the sample file directory",
    "dir": "add, list or remove sample file directories (one per disk)",
    "camera": "add, list, edit or remove cameras",
    "user": "add, list, remove users of the web API, or set their passwords",
    "run": "record every camera until SIGINT or SIGTERM",
    "status": "say whether the recorder runs and what each stream is doing",
    "recordings": "list a camera's runs and recordings",
    "demo": "record a synthetic camera for a few seconds and show how to export it",
    "check": "check every recording has its intact file, and no stray files or reservations",
    "export": "write a camera's recordings in a time range to .mp4",
    "archive": "add, list, remove or inspect S3-compatible archives",
}

#: Exit codes shared by every subcommand.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

VERBOSE_HINT = "rerun with --verbose for the traceback"


class CommandError(MoonfireError):
    """A user-facing failure: printed as ``moonfire: <message>`` and exit code 1."""


def default_data_dir() -> str:
    return os.environ.get("MOONFIRE_DATA_DIR", "./moonfire-data")


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="database and sample file directory (default: $MOONFIRE_DATA_DIR or ./moonfire-data)",
    )


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: every command listed, and the one ``argv`` names (all of them
    when ``argv`` is None) registered by its module, with its options and actions."""
    parser = argparse.ArgumentParser(
        prog="moonfire", description="Record security cameras to disk, 24/7."
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show tracebacks and debug logs"
    )
    parser.add_argument(
        "--version", action="version", version=f"moonfire {moonfire.__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = None if argv is None else command_named(argv)
    for name, line in COMMANDS.items():
        if argv is None or name == named:
            importlib.import_module(f"moonfire.cli.{name}").register(subparsers)
        else:
            # Listed by --help, never parsed: argv names another command (or none).
            subparsers.add_parser(name, help=line)
    return parser


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` runs: its first word that isn't an option (``moonfire``'s own
    options take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def command_help(name: str) -> str:
    """The one-line help of command ``name``, for its module's ``add_parser``."""
    return COMMANDS[name]


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    # botocore's and urllib3's debug logs print request headers (the archive's signed
    # Authorization among them): never, not even with --verbose.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's job is to report, not crash
        if args.verbose:
            raise
        for line in describe_error(e):
            print(f"moonfire: {line}", file=sys.stderr)
        return EXIT_FAILURE


def describe_error(e: Exception) -> list[str]:
    """The lines (without the ``moonfire: `` prefix) that report ``e`` to the person."""
    if isinstance(e, (MoonfireError, *core_user_errors())):
        return [str(e)]
    if isinstance(e, OSError):
        if e.filename is None:
            return [str(e), VERBOSE_HINT]
        return [str(e)]  # "[Errno 13] Permission denied: '/path'"
    return [f"internal error ({type(e).__name__}): {e}", VERBOSE_HINT]

