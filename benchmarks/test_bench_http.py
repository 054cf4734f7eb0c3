"""Serving bytes over HTTP: ``serve_entity`` against aiohttp's ``FileResponse``, same run.

``web.FileResponse`` of a plain file is the ceiling: it hands the socket to the kernel
(``sendfile``), while ``serve_entity`` reads each chunk in an executor thread and writes it
through aiohttp's stream writer.  Both are served by one aiohttp application on a loopback
port, its event loop in its own thread as ``moonfire run`` serves it.  The client is a
separate process (so it competes for no GIL, as a browser wouldn't) holding one kept-alive
connection and reading each body with ``recv_into`` into a reused buffer; it times each
response from sending the request to the last body byte and checks the body's length
(and, once per entity, its hash).

* ``test_full_body_throughput``: GET of a whole 64 MiB entity, ``file`` (a file-backed
  entity: ``os.pread`` of a plain file) and ``view.mp4`` (a real ``VirtualFile`` over
  sixteen 4 MiB sample files, read as view.mp4 reads them).  Each timed round is preceded
  (untimed, in ``setup``) by a ``FileResponse`` GET of a plain file holding the same bytes,
  so the baseline interleaves with the measurement and the machine's drift hits both.
  ``extra_info``: ``mib_per_s``, ``baseline_mib_per_s`` (medians) and ``ratio`` (target
  ≥ 0.8); ``pairwise_ratio``, the median over rounds of baseline time / our time of the round
  (less disturbed by drift); ``best_*`` from the fastest round of each; ``server_cpu_ms``, the
  server's CPU time per response (median), which the other users of a shared machine disturb
  far less than wall time.
* ``test_range_latency``: GET of a 1 MiB range at a random offset of the file-backed entity,
  request to last byte; ``extra_info``: ``p50_ms``, ``p99_ms`` and the same for
  ``FileResponse`` ranges (interleaved the same way).

Run with ``python3 -m pytest benchmarks/test_bench_http.py --benchmark-only -s``.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import multiprocessing
import os
import random
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.support.recordings import SampleFiles, make_recording, sample_entry

from benchmarks.sizes import TINY, size
from moonfire.playback.mp4 import build_mp4
from moonfire.playback.segment import Segment
from moonfire.web.http_entity import serve_entity

MIB = 1 << 20
FILE_BYTES = size("MOONFIRE_BENCH_HTTP_MIB", 64, 4) * MIB
FULL_ROUNDS = size("MOONFIRE_BENCH_HTTP_ROUNDS", 20, 2)
RANGE_ROUNDS = size("MOONFIRE_BENCH_HTTP_RANGE_ROUNDS", 300, 5)
#: view.mp4 shape: 16 recordings of 64 frames of 64 KiB (4 MiB sample files), 64 MiB of media
#: (at the tiny size, 4 recordings of 16 frames).
RECORDINGS, FRAMES, FRAME_BYTES = (4, 16, 64 << 10) if TINY else (16, 64, 64 << 10)


# ---- the entities --------------------------------------------------------------------------


class FileEntity:
    """A plain file as an ``Entity``: ``os.pread`` on one descriptor (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        stat = os.fstat(self._fd)
        self.size = stat.st_size
        self.etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        self.last_modified = datetime.datetime.fromtimestamp(int(stat.st_mtime), datetime.UTC)
        self.content_type = "video/mp4"

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class Fixture:
    port: int
    paths: dict[str, Path]  # the plain file of each entity's bytes, served by FileResponse
    digests: dict[str, str]


class ServerThread:
    """An aiohttp app on 127.0.0.1, its loop running in a thread of its own."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        self.port: int = self._runner.addresses[0][1]

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


def write_virtual_file(directory: Path, testdata: Path):
    """A 64 MiB ``VirtualFile`` over random sample bytes (and the files it reads)."""
    files = SampleFiles(directory)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    rng = random.Random(5)
    segments = []
    start = 1_780_000_000 * 90_000
    for rid in range(1, RECORDINGS + 1):
        rec = make_recording(
            [3000] * FRAMES, [FRAME_BYTES] * FRAMES, [i % 30 == 0 for i in range(FRAMES)],
            recording_id=rid, run_offset=rid - 1, start_time_90k=start,
        )
        files.write(rec.row, rng.randbytes(FRAMES * FRAME_BYTES))
        segments.append(Segment(rec.row, rec.video_index, (0, rec.row.duration_90k)))
        start = rec.row.end_time_90k
    def open_sample_file(row) -> int:
        # A bare descriptor, as view.mp4's opener (``SampleDirectory.open_file``) returns.
        return os.open(files.path(row), os.O_RDONLY | os.O_CLOEXEC)

    return build_mp4(segments, {1: sample_entry(avc1)}, open_sample_file)


@pytest.fixture(scope="module")
def server(tmp_path_factory, testdata) -> Iterator[Fixture]:
    directory = tmp_path_factory.mktemp("http")
    plain = directory / "plain.bin"
    plain.write_bytes(random.Random(9).randbytes(FILE_BYTES))
    (directory / "sample").mkdir()
    vf = write_virtual_file(directory / "sample", testdata)
    vf_plain = directory / "view.mp4"
    with open(vf_plain, "wb") as out:
        vf.write_to(out)
    file_entity = FileEntity(plain)
    entities: dict[str, Any] = {"file": file_entity, "view.mp4": vf}
    paths = {"file": plain, "view.mp4": vf_plain}

    app = web.Application()
    for name, entity in entities.items():
        async def handler(request: web.Request, entity=entity) -> web.StreamResponse:
            return await serve_entity(request, entity)

        async def baseline(request: web.Request, path=paths[name]) -> web.StreamResponse:
            return web.FileResponse(path)

        app.router.add_get(f"/entity/{name}", handler)
        app.router.add_get(f"/plain/{name}", baseline)
    thread = ServerThread(app)
    digests = {name: hashlib.blake2b(p.read_bytes()).hexdigest() for name, p in paths.items()}
    try:
        yield Fixture(thread.port, paths, digests)
    finally:
        thread.stop()
        file_entity.close()


# ---- the client, in its own process --------------------------------------------------------


def client_main(port: int, conn: Any) -> None:
    """Serves ``(path, range or None, hash?)`` requests from ``conn`` over one kept-alive
    connection, answering ``(status, body bytes, seconds, blake2b hex or None)``."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(4 * MIB)
    view = memoryview(buffer)
    pending = b""
    while (message := conn.recv()) is not None:
        path, byte_range, want_hash = message
        digest = hashlib.blake2b() if want_hash else None
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if byte_range is not None:
            request += f"Range: bytes={byte_range[0]}-{byte_range[1] - 1}\r\n"
        began = time.perf_counter()
        sock.sendall((request + "\r\n").encode())
        head = pending
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            head += chunk
        head, _, body_start = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (line.partition(": ") for line in lines[1:])
                      if k.lower() == "content-length")
        got = body_start[:length]
        pending = body_start[length:]
        if digest is not None:
            digest.update(got)
        remaining = length - len(got)
        while remaining:
            n = sock.recv_into(view[: min(remaining, len(buffer))])
            if n == 0:
                raise ConnectionError("server closed the connection mid-body")
            if digest is not None:
                digest.update(view[:n])
            remaining -= n
        elapsed = time.perf_counter() - began
        conn.send((status, length, elapsed, digest.hexdigest() if digest else None))
    sock.close()


class Client:
    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=client_main, args=(port, child), daemon=True)
        self._process.start()

    def get(self, path: str, byte_range: tuple[int, int] | None = None,
            want_hash: bool = False) -> tuple[int, int, float, str | None]:
        self._conn.send((path, byte_range, want_hash))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(30)


@pytest.fixture
def client(server: Fixture) -> Iterator[Client]:
    c = Client(server.port)
    try:
        yield c
    finally:
        c.close()


# ---- the benchmarks ------------------------------------------------------------------------


def server_cpu() -> float:
    """CPU seconds (user + system) of this process so far: the server's loop and executor
    threads (the client is another process; pytest's thread only waits on the pipe)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


@pytest.mark.benchmark(group="http_full_body")
@pytest.mark.parametrize("name", ["file", "view.mp4"])
def test_full_body_throughput(benchmark, server: Fixture, client: Client, name: str) -> None:
    size = server.paths[name].stat().st_size
    # Correctness first (and a warm-up of both paths): every byte, hashed in the client.
    for path in (f"/entity/{name}", f"/plain/{name}"):
        status, length, _, digest = client.get(path, want_hash=True)
        assert (status, length, digest) == (200, size, server.digests[name]), path
    ours: list[float] = []
    theirs: list[float] = []
    our_cpu: list[float] = []
    their_cpu: list[float] = []

    def baseline() -> None:
        began = server_cpu()
        status, length, seconds, _ = client.get(f"/plain/{name}")
        their_cpu.append(server_cpu() - began)
        assert (status, length) == (200, size)
        theirs.append(seconds)

    def run() -> None:
        began = server_cpu()
        status, length, seconds, _ = client.get(f"/entity/{name}")
        our_cpu.append(server_cpu() - began)
        assert (status, length) == (200, size)
        ours.append(seconds)

    benchmark.pedantic(run, setup=baseline, rounds=FULL_ROUNDS, iterations=1)
    mib_per_s = size / MIB / statistics.median(ours)
    baseline_mib_per_s = size / MIB / statistics.median(theirs)
    result = {
        "bytes": size,
        "mib_per_s": round(mib_per_s),
        "baseline_mib_per_s": round(baseline_mib_per_s),
        "ratio": round(mib_per_s / baseline_mib_per_s, 2),
        "best_mib_per_s": round(size / MIB / min(ours)),
        "best_baseline_mib_per_s": round(size / MIB / min(theirs)),
        "best_ratio": round(min(theirs) / min(ours), 2),
        # Each round against the baseline GET just before it: the machine's drift (other
        # users of a shared machine) hits both sides of a pair alike.
        "pairwise_ratio": round(
            statistics.median(t / o for t, o in zip(theirs, ours, strict=True)), 2),
        "server_cpu_ms": round(statistics.median(our_cpu) * 1e3, 1),
        "baseline_server_cpu_ms": round(statistics.median(their_cpu) * 1e3, 1),
    }
    benchmark.extra_info.update(result)
    print(f"\nfull body, {name}: {result}")


@pytest.mark.benchmark(group="http_range_1mib")
def test_range_latency(benchmark, server: Fixture, client: Client) -> None:
    rng = random.Random(1)
    size = FILE_BYTES
    content = server.paths["file"].read_bytes()
    first = (12345, 12345 + MIB)
    for path in ("/entity/file", "/plain/file"):
        status, length, _, digest = client.get(path, first, want_hash=True)
        expected = hashlib.blake2b(content[first[0] : first[1]]).hexdigest()
        assert (status, length, digest) == (206, MIB, expected), path
    ours: list[float] = []
    theirs: list[float] = []
    offsets: list[int] = []

    def baseline() -> None:
        offset = rng.randrange(0, size - MIB)
        offsets.append(offset)
        status, length, seconds, _ = client.get("/plain/file", (offset, offset + MIB))
        assert (status, length) == (206, MIB)
        theirs.append(seconds)

    def run() -> None:
        offset = offsets[-1]
        status, length, seconds, _ = client.get("/entity/file", (offset, offset + MIB))
        assert (status, length) == (206, MIB)
        ours.append(seconds)

    benchmark.pedantic(run, setup=baseline, rounds=RANGE_ROUNDS, iterations=1)
    result = {
        "p50_ms": round(percentile(ours, 0.5) * 1e3, 3),
        "p99_ms": round(percentile(ours, 0.99) * 1e3, 3),
        "baseline_p50_ms": round(percentile(theirs, 0.5) * 1e3, 3),
        "baseline_p99_ms": round(percentile(theirs, 0.99) * 1e3, 3),
    }
    benchmark.extra_info.update(result)
    print(f"\n1 MiB range: {result}")
