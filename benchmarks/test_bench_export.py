"""``moonfire export`` against what a user would use instead, measured in the same run.

* Throughput: ``moonfire export`` of ``EXPORT_RECORDINGS`` one-minute recordings (30 MB sample
  files, real copies, in the page cache) against ``cp`` of the same sample files into a
  directory followed by ``sync`` of the copies (the export fsyncs its output, so ``cp`` pays
  for the same durability).  Rounds alternate (a ``cp`` round in ``setup``, untimed by
  pytest-benchmark, timed here) so both see the same disk and neighbours.  The export runs
  in-process (the ``export`` command's own parser and ``run``): Python's start-up is not in
  it, a 24-hour export would amortise it.  ``extra_info``: ``mb_per_s``, ``cp_mb_per_s``
  (best rounds), ``ratio``.
  Target (issue 13): >= 0.9x ``cp`` for a 24-hour export; the throughput is per byte, so fewer
  recordings measure it (24 h would write 43 GB; set ``MOONFIRE_BENCH_EXPORT_RECORDINGS``).
* First byte: a 24-hour export (1440 recordings, hard links to one sample file), from opening
  the database through the plan (the query, every sample file checked, the segments, the
  ``moov`` layout) to the first piece of output, against a bare SQLite query of the same rows
  with their playback blobs.  Also the whole 31 MB ``moov`` (``moov_min_ms``).  Target: < 100 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import time

import pytest

from benchmarks.day_library import CAMERA, make_day_library
from moonfire.cli import export as export_command
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir

EXPORT_RECORDINGS = int(os.environ.get("MOONFIRE_BENCH_EXPORT_RECORDINGS", "20"))
ROUNDS = int(os.environ.get("MOONFIRE_BENCH_ROUNDS", "3"))
DAY_RECORDINGS = 1440
MB = 1_000_000


@pytest.fixture(scope="module")
def hour(testdata, tmp_path_factory):
    return make_day_library(
        testdata, tmp_path_factory.mktemp("bench_export"), EXPORT_RECORDINGS, distinct_files=True
    )


@pytest.fixture(scope="module")
def day(testdata, tmp_path_factory):
    return make_day_library(testdata, tmp_path_factory.mktemp("bench_export_day"), DAY_RECORDINGS)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: the benchmark's baseline needs it")
    return path


def test_export_throughput_against_cp(benchmark, hour, tmp_path):
    cp, sync = _require("cp"), _require("sync")
    output = tmp_path / "out.mp4"
    copies = tmp_path / "cp"
    copied = [str(copies / os.path.basename(p)) for p in hour.sample_file_paths]
    sample_bytes = sum(os.path.getsize(p) for p in hour.sample_file_paths)
    argv = ["export", "--data-dir", hour.data_dir, CAMERA, "--start", str(hour.start_90k),
            "--end", str(hour.end_90k), "-o", str(output), "--force"]
    cp_seconds: list[float] = []

    def cp_round() -> None:
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir()
        began = time.perf_counter()
        subprocess.run([cp, *hour.sample_file_paths, str(copies)], check=True)
        subprocess.run([sync, *copied], check=True)
        cp_seconds.append(time.perf_counter() - began)
        shutil.rmtree(copies)
        output.unlink(missing_ok=True)

    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)

    def export_round() -> None:
        assert export_command.run(args) == 0

    for path in hour.sample_file_paths:  # into the page cache, for both
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    benchmark.pedantic(export_round, setup=cp_round, rounds=ROUNDS, iterations=1)
    export_bytes = output.stat().st_size
    assert export_bytes > sample_bytes
    mb_per_s = export_bytes / MB / benchmark.stats.stats.min
    cp_mb_per_s = sample_bytes / MB / min(cp_seconds)
    benchmark.extra_info.update(
        {
            "recordings": EXPORT_RECORDINGS,
            "bytes": export_bytes,
            "mb_per_s": round(mb_per_s),
            "cp_mb_per_s": round(cp_mb_per_s),
            "ratio": round(mb_per_s / cp_mb_per_s, 2),
            "median_ratio": round(
                (export_bytes / benchmark.stats.stats.median)
                / (sample_bytes / statistics.median(cp_seconds)), 2
            ),
        }
    )
    print("\nexport against cp:", benchmark.extra_info)


def _bare_query(data_dir: str, stream_id: int, start_90k: int, end_90k: int) -> list[tuple]:
    """What a hand-written tool would run: the rows and their playback blobs, one join."""
    conn = sqlite3.connect(f"file:{datadir.db_path(data_dir)}?mode=ro", uri=True)
    try:
        return conn.execute(
            "select r.composite_id, r.stream_id, r.run_offset, r.flags, r.sample_file_bytes,"
            " r.start_time_90k, r.duration_90k, r.local_time_delta_90k, r.video_samples,"
            " r.video_sync_samples, r.video_sample_entry_id, p.sample_file_uuid, p.video_index"
            " from recording r join recording_playback p using (composite_id)"
            " where r.stream_id = ? and r.start_time_90k < ? and"
            " r.start_time_90k + r.duration_90k > ? order by r.start_time_90k",
            (stream_id, end_90k, start_90k),
        ).fetchall()
    finally:
        conn.close()


def _min_seconds(function, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        function()
        timings.append(time.perf_counter() - began)
    return min(timings)


def test_export_first_byte_of_24_hours(benchmark, day):
    def plan(db):
        (part,) = plan_export(db, CAMERA, day.start_90k, day.end_90k)
        return part

    def first_piece() -> bytes:
        with datadir.open_db(day.data_dir, read_only=True) as db:
            part = plan(db)
            piece = next(iter(part.file.spans(0, part.file.size)))
        assert isinstance(piece, bytes)
        return piece

    def whole_moov() -> None:
        with datadir.open_db(day.data_dir, read_only=True) as db:
            part = plan(db)
            assert sum(len(p) for p in part.file.spans(0, part.file.media_data_offset)) > 0

    piece = benchmark.pedantic(first_piece, rounds=3 * ROUNDS, warmup_rounds=1, iterations=1)
    assert piece[4:8] == b"ftyp"
    bare = _min_seconds(
        lambda: len(_bare_query(day.data_dir, day.stream_id, day.start_90k, day.end_90k))
        == DAY_RECORDINGS, 3 * ROUNDS
    )
    assert len(_bare_query(day.data_dir, day.stream_id, day.start_90k, day.end_90k)) == 1440
    first = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "first_byte_min_ms": round(first * 1000, 1),
            "first_byte_median_ms": round(benchmark.stats.stats.median * 1000, 1),
            "bare_query_min_ms": round(bare * 1000, 1),
            "ratio_to_bare_query": round(first / bare, 2),
            "moov_min_ms": round(_min_seconds(whole_moov, ROUNDS) * 1000, 1),
        }
    )
    print("\nexport first byte, 24 h:", benchmark.extra_info)
