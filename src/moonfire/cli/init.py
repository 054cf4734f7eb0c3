"""``moonfire init``: create a data directory's database and its sample file directory."""

from __future__ import annotations

import argparse
import os
import shlex

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.storage import data_dir as datadir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help=command_help("init"),
        description="Create a new data directory: the SQLite database and the sample file "
        "directory that holds the video. Refuses a data directory that already has a database.",
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--sample-dir",
        help="put the sample files here, e.g. on another disk (default: DATA_DIR/sample); "
        "it must be empty or missing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.path.exists(datadir.db_path(args.data_dir)):
        raise CommandError(
            f"{args.data_dir} is already a moonfire data directory "
            f"({datadir.db_path(args.data_dir)} exists); refusing to initialize it again"
        )
    db, sample_file_dir = datadir.init(args.data_dir, args.sample_dir)
    try:
        print(f"created {db.path}")
        print(f"sample files go to {sample_file_dir.path}")
        data_dir = shlex.quote(args.data_dir)
        print(f"next: moonfire camera add NAME --url URL --retain 10GiB --data-dir {data_dir}")
    finally:
        sample_file_dir.close()
        db.close()
    return 0
