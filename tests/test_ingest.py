"""Ingest end to end: real RTSP (GStreamer's server), the synthetic camera, the daemon.

Each test records for a few seconds with a 2 s rotation interval, then opens
the data directory the way ``moonfire check`` does and proves the invariants:
no violations, recordings of a run abut, every recording starts with a key
frame, an orderly stop leaves no reservation rows.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from moonfire.ingest.daemon import run_cameras, start_daemon
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir
from moonfire.storage.invariants import check
from moonfire.storage.sample_file_dir import uuid_name
from moonfire_core import decode_index
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "tests" / "support" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
ROTATE_SEC = 2
RETAIN = 10**9


class RtspServer:
    """``tests/support/rtsp_server.py`` as a subprocess; ``stop``/``start`` keep the same port.
    ``flags`` go to the server as they are (``--udp-only``)."""

    def __init__(
        self, user: str | None = None, password: str | None = None, flags: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.user, self.password = user, password
        self.flags = flags
        self.process: subprocess.Popen[str] | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        args += self.flags
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "READY", or "" if it died
        if line.strip() != "READY":
            self.process.wait(5)
            raise RuntimeError(f"RTSP server failed to start: {self.process.stderr.read()}")
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), 0.2
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server not accepting connections on {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.process = None


def start_server_or_fail(server: RtspServer) -> RtspServer:
    try:
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(f"{SYSTEM_PYTHON} not found")
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.stop()
        message = (
            f"GStreamer RTSP server unavailable ({e}); install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-{base,good,ugly,bad}"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return server


@pytest.fixture
def rtsp_server():
    server = start_server_or_fail(RtspServer())
    yield server
    server.stop()


@pytest.fixture
def rtsp_auth_server():
    server = start_server_or_fail(RtspServer(user="viewer", password="s3cret:p@ss"))
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path) -> str:
    path = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(path)
    sample_file_dir.close()
    db.close()
    return path


def add_camera(data_dir: str, name: str, url: str, **kwargs) -> int:
    """Adds a camera recording ``url`` as its main stream; returns that stream's id."""
    with datadir.open_db(data_dir) as db:
        return db.add_camera(
            name, url=url, retain_bytes=RETAIN, rotate_interval_sec=ROTATE_SEC, **kwargs
        ).main.id


def assert_orderly(data_dir: str) -> None:
    with datadir.open_db(data_dir, read_only=True) as db:
        for row in db.list_sample_file_dirs():
            problems = [str(v) for v in check(db, row, hash_contents=True)]
            assert problems == []
            assert db.list_reserved_sample_files(row.id) == []


def recordings(data_dir: str, stream_id: int):
    with datadir.open_db(data_dir, read_only=True) as db:
        return db.list_recordings(stream_id)


def runs(rows) -> list[list]:
    """Recordings grouped into runs (a run starts at run_offset 0)."""
    out: list[list] = []
    for row in rows:
        if row.run_offset == 0:
            out.append([])
        out[-1].append(row)
    return out


def assert_runs_well_formed(data_dir: str, stream_id: int) -> list[list]:
    rows = recordings(data_dir, stream_id)
    grouped = runs(rows)
    with datadir.open_db(data_dir, read_only=True) as db:
        for run in grouped:
            assert [r.run_offset for r in run] == list(range(len(run)))
            for a, b in zip(run, run[1:], strict=False):
                assert b.start_time_90k == a.end_time_90k, "recordings of a run must abut"
                assert not a.has_trailing_zero
            assert run[-1].has_trailing_zero, "a run ends with a trailing zero"
            for row in run:
                index = decode_index(db.get_playback(row.composite_id).video_index)
                assert bool(index.is_key[0]), f"recording {row.composite_id} starts with a non-key"
    return grouped


def test_two_rtsp_cameras_record_rotated_abutting_runs(data_dir, rtsp_server, rtsp_auth_server):
    cam1 = add_camera(data_dir, "cam1", rtsp_server.url("cam1"))
    cam2 = add_camera(
        data_dir, "cam2", rtsp_auth_server.url("cam2"), username="viewer", password="s3cret:p@ss"
    )
    # First recording lasts 2-4 s, then one every 2 s: 11 s gives >= 3 rotations.
    assert run_cameras(data_dir, duration_sec=11) == 0
    assert_orderly(data_dir)
    for stream_id in (cam1, cam2):
        grouped = assert_runs_well_formed(data_dir, stream_id)
        assert len(grouped) == 1, "no reconnects expected"
        assert len(grouped[0]) >= 4, f"stream {stream_id}: only {len(grouped[0])} recordings"
    assert_export_across_rotations_decodes(data_dir, "cam1", recordings(data_dir, cam1))


def assert_export_across_rotations_decodes(data_dir: str, camera: str, rows) -> None:
    """An export spanning every rotation boundary of the run decodes with no frame missing."""
    with datadir.open_db(data_dir, read_only=True) as db:
        (part,) = plan_export(db, camera, rows[0].start_time_90k, rows[-1].end_time_90k)
        data = part.file.read(0, part.file.size)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        decoded = sum(len(stream.codec_context.decode(p)) for p in packets)
        decoded += len(stream.codec_context.decode(None))
    expected = sum(r.video_samples for r in rows)
    assert len(packets) == expected
    assert decoded == expected, f"decoded {decoded} of {expected} frames"
    pts = [p.pts for p in packets]
    assert pts == sorted(pts) and len(set(pts)) == len(pts), "frames out of order or repeated"


def test_server_killed_mid_run_reconnects_into_a_new_run(data_dir, rtsp_server):
    cam = add_camera(data_dir, "cam1", rtsp_server.url("cam1"))
    daemon = start_daemon(data_dir)
    try:
        streamer = daemon.streamers[0]
        wait_for(lambda: streamer.status().frames > 60, 10, "first session recording")
        rtsp_server.stop()
        wait_for(lambda: not streamer.status().connected, 15, "session to end")
        time.sleep(0.5)
        rtsp_server.start()
        frames_before = streamer.status().frames
        wait_for(lambda: streamer.status().frames > frames_before + 60, 15, "reconnection")
        assert streamer.status().errors >= 1
    finally:
        assert daemon.shutdown() == 0
    assert_orderly(data_dir)
    grouped = assert_runs_well_formed(data_dir, cam)
    assert len(grouped) == 2
    gap = grouped[1][0].start_time_90k - grouped[0][-1].end_time_90k
    assert gap > 0, "the new run starts after a gap"


def test_wrong_password_is_logged_and_retried_without_recording(
    data_dir, rtsp_auth_server, caplog
):
    cam = add_camera(
        data_dir, "cam2", rtsp_auth_server.url("cam2"), username="viewer", password="wrong-pw"
    )
    caplog.set_level(logging.WARNING)
    daemon = start_daemon(data_dir)
    try:
        streamer = daemon.streamers[0]
        wait_for(lambda: streamer.status().errors >= 2, 10, "two failed attempts")  # 1 s back-off
        status = streamer.status()
        assert not status.connected and status.frames == 0
        assert "401" in status.last_error and status.last_error_time is not None
    finally:
        assert daemon.shutdown() == 0
    lines = [r.getMessage() for r in caplog.records if "stream cam2/main:" in r.getMessage()]
    assert any("401 Unauthorized" in line and "retrying" in line for line in lines), lines
    assert not any("wrong-pw" in r.getMessage() for r in caplog.records), "password logged"
    assert recordings(data_dir, cam) == []
    assert_orderly(data_dir)


def test_sigterm_to_moonfire_run_shuts_down_in_order(data_dir):
    cam = add_camera(data_dir, "synthetic", "testsrc://?size=320x240&fps=30&gop=30")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(5)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert_orderly(data_dir)
    grouped = assert_runs_well_formed(data_dir, cam)
    assert len(grouped) == 1 and grouped[0], "the open recording was saved on SIGTERM"


@pytest.fixture
def http_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def make_audio_only_file(path: str) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 8000
        for i in range(8):
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_bad_sources_give_clear_errors_and_lose_nothing(data_dir, tmp_path, http_url, caplog):
    good = add_camera(data_dir, "good", "testsrc://?size=320x240&fps=30&gop=30")
    # Something recorded before the bad cameras exist must survive them.
    assert run_cameras(data_dir, duration_sec=3) == 0
    before = recordings(data_dir, good)
    assert before
    audio = str(tmp_path / "audio.m4a")
    make_audio_only_file(audio)
    text = tmp_path / "notes.txt"
    text.write_text("this is not a camera\n")
    bad = {
        "closed-port": f"rtsp://127.0.0.1:{free_port()}/cam",
        "http": http_url,
        "text-file": str(text),
        "audio-only": audio,
    }
    for name, url in bad.items():
        add_camera(data_dir, name, url)
    caplog.set_level(logging.WARNING)
    daemon = start_daemon(data_dir)
    try:
        streamers = {s.camera.short_name: s for s in daemon.streamers}
        assert sorted(streamers) == sorted([*bad, "good"])  # one (main) stream each
        wait_for(
            lambda: all(streamers[name].status().errors >= 1 for name in bad),
            15, "every bad camera to fail",
        )
        # The bad cameras can fail before the good one has its first frame: wait for it to
        # record some, so that "recording goes on beside them" is what is checked.
        wait_for(
            lambda: streamers["good"].status().frames >= 30,
            15, "the good camera to record a second",
        )
        statuses = {name: s.status() for name, s in streamers.items()}
    finally:
        assert daemon.shutdown() == 0
    assert "Connection refused" in statuses["closed-port"].last_error
    assert "no video stream (streams found: audio)" in statuses["audio-only"].last_error
    assert "can't open" in statuses["text-file"].last_error
    assert statuses["http"].last_error
    for name in bad:
        assert statuses[name].frames == 0
        assert any(
            r.getMessage().startswith(f"stream {name}/main: ") for r in caplog.records
        ), f"no log line for {name}"
    after = recordings(data_dir, good)
    assert after[: len(before)] == before
    assert len(after) > len(before)
    assert_orderly(data_dir)


def test_synthetic_camera_recordings_decode(data_dir):
    cam = add_camera(data_dir, "synthetic", "testsrc://?size=320x240&fps=30&gop=15")
    assert run_cameras(data_dir, duration_sec=5) == 0
    assert_orderly(data_dir)
    grouped = assert_runs_well_formed(data_dir, cam)
    decoded = 0
    samples = 0
    with datadir.open_db(data_dir, read_only=True) as db:
        sample_file_dir_path = db.sample_file_dir(db.get_stream(cam).sample_file_dir_id).path
        for row in grouped[0]:
            entry = db.get_video_sample_entry(row.video_sample_entry_id)
            decoder = av.CodecContext.create("h264", "r")
            decoder.extradata = entry.data[86 + 8 :]  # avc1's fixed part, then the avcC box
            playback = db.get_playback(row.composite_id)
            data = Path(sample_file_dir_path, uuid_name(playback.sample_file_uuid)).read_bytes()
            index = decode_index(playback.video_index)
            for pos, size in zip(index.positions, index.sizes, strict=True):
                packet = av.Packet(data[int(pos) : int(pos) + int(size)])
                frames = decoder.decode(packet)
                decoded += len(frames)
                assert all(f.width == 320 and f.height == 240 for f in frames)
            decoded += len(decoder.decode(None))
            samples += row.video_samples
    assert samples >= 4 * 30
    assert decoded == samples, "every recorded sample decodes to a frame"


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_second_daemon_on_a_locked_data_dir_fails_clearly_and_first_keeps_recording(data_dir):
    cam = add_camera(data_dir, "synthetic", "testsrc://?size=320x240&fps=30&gop=30")
    first = start_daemon(data_dir)
    try:
        with pytest.raises(OSError, match="in use|lock|busy") as raised:
            start_daemon(data_dir)
        assert data_dir in str(raised.value) or "sample" in str(raised.value)
        wait_for(lambda: first.streamers[0].status().frames > 30, 10, "first daemon recording")
    finally:
        assert first.shutdown() == 0
    assert_orderly(data_dir)
    assert len(assert_runs_well_formed(data_dir, cam)) == 1


class _UnstoppableSource:
    """A camera read that ignores ``interrupt()``: blocks until the test releases it."""

    url = "fake://stuck"
    width, height = 1920, 1080

    def __init__(self, extradata: bytes, release: threading.Event) -> None:
        self.extradata = extradata
        self._release = release
        self.reading = threading.Event()

    def packets(self):
        self.reading.set()
        self._release.wait(30)
        return iter(())

    def interrupt(self) -> None:
        pass  # the point: a read that does not notice

    def close(self) -> None:
        pass


def test_stuck_streamer_leaves_storage_open_and_shutdown_fails(
    data_dir, testdata, monkeypatch, caplog
):
    """Closing the syncer, directory and database under a live streamer could corrupt them."""
    add_camera(data_dir, "stuck", "fake://stuck")
    release = threading.Event()
    source = _UnstoppableSource((testdata / "avc1_1920x1080").read_bytes()[94:], release)
    monkeypatch.setattr("moonfire.ingest.daemon.STREAMER_JOIN_TIMEOUT_SEC", 0.2)
    daemon = start_daemon(data_dir, source_factory=lambda *_: source)
    try:
        assert source.reading.wait(10), "the streamer never started reading"
        assert daemon.shutdown() != 0
        assert any(
            r.levelno == logging.ERROR and "stuck" in r.getMessage() for r in caplog.records
        )
        assert daemon.db.list_cameras(), "the database was closed under a running streamer"
        daemon.syncer.flush(5)  # raises SyncerStoppedError if it was closed under the streamer
        with pytest.raises(OSError):
            start_daemon(data_dir)  # the sample file directory is still locked
    finally:
        release.set()
        assert daemon.streamers[0].join(10)
        for syncer in daemon.syncers.values():
            syncer.close()
        for sample_file_dir in daemon.sample_file_dirs.values():
            sample_file_dir.close()
        daemon.db.close()
    assert_orderly(data_dir)
