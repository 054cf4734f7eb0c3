"""The web UI in a real browser, against a real ``moonfire run --listen`` with real recordings.

One server for the whole file (a module fixture): two synthetic cameras (``front`` with a
sub stream, ``back`` without), recorded for a few seconds, stopped, then recorded again, so
the timeline has a gap where the cameras were down.  The server runs in America/New_York
(``TZ``), so every time the UI shows is the server's zone, not the browser's or UTC.

Each test drives the UI as a person would (log in, click, scrub, type) and checks what a
person would see; a screenshot of each page goes to ``$MOONFIRE_TEST_ARTIFACTS`` (or a temp
directory), printed at the start, to look at.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid as uuidlib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.browser import chromium, need_browser, wait_until
from tests.support.cli import moonfire_process
from tests.support.net import free_port, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZONE = "America/New_York"
TZ = zoneinfo.ZoneInfo(ZONE)
FPS = 10
MAIN_URL = f"testsrc://?size=160x120&fps={FPS}&bitrate=60k&gop={FPS}"
SUB_URL = "testsrc://?size=96x72&fps=5&bitrate=30k&gop=5"
ROTATE_SEC = 2
ADMIN = "admin"
ADMIN_PASSWORD = "ui-test-admin-pw"
#: How long the first run records, and the gap before the second starts.
FIRST_RUN_SEC = 4
GAP_SEC = 2.5
DESKTOP = (1280, 900)
#: The frame on screen at time t is the last one at or before t: up to a frame interval
#: earlier (and a little more: the camera's clock is slewed to the NVR's).
ONE_FRAME = 1.25 * 90000 / FPS


@dataclass
class Server:
    base: str
    data_dir: str
    proc: subprocess.Popen
    log_path: str
    artifacts: str
    #: The end of the first run's recordings and the start of the second's (90k).
    first_end_90k: int = 0
    second_start_90k: int = 0

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def _artifacts_dir(tmp_path_factory) -> str:
    path = os.environ.get("MOONFIRE_TEST_ARTIFACTS")
    if path:
        path = os.path.join(path, "ui")
        os.makedirs(path, exist_ok=True)
    else:
        path = str(tmp_path_factory.mktemp("ui-screenshots"))
    print(f"\nUI screenshots in {path}")
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), TZ=ZONE)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    need_browser()
    tmp = tmp_path_factory.mktemp("ui")
    data_dir = str(tmp / "data")
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", MAIN_URL, "--retain", "50MiB", "--sub-url", SUB_URL,
         "--sub-retain", "10MiB", "--rotate-seconds", str(ROTATE_SEC)),
        ("camera", "add", "back", "--url", MAIN_URL, "--retain", "50MiB",
         "--rotate-seconds", str(ROTATE_SEC)),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    from moonfire.db.users import Users
    from moonfire.storage import data_dir as datadir

    with datadir.open_db(data_dir) as db:
        Users(db).add_user(ADMIN, password=ADMIN_PASSWORD, permissions={
            "viewVideo": True, "readCameraConfigs": True, "adminUsers": True})
    # The first run, then the cameras are "down" for a while: a gap on the timeline.
    first = subprocess.run(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir, "--no-listen",
         "--for", str(FIRST_RUN_SEC)],
        env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    time.sleep(GAP_SEC)
    port = free_port()
    log_path = str(tmp / "run.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{port}"],
            env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    srv = Server(f"http://127.0.0.1:{port}", data_dir, proc, log_path,
                 _artifacts_dir(tmp_path_factory))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, srv.log()
            try:
                urllib.request.urlopen(srv.base + "/api/request", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered:\n" + srv.log()
                time.sleep(0.2)
        yield srv
    finally:
        stop_process(proc)
    assert proc.returncode == 0, srv.log()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("ui-downloads"))


@pytest.fixture(scope="module")
def browser(server, downloads) -> Iterator[Any]:
    with chromium(download_dir=downloads, window=DESKTOP) as driver:
        driver.set_window_size(*DESKTOP)
        yield driver


def page_state(driver) -> dict[str, Any]:
    return driver.execute_script("""
        const clock = document.getElementById("clock");
        const p = window.moonfire && window.moonfire.page === "/play" && window.moonfire.player;
        return {hash: location.hash, errors: window.moonfire && window.moonfire.errors,
                clock: clock && clock.textContent, t90k: clock && clock.dataset.t90k,
                state: (document.getElementById("player-state") || {}).textContent,
                notices: Array.from(document.querySelectorAll(".notice")).map(n => n.textContent),
                player: p && {row: p.row && [p.row.startId, p.row.endId, p.row.startTime90k,
                                             p.row.endTime90k],
                              rows: p.rows.length, currentTime: p.video.currentTime,
                              duration: p.video.duration}};
    """)


def shot(server: Server, driver, name: str) -> None:
    driver.save_screenshot(os.path.join(server.artifacts, f"{name}.png"))


def session_json(server: Server, driver, path: str) -> Any:
    """GET ``path`` with the browser's session cookie."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(server.base + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def open_hash(driver, server: Server, fragment: str) -> None:
    """Load the UI at ``#fragment`` afresh (a changed hash alone would not reload the page)."""
    driver.get("about:blank")
    driver.get(f"{server.base}/#{fragment}")


def log_in(driver, server: Server) -> None:
    from selenium.webdriver.common.by import By

    if any(c["name"] == "s" for c in driver.get_cookies()):
        return
    open_hash(driver, server, "/live")
    form = wait_until("the login form",
                      lambda: driver.find_elements(By.ID, "login-form"), 15,
                      lambda: page_state(driver))[0]
    form.find_element(By.NAME, "username").send_keys(ADMIN)
    form.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("the live page after logging in",
               lambda: driver.execute_script("return location.hash") == "#/live"
               and driver.find_elements(By.CSS_SELECTOR, ".tile"), 15,
               lambda: page_state(driver))


def runs_of(server: Server, driver, camera: str) -> list[tuple[int, int]]:
    """The committed spans of a camera's main stream, merged where they chain."""
    top = session_json(server, driver, "/api/")
    uuid = next(c["uuid"] for c in top["cameras"] if c["shortName"] == camera)
    rows = session_json(server, driver, f"/api/cameras/{uuid}/main/recordings")["recordings"]
    spans: list[list[int]] = []
    for r in sorted(rows, key=lambda r: r["startTime90k"]):
        if spans and r["startTime90k"] - spans[-1][1] < 90000:
            spans[-1][1] = max(spans[-1][1], r["endTime90k"])
        else:
            spans.append([r["startTime90k"], r["endTime90k"]])
    return [(a, b) for a, b in spans]


def wait_for_second_run(server: Server, driver, seconds: float) -> tuple[int, int]:
    """The first run's end and the second's start, once the second holds ``seconds``."""
    def ready() -> list[tuple[int, int]] | None:
        spans = runs_of(server, driver, "front")
        ok = len(spans) >= 2 and (spans[-1][1] - spans[-1][0]) / 90000 >= seconds
        return spans if ok else None

    spans = wait_until(f"{seconds} s of the second run", ready, 40, lambda: server.log()[-2000:])
    server.first_end_90k, server.second_start_90k = spans[0][1], spans[1][0]
    return spans[0][1], spans[1][0]


def moment(t90k: float) -> str:
    """The CLI's time format in the server's zone (what moment links carry)."""
    return datetime.datetime.fromtimestamp(t90k / 90000, TZ).strftime("%Y-%m-%dT%H:%M:%S")


def moment_90k(text: str) -> int:
    naive = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    return int(naive.replace(tzinfo=TZ).timestamp()) * 90000


def clock_90k(text: str) -> float:
    """The player's clock ("2026-12-01 15:15:36.250", the server's zone) in 90k units."""
    naive = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    return naive.replace(tzinfo=TZ).timestamp() * 90000


# ---- the tests, in the order a person would go ------------------------------------------------


def test_log_in_and_the_live_grid_plays_two_cameras(server, browser):
    from selenium.webdriver.common.by import By

    open_hash(browser, server, "/live")
    wait_until("the login page", lambda: "#/login" in browser.current_url, 15,
               lambda: page_state(browser))
    shot(server, browser, "01-login")
    log_in(browser, server)

    def times() -> dict[str, float]:
        return browser.execute_script("""
            const out = {};
            for (const tile of document.querySelectorAll(".tile")) {
              out[tile.dataset.camera] = [tile.querySelector("video").currentTime,
                                          tile.dataset.state, tile.dataset.stream];
            }
            return out;""")

    first = wait_until("both tiles to play",
                       lambda: (t := times()) and all(v[0] > 0.3 for v in t.values())
                       and len(t) == 2 and t, 25, times)
    time.sleep(1.5)
    later = times()
    for camera in ("front", "back"):
        assert later[camera][0] > first[camera][0] + 0.8, (first, later)
        assert later[camera][1] == "live", later
    # The sub stream where there is one.
    assert later["front"][2] == "sub" and later["back"][2] == "main", later
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".tile .name")]
    assert labels == ["front", "back"]
    shot(server, browser, "02-live-2x2")
    browser.find_element(By.CSS_SELECTOR, 'button[data-layout="1+5"]').click()
    wait_until("the 1+5 layout",
               lambda: browser.find_elements(By.CSS_SELECTOR, ".grid.layout-1p5 .tile"),
               5, lambda: page_state(browser))
    shot(server, browser, "03-live-1p5")
    assert page_state(browser)["errors"] == []


def test_calendar_enables_today_and_timeline_shows_the_gap(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    first_end, second_start = wait_for_second_run(server, browser, 3)
    assert (second_start - first_end) / 90000 >= GAP_SEC - 0.5
    open_hash(browser, server, "/play?camera=front")
    today = datetime.datetime.now(TZ).date().isoformat()
    button = wait_until("the calendar", lambda: browser.find_elements(
        By.CSS_SELECTOR, f'#calendar button[data-day="{today}"]'), 15,
        lambda: page_state(browser))[0]
    assert button.is_enabled()
    disabled = browser.find_elements(By.CSS_SELECTOR, "#calendar button[disabled]")
    assert disabled, "days without video must be disabled"
    spans = wait_until("the timeline's spans", lambda: browser.execute_script(
        "return window.moonfire.spans && window.moonfire.spans.front"), 15,
        lambda: page_state(browser))
    # The first run's span ends where its recordings end, the second starts after the gap.
    assert len(spans) >= 2, spans
    assert abs(spans[0]["end"] - first_end) < 9000, (spans, first_end)
    assert abs(spans[1]["start"] - second_start) < 9000, (spans, second_start)
    assert (spans[1]["start"] - spans[0]["end"]) / 90000 >= GAP_SEC - 0.5
    # The timeline draws them: a recorded pixel is lit, the gap's middle is not.  Of the 7
    # pixels around each moment, the bluest: a tick's grid line may cross the lane right there.
    zoom_to(browser, spans[0]["end"], 90)
    colour = browser.execute_script("""
        const [t0, t1, t2] = arguments;
        const tl = window.moonfire.timeline, c = tl.canvas, g = c.getContext("2d");
        const dpr = window.devicePixelRatio || 1, y = Math.round((22 + 13) * dpr);
        const px = (t) => {
          const x = Math.round(tl.axis.xOf(t) * dpr), row = g.getImageData(x - 3, y, 7, 1).data;
          let best = [0, 0, 0, 0];
          for (let i = 0; i < row.length; i += 4) {
            if (row[i + 2] > best[2]) best = Array.from(row.slice(i, i + 4));
          }
          return best;
        };
        return [px(t0), px(t1), px(t2)];""",
        spans[0]["end"] - 90000, (spans[0]["end"] + spans[1]["start"]) / 2,
        spans[1]["start"] + 90000)
    recorded, gap, recorded_again = colour
    assert recorded[2] > 150 and recorded_again[2] > 150, colour  # the lane's blue
    assert gap[2] < 80, colour
    shot(server, browser, "04-playback-timeline")
    assert page_state(browser)["errors"] == []


def zoom_to(driver, t90k: float, span_sec: float) -> None:
    """Zoom the timeline with the mouse wheel at ``t90k`` until it shows about ``span_sec``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.CSS_SELECTOR, ".timeline-canvas")
    for _ in range(40):
        axis = driver.execute_script(
            "const a = window.moonfire.timeline.axis; return [a.start, a.end, a.width,"
            " window.moonfire.timeline.canvas.getBoundingClientRect().width];")
        span = (axis[1] - axis[0]) / 90000
        if span <= span_sec:
            return
        x = (t90k - axis[0]) / (axis[1] - axis[0]) * axis[2]
        offset = int(x - axis[3] / 2)
        ActionChains(driver).scroll_from_origin(
            ScrollOrigin.from_element(canvas, offset, 0), 0, -400).perform()
    raise AssertionError(f"the wheel did not zoom in: {axis}")


def click_timeline_at(driver, t90k: float) -> float:
    """Click the timeline where ``t90k`` is; the time the UI says is under the pointer."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.CSS_SELECTOR, ".timeline-canvas")
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.width, r.height];",
        canvas)
    x = driver.execute_script("return window.moonfire.timeline.clientXOf(arguments[0]);", t90k)
    offset = int(round(x - rect[0] - rect[1] / 2))
    ActionChains(driver).move_to_element_with_offset(canvas, offset, 0).click().perform()
    return driver.execute_script(
        "return window.moonfire.timeline.timeAtClientX(arguments[0]);",
        rect[0] + rect[1] / 2 + offset)


def test_scrubbing_shows_that_moments_frame_and_the_clock_says_when(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    _first_end, second_start = wait_for_second_run(server, browser, 4)
    open_hash(browser, server, "/play?camera=front")
    wait_until("the timeline", lambda: browser.execute_script(
        "return window.moonfire.spans && window.moonfire.spans.front"), 15,
        lambda: page_state(browser))
    # Jump to a moment in the first run by typing it, then zoom in there with the wheel.
    start_first = runs_of(server, browser, "front")[0][0]
    target = start_first + 1.5 * 90000
    jump = browser.find_element(By.ID, "jump")
    jump.clear()
    jump.send_keys(moment(target))
    browser.find_element(By.CSS_SELECTOR, "form.jump button").click()
    shown = wait_until("the jump", lambda: (s := page_state(browser))["t90k"] and
                       abs(int(s["t90k"]) - moment_90k(moment(target))) < 0.2 * 90000 and s,
                       10, lambda: page_state(browser))
    zoom_to(browser, int(shown["t90k"]), 60)
    # Scrub (a click on the timeline) into the second run: the frame there is shown, and the
    # clock prints its time, within one frame of what the pointer pointed at.
    wanted = second_start + 2.3 * 90000
    asked = click_timeline_at(browser, wanted)
    assert abs(asked - wanted) < 0.5 * 90000, (asked, wanted)
    # (-1: the clock's time is rounded to a 90 kHz tick, and after a seek it is the seek's.)
    state = wait_until("the scrubbed frame",
                       lambda: (s := page_state(browser))["t90k"] and
                       -1 < asked - int(s["t90k"]) <= ONE_FRAME and s, 10,
                       lambda: (asked, wanted, page_state(browser)))
    video = browser.execute_script("""
        const v = Array.from(document.querySelectorAll(".player video")).find(v => !v.hidden);
        return {t: v.currentTime, w: v.videoWidth, ready: v.readyState, paused: v.paused};""")
    assert video["w"] == 160 and video["ready"] >= 2, video
    # What the clock prints is that frame's time, in the server's zone.
    assert abs(clock_90k(state["clock"]) - int(state["t90k"])) < 0.002 * 90000, state
    shot(server, browser, "05-playback-scrubbed")
    # Play on through the recording boundaries: the clock advances.
    browser.find_element(By.ID, "play-pause").click()
    later = wait_until("playback to advance",
                       lambda: (s := page_state(browser))["t90k"] and
                       int(s["t90k"]) > int(state["t90k"]) + 2.5 * 90000 and s, 15,
                       lambda: page_state(browser))
    browser.find_element(By.ID, "play-pause").click()
    assert later["errors"] == [], later


def test_the_moment_link_opens_playback_at_that_time(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    wait_for_second_run(server, browser, 4)
    back = wait_until("4 s of back's second run", lambda: (r := runs_of(server, browser, "back"))
                      and len(r) >= 2 and r[-1][1] - r[-1][0] >= 4 * 90000 and r, 20,
                      lambda: runs_of(server, browser, "back"))
    at = moment(back[-1][0] + 2.5 * 90000)
    open_hash(browser, server, f"/play?camera=back&t={at}")
    state = wait_until("playback at the link's time",
                       lambda: (s := page_state(browser))["t90k"] and
                       -1 < moment_90k(at) - int(s["t90k"]) <= ONE_FRAME and s, 15,
                       lambda: page_state(browser))
    assert abs(clock_90k(state["clock"]) - int(state["t90k"])) < 0.002 * 90000, state
    assert browser.find_element(By.ID, "camera-select").get_attribute("value") == "back"
    browser.find_element(By.ID, "copy-link").click()
    link = browser.find_element(By.ID, "moment-link").get_attribute("value")
    assert link == f"{server.base}/#/play?camera=back&t={at}", link
    assert page_state(browser)["errors"] == []


def test_all_cameras_play_in_sync(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    _first_end, second_start = wait_for_second_run(server, browser, 4)
    open_hash(browser, server, f"/play?camera=front&t={moment(second_start + 2 * 90000)}")
    wait_until("playback", lambda: page_state(browser)["t90k"], 15, lambda: page_state(browser))
    browser.find_element(By.ID, "sync-toggle").click()
    browser.find_element(By.ID, "play-pause").click()

    def both() -> tuple[int, int] | None:
        main = page_state(browser)["t90k"]
        other = browser.execute_script(
            "const t = document.querySelector('.sync-tile[data-camera=back]');"
            "return t && t.dataset.t90k;")
        return (int(main), int(other)) if main and other else None

    wait_until("back to follow", lambda: (b := both()) and b[0] > second_start + 2.5 * 90000
               and abs(b[0] - b[1]) < 0.5 * 90000 and b, 15, both)
    time.sleep(1.5)
    main, other = both() or (0, 0)
    assert abs(main - other) < 0.5 * 90000, (main, other)
    shot(server, browser, "05b-playback-sync")
    browser.find_element(By.ID, "play-pause").click()
    assert page_state(browser)["errors"] == []


def test_an_export_shows_its_size_downloads_and_decodes(server, browser, downloads):
    import av
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    _first_end, second_start = wait_for_second_run(server, browser, 4)
    open_hash(browser, server, "/play?camera=front")
    wait_until("the page", lambda: browser.find_elements(By.ID, "export-from"), 15,
               lambda: page_state(browser))
    # Select the range by shift-dragging on the (zoomed) timeline: it fills in the fields.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    zoom_to(browser, second_start + 2 * 90000, 60)
    canvas = browser.find_element(By.CSS_SELECTOR, ".timeline-canvas")
    width = browser.execute_script("return arguments[0].getBoundingClientRect().width;", canvas)
    left = browser.execute_script("return arguments[0].getBoundingClientRect().left;", canvas)

    def offset(t90k: float) -> int:
        x = browser.execute_script("return window.moonfire.timeline.clientXOf(arguments[0]);",
                                   t90k)
        return int(round(x - left - width / 2))

    (ActionChains(browser).key_down(Keys.SHIFT)
     .move_to_element_with_offset(canvas, offset(second_start + 90000), 0).click_and_hold()
     .move_to_element_with_offset(canvas, offset(second_start + 4 * 90000), 0).release()
     .key_up(Keys.SHIFT).perform())
    selected = [moment_90k(browser.find_element(By.ID, i).get_attribute("value"))
                for i in ("export-from", "export-to")]
    assert abs(selected[0] - (second_start + 90000)) <= 2 * 90000, selected
    assert abs(selected[1] - (second_start + 4 * 90000)) <= 2 * 90000, selected
    # Then type the exact range.
    start, end = moment(second_start + 90000), moment(second_start + 4 * 90000)
    for element_id, value in (("export-from", start), ("export-to", end)):
        field = browser.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value + "\t")
    size = wait_until(
        "the export's size",
        lambda: browser.find_element(By.ID, "export-size").get_attribute("data-bytes"),
        15, lambda: browser.find_element(By.ID, "export-size").text)
    link = browser.find_element(By.ID, "export-download")
    assert "disabled" not in link.get_attribute("class")
    assert "ts=true" not in link.get_attribute("href")
    shot(server, browser, "06-export")
    before = set(os.listdir(downloads))
    link.click()

    def downloaded() -> str | None:
        new = [n for n in set(os.listdir(downloads)) - before if n.endswith(".mp4")]
        return os.path.join(downloads, new[0]) if new else None

    path = wait_until("the download", downloaded, 20, lambda: os.listdir(downloads))
    assert os.path.getsize(path) == int(size)
    with av.open(path) as container:
        frames = sum(1 for _ in container.decode(video=0))
    # Three seconds at 10 fps, from the key frame before the start (up to a second more).
    assert 3 * FPS - 2 <= frames <= 4 * FPS + 2, frames
    # With the timestamp track: the size is asked for again (the UI says what the server said
    # if it won't serve the track yet, and never offers a broken download).
    browser.find_element(By.ID, "export-ts").click()
    wait_until("the size with timestamps", lambda: (
        "ts=true" in (browser.find_element(By.ID, "export-download").get_attribute("href") or "")
        or "not served" in browser.find_element(By.ID, "export-size").text), 15,
        lambda: browser.find_element(By.ID, "export-size").text)


def test_status_page_says_what_records(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    open_hash(browser, server, "/status")
    rows = wait_until("the status table", lambda: browser.find_elements(
        By.CSS_SELECTOR, "#stream-status tbody tr"), 15, lambda: page_state(browser))
    states = {r.get_attribute("data-stream"): r.get_attribute("data-state") for r in rows}
    assert states == {"front/main": "recording", "front/sub": "recording",
                      "back/main": "recording"}, states
    front = browser.find_element(By.CSS_SELECTOR, '#stream-status tr[data-stream="front/main"]')
    assert "Mbit/s" in front.text and ("days" in front.text or "hours" in front.text), front.text
    disks = browser.find_elements(By.CSS_SELECTOR, "#disk-status tbody tr")
    assert len(disks) == 1 and "front/main" in disks[0].text and "iB" in disks[0].text
    shot(server, browser, "07-status")


def test_setup_adds_a_camera_that_then_records(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    open_hash(browser, server, "/setup")
    add = wait_until("the setup page", lambda: browser.find_elements(
        By.CSS_SELECTOR, "details.add-camera"), 15, lambda: page_state(browser))[0]
    add.find_element(By.TAG_NAME, "summary").click()
    form = add.find_element(By.TAG_NAME, "form")
    values = {"shortName": "garage", "main.url": MAIN_URL, "main.retain": "20MiB",
              "rotateIntervalSec": str(ROTATE_SEC)}
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    form.find_element(By.CSS_SELECTOR, 'button.probe[data-stream="main"]').click()
    probe = wait_until("the probe's answer", lambda: (t := form.find_element(
        By.CSS_SELECTOR, ".probe-result").text) and "testing" not in t and t, 20,
        lambda: page_state(browser))
    assert "can record this" in probe or "no stream probe" in probe, probe
    shot(server, browser, "08-setup-probe")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("the camera to be added", lambda: "recording garage/main" in browser.find_element(
        By.ID, "setup-cameras").text, 15, lambda: page_state(browser))
    shot(server, browser, "09-setup-added")
    top = session_json(server, browser, "/api/")
    garage = next(c for c in top["cameras"] if c["shortName"] == "garage")
    path = f"/api/cameras/{garage['uuid']}/main/recordings"
    rows = wait_until("garage's first recording", lambda: session_json(
        server, browser, path)["recordings"], 20, lambda: server.log()[-2000:])
    assert rows[0]["videoSamples"] > 0
    # Edit it: only what was changed changes (the budget shown rounded is not sent back).
    open_hash(browser, server, "/setup")
    row = wait_until("garage in the list", lambda: browser.find_elements(
        By.CSS_SELECTOR, 'details.camera-row[data-camera="garage"]'), 15,
        lambda: page_state(browser))[0]
    row.find_element(By.TAG_NAME, "summary").click()
    edit = row.find_element(By.TAG_NAME, "form")
    edit.find_element(By.NAME, "description").send_keys("the side door")
    edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("the edit saved", lambda: "camera garage saved" in browser.find_element(
        By.ID, "setup-cameras").text, 15, lambda: page_state(browser))
    saved = next(c for c in session_json(server, browser, "/api/admin/cameras")["cameras"]
                 if c["shortName"] == "garage")
    assert saved["description"] == "the side door"
    assert saved["streams"]["main"]["retainBytes"] == 20 << 20
    assert "sub" not in saved["streams"]


def test_a_phone_wide_window_never_scrolls_sideways(server):
    with chromium(window=(390, 844)) as phone:
        phone.set_window_size(390, 844)
        for i, page in enumerate(("/live", "/play?camera=front", "/status", "/setup")):
            open_hash(phone, server, page)
            if i == 0:
                log_in_on(phone, server, page)
            wait_until(f"{page} to draw", lambda: phone.execute_script(
                "return document.querySelector('#main').children.length > 1"), 15,
                lambda: page_state(phone))
            time.sleep(0.5)  # tiles, timeline and tables settle
            sizes = phone.execute_script(
                "return [innerWidth, document.documentElement.scrollWidth,"
                " document.documentElement.clientWidth];")
            assert sizes[0] <= 400, sizes
            assert sizes[1] <= sizes[2], f"{page} overflows sideways: {sizes}"
            if page.startswith("/play"):
                touch_scrub(server, phone)
            name = page.strip("/").split("?")[0]
            phone.save_screenshot(os.path.join(server.artifacts, f"10-phone-{name}.png"))


def touch_scrub(server: Server, phone) -> None:
    """A finger dragged along the timeline scrubs: the frame where it lifts is shown."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By

    _first_end, second_start = wait_for_second_run(server, phone, 4)
    zoom_to(phone, second_start + 2 * 90000, 60)
    canvas = phone.find_element(By.CSS_SELECTOR, ".timeline-canvas")
    width = phone.execute_script("return arguments[0].getBoundingClientRect().width;", canvas)

    def offset(t90k: float) -> int:
        x = phone.execute_script(
            "return window.moonfire.timeline.clientXOf(arguments[0])"
            " - arguments[1].getBoundingClientRect().left;", t90k, canvas)
        return int(round(x - width / 2))

    start, end = offset(second_start + 0.5 * 90000), offset(second_start + 2.5 * 90000)
    finger = PointerInput(interaction.POINTER_TOUCH, "finger")
    actions = ActionBuilder(phone, mouse=finger)
    actions.pointer_action.move_to(canvas, start, 0).pointer_down()
    actions.pointer_action.move_to(canvas, (start + end) // 2, 0).move_to(canvas, end, 0)
    actions.pointer_action.pointer_up()
    actions.perform()
    rect_left = phone.execute_script("return arguments[0].getBoundingClientRect().left;", canvas)
    asked = phone.execute_script("return window.moonfire.timeline.timeAtClientX(arguments[0]);",
                                 rect_left + width / 2 + end)
    wait_until("the touch-scrubbed frame",
               lambda: (s := page_state(phone))["t90k"] and
               -1 < asked - int(s["t90k"]) <= ONE_FRAME and s, 10,
               lambda: (asked, page_state(phone)))


def log_in_on(driver, server: Server, page: str) -> None:
    """Log in through the form, then open ``page``."""
    from selenium.webdriver.common.by import By

    form = wait_until("the login form", lambda: driver.find_elements(By.ID, "login-form"), 15,
                      lambda: page_state(driver))[0]
    form.find_element(By.NAME, "username").send_keys(ADMIN)
    form.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(f"{page} after logging in",
               lambda: driver.execute_script("return location.hash") == f"#{page}", 15,
               lambda: page_state(driver))


def test_the_static_files_cannot_be_escaped(server):
    """``/static/`` serves only the package's files."""
    for path in ("/static/../app.py", "/static/js/../../app.py", "/static/.hidden.js",
                 "/static/nothing.js", "/static/js/app.py"):
        try:
            urllib.request.urlopen(server.base + path, timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 404, (path, e.code)
        else:
            raise AssertionError(f"{path} was served")
    with urllib.request.urlopen(server.base + "/static/js/app.js", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        etag = r.headers["ETag"]
    request = urllib.request.Request(server.base + "/static/js/app.js",
                                     headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as e:
        assert e.code == 304
    else:
        raise AssertionError("no 304 for a matching ETag")


def test_setup_refuses_bad_settings_naming_them(server, browser):
    """The setup endpoints say which field is wrong, and change nothing."""
    log_in(browser, server)
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    csrf = session_json(server, browser, "/api/")["user"]["session"]["csrf"]

    def call(method: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
        request = urllib.request.Request(
            server.base + path, method=method, data=json.dumps({**body, "csrf": csrf}).encode(),
            headers={"Cookie": cookie, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    before = session_json(server, browser, "/api/admin/cameras")["cameras"]
    cases = [
        ({"camera": {"shortName": "x", "streams": {"main": {"retain": "lots"}}}},
         400, "camera.streams.main.retain: unparseable size 'lots'"),
        ({"camera": {"shortName": "x", "colour": "red"}}, 400, "camera.colour is not a camera"),
        ({"camera": {"shortName": "front"}}, 400, "front"),
        ({"camera": {"shortName": "x", "rotateIntervalSec": 900}}, 400, "rotate_interval_sec"),
        ({"camera": {"shortName": "x", "streams": {"side": {}}}}, 400, "streams are main and sub"),
        ({"camera": {}}, 400, "camera.shortName is required"),
    ]
    for body, status, message in cases:
        got = call("POST", "/api/admin/cameras", body)
        assert got[0] == status and message in got[1], (body, got)
    front = next(c for c in before if c["shortName"] == "front")
    got = call("DELETE", f"/api/admin/cameras/{front['uuid']}", {})
    assert got[0] == 409 and "being recorded" in got[1], got
    got = call("PATCH", f"/api/admin/cameras/{uuidlib.uuid4()}", {"camera": {}})
    assert got[0] == 404, got
    after = session_json(server, browser, "/api/admin/cameras")["cameras"]
    assert [c["shortName"] for c in after] == [c["shortName"] for c in before]
    # The camera's password never reaches the page, nor a URL's.
    assert all("password" not in c for c in after)


def test_a_codec_this_browser_cannot_play_says_so_and_offers_the_download(server, browser):
    """As Chromium is with H.265: here simulated by a browser that says it plays nothing."""
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    _first_end, second_start = wait_for_second_run(server, browser, 3)
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        MediaSource.isTypeSupported = () => false;
        HTMLMediaElement.prototype.canPlayType = () => "";"""})
    try:
        open_hash(browser, server, f"/play?camera=front&t={moment(second_start + 90000)}")
        state = wait_until("the player to say it can't play", lambda: (
            s := page_state(browser))["state"] and "can't play" in s["state"] and s, 15,
            lambda: page_state(browser))
        assert "avc1" in state["state"], state
        download = browser.find_element(By.CSS_SELECTOR, "#player-state a[download]")
        assert "/view.mp4?s=" in download.get_attribute("href")
        shot(server, browser, "11-playback-unsupported")
        open_hash(browser, server, "/live")
        tiles = wait_until("the tiles to say so", lambda: (t := browser.find_elements(
            By.CSS_SELECTOR, '.tile[data-state="unsupported"]')) and len(t) >= 2
            and len(t) == len(browser.find_elements(By.CSS_SELECTOR, ".tile")) and t, 15,
            lambda: page_state(browser))
        assert "download the recordings" in tiles[0].text, tiles[0].text
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": script["identifier"]})


def test_change_password_and_log_out(server, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, server)
    open_hash(browser, server, "/status")
    menu = wait_until("the account menu", lambda: browser.find_elements(
        By.CSS_SELECTOR, ".account-menu summary"), 15, lambda: page_state(browser))[0]
    menu.click()
    browser.find_element(By.XPATH, "//button[text()='Change password']").click()
    dialog = browser.find_element(By.CSS_SELECTOR, "dialog form")
    for name, value in (("old", "wrong"), ("new1", "next-pw-1"), ("new2", "next-pw-1")):
        dialog.find_element(By.NAME, name).send_keys(value)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("a wrong old password refused", lambda: "incorrect password" in dialog.text, 10,
               lambda: dialog.text)
    old = dialog.find_element(By.NAME, "old")
    old.clear()
    old.send_keys(ADMIN_PASSWORD)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("the password changed", lambda: "password changed" in dialog.text, 10,
               lambda: dialog.text)
    from moonfire.db.users import Users
    from moonfire.storage import data_dir as datadir

    with datadir.open_db(server.data_dir) as db:
        users = Users(db)
        assert users.get_user(ADMIN).check_password("next-pw-1")
        users.update_user(users.get_user(ADMIN).id, password=ADMIN_PASSWORD)  # for the others
    wait_until("the dialog to close", lambda: not browser.find_elements(By.CSS_SELECTOR, "dialog"),
               5, lambda: page_state(browser))
    browser.find_element(By.CSS_SELECTOR, ".account-menu summary").click()
    browser.find_element(By.ID, "logout").click()
    wait_until("the login page", lambda: browser.find_elements(By.ID, "login-form"), 10,
               lambda: page_state(browser))
    assert not any(c["name"] == "s" for c in browser.get_cookies())
