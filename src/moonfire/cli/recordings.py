"""``moonfire recordings CAMERA [--stream sub]``: a stream's runs and recordings, with human
times (the main stream's unless told).

A *run* is an unbroken stretch of recording from one session with the camera:
each recording starts exactly where the one before it ended and its
``run_offset`` is one more.  Rotation may have deleted the first recordings of
the oldest run, so a run need not begin at offset 0.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db import MAIN, STREAM_TYPES, RecordingRow
from moonfire.sizes import format_size
from moonfire.storage.data_dir import open_db
from moonfire.time import format_duration, format_time, parse_time

#: Far enough out that ``--start``/``--end`` alone select everything before/after, yet far
#: enough from the 64-bit limits that the query's ``start - 5 minutes`` cannot overflow.
_EARLIEST, _LATEST = -(2**62), 2**62


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recordings",
        help=command_help("recordings"),
        description="List a camera's runs and recordings overlapping [--start, --end). Times are "
        "90 kHz units or YYYY-MM-DDTHH:MM:SS[:FFFFF][Z|+hh:mm], local time without a zone.",
    )
    add_data_dir_argument(p)
    p.add_argument("camera", help="the camera's short name")
    p.add_argument(
        "--stream", choices=STREAM_TYPES, default=MAIN, help="which stream (default: main)"
    )
    p.add_argument("--start", help="only recordings ending after this time")
    p.add_argument("--end", help="only recordings starting before this time")
    p.add_argument("--json", action="store_true", help="print JSON (90 kHz ints and text)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = parse_time(args.start) if args.start is not None else _EARLIEST
    end = parse_time(args.end) if args.end is not None else _LATEST
    if start >= end:
        raise CommandError(f"--start {args.start} is not before --end {args.end}")
    with open_db(args.data_dir, read_only=True) as db:
        camera = db.get_camera(args.camera)
        stream = camera.stream(args.stream)
        rows = db.list_recordings_by_time(stream.id, start, end)
    runs = [_run_record(run) for run in split_runs(rows)]
    if args.json:
        print(json.dumps({"camera": camera.short_name, "stream": stream.type, "runs": runs},
                         indent=2))
    else:
        _print_table(f"{camera.short_name}/{stream.type}", runs)
    return 0


def split_runs(rows: list[RecordingRow]) -> list[list[RecordingRow]]:
    """``rows`` (by start time) grouped into runs of abutting, consecutive recordings."""
    runs: list[list[RecordingRow]] = []
    for row in rows:
        if runs and _continues(runs[-1][-1], row):
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _continues(prev: RecordingRow, row: RecordingRow) -> bool:
    return (
        row.run_offset == prev.run_offset + 1
        and row.start_time_90k == prev.end_time_90k
        and not prev.has_trailing_zero
    )


def _run_record(rows: list[RecordingRow]) -> dict[str, Any]:
    start, end = rows[0].start_time_90k, rows[-1].end_time_90k
    return {
        "start_90k": start,
        "end_90k": end,
        "duration_90k": end - start,
        "start": format_time(start),
        "end": format_time(end),
        "duration": format_duration(end - start),
        "sample_file_bytes": sum(r.sample_file_bytes for r in rows),
        "recordings": [_recording_record(r) for r in rows],
    }


def _recording_record(row: RecordingRow) -> dict[str, Any]:
    return {
        "id": row.recording_id,
        "composite_id": row.composite_id,
        "run_offset": row.run_offset,
        "start_90k": row.start_time_90k,
        "end_90k": row.end_time_90k,
        "duration_90k": row.duration_90k,
        "start": format_time(row.start_time_90k),
        "end": format_time(row.end_time_90k),
        "duration": format_duration(row.duration_90k),
        "sample_file_bytes": row.sample_file_bytes,
        "video_samples": row.video_samples,
        "video_sync_samples": row.video_sync_samples,
        "flags": row.flags,
        "trailing_zero": row.has_trailing_zero,
    }


def _print_table(stream: str, runs: list[dict[str, Any]]) -> None:
    if not runs:
        print(f"stream {stream} has no recordings in this range")
        return
    for n, run in enumerate(runs, 1):
        print(
            f"run {n}: {run['start']} .. {run['end']} ({run['duration']}, "
            f"{len(run['recordings'])} recordings, {format_size(run['sample_file_bytes'])})"
        )
        for r in run["recordings"]:
            flags = " trailing-zero" if r["trailing_zero"] else ""
            print(
                f"  #{r['id']:<6} offset {r['run_offset']:<4} {r['start']}  {r['duration']:<20} "
                f"{r['video_samples']:>6} samples {format_size(r['sample_file_bytes']):>10}{flags}"
            )
