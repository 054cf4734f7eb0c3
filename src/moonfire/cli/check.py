"""``moonfire check``: verify the storage invariants; exit 1 if any is broken.

``moonfire check --repair`` (on a stopped recorder) adopts a database the sample file
directory was refused to: a restored older copy, or a copy sharing the directory
(``moonfire.storage.repair``)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db import Database
from moonfire.storage import invariants as checker
from moonfire.storage import repair
from moonfire.storage.data_dir import open_db
from moonfire_core.sampledir import SampleDirectory


@contextlib.contextmanager
def _recorder_stopped(db: Database) -> Iterator[None]:
    """Hold a shared lock on every sample file directory, so no recorder runs meanwhile.

    A running recorder legitimately holds reservations and rotates files away
    between our reads, so checking under it would report false violations.
    """
    with contextlib.ExitStack() as held:
        for row in db.list_sample_file_dirs():
            try:
                held.enter_context(SampleDirectory(row.path, lock="shared"))
            except FileNotFoundError:
                continue  # check reports the missing directory itself
            except BlockingIOError:
                raise CommandError(
                    f"sample file directory {row.path} is in use by a running moonfire; "
                    "stop it before checking"
                ) from None
        yield


def _progress(bar: tqdm[Any] | None) -> Callable[[int], None] | None:
    """The checker's ``progress(nbytes)`` callback advancing ``bar``, if there is one."""
    if bar is None:
        return None

    def advance(nbytes: int) -> None:
        bar.update(nbytes)

    return advance


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help=command_help("check"),
    )
    add_data_dir_argument(p)
    p.add_argument("--hash", action="store_true", help="also compare every file's SHA-1 (slow)")
    p.add_argument("--archive", action="store_true",
                   help="also check every archived recording's objects in its archive (size "
                   "and SHA-1; with --hash, their bytes too)")
    p.add_argument(
        "--repair",
        action="store_true",
        help="adopt this database for its sample file directory (after restoring an older "
        "database, say): drop rows whose files are gone, list files no row names (never "
        "deleted), then record a new open; the recorder must be stopped",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.repair:
        return _repair(args)
    with open_db(args.data_dir, read_only=True) as db, _recorder_stopped(db):
        bar = None
        if args.hash:
            total = sum(db.stream_usage(s.id)[1] for s in db.list_streams())
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="hashing", leave=False)
        summary = checker.CheckSummary()
        try:
            violations = [
                v
                for row in db.list_sample_file_dirs()
                for v in checker.check(db, row, args.hash, _progress(bar), summary)
            ]
        finally:
            if bar is not None:
                bar.close()
        archive_problems: list[str] = []
        if args.archive:
            from moonfire.storage.archive import check_archive  # imports boto3: only here

            for archive in db.list_archives():
                archive_problems += check_archive(db, archive, args.hash)
    problems = [str(v) for v in violations] + archive_problems
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 1
    has = "every recording has its file"
    if summary.archived_only:
        has += (f" or, for the {len(summary.archived_only)} archived-only, its archive objects"
                + ("" if args.archive else " (checked with --archive)"))
    print(f"ok: {has}; no stray files; no reservations"
          + ("; every archived recording has its objects" if args.archive else ""))
    return 0


def _repair(args: argparse.Namespace) -> int:
    with open_db(args.data_dir) as db:
        for row in db.list_sample_file_dirs():
            try:
                report = repair.adopt(db, row)
            except BlockingIOError:
                raise CommandError(
                    f"sample file directory {row.path} is in use by a running moonfire; "
                    "stop it before repairing"
                ) from None
            print(
                f"adopted {row.path}: {len(report.dropped_recordings)} recording(s) dropped, "
                f"{len(report.strays)} stray file(s) left alone, "
                f"{len(report.reservations_left)} reservation(s) left for recovery, "
                f"{len(report.archived_only)} kept as archived-only; now at "
                f"{report.new_open} (was {report.previous_open or 'none'})"
            )
    return 0
