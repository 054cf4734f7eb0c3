"""``moonfire run``'s start-up with 1,000,000 recordings over 100 streams, against a bare
SQLite open + the same aggregate query, measured in the same run.

What is timed is what ``moonfire run`` does before its first stream can record, with the
real functions it calls (``moonfire.cli.run`` and ``moonfire.ingest.daemon``), in order:

* ``check_cameras``: a read-only open (schema check) to refuse an empty data directory;
* ``start_daemon``: the read-write open, every recorded stream's camera row, each sample
  file directory locked and verified and its open recorded (§5.3's open scheme), its
  syncer's recovery (reservations left by the last run, every stream's usage, retention
  against each budget), the pool of files made ahead, 100 streamers started;
* ``web_starter(...)(daemon)``: the web context (its own connection), the app built and
  the server listening on a loopback port.

The cameras are silent (the source factory blocks until the round is over), so no packet
arrives and nothing is written: the round ends where recording would begin.  Shut-down is
outside the timing, and so are Python's start-up and imports (the rounds run in this process;
the minimum is reported): ``test_cli_start_against_bare_python`` measures those.  Target
(issue 13): < 0.5 s, asserted on the median at full size.

The baseline is what a user would otherwise run to learn the same totals: a fresh
``sqlite3`` connection and one ``select stream_id, count(*), sum(sample_file_bytes),
sum(duration_90k) from recording group by stream_id``.

The database is built once, with bulk inserts on a bare connection, and cached under
``$MOONFIRE_BENCH_CACHE`` (default ``~/.cache/moonfire-bench``), keyed by the schema
version and the sizes.  Its rows are one-minute recordings of 50 cameras' main and sub
streams, 10,000 each (about a week), in hour-long runs, every one with the real camera
index of ``tests/data/video_sample_index.bin`` (6 KB, 1800 samples): 8.3 GB on disk, built
in about two minutes, so a query that touched ``recording_playback`` by mistake would show.
Each stream's budget is exactly its usage (steady state: retention deletes nothing, so the
cache stays as built; each round adds only its ``open`` row).  ``MOONFIRE_BENCH_TINY=1``
builds 4 streams of 500 recordings in a temporary directory instead (the CI smoke run).

``test_cli_start_against_bare_python``: the ``moonfire`` command as a real process (``python3
-m moonfire``), ``--version`` and ``status`` over the same data directory, against ``python3
-c pass`` (the interpreter's own start-up, which no Python program can avoid).  Each command
imports only its own module (``moonfire.cli.main``); ``status`` reads the database.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.net import free_port

from benchmarks.sizes import TINY, cache_dir, size
from moonfire.cli.run import check_cameras, web_starter
from moonfire.db import SCHEMA_VERSION
from moonfire.ingest.daemon import Daemon, raise_open_file_limit, start_daemon
from moonfire.ingest.live import LiveFeeds
from moonfire.ingest.sources import Source
from moonfire.storage import data_dir as datadir
from moonfire_core import decode_index

STREAMS = 4 if TINY else 100
RECORDINGS = 2_000 if TINY else 1_000_000
ROUNDS = size("MOONFIRE_BENCH_ROUNDS", 10, 1)
#: Recordings per run: a camera reconnects (a new run starts) every hour.
RUN_LENGTH = 60
START_90K = 1_780_000_000 * 90_000
TARGET_SEC = 0.5
USAGE_QUERY = (
    "select stream_id, count(*), sum(sample_file_bytes), sum(duration_90k) from recording"
    " group by stream_id"
)


def build_library(testdata: Path, data_dir: str) -> None:
    """``RECORDINGS`` one-minute recordings spread evenly over ``STREAMS`` recorded streams
    (main and sub of ``STREAMS // 2`` cameras), no sample files, each budget = its usage."""
    blob = (testdata / "video_sample_index.bin").read_bytes()
    decoded = decode_index(blob)
    per_stream = RECORDINGS // STREAMS
    usage = per_stream * decoded.sample_file_bytes
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    try:
        entry_id = db.insert_video_sample_entry(
            1920, 1080, (testdata / "avc1_1920x1080").read_bytes())
        stream_ids = []
        for i in range(STREAMS // 2):
            camera = db.add_camera(
                f"cam{i:03}", url=f"rtsp://192.0.2.{i + 1}/main", retain_bytes=usage,
                sub_url=f"rtsp://192.0.2.{i + 1}/sub", sub_retain_bytes=usage,
            )
            assert camera.sub is not None
            stream_ids += [camera.main.id, camera.sub.id]
        last_open = db.last_complete_open(1)
        assert last_open is not None
        open_id = last_open.id
        path = db.path
    finally:
        db.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # No journal while loading (a crash mid-build leaves no stamp, so it is rebuilt):
        # through the WAL, every page would be written twice.
        conn.execute("pragma journal_mode = delete")
        conn.execute("pragma journal_mode = off")
        conn.execute("pragma synchronous = off")
        conn.execute("pragma cache_size = -262144")  # 256 MiB: the indexes stay in memory
        conn.execute("begin")
        for stream_id in stream_ids:
            cids = [stream_id << 32 | n for n in range(1, per_stream + 1)]
            conn.executemany(
                "insert into recording values (?, ?, ?, 0, ?, ?, ?, 0, ?, ?, ?, ?)",
                ((cid, stream_id, n % RUN_LENGTH, decoded.sample_file_bytes,
                  START_90K + n * decoded.total_duration_90k, decoded.total_duration_90k,
                  decoded.video_samples, decoded.video_sync_samples, entry_id, open_id)
                 for n, cid in enumerate(cids)),
            )
            conn.executemany(
                "insert into recording_playback values (?, ?, ?, ?)",
                ((cid, uuidlib.uuid4().bytes, os.urandom(20), blob) for cid in cids),
            )
            conn.execute("update stream set next_recording_id = ? where id = ?",
                         (per_stream + 1, stream_id))
        conn.execute("commit")
        conn.execute("pragma journal_mode = wal")
    finally:
        conn.close()


def _params() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "streams": STREAMS, "recordings": RECORDINGS,
            "run_length": RUN_LENGTH, "layout": 1}


@pytest.fixture(scope="module")
def library(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The data directory: built in a temporary directory when tiny, else cached."""
    if TINY:
        data_dir = str(tmp_path_factory.mktemp("startup") / "data")
        build_library(testdata, data_dir)
        return data_dir
    params = _params()
    cached = cache_dir() / ("startup-" + "-".join(f"{k}{v}" for k, v in params.items()))
    data_dir = cached / "data"
    stamp = cached / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return str(data_dir)
    shutil.rmtree(cached, ignore_errors=True)
    cached.mkdir(parents=True)
    build_library(testdata, str(data_dir))
    stamp.write_text(json.dumps(params))  # last: a build cut short is rebuilt
    return str(data_dir)


class _SilentCameras:
    """A source factory whose cameras don't answer until ``release()``: each streamer's
    thread waits in its first connection.  Release only after stopping the streamers:
    each then gets a source it drops unread (a stopped streamer reads nothing)."""

    def __init__(self) -> None:
        self._released = threading.Event()

    def __call__(self, url: str, *_credentials: object) -> Source:
        self._released.wait()
        return _Unread(url)

    def release(self) -> None:
        self._released.set()


class _Unread(Source):
    """What a camera answers once the round is over: never read (its streamer has stopped)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.extradata = b""
        self.width = self.height = 0

    def packets(self) -> Iterator[Any]:
        raise AssertionError(f"{self.url}: a stopped streamer read its source")

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


def start_up(
    data_dir: str, port: int, cameras: _SilentCameras
) -> tuple[Daemon, Callable[[], None]]:
    """What ``moonfire run --listen 127.0.0.1:PORT`` does until its streams can record."""
    check_cameras(data_dir, None)
    raise_open_file_limit()
    daemon = start_daemon(
        data_dir, source_factory=cameras, live=LiveFeeds(estimate_durations=True))
    try:
        stop_web = web_starter(data_dir, ("127.0.0.1", port))(daemon)
    except BaseException:
        for streamer in daemon.streamers:
            streamer.stop()
        cameras.release()
        daemon.shutdown()
        raise
    return daemon, stop_web


@pytest.fixture
def rounds() -> Iterator[list[Callable[[], None]]]:
    """What ends each started round (run after the round, outside the timing)."""
    pending: list[Callable[[], None]] = []
    yield pending
    while pending:
        pending.pop()()


def test_startup_1m_recordings_100_streams(benchmark, library: str, rounds) -> None:
    port = free_port()
    started: list[Daemon] = []

    def end_previous_round() -> None:
        while rounds:
            rounds.pop()()

    def one_round() -> None:
        cameras = _SilentCameras()
        daemon, stop_web = start_up(library, port, cameras)
        started.append(daemon)

        def end() -> None:
            for streamer in daemon.streamers:
                streamer.stop()
            cameras.release()
            try:
                stop_web()
            finally:
                assert daemon.shutdown() == 0

        rounds.append(end)

    benchmark.pedantic(one_round, setup=end_previous_round, rounds=ROUNDS, iterations=1)
    recording = [s for s in started[-1].streamers if not s.live_only]
    assert len(recording) == STREAMS
    assert all(s.running for s in recording)
    end_previous_round()

    def bare() -> list[tuple[int, int, int, int]]:
        conn = sqlite3.connect(datadir.db_path(library))
        try:
            return conn.execute(USAGE_QUERY).fetchall()
        finally:
            conn.close()

    bare_seconds = []
    for _ in range(ROUNDS):
        rows, seconds = _timed(bare)
        bare_seconds.append(seconds)
    assert len(rows) == STREAMS
    assert sum(r[1] for r in rows) == RECORDINGS
    stats = benchmark.stats.stats
    benchmark.extra_info.update(
        {
            "streams": STREAMS,
            "recordings": RECORDINGS,
            "min_ms": round(stats.min * 1000),
            "median_ms": round(stats.median * 1000),
            "max_ms": round(stats.max * 1000),
            "bare_query_min_ms": round(min(bare_seconds) * 1000),
            "ratio_to_bare_query": round(stats.min / min(bare_seconds), 2),
        }
    )
    print("\nstart-up:", benchmark.extra_info)
    if not TINY:
        assert stats.median < TARGET_SEC, (
            f"start-up with {RECORDINGS} recordings over {STREAMS} streams took "
            f"{stats.median:.3f} s (median), target < {TARGET_SEC} s")


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = function()
    return result, time.perf_counter() - began


def _min_process_seconds(argv: list[str], rounds: int) -> float:
    return min(_timed(lambda: subprocess.run(argv, check=True, capture_output=True))[1]
               for _ in range(rounds))


def test_cli_start_against_bare_python(benchmark, library: str) -> None:
    python = sys.executable

    def status() -> str:
        completed = subprocess.run([python, "-m", "moonfire", "status", "--data-dir", library],
                                   check=True, capture_output=True, text=True)
        return completed.stdout

    out = benchmark.pedantic(status, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    lines = out.splitlines()
    assert lines[0].startswith("not running") and len(lines) == 1 + STREAMS, out
    rounds = max(ROUNDS, 3)
    bare = _min_process_seconds([python, "-c", "pass"], rounds)
    version = _min_process_seconds([python, "-m", "moonfire", "--version"], rounds)
    status_seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "python_ms": round(bare * 1000),
            "version_ms": round(version * 1000),
            "status_ms": round(status_seconds * 1000),
            "version_ratio": round(version / bare, 2),
            "status_ratio": round(status_seconds / bare, 2),
        }
    )
    print("\nCLI start:", benchmark.extra_info)
