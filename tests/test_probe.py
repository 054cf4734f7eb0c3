"""``probe_stream`` / ``moonfire camera probe`` / ``camera add --probe``, and transports
(issue 10 §4), against cameras the test starts: GStreamer's RTSP server (plain, with
digest authentication, UDP-only), a socket that accepts and never answers, and files
in codecs moonfire can't record.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from moonfire.codec import RECORDABLE_CODECS, recordable_codec_names, sample_entry_from_extradata
from moonfire.ingest.daemon import start_daemon
from moonfire.ingest.probe import probe_stream
from tests.support.cli import moonfire
from tests.test_ingest import (  # the GStreamer server and the daemon's data dir
    RtspServer,
    add_camera,
    assert_orderly,
    assert_runs_well_formed,
    data_dir,  # noqa: F401 - fixture
    start_server_or_fail,
    wait_for,
)


@pytest.fixture(scope="module")
def server():
    started = start_server_or_fail(RtspServer())
    yield started
    started.stop()


@pytest.fixture  # one per test: gst-rtsp-server may answer 5XX while a shared media unprepares
def udp_only_server():
    started = start_server_or_fail(RtspServer(flags=("--udp-only",)))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def auth_server():
    started = start_server_or_fail(RtspServer(user="viewer", password="s3cret"))
    yield started
    started.stop()


def test_probe_reports_what_an_h264_camera_sends(server):
    report = probe_stream(server.url("cam1"))
    assert report.recordable and report.reason is None, report
    assert (report.codec, report.width, report.height, report.frame_rate) == (
        "h264", 320, 240, 30.0)
    assert report.profile and "Baseline" in report.profile  # x264 with tune=zerolatency
    assert report.transport == "tcp" and report.b_frames is False and report.audio == ()
    assert report.packets_seen > 10
    doc = report.as_dict()
    assert json.loads(json.dumps(doc)) == doc and doc["audio"] == []


def test_probe_of_an_audio_only_stream_says_there_is_no_video(server):
    report = probe_stream(server.url("audio"))
    assert not report.recordable and report.connected
    assert report.reason == "no video stream (streams found: audio)"
    assert report.audio == ("pcm_s16be",)


def test_udp_only_camera_auto_falls_back_to_udp_and_tcp_says_why_not(udp_only_server):
    report = probe_stream(udp_only_server.url("cam1"), transport="auto")
    assert report.recordable and report.transport == "udp" and report.packets_seen > 10
    refused = probe_stream(udp_only_server.url("cam1"), transport="tcp")
    assert not refused.recordable and not refused.connected
    assert "the camera refused RTP over TCP (461 Unsupported Transport)" in refused.reason
    assert "use transport udp or auto" in refused.reason


def test_udp_only_camera_is_recorded_with_transport_auto(
    data_dir, udp_only_server, caplog  # noqa: F811 - data_dir is the imported fixture
):
    stream_id = add_camera(data_dir, "udp", udp_only_server.url("cam1"))
    caplog.set_level(logging.INFO)
    daemon = start_daemon(data_dir)
    try:
        streamer = daemon.streamers[0]
        wait_for(lambda: streamer.status().frames >= 90, 15, "3 s of frames over UDP")
        assert streamer.status().errors == 0, streamer.status()
    finally:
        assert daemon.shutdown() == 0
    assert any("connected to" in r.getMessage() and "RTSP over UDP" in r.getMessage()
               for r in caplog.records)
    assert_orderly(data_dir)
    assert len(assert_runs_well_formed(data_dir, stream_id)) == 1


def test_probe_says_the_camera_refused_the_password(auth_server):
    report = probe_stream(auth_server.url("cam1"), "viewer", "wrong")
    assert not report.recordable
    assert report.reason == "the camera refused the username/password (401 Unauthorized)"
    assert "wrong" not in json.dumps(report.as_dict())
    assert probe_stream(auth_server.url("cam1"), "viewer", "s3cret").recordable


@pytest.fixture
def silent_camera():
    """A TCP server that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_camera_that_never_answers_is_reported_as_such(silent_camera):
    started = time.monotonic()
    report = probe_stream(f"rtsp://127.0.0.1:{silent_camera}/cam", timeout_sec=1.5)
    took = time.monotonic() - started
    assert not report.recordable
    assert report.reason == f"no answer from 127.0.0.1:{silent_camera} within 1.5 s", report
    assert "Invalid data" not in report.reason
    assert took < 5, f"took {took:.1f} s"


def encode_file(path: str, codec: str, pix_fmt: str, frames: int = 10) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, pix_fmt
        stream.codec_context.time_base = Fraction(1, 10)
        if codec == "libx265":
            stream.options = {"preset": "ultrafast", "x265-params": "log-level=none"}
        for i in range(frames):
            image = np.full((120, 160, 3), (i * 20) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_an_mjpeg_camera_is_not_recordable_and_says_why(tmp_path):
    path = str(tmp_path / "mjpeg.mkv")
    encode_file(path, "mjpeg", "yuvj420p")
    report = probe_stream(path)
    assert report.codec == "mjpeg" and report.transport is None and report.width == 160
    assert not report.recordable and report.reason == (
        f"the camera sends MJPEG; moonfire records {recordable_codec_names()} only: "
        "set the camera's stream to one of those")


def test_h265_is_recordable_as_the_codec_package_says(tmp_path):
    path = str(tmp_path / "h265.mp4")
    encode_file(path, "libx265", "yuv420p")
    with av.open(path) as container:
        extradata = bytes(container.streams.video[0].codec_context.extradata or b"")
    assert "hevc" in RECORDABLE_CODECS
    assert sample_entry_from_extradata(extradata, "hevc").width == 160
    report = probe_stream(path)
    assert report.codec == "hevc" and report.recordable and report.reason is None, report
    assert "video:      H.265" in "\n".join(report.describe())


def test_cli_probe_prints_the_report_and_exits_by_recordability(auth_server, capsys,
                                                                monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    code, out, err = moonfire(capsys, "camera", "probe", auth_server.url("cam1"),
                              "--username", "viewer", "--password-stdin")
    assert (code, err) == (0, ""), out
    assert "video:      H.264 (Constrained Baseline), 320x240, 30 fps, B-frames: no" in out
    assert "transport:  RTSP over TCP" in out and "recordable: yes" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("nope\n"))
    code, out, err = moonfire(capsys, "camera", "probe", auth_server.url("cam1"),
                              "--username", "viewer", "--password-stdin", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["recordable"] is False and "refused the username/password" in doc["reason"]


def test_camera_add_probe_refuses_what_moonfire_cannot_record(
    udp_only_server, capsys, tmp_path
):
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    url = udp_only_server.url("cam1")
    code, out, err = moonfire(capsys, "camera", "add", "cam", "--url", url, "--retain", "1GB",
                              "--transport", "tcp", "--probe", "--data-dir", path)
    assert code == 1 and "camera 'cam' not added" in err and "refused RTP over TCP" in err
    assert moonfire(capsys, "camera", "list", "--json", "--data-dir", path)[1] == "[]\n"
    code, out, err = moonfire(capsys, "camera", "add", "cam", "--url", url, "--retain", "1GB",
                              "--probe", "--data-dir", path)
    assert (code, err) == (0, ""), err
    assert "transport:  RTSP over UDP" in out and "added camera 'cam'" in out
