"""The syncer with hundreds of streams: group commit and the pool of reserved UUIDs.

N streams (N = 1, 50, 200, 400) each write a recording the size of 0.5 s at 4 Mbit/s
(250 KB; real pacing over minutes isn't needed), then all N rotate at the same instant: each
closes its writer (``Writer.close`` hands the recording to the syncer) and starts the next with
``Syncer.create_writer``, timed one by one.  Then the round waits for the syncer
(``flush``).  Real files, real fsync, real SQLite on the disk under the pytest tmp dir.

Reported in ``benchmark.extra_info`` (and printed), all from the same run:

* ``saves_per_s``: recordings made durable and committed per second, counted from the first
  close of a round to the end of its flush (the writes into the page cache happen before);
* ``baseline_saves_per_s``: the one-at-a-time limit of the same disk: a loop doing
  ``write`` + ``fsync(file)`` + ``close`` + ``fsync(dir)`` per file of the same size (Python
  ``os`` calls; the cost is the syscalls), run before and after the engine and averaged, and
  ``ratio`` = the first over the second (target ≥ 1.0 at 200 streams; one stream can't reach it:
  each save also commits the WAL, a third fsync);
* ``create_writer_p99_ms`` / ``create_writer_max_ms``: the writer start latency on the
  streamer thread (targets at 200 streams: p99 < 1 ms, max < 5 ms);
* ``save_p99_ms``: from ``save`` (queued) to its commit; ``max_queue_depth``; ``batches``;
  ``sync_reservations`` (``create_writer`` calls that found the pool empty: should be 0).

Run with ``python3 -m pytest benchmarks/test_bench_syncer.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sizes import TINY
from moonfire.storage import data_dir as datadir

T0_90K = 1_700_000_000 * 90000
FRAME_90K = 3000
ENTRY = bytes(range(90))
FRAMES = 15  # 0.5 s at 30 fps
PACKET = os.urandom(4_000_000 // 8 // 2 // FRAMES)  # 4 Mbit/s for 0.5 s, split in 15 frames
RECORDING_BYTES = FRAMES * len(PACKET)
#: Rounds (all N rotating together) per N: 300–1200 saves each, a few seconds.
ROUNDS = {1: 4, 50: 1} if TINY else {1: 300, 50: 16, 200: 6, 400: 3}
#: Files of the one-at-a-time baseline, run both before and after the engine (a shared
#: virtual disk's speed drifts; the mean of the two is the baseline).
BASELINE_FILES = 10 if TINY else 400


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def one_at_a_time_saves_per_s(directory: Path, files: int) -> float:
    """write + fsync(file) + fsync(dir) per file, one after the other: the disk's limit."""
    directory.mkdir()
    contents = PACKET * FRAMES
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        start = time.perf_counter()
        for i in range(files):
            fd = os.open(directory / f"{i:08d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, contents)
            os.fsync(fd)
            os.close(fd)
            os.fsync(dir_fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(dir_fd)
    for i in range(files):
        os.unlink(directory / f"{i:08d}")
    return files / elapsed


def run_streams(tmp_path: Path, streams: int, rounds: int) -> dict[str, Any]:
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    cameras = [db.add_camera(f"cam{i}", retain_bytes=1 << 40).main.id for i in range(streams)]
    create_latencies: list[float] = []
    busy = 0.0
    try:
        with sample_file_dir.start_syncer() as syncer:
            writers = [syncer.create_writer(None, c, entry_id) for c in cameras]
            for r in range(rounds):
                start_90k = T0_90K + r * FRAMES * FRAME_90K
                for w in writers:
                    for i in range(FRAMES):
                        w.write(PACKET, start_90k + i * FRAME_90K, i * FRAME_90K, i == 0)
                began = time.perf_counter()
                for n, c in enumerate(cameras):  # every stream rotates at once
                    prev = writers[n].close(FRAMES * FRAME_90K)
                    if r + 1 < rounds:
                        t = time.perf_counter()
                        writers[n] = syncer.create_writer(prev, c, entry_id)
                        create_latencies.append(time.perf_counter() - t)
                syncer.flush(timeout=600)
                busy += time.perf_counter() - began
            stats = syncer.stats
        saves = sum(len(db.list_recordings(c)) for c in cameras)
        assert saves == streams * rounds
        assert db.list_reserved_sample_files(sample_file_dir.id) == []
    finally:
        sample_file_dir.close()
        db.close()
    return {
        "streams": streams,
        "saves": saves,
        "saves_per_s": round(saves / busy, 1),
        "create_writer_p99_ms": round(percentile(create_latencies, 0.99) * 1e3, 3)
        if create_latencies else None,
        "create_writer_max_ms": round(max(create_latencies) * 1e3, 3)
        if create_latencies else None,
        "save_p99_ms": round(percentile(list(stats.save_latencies), 0.99) * 1e3, 1),
        "max_queue_depth": stats.max_queue_depth,
        "batches": stats.batches,
        "largest_batch": stats.largest_batch,
        "sync_reservations": stats.sync_reservations,
    }


@pytest.mark.benchmark(group="syncer_streams")
@pytest.mark.parametrize("streams", sorted(ROUNDS))
def test_streams_rotating_together(benchmark, tmp_path: Path, streams: int) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(run_streams(tmp_path / f"run{len(result)}", streams, ROUNDS[streams]))

    before = one_at_a_time_saves_per_s(tmp_path / "baseline_before", BASELINE_FILES)
    benchmark.pedantic(run, rounds=1, iterations=1)
    after = one_at_a_time_saves_per_s(tmp_path / "baseline_after", BASELINE_FILES)
    baseline = (before + after) / 2
    result["recording_bytes"] = RECORDING_BYTES
    result["baseline_before_after"] = (round(before, 1), round(after, 1))
    result["baseline_saves_per_s"] = round(baseline, 1)
    result["ratio"] = round(result["saves_per_s"] / baseline, 2)
    benchmark.extra_info.update(result)
    print(f"\nsyncer, {streams} streams: {result}")
