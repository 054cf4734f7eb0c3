"""Live view of a stream kept only for live view (``camera add --sub-url URL --sub-retain 0``).

``moonfire run`` starts a live-only streamer for such a stream: it connects while someone
watches ``live.m4s`` (and ``LIVE_ONLY_GRACE_SEC`` after the last viewer left), publishes
frames exactly as a recorded stream does, inserts its sample entry (the init segment needs
it), writes no recording, and reports ``live only`` in ``moonfire status``, ``GET /api/``
and ``/metrics``.  The first test runs a real ``moonfire run --listen``; the others drive
the daemon in this process: with a short grace period, to see it connect on demand and
disconnect when nobody watches; and with the storage failing under it.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.request

import aiohttp
import av

from moonfire.ingest import streamer as streamer_module
from moonfire.ingest.daemon import start_daemon, start_new_streams
from moonfire.ingest.live import LiveFeeds
from moonfire.ingest.sources import open_source
from moonfire.storage import data_dir as datadir
from moonfire.storage.syncer import SampleDirectoryFailedError
from tests.support.cli import moonfire_process
from tests.support.net import free_port
from tests.support.run import data_dir_with_camera, moonfire_run, wait_for_api
from tests.test_ingest import wait_for

MAIN_URL = "testsrc://?size=160x120&fps=10&bitrate=50k&gop=10"
SUB_URL = "testsrc://?size=160x120&fps=15&bitrate=50k&gop=15"
FRAMES = 20


def make_data_dir(path: str) -> str:
    return data_dir_with_camera(
        path, MAIN_URL, "--sub-url", SUB_URL, "--sub-retain", "0", "--rotate-seconds", "1"
    )


async def watch(url: str, messages: int) -> tuple[list[bytes], float]:
    """``messages`` binary messages of ``live.m4s``, and the seconds until the first came."""
    got: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        started = time.monotonic()
        first_after = 0.0
        while len(got) < messages:
            msg = await asyncio.wait_for(ws.receive(), 15)
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not got:
                    first_after = time.monotonic() - started
                got.append(msg.data)
            else:
                raise AssertionError(f"live view sent {msg}")
    return got, first_after


def headers_of(message: bytes) -> dict[str, str]:
    head = message.partition(b"\r\n\r\n")[0].decode()
    return dict(line.split(": ", 1) for line in head.split("\r\n"))


def sub_state(doc: dict) -> tuple[str, str | None]:
    sub = doc["cameras"][0]["streams"]["sub"]
    return sub["state"], sub["stateReason"]


def status_line(data_dir: str) -> str:
    done = moonfire_process("status", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("front/sub:")]
    return line


def test_live_only_sub_stream_is_watchable_and_never_recorded(tmp_path):
    data_dir = make_data_dir(str(tmp_path / "data"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with moonfire_run(data_dir, "--listen", f"127.0.0.1:{port}") as run:
        doc = wait_for_api(port, run.proc)
        camera = doc["cameras"][0]
        assert camera["streams"]["sub"]["record"] is False
        # Nobody watches yet: not connected, and every view of the state says so.
        assert sub_state(doc) == ("live only", streamer_module.LIVE_ONLY_IDLE)
        assert status_line(data_dir).startswith(
            f"front/sub: live only: {streamer_module.LIVE_ONLY_IDLE}; no recordings")
        url = f"ws://127.0.0.1:{port}/api/cameras/{camera['uuid']}/sub/live.m4s"
        messages, first_after = asyncio.run(watch(url, FRAMES))
        print(f"first live-only frame {first_after * 1000:.0f} ms after the WebSocket opened")
        fields = headers_of(messages[0])
        assert fields["Content-Type"].startswith('video/mp4; codecs="avc1.')
        assert "X-Recording-Id" not in fields, "no recording row will ever have this frame"
        entry_id = int(fields["X-Video-Sample-Entry-Id"])
        with urllib.request.urlopen(f"{base}/api/init/{entry_id}.mp4") as r:
            init = r.read()
        media = b"".join(m.partition(b"\r\n\r\n")[2] for m in messages)
        with av.open(io.BytesIO(init + media)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
            codec, extradata = stream.codec_context.name, stream.codec_context.extradata
            samples = [bytes(p) for p in container.demux(stream) if p.size]
        # Every message's tfdt is 0 (Moonfire's live format: MSE places each one itself), so
        # the mp4 demuxer marks all but the first as discarded: decode the demuxed samples
        # with the init segment's parameter sets instead.
        decoder = av.CodecContext.create(codec, "r")
        decoder.extradata = extradata
        decoded = sum(len(decoder.decode(av.Packet(sample))) for sample in samples)
        decoded += len(decoder.decode(None))
        assert len(samples) == decoded == FRAMES, f"{decoded} of {len(samples)} frames decoded"
        # The viewer left, but the grace period keeps the stream connected.
        doc = json.loads(urllib.request.urlopen(f"{base}/api/").read())
        assert sub_state(doc) == ("live only", None)
        deadline = time.monotonic() + 10
        while not (line := status_line(data_dir)).startswith("front/sub: live only; "):
            assert time.monotonic() < deadline, line
            time.sleep(0.2)
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'moonfire_stream_state{camera="front",state="live only",stream="sub"} 1.0' in (
            metrics), metrics
    assert run.returncode == 0, run.output
    assert "1 more for live view only" in run.output, run.output
    with datadir.open_db(data_dir, read_only=True) as db:
        front = db.get_camera("front")
        assert front.sub is not None
        assert db.list_recordings(front.sub.id) == []
        assert db.last_recording(front.sub.id) is None
        assert db.get_video_sample_entry(entry_id).width == 160
        assert db.list_recordings(front.main.id), "the main stream records beside it"


def test_live_only_stream_connects_on_demand_and_leaves_after_the_grace_period(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(streamer_module, "LIVE_ONLY_GRACE_SEC", 0.5)
    monkeypatch.setattr(streamer_module, "VIEWER_CHECK_SEC", 0.1)
    data_dir = make_data_dir(str(tmp_path / "data"))
    opened: list[str] = []

    def sources(url, username, password):
        opened.append(url)
        return open_source(url, username, password)

    feeds = LiveFeeds()
    daemon = start_daemon(data_dir, live=feeds, source_factory=sources)
    try:
        (live_only,) = [s for s in daemon.streamers if s.live_only]
        sub_id = live_only.stream.id
        time.sleep(1.0)
        assert opened == [MAIN_URL], "nobody watches: the sub stream is not opened"
        assert live_only.status().state == "live only" and live_only.status().frames == 0

        async def watch_frames(count: int) -> None:
            subscription = feeds.feed(sub_id).subscribe()
            try:
                for _ in range(count):
                    item = await subscription.get(timeout=10)
                    assert item is not None, "no frame within 10 s"
            finally:
                subscription.close()

        asyncio.run(watch_frames(5))
        assert opened == [MAIN_URL, SUB_URL]
        wait_for(lambda: not live_only.status().connected, 5, "the disconnect after the grace")
        status = live_only.status()
        assert (status.state, status.reason) == ("live only", streamer_module.LIVE_ONLY_IDLE)
        assert status.errors == 0, status
        frames = status.frames
        time.sleep(0.5)
        assert live_only.status().frames == frames, "no frames while nobody watches"
        asyncio.run(watch_frames(5))  # a second viewer: a second connection
        assert opened == [MAIN_URL, SUB_URL, SUB_URL]
    finally:
        assert daemon.shutdown() == 0
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.list_recordings(sub_id) == []


def test_live_only_streams_outlive_storage_and_start_when_added(tmp_path):
    """A failed sample file directory stops the recorded streams only, and ``moonfire run``
    exits 1 even though a live-only streamer still runs; a camera added while running gets
    its live-only streamer too (the web UI's setup page calls ``start_new_streams``)."""
    data_dir = make_data_dir(str(tmp_path / "data"))
    daemon = start_daemon(data_dir, live=LiveFeeds())
    try:
        with datadir.open_db(data_dir) as db:
            db.add_camera("back", url=MAIN_URL, retain_bytes=10**8, sub_url=SUB_URL)
        assert sorted(start_new_streams(daemon)) == ["back/main", "back/sub"]
        assert sorted(s.name for s in daemon.streamers if s.live_only) == ["back/sub", "front/sub"]
        assert start_new_streams(daemon) == []
        recorded = [s for s in daemon.streamers if not s.live_only]
        wait_for(lambda: all(s.status().frames for s in recorded), 10, "both main streams")
        assert not daemon.no_camera_can_record()
        # What the syncer reports when its directory fails.
        (dir_id,) = daemon.syncers
        daemon._on_fatal(dir_id, SampleDirectoryFailedError("injected: the disk is gone"))
        wait_for(lambda: not any(s.running for s in recorded), 10, "the recorded streams stop")
        assert all(s.status().state == "failed" for s in recorded)
        live_only = [s for s in daemon.streamers if s.live_only]
        assert all(s.running and s.status().state == "live only" for s in live_only)
        assert daemon.no_camera_can_record(), "nothing records: time to exit 1"
    finally:
        assert daemon.shutdown() == 1
