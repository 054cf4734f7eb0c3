"""Packets from sources: merged pieces keep their time of receipt, credentials are whole;
files are read like cameras; clocks that jump (issue 10 §3, §5).

Brief §3.2: a frame's local time is the (monotonic-derived) wall time it was
*received*.  ``AvSource`` holds each packet until the next pts arrives, so the
time must be taken when its first piece is read and carried to the streamer.

A file used as a camera is read at its native rate, starts its run at the wall
clock and ends with the file (state ``ended``, never reopened).  A camera whose
timestamps jump mid-session starts a new run; a stepped wall clock moves only the
next session, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from moonfire.ingest import sources
from moonfire.ingest.daemon import start_daemon
from moonfire.ingest.sources import (
    Source,
    SourceError,
    SourcePacket,
    TestPatternSource,
    merge_same_pts,
    open_source,
    pace,
    redact_url,
    with_credentials,
)
from moonfire.ingest.status_file import ENDED
from moonfire.ingest.streamer import Streamer
from moonfire.storage import data_dir as datadir
from moonfire.time import TIME_UNITS_PER_SEC
from tests.test_ingest import RtspServer, start_server_or_fail

PACKET_SPACING_NS = 10_000_000  # 10 ms = exactly 900 ticks of 90 kHz


def test_merged_pieces_keep_the_first_pieces_receipt_time():
    pieces = [
        SourcePacket(b"a1", 0, True, received_ns=1_000),
        SourcePacket(b"a2", 0, False, received_ns=1_500),
        SourcePacket(b"b", 3000, False, received_ns=2_000),
        SourcePacket(b"c1", 6000, False, received_ns=3_000),
        SourcePacket(b"c2", 6000, True, b"new", received_ns=3_700),
    ]
    assert list(merge_same_pts(pieces)) == [
        SourcePacket(b"a1a2", 0, True, received_ns=1_000),
        SourcePacket(b"b", 3000, False, received_ns=2_000),
        SourcePacket(b"c1c2", 6000, True, b"new", received_ns=3_000),
    ]


class _RecordedWrites:
    """Stands in for ``StreamRecorder``: keeps what the streamer hands it."""

    recordings_closed = 0

    def __init__(self) -> None:
        self.local_times_90k: list[int] = []
        self.session_ended = threading.Event()

    def write(self, data, local_time_90k, pts_90k, is_key, entry_id, **_) -> None:
        self.local_times_90k.append(local_time_90k)

    def end_run(self) -> None:
        self.session_ended.set()


class _HeldBackSource:
    """Yields packets stamped 10 s before they are handed on, like a slow merge would."""

    url = "fake://camera"
    width, height = 1920, 1080

    def __init__(self, extradata: bytes, received: list[int | None]) -> None:
        self.extradata = extradata
        self._received = received

    def packets(self) -> Iterator[SourcePacket]:
        for i, received_ns in enumerate(self._received):
            yield SourcePacket(b"\x00\x00\x00\x01\x65", i * 3000, i == 0, received_ns=received_ns)

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_streamer_stamps_packets_with_their_receipt_time_not_the_hand_over_time(
    tmp_path, testdata
):
    avcc = (testdata / "avc1_1920x1080").read_bytes()[94:]
    received_at = time.monotonic_ns() - 10 * 10**9
    received: list[int | None] = [received_at + i * PACKET_SPACING_NS for i in range(5)]
    received.append(None)  # a source that yields at once: stamped on arrival
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    try:
        camera = db.add_camera("front", url="fake://", retain_bytes=10**9, rotate_interval_sec=60)
        streamer = Streamer(
            camera, camera.main, db, syncer=None,  # the stand-in recorder never reaches it
            source_factory=lambda *_: _HeldBackSource(avcc, received),
        )
        writes = streamer.recorder = _RecordedWrites()
        streamer.start()
        assert writes.session_ended.wait(10), "the session did not end"
        streamer.stop()
        assert streamer.join(10)
    finally:
        sample_file_dir.close()
        db.close()
    times = writes.local_times_90k[: len(received)]
    assert [b - a for a, b in zip(times, times[1:4], strict=False)] == [900] * 3
    now_90k = time.time_ns() * 9 // 100_000
    assert abs(times[0] - (now_90k - 10 * 90_000)) < 90_000, "not the time of receipt"
    assert abs(times[-1] - now_90k) < 90_000, "a packet without receipt time is stamped now"


def test_password_without_username_is_refused_not_dropped():
    with pytest.raises(SourceError, match="password is configured without a username") as info:
        with_credentials("rtsp://cam.example/stream", None, "s3cret")
    assert "s3cret" not in str(info.value)
    with pytest.raises(SourceError, match="without a username"):
        open_source("rtsp://cam.example/stream", "", "s3cret")


def test_credentials_go_into_the_userinfo_percent_encoded():
    url = with_credentials("rtsp://old@cam.example:554/s", "view er", "p@ss:w")
    assert url == "rtsp://view%20er:p%40ss%3Aw@cam.example:554/s"


def test_redact_url_copes_with_a_url_that_does_not_parse():
    assert redact_url("rtsp://admin:s3cret@[::1") == "rtsp://admin:***@[::1"
    assert redact_url("rtsp://[::1") == "rtsp://[::1"


# ---- frames cut off by a disconnect ---------------------------------------------------


def test_a_live_streams_last_frame_is_dropped_a_files_kept():
    """Only a frame whose successor began is known complete; a file's end completes its last."""
    pieces = [
        SourcePacket(b"a", 0, True),
        SourcePacket(b"b1", 3000, False),
        SourcePacket(b"b2", 3000, False),  # the link dropped here: b may be cut off
    ]
    assert [p.data for p in merge_same_pts(pieces, last_is_complete=False)] == [b"a"]
    assert [p.data for p in merge_same_pts(pieces, last_is_complete=True)] == [b"a", b"b1b2"]

    def failing():
        yield from pieces
        raise SourceError("rtsp://cam", "read failed: Connection reset by peer")

    got = []
    with pytest.raises(SourceError):
        got.extend(p.data for p in merge_same_pts(failing(), last_is_complete=True))
    assert got == [b"a"]


# ---- a camera gone silent ------------------------------------------------------------


def test_a_camera_gone_silent_mid_stream_fails_the_read_within_two_socket_timeouts(
    monkeypatch,
):
    """RTSP reads are bounded by FFmpeg's own socket timeout, not PyAV's read timeout (whose
    check takes the GIL at every socket wait: issue 13).  A camera that stops sending mid-stream
    (its process stopped, the TCP connection still open) must still end the session, with
    "read failed" naming the camera, after two socket timeouts (the first only flushes the
    frame FFmpeg's parser held back): ``READ_TIMEOUT_SEC`` with the default of half of it."""
    monkeypatch.setattr(sources, "RTSP_SOCKET_TIMEOUT_SEC", 1.0)
    server = start_server_or_fail(RtspServer())
    assert server.process is not None
    stopped_at: float | None = None
    try:
        source = open_source(server.url("cam1"), transport="tcp")
        try:
            with pytest.raises(SourceError) as raised:
                for number, _ in enumerate(source.packets()):
                    if number == 10:
                        os.kill(server.process.pid, signal.SIGSTOP)
                        stopped_at = time.monotonic()
            silent_sec = time.monotonic() - (stopped_at or 0.0)
        finally:
            source.close()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
    assert stopped_at is not None, "the camera sent fewer than 11 frames"
    assert 1.0 <= silent_sec < 6.0, silent_sec
    assert str(raised.value).startswith(f"{server.url('cam1')}: read failed: "), raised.value


# ---- files as cameras -----------------------------------------------------------------

FILE_FPS = 30
FILE_FRAMES = 60  # 2 s


@pytest.fixture(scope="module")
def two_second_file(tmp_path_factory) -> str:
    """2 s of 160x120 H.264 at 30 fps, a key frame every 15, in an MPEG-TS file."""
    path = str(tmp_path_factory.mktemp("file-camera") / "clip.ts")
    with av.open(path, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FILE_FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.gop_size = 15
        stream.codec_context.max_b_frames = 0
        stream.codec_context.time_base = Fraction(1, FILE_FPS)
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(FILE_FRAMES):
            frame = av.VideoFrame.from_ndarray(
                np_frame(i, 160, 120), format="yuv420p"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def np_frame(i: int, width: int, height: int):
    import numpy as np

    image = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    image[:height, (i * 2) % width] = 235
    return image


def test_a_file_camera_is_read_at_its_rate_from_the_wall_clock_and_ends_with_the_file(
    tmp_path, two_second_file
):
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    stream_id = db.add_camera("file", url=two_second_file, retain_bytes=10**9,
                              rotate_interval_sec=60).main.id
    db.close()
    started_90k = time.time_ns() * 9 // 100_000
    started = time.monotonic()
    daemon = start_daemon(data_dir)
    try:
        streamer = daemon.streamers[0]
        deadline = time.monotonic() + 15
        while not streamer.ended:
            assert time.monotonic() < deadline, streamer.status()
            time.sleep(0.02)
        took = time.monotonic() - started
        assert streamer.join(5), "the streamer thread goes once the file ended"
        status = streamer.status()
        doc = daemon.status_doc(True)
        assert not daemon.no_camera_can_record(), "an ended file is no reason to exit"
    finally:
        assert daemon.shutdown() == 0
    assert took >= 0.9 * FILE_FRAMES / FILE_FPS, f"read in {took:.2f} s: not at its native rate"
    assert status.state == ENDED and status.errors == 0, status  # opened once, never again
    assert f"ended after {FILE_FRAMES} frames" in status.reason
    assert doc["streams"][0]["state"] == ENDED
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(stream_id)
    assert sum(r.video_samples for r in rows) == FILE_FRAMES, "every frame, the last included"
    assert [r.run_offset for r in rows] == list(range(len(rows))), "one run"
    assert abs(rows[0].start_time_90k - started_90k) < TIME_UNITS_PER_SEC, "not the wall clock"
    duration_90k = rows[-1].end_time_90k - rows[0].start_time_90k
    assert abs(duration_90k - 2 * TIME_UNITS_PER_SEC) < TIME_UNITS_PER_SEC // 10
    assert rows[-1].end_time_90k <= time.time_ns() * 9 // 100_000, "stamped in the future"


def test_realtime_false_reads_a_file_at_full_speed_for_the_benchmark(two_second_file):
    started = time.monotonic()
    with open_source(two_second_file, realtime=False) as source:
        assert source.finite and source.transport is None
        packets = list(source.packets())
    assert len(packets) == FILE_FRAMES
    assert time.monotonic() - started < 0.5 * FILE_FRAMES / FILE_FPS


def test_pace_hands_packets_on_at_their_presentation_times():
    packets = [SourcePacket(b"x", i * 900, i == 0, received_ns=1) for i in range(11)]  # 10 ms
    started = time.monotonic_ns()
    paced = list(pace(packets, threading.Event()))
    elapsed_ns = time.monotonic_ns() - started
    assert elapsed_ns >= 100_000_000
    assert all(p.received_ns >= started for p in paced), "stamped when handed on"
    assert all(p.received_ns >= started + i * 10_000_000 for i, p in enumerate(paced)), (
        "a packet handed on before its time")
    stop = threading.Event()
    stop.set()
    assert len(list(pace(packets, stop))) == 1, "stop ends it at the first wait"


# ---- clocks that jump ----------------------------------------------------------------


class _ScriptedPattern(Source):
    """``count`` frames of the synthetic camera (real H.264, real time), their pts moved by
    ``jump_90k`` from frame ``jump_at`` on; then the stream ends (as a dropped link does)."""

    def __init__(self, count: int, jump_at: int | None = None, jump_90k: int = 0) -> None:
        self._inner = TestPatternSource("testsrc://?size=160x120&fps=30&bitrate=100k&gop=10")
        self.url = "testsrc://scripted"
        self.extradata = self._inner.extradata
        self.width, self.height = self._inner.width, self._inner.height
        self._count, self._jump_at, self._jump_90k = count, jump_at, jump_90k

    def packets(self) -> Iterator[SourcePacket]:
        for i, packet in enumerate(self._inner.packets()):
            if i == self._count:
                return
            if self._jump_at is not None and i >= self._jump_at:
                dts = getattr(packet, "dts_90k", None)
                packet = dataclasses.replace(packet, pts_90k=packet.pts_90k + self._jump_90k)
                if dts is not None:
                    packet = dataclasses.replace(packet, dts_90k=dts + self._jump_90k)
            yield packet

    def interrupt(self) -> None:
        self._inner.interrupt()

    def close(self) -> None:
        self._inner.close()


def record_sessions(tmp_path: Path, sources: list[Source], **streamer_options):
    """Run a real ``Streamer`` (real syncer) over ``sources``, one per session; its runs."""
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    syncer = sample_file_dir.start_syncer()
    try:
        camera = db.add_camera("cam", url="testsrc://", retain_bytes=10**9,
                               rotate_interval_sec=60)
        remaining = list(sources)
        streamer = Streamer(camera, camera.main, db, syncer,
                            source_factory=lambda *_: remaining.pop(0), **streamer_options)
        streamer.start()
        deadline = time.monotonic() + 20
        while remaining or streamer.status().errors < len(sources):  # each ends: an error
            assert time.monotonic() < deadline, streamer.status()
            time.sleep(0.02)
        streamer.stop()
        assert streamer.join(10)
        syncer.flush()
        rows = db.list_recordings(camera.main.id)
    finally:
        syncer.close()
        sample_file_dir.close()
        db.close()
    runs: list[list] = []
    for row in rows:
        if row.run_offset == 0:
            runs.append([])
        runs[-1].append(row)
    return runs


@pytest.mark.parametrize("jump_sec", [20, -20], ids=["forward", "back"])
def test_camera_timestamps_jumping_mid_session_start_a_new_run(tmp_path, caplog, jump_sec):
    caplog.set_level(logging.WARNING)
    runs = record_sessions(
        tmp_path, [_ScriptedPattern(60, jump_at=30, jump_90k=jump_sec * TIME_UNITS_PER_SEC)]
    )
    assert len(runs) == 2, runs
    for run in runs:
        duration_90k = run[-1].end_time_90k - run[0].start_time_90k
        assert duration_90k < 1.5 * TIME_UNITS_PER_SEC, "the jump went into a recording"
    assert runs[1][0].start_time_90k >= runs[0][-1].end_time_90k
    assert sum(r.video_samples for run in runs for r in run) >= 50  # up to a GOP waits
    messages = [r.getMessage() for r in caplog.records]
    jumps = [float(m.split(" by ")[1].split(" s ")[0]) for m in messages
             if m.startswith("stream cam/main: camera timestamps jumped by ")]
    assert len(jumps) == 1 and abs(jumps[0] - jump_sec) < 0.5, messages


def test_a_stepped_wall_clock_moves_only_the_next_session_with_a_warning(tmp_path, caplog):
    step_ns = 3600 * 10**9
    calls = []

    def wall_clock_ns() -> int:
        """The real clock, stepped an hour forward just after the first session read it."""
        calls.append(None)
        return time.time_ns() + (step_ns if len(calls) > 1 else 0)

    caplog.set_level(logging.WARNING)
    started_90k = time.time_ns() * 9 // 100_000
    runs = record_sessions(
        tmp_path, [_ScriptedPattern(20), _ScriptedPattern(20)], wall_clock_ns=wall_clock_ns
    )
    assert len(runs) == 2
    first, second = runs[0][0], runs[1][0]
    assert abs(first.start_time_90k - started_90k) < 2 * TIME_UNITS_PER_SEC, "kept its anchor"
    assert runs[0][-1].end_time_90k - first.start_time_90k < 2 * TIME_UNITS_PER_SEC
    moved_90k = second.start_time_90k - runs[0][-1].end_time_90k
    assert 3600 * TIME_UNITS_PER_SEC < moved_90k < 3603 * TIME_UNITS_PER_SEC
    warnings = [r.getMessage() for r in caplog.records if "wall clock moved" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("stream cam/main: the wall clock "
                                                         "moved by +3600.0"), warnings


def test_redact_url_hides_a_password_given_in_the_path_or_query():
    # XMeye-style cameras and others take the credentials as parameters, not userinfo.
    assert redact_url("rtsp://cam:554/user=admin&password=s3cret&channel=1&stream=0.sdp") == (
        "rtsp://cam:554/user=admin&password=***&channel=1&stream=0.sdp")
    assert redact_url("rtsp://cam/live?user=admin&PWD=s3cret") == "rtsp://cam/live?user=admin&PWD=***"
    assert redact_url("rtsp://a:b@cam/x;pass=c") == "rtsp://a:***@cam/x;pass=***"
    assert redact_url("rtsp://cam/passage=1") == "rtsp://cam/passage=1"  # not a password
