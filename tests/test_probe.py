"""``probe_stream`` / ``moonfire camera probe`` / ``camera add --probe``, and transports
(issue 10 §4), against cameras the test starts: GStreamer's RTSP server (plain, with
digest authentication, UDP-only), a scripted camera (an SDP with audio, or MJPEG), a socket
that accepts and never answers, and files in codecs moonfire can't record.

The probe opens an ``rtsp://`` camera with the client recording would use (moonfire's own over
TCP unless ``MOONFIRE_RTSP_CLIENT=ffmpeg``), so the GStreamer cameras are probed with both and
the reports compared: they must agree but for the client's name, the packet count (the read
window is timed) and, without credentials, the 401's wording (moonfire's says they're missing).
"""

from __future__ import annotations

import base64
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
from moonfire.ingest.probe import PACKET_LIMIT, ProbeReport, probe_stream
from moonfire.ingest.sources import RTSP_CLIENT_ENV
from tests.support.cli import moonfire
from tests.support.fake_rtsp import FakeCamera
from tests.test_ingest import (  # the GStreamer server and the daemon's data dir
    RtspServer,
    add_camera,
    assert_orderly,
    assert_runs_well_formed,
    data_dir,  # noqa: F401 - fixture
    start_server_or_fail,
    wait_for,
)
from tests.test_rtsp_client import access_units  # noqa: F401 - fixture: 1.5 s of H.264

CLIENTS = ("moonfire", "ffmpeg")
#: gst-rtsp-server answers 5XX (503 to DESCRIBE) to a client that comes while the shared media
#: of a session just ended (a refused SETUP included) unprepares: tests that probe one mount of
#: the UDP-only server twice wait this long in between.  Real cameras don't; recording retries.
UNPREPARE_SEC = 1.0


@pytest.fixture(autouse=True)
def default_rtsp_client(monkeypatch):
    """Every test starts with the default client, whatever the environment running it says."""
    monkeypatch.delenv(RTSP_CLIENT_ENV, raising=False)


def probe_with(client: str, monkeypatch, *args, **kwargs) -> ProbeReport:
    """``probe_stream`` with ``MOONFIRE_RTSP_CLIENT`` set to ``client``."""
    monkeypatch.setenv(RTSP_CLIENT_ENV, client)
    try:
        return probe_stream(*args, **kwargs)
    finally:
        monkeypatch.delenv(RTSP_CLIENT_ENV)


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
    assert report.rtsp_client == "moonfire"  # recording uses moonfire's client over TCP
    assert "transport:  RTSP over TCP (moonfire's client)" in report.describe()
    doc = report.as_dict()
    assert json.loads(json.dumps(doc)) == doc and doc["audio"] == []
    assert doc["rtsp_client"] == "moonfire"


#: What each GStreamer mount must show, whichever client probes it.
MOUNTS = {
    "cam1": {"codec": "h264", "profile": "Constrained Baseline", "b_frames": False},
    "bframes": {"codec": "h264", "profile": "High", "b_frames": True},
    "h265": {"codec": "hevc", "profile": "Main", "b_frames": False},
    "audio": {"codec": None, "reason": "no video stream (streams found: audio)"},
}


@pytest.mark.parametrize("mount", MOUNTS)
def test_both_rtsp_clients_report_a_camera_alike(server, mount, monkeypatch):
    reports = {}
    for client in CLIENTS:
        if reports:  # the server answers 503 while it takes down the media just left
            time.sleep(UNPREPARE_SEC)
        reports[client] = probe_with(client, monkeypatch, server.url(mount))
    docs = {client: report.as_dict() for client, report in reports.items()}
    for client, doc in docs.items():
        assert doc["rtsp_client"] == client, doc
        assert doc["connected"] and doc["transport"] == "tcp", doc
        expected = MOUNTS[mount]
        assert {key: doc[key] for key in expected} == expected, doc
        if doc["codec"] is not None:
            assert doc["recordable"] and (doc["width"], doc["height"]) == (320, 240), doc
            assert doc["frame_rate"] == 30.0 and 10 < doc["packets_seen"] <= PACKET_LIMIT, doc
    # Differences justified: the client's name, and how many packets a timed window caught.
    for doc in docs.values():
        del doc["rtsp_client"], doc["packets_seen"]
    assert docs["moonfire"] == docs["ffmpeg"]


def test_probe_of_an_audio_only_stream_says_there_is_no_video(server):
    report = probe_stream(server.url("audio"))
    assert not report.recordable and report.connected
    assert report.reason == "no video stream (streams found: audio)"
    assert report.audio == ("pcm_s16be",)


def test_udp_only_camera_auto_falls_back_to_udp_and_tcp_says_why_not(udp_only_server,
                                                                     monkeypatch):
    report = probe_stream(udp_only_server.url("cam1"), transport="auto")
    assert report.recordable and report.transport == "udp" and report.packets_seen > 10
    assert report.rtsp_client == "ffmpeg"  # refused by moonfire's, read by libavformat's
    time.sleep(UNPREPARE_SEC)
    refused = probe_stream(udp_only_server.url("cam1"), transport="tcp")
    assert not refused.recordable and not refused.connected
    assert "the camera refused RTP over TCP (461 Unsupported Transport)" in refused.reason
    assert "use transport udp or auto" in refused.reason
    time.sleep(UNPREPARE_SEC)
    assert probe_with("ffmpeg", monkeypatch, udp_only_server.url("cam1"),
                      transport="tcp").reason == refused.reason


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


@pytest.mark.parametrize("client", CLIENTS)
def test_probe_says_the_camera_refused_the_password(auth_server, client, monkeypatch):
    report = probe_with(client, monkeypatch, auth_server.url("cam1"), "viewer", "wrong")
    assert not report.recordable and not report.connected
    assert report.reason == "the camera refused the username/password (401 Unauthorized)"
    assert "wrong" not in json.dumps(report.as_dict())
    assert probe_with(client, monkeypatch, auth_server.url("cam1"), "viewer", "s3cret").recordable


def test_moonfire_client_says_a_camera_wants_credentials_none_were_given(auth_server):
    # libavformat says "refused" here too; moonfire's client knows it sent none.
    report = probe_stream(auth_server.url("cam1"))
    assert not report.recordable and report.reason == (
        "the camera asks for a username/password (401 Unauthorized); set them")


def test_an_unknown_rtsp_client_is_the_reason_given(monkeypatch):
    monkeypatch.setenv(RTSP_CLIENT_ENV, "vlc")
    report = probe_stream("rtsp://127.0.0.1:9/cam")
    assert not report.recordable and report.reason == (
        "unknown RTSP client 'vlc' (one of moonfire, ffmpeg)")


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


@pytest.mark.parametrize("client", CLIENTS)
def test_a_camera_that_never_answers_is_reported_as_such(silent_camera, client, monkeypatch):
    started = time.monotonic()
    report = probe_with(client, monkeypatch, f"rtsp://127.0.0.1:{silent_camera}/cam",
                        timeout_sec=1.5)
    took = time.monotonic() - started
    assert not report.recordable
    assert report.reason == f"no answer from 127.0.0.1:{silent_camera} within 1.5 s", report
    assert "Invalid data" not in report.reason
    assert took < 5, f"took {took:.1f} s"


class DescribingCamera(FakeCamera):
    """The scripted camera with an SDP of the test's choosing (its video still H.264 PT 96)."""

    def __init__(self, sdp_media: list[str], *args, **kwargs) -> None:
        self.sdp_media = sdp_media
        super().__init__(*args, **kwargs)

    def _sdp(self) -> bytes:
        lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=fake", "t=0 0", *self.sdp_media]
        return ("\r\n".join(lines) + "\r\n").encode()


def h264_media(parameter_sets: list[bytes], *extra: str) -> list[str]:
    sprops = ",".join(base64.b64encode(p).decode() for p in parameter_sets)
    return ["m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/90000", "a=control:track1",
            f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprops}", *extra]


AUDIO_MEDIA = [
    "m=audio 0 RTP/AVP 0", "a=control:audio1",  # static: PCMU without an rtpmap
    "m=audio 0 RTP/AVP 97", "a=rtpmap:97 MPEG4-GENERIC/16000/1", "a=control:audio2",
    "m=audio 0 RTP/AVP 98", "a=rtpmap:98 opus/48000/2", "a=control:audio3",
]


def test_audio_codecs_come_from_the_sdp_and_the_frame_rate_from_the_packets(
    access_units,  # noqa: F811 - the imported fixture
):
    units, parameter_sets = access_units
    # The SDP claims 25 fps; the frames come 3000 ticks (1/30 s) apart, as recording stores them.
    media = AUDIO_MEDIA + h264_media(parameter_sets, "a=framerate:25")
    camera = DescribingCamera(media, units, parameter_sets=parameter_sets)
    try:
        report = probe_stream(camera.url, transport="tcp")
    finally:
        camera.close()
    assert report.recordable and report.rtsp_client == "moonfire", report
    assert report.audio == ("pcm_mulaw", "aac", "opus")
    assert (report.codec, report.width, report.height) == ("h264", 320, 240)
    assert report.profile == "Constrained Baseline" and report.b_frames is False
    assert report.frame_rate == 30.0 and 10 < report.packets_seen <= PACKET_LIMIT
    methods = [r.split(" ", 1)[0] for r in camera.requests]
    assert methods[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]


def test_an_mjpeg_rtsp_camera_is_described_and_refused_before_setup(
    access_units,  # noqa: F811 - the imported fixture
):
    units, parameter_sets = access_units
    media = ["m=video 0 RTP/AVP 26", "a=control:track1", "a=framerate:12.5",
             "m=audio 0 RTP/AVP 8", "a=control:audio1"]
    camera = DescribingCamera(media, units, parameter_sets=parameter_sets)
    try:
        report = probe_stream(camera.url)
    finally:
        camera.close()
    assert not report.recordable and report.reason == (
        f"the camera sends MJPEG; moonfire records {recordable_codec_names()} only: "
        "set the camera's stream to one of those")
    assert (report.connected, report.transport, report.codec) == (True, "tcp", "mjpeg")
    assert report.frame_rate == 12.5 and report.audio == ("pcm_alaw",)
    assert report.packets_seen == 0 and report.width is None  # nothing was set up or read
    assert [r.split(" ", 1)[0] for r in camera.requests] == ["OPTIONS", "DESCRIBE"]


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
    time.sleep(UNPREPARE_SEC)
    code, out, err = moonfire(capsys, "camera", "add", "cam", "--url", url, "--retain", "1GB",
                              "--probe", "--data-dir", path)
    assert (code, err) == (0, ""), err
    assert "transport:  RTSP over UDP" in out and "added camera 'cam'" in out
