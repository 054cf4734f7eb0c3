"""A real browser plays what moonfire serves, from the page moonfire ships (``/player.html``).

Headless Debian Chromium driven by selenium (media-notes §7) against a real ``moonfire run
--listen`` recording the synthetic camera: the page plays a ``view.mp4`` of committed
recordings and seeks to its middle (which needs Range support: without it Chromium's
``seekable`` is empty), and plays ``live.m4s`` through Media Source Extensions the way
Moonfire's UI does (init segment fetched after the first message, each one-frame part
appended at the end of what is buffered).  These are the checks no HTTP client can make:
that a browser's demuxer and decoder accept our files and fragments.

Chromium, chromium-driver and selenium are installed by ``scripts/test.sh``; without them
the tests skip on a developer's machine and fail under ``CI``, which must run them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from moonfire.playback.mp4 import build_mp4
from moonfire.playback.segment import Segment
from tests.support import bframes
from tests.support.browser import chromium, need_browser, wait_until
from tests.support.cli import moonfire_process
from tests.support.net import free_port, stop_process
from tests.support.recordings import SampleFiles, sample_entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_URL = "testsrc://?size=320x240&fps=15&bitrate=150k&gop=15"
SUB_URL = "testsrc://?size=160x120&fps=10&bitrate=50k&gop=10"
#: Recordings rotate this often; the view test waits for a few of them in one run.
ROTATE_SEC = 2
#: Media the view test wants committed before it plays (several recordings, so a seek to
#: the middle crosses into another one).
VIEW_SECONDS = 6.0


@dataclass
class Recorder:
    port: int
    camera_uuid: str
    proc: subprocess.Popen
    log_path: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def recorder(tmp_path_factory) -> Iterator[Recorder]:
    """``moonfire run --listen`` recording one synthetic camera (main and sub stream)."""
    need_browser()  # before spending time recording
    tmp = tmp_path_factory.mktemp("browser")
    data_dir = str(tmp / "data")
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", MAIN_URL, "--retain", "100MiB",
         "--sub-url", SUB_URL, "--sub-retain", "20MiB", "--rotate-seconds", str(ROTATE_SEC)),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log_path = str(tmp / "run.log")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would stall recording
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    rec = Recorder(port, "", proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, rec.log()
            try:
                (camera,) = rec.json("/api/")["cameras"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the API never answered:\n" + rec.log()
                time.sleep(0.2)
        rec.camera_uuid = camera["uuid"]
        yield rec
    finally:
        stop_process(proc)
    assert proc.returncode == 0, rec.log()


@pytest.fixture(scope="module")
def browser(recorder) -> Iterator[Any]:
    """Headless Chromium with the flags media-notes §7 lists (a fresh profile each run)."""
    with chromium() as driver:
        yield driver


#: What the page is doing, read in one go: times, ranges, counts, errors.
STATE_JS = """
const v = document.getElementById("video");
const ranges = (r) => Array.from({length: r.length}, (_, i) => [r.start(i), r.end(i)]);
const q = v.getVideoPlaybackQuality();
return {
  currentTime: v.currentTime, duration: v.duration, readyState: v.readyState,
  paused: v.paused, ended: v.ended, seeking: v.seeking, playbackRate: v.playbackRate,
  buffered: ranges(v.buffered), seekable: ranges(v.seekable),
  width: v.videoWidth, height: v.videoHeight, decoded: q.totalVideoFrames,
  error: v.error ? [v.error.code, v.error.message] : null,
  errors: window.playerErrors, liveFrames: window.liveFrames, dropped: window.liveDropped,
};
"""


def page_state(driver) -> dict[str, Any]:
    return driver.execute_script(STATE_JS)


def committed_run(recorder: Recorder, seconds: float, timeout: float) -> dict[str, Any]:
    """The first run's committed recordings once they hold ``seconds`` of video."""
    deadline = time.monotonic() + timeout
    path = f"/api/cameras/{recorder.camera_uuid}/main/recordings"
    while True:
        rows = [r for r in recorder.json(path)["recordings"] if not r.get("growing")]
        if rows and (rows[0]["endTime90k"] - rows[0]["startTime90k"]) / 90000 >= seconds:
            return rows[0]
        assert time.monotonic() < deadline, f"no {seconds} s run committed: {rows}"
        time.sleep(0.5)


def test_browser_plays_view_mp4_and_seeks_to_its_middle(recorder, browser):
    row = committed_run(recorder, VIEW_SECONDS, timeout=40)
    ids = f"{row['startId']}-{row.get('endId', row['startId'])}@{row['openId']}"
    view = f"/api/cameras/{recorder.camera_uuid}/main/view.mp4?s={ids}"
    expected = (row["endTime90k"] - row["startTime90k"]) / 90000
    browser.get(f"{recorder.base}/player.html?view={urllib.parse.quote(view, safe='')}")

    def state() -> dict[str, Any]:
        return page_state(browser)

    started = wait_until(
        "view.mp4 to play", lambda: (s := state())["currentTime"] > 0.3 and s, 20, state)
    assert started["error"] is None and started["errors"] == []
    assert (started["width"], started["height"]) == (320, 240)
    # The duration Chromium reads from the moov matches the recordings' (one frame's slack).
    assert abs(started["duration"] - expected) < 0.1, (started["duration"], expected)
    later = wait_until(
        "playback to advance",
        lambda: (s := state())["currentTime"] > started["currentTime"] + 0.5 and s, 10, state)
    assert later["decoded"] > started["decoded"]

    # Seek to the middle: `seekable` must cover it (it is [0, 0] without Range support), and
    # the element lands there, then plays on from it.
    middle = round(started["duration"] / 2, 3)
    seek = browser.execute_async_script(
        """
        const [to, done] = arguments;
        const v = document.getElementById("video");
        const ranges = (r) => Array.from({length: r.length}, (_, i) => [r.start(i), r.end(i)]);
        const seekable = ranges(v.seekable);
        v.addEventListener("seeked", () => done({
            seekable: seekable, currentTime: v.currentTime,
            error: v.error ? v.error.code : null}), {once: true});
        v.currentTime = to;
        """,
        middle,
    )
    assert any(start <= middle <= end for start, end in seek["seekable"]), seek
    assert seek["error"] is None
    assert abs(seek["currentTime"] - middle) < 0.1, (seek, middle)
    after = wait_until(
        "playback to go on after the seek",
        lambda: (s := state())["currentTime"] > middle + 0.5 and s, 15, state)
    assert after["error"] is None and after["errors"] == [], after
    assert not after["seeking"]


def open_live(recorder: Recorder, browser: Any, stream: str) -> dict[str, Any]:
    """Opens the player's live view of ``stream``; its state once frames play."""
    browser.get(f"{recorder.base}/player.html?live={recorder.camera_uuid}/{stream}")
    first = wait_until(
        "live frames to play",
        lambda: (s := page_state(browser))["liveFrames"] >= 10 and s["currentTime"] > 0 and s,
        20, lambda: page_state(browser))
    assert first["error"] is None and first["errors"] == [], first
    return first


def buffered_end(s: dict[str, Any]) -> float:
    return s["buffered"][-1][1] if s["buffered"] else 0.0


def behind_live_edge(s: dict[str, Any]) -> float:
    return buffered_end(s) - s["currentTime"]


@pytest.mark.parametrize(("stream", "size"), [("main", (320, 240)), ("sub", (160, 120))])
def test_browser_plays_live_m4s_through_mse(recorder, browser, stream, size):
    first = open_live(recorder, browser, stream)
    assert (first["width"], first["height"]) == size

    def state() -> dict[str, Any]:
        return page_state(browser)

    # Real time goes on, and so does the live edge: buffered end and play position both
    # advance.  Waited for with a deadline, not a fixed sleep: on a loaded machine a late
    # frame can stall playback for a moment (the next test checks that it is played away).
    second = wait_until(
        "live playback to advance 2 s",
        lambda: (s := state())["currentTime"] - first["currentTime"] > 2.0
        and buffered_end(s) - buffered_end(first) > 2.0 and s, 15, state)
    assert second["error"] is None and second["errors"] == [], second
    assert second["liveFrames"] > first["liveFrames"]
    assert second["decoded"] > first["decoded"]
    assert not second["paused"]
    # One buffered range: each part lands exactly at the end of the last.
    assert len(second["buffered"]) == 1, second["buffered"]


def test_live_view_plays_a_stall_away_and_is_live_again(recorder, browser):
    """A stall (here 1.8 s paused; in life a late frame on a busy machine or network) leaves
    the position behind the live edge, and Chromium resumes from where it stopped: the page
    plays fast until it is near the edge again, then at normal speed, without skipping."""
    open_live(recorder, browser, "main")

    def state() -> dict[str, Any]:
        return page_state(browser)

    browser.execute_script("document.getElementById('video').pause()")
    time.sleep(1.8)
    paused = state()
    assert paused["paused"] and behind_live_edge(paused) > 1.5, paused
    browser.execute_script("document.getElementById('video').play()")
    fast = wait_until(
        "the player to catch up faster than real time",
        lambda: (s := state())["playbackRate"] > 1 and not s["paused"] and s, 10, state)
    assert behind_live_edge(fast) > 0.5, fast
    caught_up = wait_until(
        "the player to be near the live edge at normal speed",
        lambda: behind_live_edge(s := state()) < 1.0 and s["playbackRate"] == 1 and s, 20, state)
    assert caught_up["errors"] == [] and not caught_up["paused"], caught_up
    # It played on from where it paused, in the one buffered range the parts make.
    assert caught_up["currentTime"] > paused["currentTime"], (paused, caught_up)
    assert len(caught_up["buffered"]) == 1, caught_up["buffered"]


def test_the_player_lists_the_cameras_with_links_that_play(recorder, browser):
    """The player lists each stream with a live link and links to its latest recordings,
    and such a link plays.  (``/`` is the web UI now: tests/test_ui.py.)"""
    from selenium.webdriver.common.by import By

    browser.get(recorder.base + "/player.html")

    def links() -> list[str]:
        return [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "li a")]

    found = wait_until(
        "the camera list",
        lambda: (h := links()) and any("view=" in x for x in h) and len(h) >= 3 and h,
        20, lambda: (links(), page_state(browser)))
    for stream in ("main", "sub"):
        assert f"{recorder.base}/player.html?live={recorder.camera_uuid}/{stream}" in found
    view = next(x for x in found if "view=" in x)
    browser.get(view)
    wait_until("the recording to play",
               lambda: (s := page_state(browser))["currentTime"] > 0.3 and s["errors"] == [],
               20, lambda: page_state(browser))


def test_browser_plays_a_b_frame_mp4_to_its_end(browser, tmp_path):
    """Issue 10 §1: the ``.mp4`` of a camera with B-frames (``ctts`` and the edit list from the
    first shown frame) plays in Chromium from 0 to its end, every frame decoded.  Built from
    x264 B-frame recordings by ``build_mp4`` as ``view.mp4`` is (the RTSP camera is
    tests/test_bframes.py's), and served as a file: this checks the browser's demuxer only."""
    packets, avc1 = bframes.encode_clip(frames=60, width=320, height=240)
    files = SampleFiles(tmp_path)
    keys = [i for i, p in enumerate(packets) if p.is_key]
    recordings = bframes.run_of(files, packets, [0, keys[2], len(packets)])
    segments = [Segment(r.row, r.video_index, (0, r.row.duration_90k)) for r in recordings]
    mp4 = build_mp4(segments, {1: sample_entry(avc1)}, files.open)
    (tmp_path / "bframes.mp4").write_bytes(mp4.read(0, mp4.size))
    (tmp_path / "bframes.html").write_text('<video id="video" muted src="bframes.mp4"></video>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/bframes.html")
        browser.execute_script(
            'const v = document.getElementById("video"); v.playbackRate = 4; v.play();'
        )

        def state() -> dict[str, Any]:
            return browser.execute_script(
                'const v = document.getElementById("video");'
                "return {ended: v.ended, time: v.currentTime, duration: v.duration,"
                " decoded: v.webkitDecodedFrameCount, width: v.videoWidth,"
                " error: v.error ? [v.error.code, v.error.message] : null};"
            )

        done = wait_until("the B-frame file to play to its end",
                          lambda: (s := state())["ended"] and s, 15, state)
    finally:
        server.shutdown()
        server.server_close()
    assert done["error"] is None and done["width"] == 320, done
    assert abs(done["duration"] - len(packets) / bframes.FPS) < 0.05, done
    assert done["decoded"] == len(packets), done
