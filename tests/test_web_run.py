"""``moonfire run`` serves the API and live view from the recording process.

A real ``moonfire run`` process records the synthetic camera and listens on a loopback
port; the test reads ``/api/``, watches ``live.m4s`` over a WebSocket while recording goes
on, fetches a ``view.mp4`` of what was committed, then stops the recorder with SIGTERM.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import urllib.request

import aiohttp
import av
import pytest

from moonfire.playback.fragment import init_segment
from moonfire.storage import data_dir as datadir
from tests.support.net import free_port
from tests.support.run import data_dir_with_camera, moonfire_run, start_run, wait_for_api

MAIN_URL = "testsrc://?size=320x240&fps=15&bitrate=100k&gop=15"


@pytest.fixture
def data_dir(tmp_path) -> str:
    return data_dir_with_camera(str(tmp_path / "data"), MAIN_URL, "--rotate-seconds", "1")


async def watch_live(port: int, camera_uuid: str, messages: int) -> list[bytes]:
    url = f"ws://127.0.0.1:{port}/api/cameras/{camera_uuid}/main/live.m4s"
    got: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while len(got) < messages:
            msg = await asyncio.wait_for(ws.receive(), 20)
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.append(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                assert json.loads(msg.data)["type"] == "dropped", msg.data
            else:
                raise AssertionError(f"live view ended: {msg}")
    return got


def test_run_serves_the_api_and_live_view_while_recording(data_dir):
    port = free_port()
    with moonfire_run(data_dir, "--listen", f"127.0.0.1:{port}") as run:
        doc = wait_for_api(port, run.proc)
        (camera,) = doc["cameras"]
        assert camera["shortName"] == "front" and camera["streams"]["main"]["record"] is True
        messages = asyncio.run(watch_live(port, camera["uuid"], 30))
        headers, _, first = messages[0].partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in headers.decode().split("\r\n"))
        assert fields["Content-Type"].startswith('video/mp4; codecs="avc1.')
        entry_id = int(fields["X-Video-Sample-Entry-Id"])
        with datadir.open_db(data_dir, read_only=True) as db:
            entry = db.get_video_sample_entry(entry_id)
        stream = init_segment(entry) + b"".join(m.partition(b"\r\n\r\n")[2] for m in messages)
        assert first[4:8] == b"moof"
        with av.open(io.BytesIO(stream)) as container:
            container.streams.video[0].thread_type = "NONE"
            keys = [p.is_keyframe for p in container.demux(video=0) if p.size]
        assert len(keys) == 30 and keys[0], "live view starts at a key frame, one frame a message"
        time.sleep(2.5)  # let a recording commit
        recordings = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/cameras/{camera['uuid']}/main/recordings").read())
        first_id = min(r["startId"] for r in recordings["recordings"])
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/cameras/{camera['uuid']}/main/view.mp4?s={first_id}"
        ) as r:
            with av.open(io.BytesIO(r.read())) as container:
                assert sum(1 for _ in container.decode(video=0)) > 0
    assert run.returncode == 0, run.output
    assert "serving the API" in run.output


def test_run_refuses_to_listen_beyond_loopback_without_users(data_dir):
    proc = start_run(data_dir, "--listen", "0.0.0.0:1", "--for", "5")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "no user exists" in out and "moonfire user add" in out


def test_run_says_which_address_it_cannot_listen_on(data_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_run(data_dir, "--listen", f"127.0.0.1:{port}", "--for", "10")
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"can't listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out


def test_run_listens_where_moonfire_listen_says_without_listen(data_dir, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MOONFIRE_LISTEN", f"127.0.0.1:{port}")
    with moonfire_run(data_dir) as run:
        doc = wait_for_api(port, run.proc)
        assert [c["shortName"] for c in doc["cameras"]] == ["front"]
    assert f"127.0.0.1:{port}" in run.output
