"""Time to first byte of a 24-hour ``view.mp4`` over HTTP, database query included.

Target (issue 13: time to first byte of a 24-hour view.mp4 < 100 ms, database query included).
Shape (``benchmarks/day_library.py``): 1440 one-minute recordings of one run, each with the
real camera index (1800 samples), in a real database served by a real ``WebServer`` on
loopback.  Their sample files are 1440 hard links to one 30 MB file (1440 distinct files would
be 43 GB; where the bytes are doesn't change the cost).  A request for the first KiB
(``Range: bytes=0-1023``) costs what a player's first request does: the query, the segments,
the ``moov`` layout and the read of the header.  Baseline in the same run: ``build_mp4`` of the
same segments alone (no HTTP, no database), so the ratio is what serving adds.
"""

from __future__ import annotations

import http.client
import time

import pytest

from benchmarks.day_library import make_day_library
from benchmarks.sizes import size
from moonfire.playback.mp4 import build_mp4
from moonfire.playback.segment import Segment
from moonfire.web.app import build_app
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.server import WebServer

RECORDINGS = size("MOONFIRE_BENCH_DAY_RECORDINGS", 1440, 60)


@pytest.fixture(scope="module")
def day(testdata, tmp_path_factory):
    """A data directory holding 24 hours of one camera, and its camera uuid."""
    lib = make_day_library(testdata, tmp_path_factory.mktemp("bench_view"), RECORDINGS)
    return lib.data_dir, lib.camera_uuid, lib.rows, lib.index_blob, lib.entries


@pytest.fixture(scope="module")
def server(day):
    data_dir = day[0]
    ctx = WebContext.open(data_dir)
    auth = Auth(ctx.db)
    server = WebServer(lambda: build_app(ctx, auth), "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()
    ctx.close()


def test_view_mp4_first_byte_of_24_hours(benchmark, day, server):
    _data_dir, camera_uuid, rows, blob, entries = day
    path = f"/api/cameras/{camera_uuid}/main/view.mp4?s=1-{RECORDINGS}"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)

    def first_kib() -> bytes:
        conn.request("GET", path, headers={"Range": "bytes=0-1023"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 206, body[:200]
        return body

    rounds = size("MOONFIRE_BENCH_ROUNDS", 10, 1)
    body = benchmark.pedantic(first_kib, rounds=rounds, warmup_rounds=1)
    conn.close()
    assert body[4:8] == b"ftyp" and len(body) == 1024

    def build_alone() -> None:
        segments = [Segment(row, blob, (0, row.duration_90k)) for row in rows]
        build_mp4(segments, entries, lambda row: -1).read(0, 1024)

    timings = []
    for _ in range(5):
        t = time.perf_counter()
        build_alone()
        timings.append(time.perf_counter() - t)
    baseline = min(timings)
    served = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "recordings": RECORDINGS,
            "first_kib_min_ms": round(served * 1000, 1),
            "first_kib_median_ms": round(benchmark.stats.stats.median * 1000, 1),
            "build_mp4_alone_min_ms": round(baseline * 1000, 1),
            "ratio_to_build_alone": round(served / baseline, 2),
        }
    )
    print("view.mp4 24 h first KiB:", benchmark.extra_info)
