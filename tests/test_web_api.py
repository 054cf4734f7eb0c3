"""The JSON API and ``view.mp4`` against a real server over real recordings.

A module fixture records a synthetic camera (main and sub stream, real H.264 from
``testsrc://``) with ``moonfire run``, then serves its data directory with the
application ``moonfire run`` serves (``moonfire.web.app.build_app``) from a
``WebServer`` on a loopback port.  No user exists, so loopback callers may view:
that is the documented default.
"""

from __future__ import annotations

import datetime
import http.client
import io
import json
import uuid as uuidlib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

import av
import pytest

from moonfire.db import Database
from moonfire.storage import data_dir as datadir
from moonfire.time import server_time_zone
from moonfire.web.app import build_app
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.server import WebServer
from tests.support.cli import moonfire_process

MAIN_URL = "testsrc://?size=320x240&fps=10&bitrate=100k&gop=10"
SUB_URL = "testsrc://?size=160x120&fps=5&bitrate=50k&gop=5"


@dataclass
class Served:
    data_dir: str
    server: WebServer
    camera_uuid: str
    main_id: int
    sub_id: int

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def json(self, path: str) -> dict:
        status, headers, body = self.get(path)
        assert status == 200, body
        assert headers["Content-Type"].startswith("application/json")
        return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    data_dir = str(tmp_path_factory.mktemp("web") / "data")
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", MAIN_URL, "--retain", "100MiB",
         "--sub-url", SUB_URL, "--sub-retain", "10MiB", "--rotate-seconds", "1",
         "--username", "admin", "--password", "hunter2-secret"),
        ("run", "--for", "8", "--no-listen"),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    with datadir.open_db(data_dir, read_only=True) as db:
        camera = db.get_camera("front")
        assert camera.sub is not None
        ids = camera.main.id, camera.sub.id
        camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    ctx = WebContext.open(data_dir)
    auth = Auth(ctx.db)
    server = WebServer(lambda: build_app(ctx, auth), "127.0.0.1", 0)
    server.start()
    try:
        yield Served(data_dir, server, camera_uuid, *ids)
    finally:
        server.stop()
        ctx.close()


def db_of(served: Served) -> Database:
    return datadir.open_db(served.data_dir, read_only=True)


def test_top_level_lists_the_camera_its_streams_and_days(served):
    doc = served.json("/api/?days=true")
    zoneinfo.ZoneInfo(doc["timeZoneName"])  # a real IANA name
    assert doc["permissions"]["viewVideo"] is True  # loopback, no users: may view
    assert doc["signals"] == [] and doc["signalTypes"] == []
    assert "user" not in doc  # no session
    (camera,) = doc["cameras"]
    assert camera["uuid"] == served.camera_uuid and camera["shortName"] == "front"
    assert set(camera["streams"]) == {"main", "sub"}
    with db_of(served) as db:
        for name, stream_id in (("main", served.main_id), ("sub", served.sub_id)):
            stream = camera["streams"][name]
            count, total_bytes, total_duration = db.stream_usage(stream_id)
            rows = db.list_recordings(stream_id)
            assert count > 0
            assert stream["id"] == stream_id and stream["record"] is True
            assert stream["totalSampleFileBytes"] == total_bytes
            assert stream["totalDuration90k"] == total_duration
            assert stream["minStartTime90k"] == min(r.start_time_90k for r in rows)
            assert stream["maxEndTime90k"] == max(r.end_time_90k for r in rows)
            assert stream["fsBytes"] >= total_bytes
            days = stream["days"]
            assert sum(d["totalDuration90k"] for d in days.values()) == total_duration
            for day in days.values():
                assert day["startTime90k"] < day["endTime90k"]
    assert "config" not in camera


def test_days_are_left_out_unless_asked(served):
    (camera,) = served.json("/api/")["cameras"]
    assert "days" not in camera["streams"]["main"]


def test_camera_configs_never_show_the_password(served):
    status, _headers, body = served.get("/api/?cameraConfigs=true")
    assert status == 200
    assert b"hunter2-secret" not in body
    (camera,) = json.loads(body)["cameras"]
    assert camera["config"]["username"] == "admin"
    assert camera["streams"]["main"]["config"]["url"] == MAIN_URL
    assert camera["streams"]["sub"]["config"]["sampleFileDir"] == "default"


def test_one_camera_and_unknown_ones(served):
    camera = served.json(f"/api/cameras/{served.camera_uuid}/")
    assert camera["shortName"] == "front" and "days" in camera["streams"]["main"]
    for bad in (str(uuidlib.uuid4()), "not-a-uuid"):
        status, headers, body = served.get(f"/api/cameras/{bad}/")
        assert status == 404 and headers["Content-Type"].startswith("text/plain"), body


def test_recordings_are_coalesced_by_run_and_split(served):
    base = f"/api/cameras/{served.camera_uuid}/main/recordings"
    whole = served.json(base)
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    assert len(rows) >= 3
    listed = whole["recordings"]
    assert sum(r["videoSamples"] for r in listed) == sum(r.video_samples for r in rows)
    assert sum(r["sampleFileBytes"] for r in listed) == sum(r.sample_file_bytes for r in rows)
    assert len(listed) < len(rows)  # one run: merged rows
    first = min(listed, key=lambda r: r["startId"])
    assert first["startId"] == rows[0].recording_id and first["runStartId"] == first["startId"]
    assert "endId" in first and first["endId"] > first["startId"]
    assert any(r.get("hasTrailingZero") for r in listed)  # the run ended at shutdown
    for r in listed:
        assert str(r["videoSampleEntryId"]) in whole["videoSampleEntries"]
    entry = whole["videoSampleEntries"][str(first["videoSampleEntryId"])]
    assert (entry["width"], entry["height"]) == (320, 240)
    assert (entry["aspectWidth"], entry["aspectHeight"]) == (4, 3)
    # A split shorter than one recording lists each recording alone, without endId.
    split = served.json(f"{base}?split90k=1")["recordings"]
    assert len(split) == len(rows) and all("endId" not in r for r in split)
    # A time range selects the recordings overlapping it.
    one = rows[1]
    ranged = served.json(
        f"{base}?startTime90k={one.start_time_90k}&endTime90k={one.start_time_90k + 1}&split90k=1"
    )["recordings"]
    assert [r["startId"] for r in ranged] == [one.recording_id]


def test_recordings_refuse_bad_parameters_and_streams(served):
    base = f"/api/cameras/{served.camera_uuid}"
    assert served.get(f"{base}/main/recordings?split90k=soon")[0] == 400
    assert served.get(f"{base}/ext/recordings")[0] == 404
    assert served.get(f"{base}/bogus/recordings")[0] == 404
    sub = served.json(f"{base}/sub/recordings")
    assert sub["recordings"]
    assert {e["width"] for e in sub["videoSampleEntries"].values()} == {160}


def _decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_view_mp4_serves_every_frame_with_ranges_and_head(served):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    first, last = rows[0].recording_id, rows[-1].recording_id
    path = f"/api/cameras/{served.camera_uuid}/main/view.mp4?s={first}-{last}&ts=false"
    status, headers, body = served.get(path)
    assert status == 200, body
    assert headers["Content-Type"].startswith('video/mp4; codecs="avc1.')
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "private, max-age=3600"
    assert headers["ETag"].startswith('"')
    assert headers["Content-Disposition"].startswith("attachment; filename=")
    assert headers["Content-Disposition"].endswith('-front-main.mp4"')
    assert int(headers["Content-Length"]) == len(body)
    assert _decoded_frames(body) == sum(r.video_samples for r in rows)
    status, headers206, part = served.get(path, {"Range": "bytes=100-199"})
    assert status == 206 and part == body[100:200]
    assert headers206["Content-Range"] == f"bytes 100-199/{len(body)}"
    status, head_headers, head_body = served.get(path, method="HEAD")
    assert status == 200 and head_body == b""
    assert head_headers["Content-Length"] == str(len(body))
    assert head_headers["ETag"] == headers["ETag"]
    status, _h, _b = served.get(path, {"If-None-Match": headers["ETag"]})
    assert status == 304


def test_view_mp4_clips_to_relative_times(served):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    first = rows[0]
    whole = served.get(
        f"/api/cameras/{served.camera_uuid}/main/view.mp4?s={first.recording_id}"
    )[2]
    half = first.duration_90k // 2
    status, _headers, clipped = served.get(
        f"/api/cameras/{served.camera_uuid}/main/view.mp4?s={first.recording_id}.-{half}"
    )
    assert status == 200
    assert 0 < _decoded_frames(clipped) < _decoded_frames(whole)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),  # no s
        ("s=1&speed=2", 400),  # unknown parameter
        ("s=abc", 400),
        ("s=3-1", 400),  # end before start
        ("s=1.500-100", 400),  # relative end before start
        ("s=1.0-999999999999", 400),  # beyond the recordings
        ("s=999999", 404),  # no such recording
        ("s=1@999", 404),  # another open
    ],
)
def test_view_mp4_refuses_bad_requests(served, query, status):
    got, headers, body = served.get(f"/api/cameras/{served.camera_uuid}/main/view.mp4?{query}")
    assert got == status, body
    assert headers["Content-Type"].startswith("text/plain")


def test_unknown_api_paths_and_the_index_page(served):
    status, headers, body = served.get("/api/nonsense")
    assert status == 404 and body == b"path not understood"
    status, headers, body = served.get("/")
    assert status == 200 and b"/api/" in body and headers["Content-Type"].startswith("text/html")


def test_request_echo_and_signals(served):
    status, _headers, body = served.get("/api/request", {"User-Agent": "probe/1"})
    assert status == 200 and b"probe/1" in body
    assert served.json("/api/signals") == {"times90k": [], "signalIds": [], "states": []}


def test_init_segment_with_its_aspect(served):
    recordings = served.json(f"/api/cameras/{served.camera_uuid}/main/recordings")
    entry_id = next(iter(recordings["videoSampleEntries"]))
    status, headers, body = served.get(f"/api/init/{entry_id}.mp4")
    assert status == 200, body
    assert headers["X-Aspect"] == "4:3"
    assert headers["Content-Type"].startswith('video/mp4; codecs="avc1.')
    assert body[4:8] == b"ftyp" and b"moov" in body and b"mvex" in body and b"avcC" in body
    assert served.get(f"/api/init/{entry_id}.mp4", {"If-None-Match": headers["ETag"]})[0] == 304
    for bad in ("999999", "abc", "-1"):
        assert served.get(f"/api/init/{bad}.mp4")[0] == 404


def _subtitles(data: bytes) -> tuple[list[str], list[int], int]:
    """The timestamp track's texts and packet durations, and the video frames decoded."""
    with av.open(io.BytesIO(data)) as container:
        (track,) = container.streams.subtitles
        assert track.codec_context.name == "mov_text"
        packets = [p for p in container.demux(track) if p.size]
        texts = [bytes(p)[2:].decode() for p in packets]
        durations = [int(p.duration * p.time_base * 90000) for p in packets]
    return texts, durations, _decoded_frames(data)


def test_view_mp4_with_ts_true_adds_a_subtitle_track_of_wall_clock_seconds(served):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    first, last = rows[0], rows[-1]
    base = f"/api/cameras/{served.camera_uuid}/main/view.mp4?s={first.recording_id}-"
    status, headers, with_ts = served.get(f"{base}{last.recording_id}&ts=true")
    assert status == 200, with_ts
    _, plain_headers, plain = served.get(f"{base}{last.recording_id}&ts=false")
    assert headers["ETag"] != plain_headers["ETag"]
    texts, durations, frames = _subtitles(with_ts)
    assert frames == _decoded_frames(plain) == sum(r.video_samples for r in rows)
    zone = zoneinfo.ZoneInfo(server_time_zone())
    start_sec = first.start_time_90k // 90000
    end_sec = -(-last.end_time_90k // 90000)
    # One sample per wall second each recording overlaps: recordings of a run abut, so a
    # second split between two shows twice, once for each.
    assert len(texts) >= end_sec - start_sec
    assert texts[0] == datetime.datetime.fromtimestamp(start_sec, zone).strftime(
        "%Y-%m-%d %H:%M:%S %z"
    )
    assert texts[-1] == datetime.datetime.fromtimestamp(end_sec - 1, zone).strftime(
        "%Y-%m-%d %H:%M:%S %z"
    )
    assert sum(durations) == sum(r.duration_90k for r in rows)
    assert all(0 < d <= 90000 for d in durations)
    # Ranges of the subtitle payload (the file's tail) are the same bytes as the whole.
    status, _h, tail = served.get(f"{base}{last.recording_id}&ts=true", {"Range": "bytes=-100"})
    assert status == 206 and tail == with_ts[-100:]


def test_export_with_timestamps_writes_the_same_track(served, tmp_path):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    out = tmp_path / "front.mp4"
    done = moonfire_process(
        "export", "front", "--start", str(rows[0].start_time_90k),
        "--end", str(rows[-1].end_time_90k), "-o", str(out), "--timestamps",
        "--data-dir", served.data_dir,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    texts, durations, frames = _subtitles(out.read_bytes())
    assert frames == sum(r.video_samples for r in rows)
    assert sum(durations) == sum(r.duration_90k for r in rows)
    assert len(texts) >= (rows[-1].end_time_90k - rows[0].start_time_90k) // 90000


def test_view_m4s_is_a_media_segment_with_the_run_headers(served):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    in_run = [r for r in rows if r.recording_id - r.run_offset == rows[0].recording_id]
    assert len(in_run) >= 2, "the fixture's first run has several recordings"
    second = in_run[1]
    base = f"/api/cameras/{served.camera_uuid}/main/view.m4s"
    status, headers, body = served.get(f"{base}?s={second.recording_id}")
    assert status == 200, body
    assert body[4:8] == b"moof" and headers["Cache-Control"] == "private, max-age=3600"
    assert "Content-Disposition" not in headers
    assert headers["X-Prev-Media-Duration"] == str(in_run[0].duration_90k)
    assert headers["X-Runs"] == "1"  # the stream's first run, which began before it
    assert "X-Leading-Media-Duration" not in headers
    status, _h, init = served.get(f"/api/init/{second.video_sample_entry_id}.mp4")
    assert status == 200
    assert _decoded_frames(init + body) == second.video_samples
    status, _h, part = served.get(f"{base}?s={second.recording_id}", {"Range": "bytes=8-107"})
    assert status == 206 and part == body[8:108]

    status, first_headers, _b = served.get(f"{base}?s={in_run[0].recording_id}")
    assert first_headers["X-Prev-Media-Duration"] == "0" and first_headers["X-Runs"] == "1"
    # A start between key frames: the leading frames are there, and said to be.
    # (10 fps, a key frame a second: 4500 past a whole second is half a frame past a key.)
    start = (second.duration_90k // 2) // 90000 * 90000 + 4500
    status, clipped_headers, clipped = served.get(f"{base}?s={second.recording_id}.{start}-")
    assert status == 200
    assert 0 < int(clipped_headers.get("X-Leading-Media-Duration", "0")) <= start
    assert 0 < _decoded_frames(init + clipped) < second.video_samples


@pytest.mark.parametrize(
    ("query", "status"),
    [("s=1&ts=true", 400), ("s=1&speed=2", 400), ("", 400), ("s=999999", 404)],
)
def test_view_m4s_refuses_what_it_cannot_serve(served, query, status):
    got, headers, body = served.get(f"/api/cameras/{served.camera_uuid}/main/view.m4s?{query}")
    assert got == status, body
    assert headers["Content-Type"].startswith("text/plain")


def test_txt_forms_outline_what_would_be_sent(served):
    with db_of(served) as db:
        rows = db.list_recordings(served.main_id)
    first = rows[0]
    base = f"/api/cameras/{served.camera_uuid}/main"
    _, mp4_headers, mp4 = served.get(f"{base}/view.mp4?s={first.recording_id}")
    status, headers, text = served.get(f"{base}/view.mp4.txt?s={first.recording_id}")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.decode().splitlines()
    assert f"ETag: {mp4_headers['ETag']}" in lines
    assert f"Content-Length: {len(mp4)}" in lines
    assert any(line.startswith(f"  {first.stream_id}/{first.recording_id}: [0, ") for line in lines)
    boxes = [line.split() for line in lines[lines.index("boxes (offset, size, type):") + 1 :]]
    outline = {(int(offset), box) for offset, _size, box in boxes}
    assert (0, "ftyp") in outline and (32, "moov") in outline
    mdat_offset = mp4.index(b"mdat") - 4
    assert (mdat_offset, "mdat") in outline and ("stss" in {b for _o, b in outline})

    status, _h, m4s_text = served.get(f"{base}/view.m4s.txt?s={first.recording_id}")
    assert status == 200 and b"X-Runs: 1" in m4s_text and b" moof" in m4s_text
    status, _h, init_text = served.get(f"/api/init/{first.video_sample_entry_id}.mp4.txt")
    assert status == 200 and b"X-Aspect: " in init_text and b" avc1" in init_text
    assert served.get(f"{base}/view.mp4.txt?s=999999")[0] == 404
