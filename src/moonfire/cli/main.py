"""The ``moonfire`` command: one entry point, one module per subcommand.

Each module in ``moonfire.cli`` named in ``COMMANDS`` provides
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code.  Errors derived from
Errors are printed as one line without a traceback unless ``--verbose`` is
given; errors that are not one of the known user-facing kinds are labelled as
internal errors so a bug is never mistaken for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = ["init", "camera", "run", "recordings", "demo", "check", "export"]

#: Exit codes shared by every subcommand.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
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
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's job is to report, not crash
        if args.verbose:
            raise
        kind = "" if _is_user_facing(e) else f"internal error ({type(e).__name__}): "
        print(f"moonfire: {kind}{e}", file=sys.stderr)
        return EXIT_FAILURE


def _is_user_facing(e: Exception) -> bool:
    """Errors whose message is the whole story; anything else is a bug worth naming."""
    from moonfire.db import DatabaseError
    from moonfire.storage.data_dir import DataDirError
    from moonfire.storage.dir_meta import DirectoryMismatchError

    return isinstance(
        e,
        CommandError | OSError | ValueError | DatabaseError | DataDirError | DirectoryMismatchError,
    )
