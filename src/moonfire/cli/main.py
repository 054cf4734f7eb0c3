"""The ``moonfire`` command: one entry point, one module per subcommand.

Each module in ``moonfire.cli`` named in ``COMMANDS`` provides
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code.

What escapes a subcommand is printed without a traceback (unless ``--verbose``,
which re-raises) and the exit code is 1:

* a ``MoonfireError`` or one of ``CORE_USER_ERRORS``: ``moonfire: <message>``;
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

from moonfire.errors import CORE_USER_ERRORS, MoonfireError

COMMANDS = [
    "init", "dir", "camera", "user", "run", "status", "recordings", "demo", "check", "export",
    "archive",
]

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moonfire", description="Record security cameras to disk, 24/7."
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show tracebacks and debug logs"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"moonfire.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
    if isinstance(e, (MoonfireError, *CORE_USER_ERRORS)):
        return [str(e)]
    if isinstance(e, OSError):
        if e.filename is None:
            return [str(e), VERBOSE_HINT]
        return [str(e)]  # "[Errno 13] Permission denied: '/path'"
    return [f"internal error ({type(e).__name__}): {e}", VERBOSE_HINT]

