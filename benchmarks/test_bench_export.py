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
  Beside ``cp``, in the same rounds: what a recorder keeping one ``.mp4`` per minute (Frigate)
  exports with, ffmpeg's concat demuxer, ``ffmpeg -f concat -safe 0 -i list.txt -c copy
  out.mp4`` + ``sync``, over one-minute ``.mp4`` files of the same recording (each made by
  ``moonfire export`` of one recording): ``ffmpeg_mb_per_s``, ``ratio_to_ffmpeg``.  Debian's
  ``ffmpeg`` (``scripts/bench-peers.sh``); a missing ``cp``, ``sync`` or ``ffmpeg`` fails.
* First byte: a 24-hour export (1440 recordings, hard links to one sample file), from opening
  the database through the plan (the query, every sample file checked, the segments, the
  ``moov`` layout) to the first piece of output, against a bare SQLite query of the same rows
  with their playback blobs.  Also the whole 31 MB ``moov`` (``moov_min_ms``).  Target: < 100 ms.

``MOONFIRE_BENCH_TINY=1``: 2 recordings, one round, an hour instead of a day for the first byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.day_library import CAMERA, make_day_library
from benchmarks.sizes import size
from moonfire.cli import export as export_command
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir

EXPORT_RECORDINGS = size("MOONFIRE_BENCH_EXPORT_RECORDINGS", 20, 2)
ROUNDS = size("MOONFIRE_BENCH_ROUNDS", 3, 1)
DAY_RECORDINGS = size("MOONFIRE_BENCH_DAY_RECORDINGS", 1440, 60)
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
        pytest.fail(
            f"{tool} is not installed: the benchmark's baseline needs it (Debian: "
            "`bash scripts/bench-peers.sh` installs the peers the benchmarks compare with)"
        )
    return path


def _export_args(data_dir: str, start_90k: int, end_90k: int, output: Path) -> argparse.Namespace:
    """The ``export`` command's own parsed arguments, to call its ``run`` in-process."""
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    return parser.parse_args(["export", "--data-dir", data_dir, CAMERA, "--start", str(start_90k),
                              "--end", str(end_90k), "-o", str(output), "--force"])


@pytest.fixture(scope="module")
def minute_mp4s(hour, tmp_path_factory) -> Path:
    """One ``.mp4`` per recording (what a recorder keeping a file per minute has), and
    ffmpeg's concat list of them: ``list.txt`` in the returned directory."""
    directory = tmp_path_factory.mktemp("minute_mp4s")
    first = directory / "0000.mp4"
    row = hour.rows[0]
    assert export_command.run(
        _export_args(hour.data_dir, row.start_time_90k, row.end_time_90k, first)) == 0
    names = [first.name]
    for i in range(1, len(hour.rows)):
        names.append(f"{i:04}.mp4")
        shutil.copyfile(first, directory / names[-1])
    (directory / "list.txt").write_text("".join(f"file '{n}'\n" for n in names))
    return directory


def test_export_throughput_against_cp(benchmark, hour, minute_mp4s, tmp_path):
    cp, sync, ffmpeg = _require("cp"), _require("sync"), _require("ffmpeg")
    output = tmp_path / "out.mp4"
    copies = tmp_path / "cp"
    copied = [str(copies / os.path.basename(p)) for p in hour.sample_file_paths]
    sample_bytes = sum(os.path.getsize(p) for p in hour.sample_file_paths)
    concatenated = tmp_path / "ffmpeg.mp4"
    cp_seconds: list[float] = []
    ffmpeg_seconds: list[float] = []

    def cp_round() -> None:
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir()
        began = time.perf_counter()
        subprocess.run([cp, *hour.sample_file_paths, str(copies)], check=True)
        subprocess.run([sync, *copied], check=True)
        cp_seconds.append(time.perf_counter() - began)
        shutil.rmtree(copies)
        output.unlink(missing_ok=True)

    def ffmpeg_round() -> None:
        concatenated.unlink(missing_ok=True)
        began = time.perf_counter()
        subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-f", "concat", "-safe", "0",
             "-i", str(minute_mp4s / "list.txt"), "-c", "copy", str(concatenated)],
            check=True,
        )
        subprocess.run([sync, str(concatenated)], check=True)
        ffmpeg_seconds.append(time.perf_counter() - began)

    def baseline_rounds() -> None:  # pytest-benchmark's setup: not in the export's time
        cp_round()
        ffmpeg_round()

    args = _export_args(hour.data_dir, hour.start_90k, hour.end_90k, output)

    def export_round() -> None:
        assert export_command.run(args) == 0

    inputs = [*hour.sample_file_paths, *(str(p) for p in minute_mp4s.glob("*.mp4"))]
    for path in inputs:  # into the page cache, for all three
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    benchmark.pedantic(export_round, setup=baseline_rounds, rounds=ROUNDS, iterations=1)
    export_bytes = output.stat().st_size
    assert export_bytes > sample_bytes
    ffmpeg_bytes = concatenated.stat().st_size
    assert ffmpeg_bytes > sample_bytes, "ffmpeg's concatenation lacks some of the sample data"
    mb_per_s = export_bytes / MB / benchmark.stats.stats.min
    cp_mb_per_s = sample_bytes / MB / min(cp_seconds)
    ffmpeg_mb_per_s = ffmpeg_bytes / MB / min(ffmpeg_seconds)
    benchmark.extra_info.update(
        {
            "recordings": EXPORT_RECORDINGS,
            "bytes": export_bytes,
            "mb_per_s": round(mb_per_s),
            "cp_mb_per_s": round(cp_mb_per_s),
            "ratio": round(mb_per_s / cp_mb_per_s, 2),
            "ffmpeg_mb_per_s": round(ffmpeg_mb_per_s),
            "ratio_to_ffmpeg": round(mb_per_s / ffmpeg_mb_per_s, 2),
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
    assert len(_bare_query(day.data_dir, day.stream_id, day.start_90k, day.end_90k)) == (
        DAY_RECORDINGS)
    first = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "recordings": DAY_RECORDINGS,
            "first_byte_min_ms": round(first * 1000, 1),
            "first_byte_median_ms": round(benchmark.stats.stats.median * 1000, 1),
            "bare_query_min_ms": round(bare * 1000, 1),
            "ratio_to_bare_query": round(first / bare, 2),
            "moov_min_ms": round(_min_seconds(whole_moov, ROUNDS) * 1000, 1),
        }
    )
    print("\nexport first byte, 24 h:", benchmark.extra_info)
