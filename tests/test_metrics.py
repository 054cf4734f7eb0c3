"""``/metrics`` and the streams' states in ``GET /api/``, against real recordings.

The module fixture records a synthetic camera (real H.264 from ``testsrc://``, main and
sub stream) with the recording daemon in this process, and serves the application
``moonfire run`` serves, over a view of that daemon (``moonfire.cli.run.DaemonView``), from a
``WebServer`` on a loopback port: so every value scraped can be held against the database,
``statvfs`` and the daemon itself.  A second camera exists but isn't recorded (``--camera``
leaves it out).  The last test runs a real ``moonfire run --listen`` over two sample file
directories, removes one, and checks that ``moonfire status`` and ``GET /api/`` say the
same of both streams before and after, and that ``/metrics`` shows the failure.

Scrapes are parsed with ``prometheus_client``'s own parser, as Prometheus would read them.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from moonfire.cli.run import DaemonView
from moonfire.cli.status import status_lines
from moonfire.db import users as users_module
from moonfire.db.users import ScryptParams, Users
from moonfire.ingest.daemon import Daemon, start_daemon
from moonfire.ingest.live import LiveFeeds
from moonfire.storage import data_dir as datadir
from moonfire.storage.retention import DAY_90K
from moonfire.storage.syncer import LatencyHistogram
from moonfire.web.app import build_app
from moonfire.web.auth import Auth, Permissions
from moonfire.web.context import WebContext
from moonfire.web.recorder import NOT_RECORDED
from moonfire.web.server import WebServer
from tests.support.cli import moonfire_process
from tests.support.net import free_port

MAIN_URL = "testsrc://?size=320x240&fps=10&bitrate=100k&gop=10"
SUB_URL = "testsrc://?size=160x120&fps=5&bitrate=50k&gop=5"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def http_get(
    host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@dataclass
class Recorded:
    data_dir: str
    daemon: Daemon
    server: WebServer
    camera_uuid: str
    stream_ids: dict[str, int]  # "main"/"sub" of camera front

    def get(self, path: str, headers: dict[str, str] | None = None):
        return http_get(self.server.host, self.server.port, path, headers)

    def scrape(self) -> Samples:
        status, headers, body = self.get("/metrics")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        return parse(body.decode())

    def api(self) -> dict:
        status, _headers, body = self.get("/api/")
        assert status == 200, body
        return json.loads(body)

    def rows(self, stream: str) -> list:
        with datadir.open_db(self.data_dir, read_only=True) as db:
            return db.list_recordings(self.stream_ids[stream])

    def daemon_status(self, stream: str) -> dict:
        return self.daemon.statuses_by_stream_id()[self.stream_ids[stream]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Iterator[Recorded]:
    data_dir = str(tmp_path_factory.mktemp("metrics") / "data")
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", MAIN_URL, "--retain", "100MiB",
         "--sub-url", SUB_URL, "--sub-retain", "10MiB", "--rotate-seconds", "1"),
        ("camera", "add", "back", "--url", MAIN_URL, "--retain", "1MiB"),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    with datadir.open_db(data_dir, read_only=True) as db:
        camera = db.get_camera("front")
        assert camera.sub is not None
        ids = {"main": camera.main.id, "sub": camera.sub.id}
        camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    daemon = start_daemon(data_dir, camera_names=["front"], live=LiveFeeds())
    ctx = WebContext.open(data_dir)
    server = WebServer(lambda: build_app(ctx, Auth(ctx.db), recorder=DaemonView(daemon)),
                       "127.0.0.1", 0)
    try:
        server.start()
        served = Recorded(data_dir, daemon, server, camera_uuid, ids)
        wait_until(lambda: len(served.rows("main")) >= 2 and len(served.rows("sub")) >= 2,
                   40, "two recordings of each stream")
        yield served
    finally:
        server.stop()
        ctx.close()
        assert daemon.shutdown() == 0


def test_stream_counters_match_the_database_and_the_daemon(recorded):
    """Recordings and their bytes are the rows committed (all by this process: a new data
    directory); frames are the daemon's count, and grow; the forecast is the budget over
    the bitrate recorded, in days."""
    for _attempt in range(30):
        before = {s: recorded.rows(s) for s in ("main", "sub")}
        frames_before = {s: recorded.daemon_status(s)["frames"] for s in ("main", "sub")}
        samples = recorded.scrape()
        frames_after = {s: recorded.daemon_status(s)["frames"] for s in ("main", "sub")}
        after = {s: recorded.rows(s) for s in ("main", "sub")}
        counted = {s: value(samples, "moonfire_stream_recordings_total",
                            camera="front", stream=s) for s in ("main", "sub")}
        for s in ("main", "sub"):
            assert counted[s] <= len(after[s]), "counted a recording not committed"
            assert frames_before[s] <= value(samples, "moonfire_stream_frames_total",
                                             camera="front", stream=s) <= frames_after[s]
        if before == after and all(counted[s] == len(after[s]) for s in counted):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the scrape never matched the committed recordings")
    for s in ("main", "sub"):
        rows = after[s]
        labels = {"camera": "front", "stream": s}
        usage = sum(r.sample_file_bytes for r in rows)
        duration = sum(r.duration_90k for r in rows)
        assert value(samples, "moonfire_stream_recorded_bytes_total", **labels) == usage
        assert value(samples, "moonfire_stream_usage_bytes", **labels) == usage
        retain = 100 * 2**20 if s == "main" else 10 * 2**20
        assert value(samples, "moonfire_stream_retain_bytes", **labels) == retain
        assert value(samples, "moonfire_stream_retention_forecast_days", **labels) == (
            pytest.approx(retain / usage * duration / DAY_90K, rel=1e-6))
        assert value(samples, "moonfire_stream_frames_total", **labels) > 0
        assert value(samples, "moonfire_stream_reconnects_total", **labels) == (
            recorded.daemon_status(s)["errors"]) == 0
        assert value(samples, "moonfire_stream_last_frame_age_seconds", **labels) < 3
        # A series for every state `moonfire status` can show, a file's end and live only too.
        assert {state: value(samples, "moonfire_stream_state", state=state, **labels)
                for state in ("recording", "retrying", "failed", "ended", "live only")} == {
            "recording": 1, "retrying": 0, "failed": 0, "ended": 0, "live only": 0}
    # The stream this process doesn't record has its budget, but no recorder counters.
    assert value(samples, "moonfire_stream_retain_bytes", camera="back", stream="main") == 2**20
    assert ("moonfire_stream_frames_total",
            frozenset({"camera": "back", "stream": "main"}.items())) not in samples
    first = value(samples, "moonfire_stream_frames_total", camera="front", stream="main")
    time.sleep(1.0)
    later = value(recorded.scrape(), "moonfire_stream_frames_total", camera="front", stream="main")
    assert later > first, "frames must grow while the camera sends them"


def test_directory_free_space_is_what_statvfs_says(recorded):
    samples = recorded.scrape()
    st = os.statvfs(os.path.join(recorded.data_dir, datadir.SAMPLE_DIR_NAME))
    free = value(samples, "moonfire_sample_file_dir_free_bytes", dir="default")
    # The disk is shared with other writers (other tests): within 64 MiB.
    assert abs(free - st.f_bavail * st.f_frsize) < 64 * 2**20
    assert value(samples, "moonfire_sample_file_dir_size_bytes", dir="default") == (
        st.f_blocks * st.f_frsize)
    inodes = value(samples, "moonfire_sample_file_dir_free_inodes", dir="default")
    assert abs(inodes - st.f_favail) < 10_000
    assert value(samples, "moonfire_sample_file_dir_failed", dir="default") == 0


def test_fsync_histograms_count_every_save(recorded):
    """Each committed recording's file was fsynced before its commit, and each batch's
    commit followed a directory fsync; the buckets are cumulative and end in +Inf."""
    samples = recorded.scrape()
    recordings = sum(value(samples, "moonfire_stream_recordings_total", camera="front", stream=s)
                     for s in ("main", "sub"))
    syncer = recorded.daemon.syncers[1]
    for kind, histogram in (("file", syncer.stats.file_fsync), ("dir", syncer.stats.dir_fsync)):
        name = f"moonfire_syncer_{kind}_fsync_seconds"
        count = value(samples, f"{name}_count", dir="default")
        assert 0 < count <= histogram.count
        assert 0 < value(samples, f"{name}_sum", dir="default")
        buckets = sorted(
            (float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
            if n == f"{name}_bucket"
        )
        assert buckets[-1] == (float("inf"), count)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert value(samples, "moonfire_syncer_file_fsync_seconds_count", dir="default") >= recordings
    assert value(samples, "moonfire_syncer_queue_depth", dir="default") >= 0


def test_latency_histogram_buckets_are_le_bounds():
    histogram = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 5.0):
        histogram.observe(seconds)
    assert histogram.counts == [2, 2, 1]  # an observation on a bound is in its bucket
    assert histogram.count == 5 and histogram.sum == pytest.approx(5.0135)


def test_http_requests_are_counted_by_status(recorded):
    before = recorded.scrape()
    assert recorded.get("/no-such-page")[0] == 404
    assert recorded.get("/api/no-such-thing")[0] == 404
    after = recorded.scrape()

    def count(samples: Samples, code: str) -> float:
        return samples.get(("moonfire_http_requests_total", frozenset({("code", code)})), 0.0)

    assert count(after, "404") == count(before, "404") + 2
    assert count(after, "200") == count(before, "200") + 1  # the first scrape


async def _viewers_while_watching(recorded: Recorded) -> tuple[float, float, float]:
    base = f"http://127.0.0.1:{recorded.server.port}"
    url = f"{base}/api/cameras/{recorded.camera_uuid}/main/live.m4s"

    async def viewers(session: aiohttp.ClientSession, stream: str) -> float:
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 200
            samples = parse(await response.text())
        return value(samples, "moonfire_stream_live_viewers", camera="front", stream=stream)

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            msg = await asyncio.wait_for(ws.receive(), 20)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            main, sub = await viewers(session, "main"), await viewers(session, "sub")
        deadline = time.monotonic() + 10
        while (after := await viewers(session, "main")) != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    return main, sub, after


def test_live_viewers_count_the_open_websockets(recorded):
    main, sub, after = asyncio.run(_viewers_while_watching(recorded))
    assert (main, sub) == (1, 0)
    assert after == 0, "the viewer left"


def status_states(data_dir: str) -> dict[str, str]:
    """``moonfire status``'s state of each stream: ``front/main`` -> ``recording``, or
    ``failed: REASON``."""
    lines = status_lines(data_dir)
    assert lines[0].startswith("running"), lines
    out = {}
    for line in lines[1:]:
        if line.startswith("sample file directory "):
            continue
        name, rest = line.split(": ", 1)
        out[name] = rest.rsplit("; ", 1)[0]
    return out


def api_states(doc: dict) -> dict[str, str]:
    """The same from ``GET /api/``'s ``state`` and ``stateReason``."""
    out = {}
    for camera in doc["cameras"]:
        for kind, stream in camera["streams"].items():
            reason = stream["stateReason"]
            out[f"{camera['shortName']}/{kind}"] = (
                stream["state"] if reason is None else f"{stream['state']}: {reason}")
    return out


def test_api_states_are_what_moonfire_status_says(recorded):
    expected = {"front/main": "recording", "front/sub": "recording", "back/main": NOT_RECORDED}
    wait_until(lambda: status_states(recorded.data_dir) == expected, 15, "the status file")
    assert api_states(recorded.api()) == expected
    camera = json.loads(recorded.get(f"/api/cameras/{recorded.camera_uuid}/")[2])
    assert camera["streams"]["sub"]["state"] == "recording"


def test_without_a_recorder_the_api_has_no_states(tmp_path):
    """A server over a database alone (tests, tools) says nothing it can't know."""
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    db.add_camera("cam", url=MAIN_URL, retain_bytes=2**20)
    sample_file_dir.close()
    db.close()
    ctx = WebContext.open(str(tmp_path / "data"))
    server = WebServer(lambda: build_app(ctx, Auth(ctx.db)), "127.0.0.1", 0)
    server.start()
    try:
        status, _headers, body = http_get("127.0.0.1", server.port, "/api/")
        assert status == 200
        (camera,) = json.loads(body)["cameras"]
        assert "state" not in camera["streams"]["main"]
        status, _headers, body = http_get("127.0.0.1", server.port, "/metrics")
        samples = parse(body.decode())
        assert value(samples, "moonfire_stream_retain_bytes", camera="cam", stream="main") == 2**20
        assert not any(name.startswith("moonfire_syncer_") for name, _ in samples)
    finally:
        server.stop()
        ctx.close()


# ---- access ---------------------------------------------------------------------------------

PASSWORD = "metrics-horse-battery"


@pytest.fixture
def cheap_scrypt(monkeypatch):
    """N = 16 instead of 32768 for hashes made here (the machine is shared)."""
    monkeypatch.setattr(users_module, "DEFAULT_SCRYPT", ScryptParams(log_n=4, r=8, p=1))


@pytest.mark.asyncio
async def test_metrics_need_a_login_once_a_user_exists(tmp_path, aiohttp_client, cheap_scrypt):
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    sample_file_dir.close()
    db.close()
    ctx = WebContext.open(str(tmp_path / "data"))
    try:
        client = await aiohttp_client(build_app(ctx, Auth(ctx.db)),
                                      cookie_jar=aiohttp.DummyCookieJar())
        response = await client.get("/metrics")
        assert response.status == 200  # no user yet: loopback may look
        Users(ctx.db).add_user("prometheus", password=PASSWORD,
                               permissions=Permissions(view_video=True).to_json())
        response = await client.get("/metrics")
        assert response.status == 401
        assert "moonfire_" not in await response.text()
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        wrong = base64.b64encode(b"prometheus:guess").decode()
        response = await client.get("/metrics", headers={"Authorization": f"Basic {wrong}"})
        assert response.status == 401
        response = await client.get("/metrics", headers={"Authorization": f"Basic {token}"})
        assert response.status == 200
        samples = parse(await response.text())
        assert value(samples, "moonfire_http_requests_total", code="401") == 2
        assert value(samples, "moonfire_sample_file_dir_free_bytes", dir="default") > 0
        login = await client.post("/api/login",
                                  json={"username": "prometheus", "password": PASSWORD})
        assert login.status == 204
        cookie = login.headers["Set-Cookie"].split(";", 1)[0]
        response = await client.get("/metrics", headers={"Cookie": cookie})
        assert response.status == 200
    finally:
        ctx.close()


# ---- a real `moonfire run --listen`, and a directory removed under it -------------------------


def rm_rf(path: str) -> None:
    """``rm -rf`` a directory the recorder writes to, again until it is gone (the syncer
    creates its pool's files ahead)."""
    deadline = time.monotonic() + 10
    while os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        assert time.monotonic() < deadline, f"{path} could not be removed"


def test_status_and_api_agree_when_a_directory_is_removed(tmp_path):
    data_dir = str(tmp_path / "data")
    path_b = str(tmp_path / "disk-b" / "sample")
    url = "testsrc://?size=160x120&fps=10&bitrate=50k&gop=10"
    for argv in (
        ("init",),
        ("dir", "add", "b", path_b),
        ("camera", "add", "a", "--url", url, "--retain", "100MiB", "--rotate-seconds", "1"),
        ("camera", "add", "b", "--url", url, "--retain", "100MiB", "--rotate-seconds", "1",
         "--dir", "b"),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir,
         "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def api() -> dict[str, str]:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            status, _headers, body = http_get("127.0.0.1", port, "/api/")
        except OSError:
            return {}
        assert status == 200, body
        return api_states(json.loads(body))

    def agreeing(expected: Callable[[dict[str, str]], bool]) -> dict[str, str]:
        """Wait until the API and the status file say the same and ``expected`` holds."""
        found: list[dict[str, str]] = []

        def check() -> bool:
            states = api()
            found[:] = [states]
            return bool(states) and expected(states) and status_states(data_dir) == states

        wait_until(check, 30, f"`moonfire status` and /api/ to agree (last: {found})")
        return found[0]

    try:
        agreeing(lambda s: s == {"a/main": "recording", "b/main": "recording"})
        rm_rf(path_b)
        states = agreeing(lambda s: s["b/main"].startswith("failed: "))
        assert states["a/main"] == "recording"
        assert path_b in states["b/main"]
        _status, _headers, body = http_get("127.0.0.1", port, "/metrics")
        samples = parse(body.decode())
        assert value(samples, "moonfire_stream_state", camera="b", stream="main",
                     state="failed") == 1
        assert value(samples, "moonfire_stream_state", camera="a", stream="main",
                     state="recording") == 1
        assert value(samples, "moonfire_sample_file_dir_failed", dir="b") == 1
        assert value(samples, "moonfire_sample_file_dir_failed", dir="default") == 0
        assert ("moonfire_sample_file_dir_free_bytes", frozenset({("dir", "b")})) not in samples
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out  # a directory failed during the run
