"""Packets from sources: merged pieces keep their time of receipt, credentials are whole.

Brief §3.2: a frame's local time is the (monotonic-derived) wall time it was
*received*.  ``AvSource`` holds each packet until the next pts arrives, so the
time must be taken when its first piece is read and carried to the streamer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from moonfire.ingest.sources import (
    SourceError,
    SourcePacket,
    merge_same_pts,
    open_source,
    with_credentials,
)
from moonfire.ingest.streamer import Streamer
from moonfire.storage import data_dir as datadir

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

    def write(self, data, local_time_90k, pts_90k, is_key, entry_id) -> None:
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
