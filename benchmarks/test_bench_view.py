"""Time to first byte of a 24-hour ``view.mp4`` over HTTP, database query included.

Target (issue: "time to first byte of a 24-hour view.mp4 < 150 ms, database query included").
Shape as ``test_bench_mp4.py``: 1440 one-minute recordings of one run, each with the real
camera index (1800 samples), in a real database served by a real ``WebServer`` on loopback.
Their sample files are 1440 hard links to one 30 MB file (1440 distinct files would be 43 GB;
where the bytes are doesn't change the cost).  A request for the first KiB
(``Range: bytes=0-1023``) costs what a player's first request does: the query, the segments,
the ``moov`` layout and the read of the header.  Baseline in the same run: ``build_mp4`` of the
same segments alone (no HTTP, no database), so the ratio is what serving adds.
"""

from __future__ import annotations

import http.client
import os
import time
import uuid as uuidlib

import numpy as np
import pytest

from moonfire.db.rows import format_uuid
from moonfire.playback.mp4 import build_mp4
from moonfire.playback.segment import Segment
from moonfire.storage import data_dir as datadir
from moonfire.web.app import build_app
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.server import WebServer
from moonfire_core import decode_index

RECORDINGS = 1440
START_90K = 1_780_000_000 * 90_000


@pytest.fixture(scope="module")
def day(testdata, tmp_path_factory):
    """A data directory holding 24 hours of one camera, and its camera uuid."""
    blob = (testdata / "video_sample_index.bin").read_bytes()
    decoded = decode_index(blob)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    data_dir = str(tmp_path_factory.mktemp("bench_view") / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    camera = db.add_camera("front", url="testsrc://", retain_bytes=1 << 50)
    entry_id = db.insert_video_sample_entry(1920, 1080, avc1)
    sample_dir = db.sample_file_dir(camera.main.sample_file_dir_id).path
    shared = os.path.join(sample_dir, "shared")
    rng = np.random.default_rng(1)
    with open(shared, "wb") as f:
        f.write(rng.integers(0, 256, decoded.sample_file_bytes, dtype=np.uint8).tobytes())
    stream_id = camera.main.id
    with db.transaction() as tx:
        for i in range(RECORDINGS):
            uuid = uuidlib.uuid4().bytes
            os.link(shared, os.path.join(sample_dir, format_uuid(uuid)))
            cid = stream_id << 32 | (i + 1)
            tx.conn.execute(
                "insert into recording values (?, ?, ?, 0, ?, ?, ?, 0, ?, ?, ?, null)",
                (cid, stream_id, i, decoded.sample_file_bytes,
                 START_90K + i * decoded.total_duration_90k, decoded.total_duration_90k,
                 decoded.video_samples, decoded.video_sync_samples, entry_id),
            )
            tx.conn.execute(
                "insert into recording_playback values (?, ?, zeroblob(20), ?)", (cid, uuid, blob)
            )
        tx.conn.execute(
            "update stream set next_recording_id = ? where id = ?", (RECORDINGS + 1, stream_id)
        )
    os.unlink(shared)
    camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    rows = db.list_recordings(stream_id)
    entries = {entry_id: db.get_video_sample_entry(entry_id)}
    db.close()
    return data_dir, camera_uuid, rows, blob, entries


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

    body = benchmark.pedantic(first_kib, rounds=10, warmup_rounds=1)
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
            "first_kib_min_ms": round(served * 1000, 1),
            "first_kib_median_ms": round(benchmark.stats.stats.median * 1000, 1),
            "build_mp4_alone_min_ms": round(baseline * 1000, 1),
            "ratio_to_build_alone": round(served / baseline, 2),
        }
    )
    print("view.mp4 24 h first KiB:", benchmark.extra_info)
