"""The recording being written is watchable (Moonfire #156: "NVR is recording, but api
does not show up-to-date stream info").

A real ``moonfire run`` records the synthetic camera with one-minute recordings, so
for the whole test its first recording is still being written: ``/recordings`` must
list it as ``growing`` with ``firstUncommitted``, and ``view.mp4`` must serve every frame
it lists, growing from one request to the next; once the recorder stops, the row
committed under the id the API announced holds those frames and more.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from email.message import Message

import av
import pytest

from moonfire.storage import data_dir as datadir
from tests.support.net import free_port
from tests.support.run import data_dir_with_camera, moonfire_run, wait_for_api

#: 1 Mbit/s: the writer's 64 KiB buffer reaches the file about twice a second (what is
#: still buffered isn't served yet).
URL = "testsrc://?size=320x240&fps=15&bitrate=1M&gop=15"


@pytest.fixture
def data_dir(tmp_path) -> str:
    return data_dir_with_camera(str(tmp_path / "data"), URL, "--rotate-seconds", "60")


def get(url: str) -> tuple[Message, bytes]:
    """The response's headers (looked up case-insensitively) and body."""
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers, r.read()


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        container.streams.video[0].thread_type = "NONE"
        return sum(1 for _ in container.decode(video=0))


def growing_row(base: str, deadline: float, more_than: int = 0) -> dict:
    """The newest row once it is growing and has more than ``more_than`` frames."""
    rows: list[dict] = []
    while time.monotonic() < deadline:
        _, body = get(f"{base}/recordings")
        rows = json.loads(body)["recordings"]
        if rows and rows[-1].get("growing") and rows[-1]["videoSamples"] > more_than:
            return rows[-1]
        time.sleep(0.3)
    raise AssertionError(f"no growing recording with more than {more_than} frames: {rows}")


def test_the_recording_being_written_is_listed_and_served_as_it_grows(data_dir):
    port = free_port()
    with moonfire_run(data_dir, "--listen", f"127.0.0.1:{port}") as run:
        doc = wait_for_api(port, run.proc)
        base = f"http://127.0.0.1:{port}/api/cameras/{doc['cameras'][0]['uuid']}/main"
        first = growing_row(base, time.monotonic() + 20)
        assert first["firstUncommitted"] == first["startId"]
        assert "endId" not in first and first["videoSamples"] > 0
        with datadir.open_db(data_dir, read_only=True) as db:
            assert db.list_recordings(db.list_cameras()[0].main.id) == []  # nothing committed
        spec = f"{first['startId']}@{first['openId']}"
        headers, data = get(f"{base}/view.mp4?s={spec}")
        assert decoded_frames(data) >= first["videoSamples"]
        assert headers["Cache-Control"] == "private, no-cache"
        # The UI's form for a growing row pins the end, so later frames aren't pulled in.
        rel_end = first["endTime90k"] - first["startTime90k"]
        _, pinned = get(f"{base}/view.mp4?s={spec}.0-{rel_end}")
        assert decoded_frames(pinned) == first["videoSamples"]

        later = growing_row(base, time.monotonic() + 15, more_than=first["videoSamples"] + 15)
        assert later["startId"] == first["startId"]
        # A run's first recording starts at the earliest arrival minus the media time
        # before it (brief §3.2), so its start may only move earlier as frames arrive.
        assert first["startTime90k"] - 90000 < later["startTime90k"] <= first["startTime90k"]
        assert later["endTime90k"] > first["endTime90k"]
        later_headers, later_data = get(f"{base}/view.mp4?s={spec}")
        assert later_headers["ETag"] != headers["ETag"]
        assert decoded_frames(later_data) >= later["videoSamples"]
        _, pinned_again = get(f"{base}/view.mp4?s={spec}.0-{rel_end}")
        assert decoded_frames(pinned_again) == first["videoSamples"]
    assert run.returncode == 0, run.output
    with datadir.open_db(data_dir, read_only=True) as db:
        stream_id = db.list_cameras()[0].main.id
        (row,) = db.list_recordings(stream_id)
    assert row.recording_id == first["startId"] and row.open_id == first["openId"]
    assert row.start_time_90k <= later["startTime90k"]
    assert row.video_samples >= later["videoSamples"]
