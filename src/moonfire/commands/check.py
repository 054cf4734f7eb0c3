"""``moonfire check``: verify the storage invariants; exit 1 if any is broken."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from .. import check as checker
from ..cli import add_data_dir_argument
from ..datadir import open_db


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="check every recording has its intact file, and no stray files or reservations",
    )
    add_data_dir_argument(p)
    p.add_argument("--hash", action="store_true", help="also compare every file's SHA-1 (slow)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_db(args.data_dir, read_only=True) as db:
        sample_dir = db.sample_file_dir().path
        bar = None
        if args.hash:
            total = sum(db.camera_usage(c.id)[1] for c in db.list_cameras())
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="hashing", leave=False)
        try:
            violations = list(
                checker.check(db, sample_dir, args.hash, bar.update if bar is not None else None)
            )
        finally:
            if bar is not None:
                bar.close()
    for v in violations:
        print(v)
    if violations:
        print(f"{len(violations)} problem(s) found")
        return 1
    print("ok: every recording has its file; no stray files; no reservations")
    return 0
