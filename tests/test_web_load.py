"""Load on loopback, bounded in count and time: HTTP must cost the recording nothing.

A real ``moonfire run --listen`` records four synthetic cameras while, for ``LOAD_SEC``
seconds, ``VIEWERS`` WebSocket clients watch ``live.m4s`` and ``READERS`` concurrent
clients read random ranges of ``view.mp4`` (issue 11 §6).  Then:

* no frame is lost from recording: each stream has one run of recordings chained end to
  start, and its committed frames are the camera's fps times the wall time it recorded,
  within 10%; ``moonfire check`` finds the data directory consistent afterwards;
* no file descriptor leaks: once the clients have gone, the server's ``/proc/PID/fd`` count
  is back to what it was before they came, within ``FD_MARGIN`` (the recorder's own files
  come and go as recordings rotate);
* every range response is byte-exact against a full download of the same file;
* every viewer kept receiving frames.

The numbers (frames/s per camera, live messages/s, range requests/s, p50/p99 latency, fds)
are printed for the closing note (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import aiohttp
import pytest

from moonfire.storage import data_dir as datadir
from tests.support.cli import moonfire_process
from tests.support.net import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERAS = 4
FPS = 15
CAMERA_URL = f"testsrc://?size=320x240&fps={FPS}&bitrate=300k&gop={FPS}"
ROTATE_SEC = 2
VIEWERS = 20
READERS = 50
LOAD_SEC = 20.0
#: Largest range a reader asks for (the size of a player's typical read).
MAX_RANGE = 256 * 1024
#: Descriptors the server may hold beyond its baseline after the clients leave.
FD_MARGIN = 6


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> list[str]:
    """What the process has open, for the message of a failed fd check."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(found)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Stats:
    range_latencies: list[float] = field(default_factory=list)
    range_bytes: int = 0
    live_messages: list[int] = field(default_factory=lambda: [0] * VIEWERS)
    live_dropped: list[int] = field(default_factory=lambda: [0] * VIEWERS)
    live_bytes: int = 0
    peak_fds: int = 0


def range_header(size: int, rng: random.Random) -> tuple[str, int, int]:
    """A random single range, open range or suffix range: (header, first, last)."""
    kind = rng.random()
    if kind < 0.1:
        n = rng.randint(1, min(size, MAX_RANGE))
        return f"bytes=-{n}", size - n, size - 1
    first = rng.randrange(size)
    if kind < 0.2 and size - first <= MAX_RANGE:
        return f"bytes={first}-", first, size - 1
    last = min(size - 1, first + rng.randint(0, MAX_RANGE - 1))
    return f"bytes={first}-{last}", first, last


async def read_ranges(client: aiohttp.ClientSession, files: dict[str, bytes], stop: float,
                      stats: Stats, seed: int) -> None:
    """Random ranges of random files until ``stop``, each checked byte for byte."""
    rng = random.Random(seed)
    urls = sorted(files)
    while time.monotonic() < stop:
        url = rng.choice(urls)
        full = files[url]
        header, first, last = range_header(len(full), rng)
        began = time.perf_counter()
        async with client.get(url, headers={"Range": header}) as response:
            body = await response.read()
        stats.range_latencies.append(time.perf_counter() - began)
        assert response.status == 206, (url, header, response.status, body[:200])
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(full)}"
        assert body == full[first : last + 1], (url, header)
        stats.range_bytes += len(body)


async def watch(client: aiohttp.ClientSession, url: str, index: int, stop: float,
                stats: Stats) -> None:
    """One live viewer until ``stop``: every binary message is a header block and a moof."""
    async with client.ws_connect(url) as ws:
        while (left := stop - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(ws.receive(), left)
            except TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.BINARY:
                headers, sep, media = message.data.partition(b"\r\n\r\n")
                assert sep and headers.startswith(b"Content-Type: video/mp4"), headers
                assert media[4:8] == b"moof"
                stats.live_messages[index] += 1
                stats.live_bytes += len(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                assert '"dropped"' in message.data, message.data
                stats.live_dropped[index] += int(re.sub(r"\D", "", message.data) or 0)
            else:
                raise AssertionError(f"viewer {index}: live view ended: {message}")


async def count_fds(pid: int, stop: float, stats: Stats) -> None:
    while time.monotonic() < stop:
        stats.peak_fds = max(stats.peak_fds, fd_count(pid))
        await asyncio.sleep(0.25)


async def load(base: str, pid: int, cameras: list[str], files: dict[str, bytes],
               stats: Stats) -> float:
    """The viewers and readers together for ``LOAD_SEC``; returns the seconds it took."""
    connector = aiohttp.TCPConnector(limit=READERS + VIEWERS)
    timeout = aiohttp.ClientTimeout(total=60)
    began = time.monotonic()
    stop = began + LOAD_SEC
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        viewers = [
            watch(client, f"{base.replace('http', 'ws')}/api/cameras/"
                  f"{cameras[i % len(cameras)]}/main/live.m4s", i, stop, stats)
            for i in range(VIEWERS)
        ]
        readers = [read_ranges(client, files, stop, stats, seed) for seed in range(READERS)]
        await asyncio.gather(*viewers, *readers, count_fds(pid, stop, stats))
    return time.monotonic() - began


@pytest.mark.asyncio
async def test_viewers_and_range_readers_cost_the_recording_nothing(tmp_path):
    data_dir = str(tmp_path / "data")
    assert moonfire_process("init", "--data-dir", data_dir).returncode == 0
    for n in range(CAMERAS):
        done = moonfire_process(
            "camera", "add", f"cam{n}", "--url", CAMERA_URL, "--retain", "200MiB",
            "--rotate-seconds", str(ROTATE_SEC), "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    with datadir.open_db(data_dir, read_only=True) as db:
        streams = {c.short_name: c.main.id for c in db.list_cameras()}
        uuids = [str(uuidlib.UUID(bytes=c.uuid)) for c in db.list_cameras()]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = str(tmp_path / "run.log")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would stall recording
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )

    def server_log() -> str:
        with open(log_path, errors="replace") as f:
            return f.read()

    stats = Stats()
    try:
        # Wait until every camera has committed a few recordings: those are what the
        # readers read (a fixed file each, so a full download is the reference).
        files: dict[str, bytes] = {}
        deadline = time.monotonic() + 40
        async with aiohttp.ClientSession() as client:
            for camera in uuids:
                url = f"{base}/api/cameras/{camera}/main/recordings"
                while True:
                    assert proc.poll() is None, server_log()
                    assert time.monotonic() < deadline, "too little recorded:\n" + server_log()
                    try:
                        async with client.get(url) as r:
                            rows = (await r.json())["recordings"] if r.status == 200 else []
                    except aiohttp.ClientConnectionError:
                        rows = []
                    if rows and rows[0].get("endId", 0) >= rows[0]["startId"] + 1:
                        break
                    await asyncio.sleep(0.3)
                row = rows[0]
                view = (f"{base}/api/cameras/{camera}/main/view.mp4"
                        f"?s={row['startId']}-{row['endId']}@{row['openId']}")
                async with client.get(view) as r:
                    assert r.status == 200
                    files[view] = await r.read()
        # Recording alone, for comparison (and the connections above have time to close).
        idle_began, cpu_idle = time.monotonic(), cpu_seconds(proc.pid)
        await asyncio.sleep(2.0)
        idle_cpu = (cpu_seconds(proc.pid) - cpu_idle) / (time.monotonic() - idle_began)
        baseline = fd_count(proc.pid)

        cpu_before, client_before = cpu_seconds(proc.pid), time.process_time()
        took = await load(base, proc.pid, uuids, files, stats)
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        client_cpu = time.process_time() - client_before

        deadline = time.monotonic() + 15
        while (after := fd_count(proc.pid)) > baseline + FD_MARGIN:
            assert time.monotonic() < deadline, (
                f"fd leak: {after} open after the clients left, {baseline} before: "
                f"{open_fds(proc.pid)}")
            await asyncio.sleep(0.5)
        stopped_at = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, server_log()

    # No frame lost: one run per stream, chained, and fps x wall time frames committed.
    fps_by_camera = {}
    with datadir.open_db(data_dir, read_only=True) as db:
        for name, stream_id in streams.items():
            rows = sorted(db.list_recordings(stream_id), key=lambda r: r.recording_id)
            assert len({r.recording_id - r.run_offset for r in rows}) == 1, (name, "runs")
            for earlier, later in zip(rows, rows[1:], strict=False):
                assert later.start_time_90k == earlier.end_time_90k, (name, earlier, later)
            frames = sum(r.video_samples for r in rows)
            wall_sec = stopped_at - rows[0].start_time_90k / 90000
            fps_by_camera[name] = frames / wall_sec
            assert abs(frames - FPS * wall_sec) <= 0.1 * FPS * wall_sec, (name, frames, wall_sec)
    checked = moonfire_process("check", "--data-dir", data_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    expected_live = FPS * LOAD_SEC
    for index, count in enumerate(stats.live_messages):
        assert count + stats.live_dropped[index] >= 0.8 * expected_live, (index, count)
    latencies_ms = [1000 * t for t in stats.range_latencies]
    print(
        f"\nload over {took:.1f} s, {CAMERAS} cameras at {FPS} fps, {VIEWERS} live viewers, "
        f"{READERS} range readers:\n"
        f"  committed frames/s per camera: "
        + ", ".join(f"{n} {v:.2f}" for n, v in sorted(fps_by_camera.items()))
        + f"\n  live: {sum(stats.live_messages) / took:.0f} messages/s in all "
        f"({statistics.mean(stats.live_messages) / took:.1f}/s per viewer, min "
        f"{min(stats.live_messages)}, dropped frames {sum(stats.live_dropped)}), "
        f"{stats.live_bytes / took / 1e6:.2f} MB/s"
        f"\n  ranges: {len(latencies_ms) / took:.0f} requests/s, "
        f"{stats.range_bytes / took / 1e6:.1f} MB/s, latency p50 "
        f"{percentile(latencies_ms, 0.5):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms, "
        f"max {max(latencies_ms):.1f} ms"
        f"\n  server process: {idle_cpu:.2f} CPU cores busy recording alone, "
        f"{server_cpu / took:.2f} recording and serving (the clients: "
        f"{client_cpu / took:.2f})"
        f"\n  server fds {baseline} before, {stats.peak_fds} at most during the load, "
        f"{after} after"
    )
    assert len(latencies_ms) > READERS  # every reader got through more than one request
