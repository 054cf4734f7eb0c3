"""A camera with B-frames is recorded whole, exported and streamed live (issue 10 §1).

One real session against GStreamer's RTSP server: its ``/bframes`` mount (x264 ``bframes=2``,
High profile, 30 fps, a key frame a second) recorded for a few seconds by the daemon
``moonfire run`` uses (``run_cameras``), with a live-view subscriber attached.  Before issue 10
every B-frame's pts looked like the camera's clock going back, each GOP became its own run and
the camera kept 7% of its frames; now:

* the session is one run holding >= 95% of the frames the camera sent meanwhile, stored in
  decode order with their composition offsets (a version-2 ``video_index``);
* its export decodes in FFmpeg (PyAV) frame for frame, with strictly increasing presentation
  times from 0 (``ctts`` plus the edit list that starts at the first shown frame);
* the live view's fragments carry each frame's composition offset (``trun`` flag 0x800) and
  its decode duration, and an init segment plus those fragments decode in presentation order.

Faster tests below pin the parts: the recorder keeps a run going while pts go back and forth
and ends it when the decode time goes back; the decode times FFmpeg leaves out are filled in.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from collections.abc import Callable

import av
import numpy as np
import pytest

from moonfire.ingest.daemon import Daemon, run_cameras
from moonfire.ingest.decode_times import DecodeTimeFiller
from moonfire.ingest.live import Dropped, LiveFeeds, LiveFrame
from moonfire.ingest.recorder import StreamRecorder
from moonfire.playback import fragment
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir
from moonfire.web.live import live_message
from moonfire_core import decode_index
from tests.support.engine import BASE_TIME_90K
from tests.support.recordings import parse_boxes, parse_file, table_entries
from tests.test_ingest import (  # the GStreamer server and the daemon's data dir
    RtspServer,
    add_camera,
    assert_orderly,
    assert_runs_well_formed,
    data_dir,  # noqa: F401 - fixture
    start_server_or_fail,
)

#: How long the daemon records; the live subscriber takes what arrives in the meantime.
RECORD_SEC = 8
FPS = 30
FRAME_90K = 90_000 // FPS
#: The recorder's clock correction (brief §3.4) may lengthen or shorten a frame by a unit or
#: two (at most one unit every 2000): frames are read 0.1 s apart, so their local times jitter
#: by more than its 0.67 ms dead band.  A wrong decode time would be a whole frame off.
CLOCK_NUDGE_90K = 2


@pytest.fixture
def rtsp_server():
    server = start_server_or_fail(RtspServer())
    yield server
    server.stop()


GOP = 15


def bframe_times(frames: int) -> list[tuple[int, int, bool]]:
    """(pts, dts, is_key) of x264 ``bframes=2`` at 30 fps in decode order, as the GStreamer
    camera sends them: per closed GOP of 15, I0 P3 B1 B2 P6 B4 B5 ... P12 B10 B11 P14 B13."""
    order: list[int] = []
    for base in range(0, frames, GOP):
        gop, last = [base], base + GOP - 1
        reference = base
        while reference + 3 <= last:
            gop += [reference + 3, reference + 1, reference + 2]
            reference += 3
        if reference < last:
            gop += [last, *range(reference + 1, last)]
        order += gop
    return [
        ((shown + 2) * FRAME_90K, decoded * FRAME_90K, shown % GOP == 0)
        for decoded, shown in enumerate(order[:frames])
    ]


def test_the_recorder_keeps_b_frames_in_one_run_and_ends_it_on_decode_time(engine):
    db, sample_file_dir, entry_id = engine
    camera = db.add_camera("bframes", retain_bytes=10**9)
    times = bframe_times(120)
    assert sorted(pts for pts, _, _ in times) == [(n + 2) * FRAME_90K for n in range(120)]
    assert sum(1 for a, b in zip(times, times[1:], strict=False) if b[0] < a[0]) >= 40
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, camera.main.id, rotate_interval_sec=1)
        for number, (pts, dts, key) in enumerate(times):
            local = BASE_TIME_90K + number * FRAME_90K
            recorder.write(b"frame %d" % number, local, pts, key, entry_id, dts_90k=dts)
        assert recorder.recordings_closed >= 1, "rotated at a key frame past 1 s"
        # The camera restarts its clock: decode time goes back, and that ends the run.
        recorder.write(b"again", BASE_TIME_90K + 121 * FRAME_90K, 0, True, entry_id, dts_90k=0)
        recorder.end_run()
    rows = db.list_recordings(camera.main.id)
    assert [row.run_offset for row in rows][:-1] == list(range(len(rows) - 1))
    assert rows[-1].run_offset == 0 and rows[-1].video_samples == 1, "a new run"
    assert sum(row.video_samples for row in rows[:-1]) == 120, "every frame in the first run"
    # Each frame is shown at its pts (relative to the run's first decode time), in every
    # recording of the run.
    shown = []
    for row in rows[:-1]:
        index = decode_index(db.get_playback(row.composite_id).video_index)
        shown += (row.start_time_90k + index.starts + index.composition_offsets).tolist()
    first_dts = times[0][1]
    assert [t - rows[0].start_time_90k for t in shown] == [pts - first_dts for pts, _, _ in times]


def test_missing_decode_times_are_filled_in_before_the_first_known_one() -> None:
    """What FFmpeg gave over RTSP (media-notes §3): pts 9000, 3000, 6000 with dts None, None,
    3000; later a dts missing between two known ones."""
    filler: DecodeTimeFiller[str] = DecodeTimeFiller()
    got = []
    for name, pts, dts in [
        ("P", 9000, None), ("B", 3000, None), ("B'", 6000, 3000), ("P'", 18000, 6000),
        ("B''", 12000, 9000), ("x", 15000, None), ("y", 27000, 15000),
    ]:
        got += filler.push(name, pts, dts)
    assert got == [
        ("P", -3000), ("B", 0), ("B'", 3000), ("P'", 6000), ("B''", 9000), ("x", 12000),
        ("y", 15000),
    ]
    assert filler.finish() == []


def test_a_stream_without_any_dts_is_decoded_in_presentation_order() -> None:
    filler: DecodeTimeFiller[int] = DecodeTimeFiller()
    got = [item for n in range(40) for item in filler.push(n, n * FRAME_90K, None)]
    got += filler.finish()
    assert got == [(n, n * FRAME_90K) for n in range(40)]


class LiveSubscriber:
    """A live-view client on its own event loop: collects the stream's ``LiveFrame``s."""

    def __init__(self, feeds: LiveFeeds, stream_id: int) -> None:
        self.feeds = feeds
        self.stream_id = stream_id
        self.frames: list[LiveFrame] = []
        self.dropped = 0
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._collect()))

    def start(self) -> Callable[[], None]:
        self._thread.start()
        assert self._subscribed.wait(5), "subscriber did not start"
        return self.stop

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _collect(self) -> None:
        subscription = self.feeds.feed(self.stream_id).subscribe(max_queue=10_000)
        self._subscribed.set()
        try:
            while not self._stop.is_set():
                item = await subscription.get(timeout=0.1)
                if isinstance(item, LiveFrame):
                    self.frames.append(item)
                elif isinstance(item, Dropped):
                    self.dropped += item.frames
        finally:
            subscription.close()


def test_a_b_frame_camera_is_recorded_in_one_run_and_plays_in_order(
    data_dir, rtsp_server  # noqa: F811 - data_dir is the imported fixture
):
    stream_id = add_camera(data_dir, "bframes", rtsp_server.url("bframes"))
    feeds = LiveFeeds()
    subscriber = LiveSubscriber(feeds, stream_id)

    def on_started(daemon: Daemon) -> Callable[[], None]:
        return subscriber.start()

    assert run_cameras(data_dir, duration_sec=RECORD_SEC, live=feeds, on_started=on_started) == 0
    assert_orderly(data_dir)

    # ---- recorded: one run, in decode order, with composition offsets
    (run,) = assert_runs_well_formed(data_dir, stream_id)
    frames = sum(row.video_samples for row in run)
    seconds = sum(row.duration_90k for row in run) / 90_000
    assert seconds >= RECORD_SEC / 2, f"only {seconds:.1f} s recorded"
    # The camera sends 30 frames a second; a run lasting `seconds` holds one frame more.
    assert frames >= 0.95 * (FPS * seconds + 1), f"{frames} frames in {seconds:.2f} s"
    offsets: list[int] = []
    with datadir.open_db(data_dir, read_only=True) as db:
        for row in run:
            index = decode_index(db.get_playback(row.composite_id).video_index)
            assert index.has_composition_offsets, f"recording {row.composite_id}"
            nudged = np.abs(index.durations[:-1].astype(np.int64) - FRAME_90K)
            assert (nudged <= CLOCK_NUDGE_90K).all(), "decode-time deltas, one frame"
            offsets += index.composition_offsets.tolist()
            shown = index.starts + index.composition_offsets
            assert len(np.unique(shown)) == len(shown), "two frames shown at one time"
        entry = db.get_video_sample_entry(run[0].video_sample_entry_id)
        (part,) = plan_export(db, "bframes", run[0].start_time_90k, run[-1].end_time_90k)
        data = part.file.read(0, part.file.size)
    assert min(offsets) >= 0 and max(offsets) > 0

    # ---- exported: ctts holds the offsets, FFmpeg decodes every frame in presentation order
    ctts = parse_file(data).find("moov/trak/mdia/minf/stbl/ctts")
    assert table_entries(ctts, ">II") == [(1, offset) for offset in offsets]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.profile == "High"
        packets = [p for p in container.demux(stream) if p.size]
        decoded = [f for p in packets for f in stream.codec_context.decode(p)]
        decoded += stream.codec_context.decode(None)
    assert len(packets) == len(decoded) == frames, f"{len(decoded)} of {frames} frames decoded"
    pts = [frame.pts for frame in decoded]
    assert pts[0] == 0, "the first shown frame starts the file"
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    assert min(steps) > 0, "presentation times strictly increase"
    # One frame apart, except where the session was cut: after a reference frame, before the
    # (up to two) B-frames shown ahead of it, which the camera never sent.
    assert all(abs(step - FRAME_90K) <= 3 * CLOCK_NUDGE_90K for step in steps[:-2]), steps

    # ---- live: fragments with composition offsets and decode-time durations
    live = subscriber.frames
    assert subscriber.dropped == 0
    assert len(live) >= 2 * FPS, f"only {len(live)} live frames"
    assert live[0].is_key
    assert any(frame.composition_offset_90k > 0 for frame in live)
    for frame, following in zip(live, live[1:], strict=False):
        if following.recording is frame.recording:
            assert frame.duration_90k == following.decode_time_90k - frame.decode_time_90k
    b_frame = next(f for f in live if f.composition_offset_90k and not f.is_key)
    message = live_message(b_frame, "video/mp4", 1)
    segment = message[message.index(b"\r\n\r\n") + 4 :]
    trun = leaf(segment, b"moof", b"traf", b"trun")
    version_flags, count = struct.unpack(">II", trun[:8])
    assert version_flags >> 24 == 1 and version_flags & fragment.TRUN_COMPOSITION_OFFSET
    assert count == 1
    assert struct.unpack(">i", trun[-4:])[0] == b_frame.composition_offset_90k
    assert_fragments_decode_in_order(entry, live)


def leaf(data: bytes, *path: bytes) -> bytes:
    """The payload of the box at ``path`` (fragment boxes are not in the mp4 parser's set of
    containers, so each level is parsed here)."""
    for fourcc in path:
        (box,) = [b for b in parse_boxes(data) if b.fourcc == fourcc][:1]
        data = box.payload
    return data


def assert_fragments_decode_in_order(entry, live: list[LiveFrame]) -> None:
    """Init segment + one media segment per live frame, placed at their decode times (as MSE
    does with the UI's timestamp offsets): FFmpeg decodes every frame, in presentation order."""
    first = live[0].decode_time_90k
    parts = [fragment.init_segment(entry)]
    for sequence, frame in enumerate(live, start=1):
        sample = fragment.FragmentSample(
            frame.duration_90k, len(frame.data), frame.is_key, frame.composition_offset_90k
        )
        parts.append(
            fragment.media_segment(
                sequence, [sample], frame.data,
                base_media_decode_time_90k=frame.decode_time_90k - first,
            )
        )
    with av.open(io.BytesIO(b"".join(parts))) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert len(pts) == len(live)
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), "out of presentation order"
