"""Streams and several sample file directories, through the real ``moonfire`` command.

``moonfire dir add|list|remove`` manage where video goes; ``camera add/edit`` give each
stream (main, and optionally sub) its own budget, maximum age and directory; ``run``,
``recordings``, ``export``, ``check`` and ``status`` then work per stream.  Configuration
and listings run in-process (``tests.support.cli.moonfire``); recording runs the real
``moonfire run`` process on synthetic ``testsrc://`` cameras, or goes through the storage
engine (``record_synthetic``) when exact control over the recordings' times is needed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import av
import pytest

from moonfire.cli.status import NOT_RUNNING
from moonfire.sizes import format_size
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import META_NAME
from moonfire.storage.retention import DAY_90K
from moonfire.storage.sample_file_dir import uuid_name
from tests.support.cli import (
    TESTSRC_URL,
    add_camera,
    assert_storage_consistent,
    moonfire,
    record_synthetic,
    sample_files,
)

#: The sub stream of the synthetic camera: smaller and cheaper than the main one.
SUB_URL = "testsrc://?size=160x120&fps=30&bitrate=100k&gop=30"
SUB_SIZE = (160, 120)


@pytest.fixture
def data_dir(tmp_path, capsys) -> str:
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    return path


@pytest.fixture
def disk2(tmp_path, capsys, data_dir) -> str:
    """A second sample file directory, ``disk2``, outside the data directory."""
    path = str(tmp_path / "disk2" / "moonfire")
    code, out, err = moonfire(capsys, "dir", "add", "disk2", path, "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert f"added sample file directory 'disk2' at {path}" in out
    return path


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    assert err.startswith("moonfire: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in err, err


def camera_list_json(capsys, data_dir: str) -> list[dict]:
    code, out, err = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    return json.loads(out)


def dir_list_json(capsys, data_dir: str) -> dict[str, dict]:
    code, out, err = moonfire(capsys, "dir", "list", "--json", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    return {d["name"]: d for d in json.loads(out)}


def stream_rows(data_dir: str, camera: str, stream: str):
    with datadir.open_db(data_dir, read_only=True) as db:
        return db.list_recordings(db.get_camera(camera).stream(stream).id)


def stream_files(data_dir: str, camera: str, stream: str) -> set[str]:
    """The sample file names the database gives the stream's recordings."""
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera(camera).stream(stream).id)
        return {uuid_name(db.get_playback(r.composite_id).sample_file_uuid) for r in rows}


def add_front_with_sub(capsys, data_dir: str, *extra: str) -> None:
    """Camera ``front``: main on ``default`` (1 MiB), sub on ``disk2`` (200 KiB)."""
    code, out, err = moonfire(
        capsys, "camera", "add", "front", "--url", TESTSRC_URL, "--retain", "1MiB",
        "--sub-url", SUB_URL, "--sub-retain", "200KiB", "--dir", "default",
        "--sub-dir", "disk2", "--data-dir", data_dir, *extra,
    )
    assert (code, err) == (0, "")
    assert f"main stream budget {format_size(2**20)} in 'default'" in out
    assert f"sub stream budget {format_size(200 * 2**10)} in 'disk2'" in out


# ---- moonfire dir -----------------------------------------------------------------------


def test_dir_list_shows_each_dir_with_its_path_space_usage_and_streams(
    data_dir, disk2, capsys
):
    add_front_with_sub(capsys, data_dir)
    record_synthetic(data_dir, "front", 4)
    record_synthetic(data_dir, "front", 6, stream="sub")
    dirs = dir_list_json(capsys, data_dir)
    assert list(dirs) == ["default", "disk2"]
    default = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    assert (dirs["default"]["path"], dirs["disk2"]["path"]) == (default, disk2)
    for name, stream in (("default", "main"), ("disk2", "sub")):
        listed = dirs[name]
        rows = stream_rows(data_dir, "front", stream)
        assert listed["streams"] == [f"front/{stream}"]
        assert listed["recordings"] == len(rows) > 0
        assert listed["usage_bytes"] == sum(r.sample_file_bytes for r in rows)
        assert listed["error"] is None
        st = os.statvfs(listed["path"])
        assert 0 < listed["free_bytes"] <= st.f_blocks * st.f_frsize
        assert 0 < listed["free_inodes"] <= st.f_files
    # The two streams' recordings differ, so the usages can't be each other's.
    assert dirs["default"]["usage_bytes"] != dirs["disk2"]["usage_bytes"]

    code, out, err = moonfire(capsys, "dir", "list", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "PATH", "FREE", "FREE", "INODES", "USAGE", "RECORDINGS",
                              "STREAMS"]
    assert [r.split()[:2] for r in rows] == [["default", default], ["disk2", disk2]]
    assert rows[0].endswith("front/main") and rows[1].endswith("front/sub")
    assert str(dirs["disk2"]["recordings"]) in rows[1].split()


def test_dir_add_refuses_a_duplicate_name_or_path(data_dir, disk2, tmp_path, capsys):
    other = str(tmp_path / "disk3")
    code, _out, err = moonfire(capsys, "dir", "add", "disk2", other, "--data-dir", data_dir)
    one_line_error(code, err, "'disk2'", "already has the name 'disk2'")
    assert not os.path.exists(other), "a refused directory must not be created"
    code, _out, err = moonfire(capsys, "dir", "add", "disk3", disk2, "--data-dir", data_dir)
    one_line_error(code, err, "'disk2'", f"already has the path {disk2}")
    assert list(dir_list_json(capsys, data_dir)) == ["default", "disk2"]


def test_dir_add_refuses_a_non_empty_directory_naming_it(data_dir, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("someone else's\n")
    code, _out, err = moonfire(capsys, "dir", "add", "disk2", str(full), "--data-dir", data_dir)
    one_line_error(code, err, str(full), "not empty")
    assert os.listdir(full) == ["notes.txt"], "nothing written into someone else's directory"
    assert list(dir_list_json(capsys, data_dir)) == ["default"], "no half-added directory"
    # The name is free again: the refused add left nothing behind in the database.
    empty = str(tmp_path / "empty")
    assert moonfire(capsys, "dir", "add", "disk2", empty, "--data-dir", data_dir)[0] == 0


def test_dir_remove_refuses_while_a_stream_uses_it_then_leaves_the_directory(
    data_dir, disk2, capsys
):
    add_front_with_sub(capsys, data_dir)
    assert os.path.exists(os.path.join(disk2, META_NAME))
    code, _out, err = moonfire(capsys, "dir", "remove", "disk2", "--data-dir", data_dir)
    one_line_error(code, err, "'disk2'", "used by stream front/sub")
    assert list(dir_list_json(capsys, data_dir)) == ["default", "disk2"]

    code, _out, err = moonfire(
        capsys, "camera", "edit", "front", "--sub-dir", "default", "--data-dir", data_dir
    )
    assert (code, err) == (0, "")
    code, out, err = moonfire(capsys, "dir", "remove", "disk2", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "removed sample file directory 'disk2'" in out
    assert list(dir_list_json(capsys, data_dir)) == ["default"]
    assert os.path.isdir(disk2), "the directory itself is left in place"
    assert not os.path.exists(os.path.join(disk2, META_NAME)), "its meta is removed"
    # The directory is reusable: an empty directory can be added again.
    assert moonfire(capsys, "dir", "add", "disk2", disk2, "--data-dir", data_dir)[0] == 0


def test_dir_remove_refuses_the_only_directory(data_dir, capsys):
    code, _out, err = moonfire(capsys, "dir", "remove", "default", "--data-dir", data_dir)
    one_line_error(code, err, "'default'", "the only one")
    assert list(dir_list_json(capsys, data_dir)) == ["default"]


# ---- a camera with a sub stream on another disk, recorded by `moonfire run` ------------


def wait_for_status(data_dir: str, capsys, proc: subprocess.Popen, wanted: list[str],
                    timeout: float = 30) -> list[str]:
    """``moonfire status`` lines once every ``wanted`` prefix is among them."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = moonfire(capsys, "status", "--data-dir", data_dir)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        if all(any(line.startswith(w) for line in lines) for w in wanted):
            return lines
        assert proc.poll() is None, f"moonfire run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"status never showed {wanted}: {lines}"
        time.sleep(0.2)


def test_run_records_main_and_sub_into_their_own_directories(data_dir, disk2, capsys, tmp_path):
    add_front_with_sub(capsys, data_dir, "--rotate-seconds", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--for", "10", "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        live = wait_for_status(
            data_dir, capsys, proc, ["front/main: recording", "front/sub: recording"]
        )
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert live[0].startswith("running (pid ")
    assert [line.split(":")[0] for line in live[1:]] == ["front/main", "front/sub"]

    # Both streams recorded, each into its own directory only.
    main_files, sub_files = (stream_files(data_dir, "front", s) for s in ("main", "sub"))
    assert main_files and sub_files
    assert sample_files(data_dir, "default") == main_files
    assert sample_files(data_dir, "disk2") == sub_files
    assert os.path.join(data_dir, datadir.SAMPLE_DIR_NAME) != disk2

    for stream, flag in (("main", []), ("sub", ["--stream", "sub"])):
        rows = stream_rows(data_dir, "front", stream)
        code, out, err = moonfire(
            capsys, "recordings", "front", *flag, "--json", "--data-dir", data_dir
        )
        assert (code, err) == (0, "")
        listing = json.loads(out)
        assert (listing["camera"], listing["stream"]) == ("front", stream)
        listed = [r["composite_id"] for run in listing["runs"] for r in run["recordings"]]
        assert listed == [r.composite_id for r in rows]
        code, out, err = moonfire(capsys, "recordings", "front", *flag, "--data-dir", data_dir)
        assert out.startswith("run 1: ") and f"{len(rows)} recordings" in out

    # The sub stream's export is a playable .mp4 of every sub frame, at the sub's size.  The
    # range ends a tick after the last recording: a run stopped right after a rotation ends in
    # a one-frame recording of duration 0, which starts at the end of [start, end).
    rows = stream_rows(data_dir, "front", "sub")
    output = tmp_path / "sub.mp4"
    code, out, err = moonfire(
        capsys, "export", "front", "--stream", "sub", "--start", str(rows[0].start_time_90k),
        "--end", str(rows[-1].end_time_90k + 1), "-o", str(output), "--data-dir", data_dir,
    )
    assert (code, err) == (0, "")
    frames = sum(r.video_samples for r in rows)
    assert f"wrote {output}" in out and f"{frames} frames" in out
    with av.open(io.BytesIO(output.read_bytes())) as container:
        decoded = [(f.width, f.height) for f in container.decode(video=0)]
    assert decoded == [SUB_SIZE] * frames

    code, out, err = moonfire(capsys, "check", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert out.startswith("ok: ")
    assert_storage_consistent(data_dir)

    # Stopped: still one line per stream, with its last recording.
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    first, *streams = out.splitlines()
    assert first.startswith(f"{NOT_RUNNING} (last seen ")
    assert [line.split(":")[0] for line in streams] == ["front/main", "front/sub"]
    assert all("last recording ends" in line for line in streams)


# ---- camera add: the sub stream's options -----------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--sub-retain", "200KiB"], "--sub-retain needs --sub-url"),
        (["--sub-dir", "default"], "--sub-dir needs --sub-url"),
        (["--sub-url", SUB_URL], "--sub-url needs --sub-retain"),
    ],
    ids=["retain-without-url", "dir-without-url", "url-without-retain"],
)
def test_camera_add_refuses_half_a_sub_stream(data_dir, capsys, options, fragment):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", TESTSRC_URL, "--retain", "1MiB", *options,
        "--data-dir", data_dir,
    )
    one_line_error(code, err, fragment)
    assert camera_list_json(capsys, data_dir) == []


def test_sub_retain_zero_keeps_the_sub_stream_unrecorded(data_dir, capsys):
    code, out, err = moonfire(
        capsys, "camera", "add", "front", "--url", TESTSRC_URL, "--retain", "1MiB",
        "--sub-url", SUB_URL, "--sub-retain", "0", "--rotate-seconds", "1",
        "--data-dir", data_dir,
    )
    assert (code, err) == (0, "")
    assert "sub stream not recorded" in out
    [camera] = camera_list_json(capsys, data_dir)
    assert [(s["type"], s["record"], s["url"]) for s in camera["streams"]] == [
        ("main", True, TESTSRC_URL), ("sub", False, SUB_URL)]
    code, out, _err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    [sub_row] = [line for line in out.splitlines() if line.startswith("front/sub ")]
    assert "not recorded" in sub_row
    [main_row] = [line for line in out.splitlines() if line.startswith("front/main ")]
    assert "not recorded" not in main_row

    code, _out, err = moonfire(capsys, "run", "--for", "4", "--data-dir", data_dir)
    assert code == 0, err
    assert stream_rows(data_dir, "front", "main")
    assert stream_rows(data_dir, "front", "sub") == []
    assert sample_files(data_dir) == stream_files(data_dir, "front", "main")
    code, out, _err = moonfire(
        capsys, "recordings", "front", "--stream", "sub", "--data-dir", data_dir
    )
    assert out == "stream front/sub has no recordings in this range\n"
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    assert [line.split(":")[0] for line in out.splitlines()[1:]] == ["front/main"]
    assert_storage_consistent(data_dir)


# ---- camera edit: maximum age and directory ---------------------------------------------


def test_max_days_deletes_older_recordings_at_once_and_list_forecasts(data_dir, capsys):
    # A budget that holds weeks at testsrc's 300 kbit/s, so the maximum age deletes first.
    add_camera(capsys, data_dir, "front", "--retain", "100GiB")
    # Synthetic recordings through the storage engine, from 2023: years old.
    record_synthetic(data_dir, "front", 6)
    old = stream_rows(data_dir, "front", "main")
    assert len(old) >= 2
    assert max(r.end_time_90k for r in old) < time.time() * 90_000 - 2 * DAY_90K
    # A recording of now, by the real recorder: younger than a day.
    assert moonfire(capsys, "run", "--for", "3", "--data-dir", data_dir)[0] == 0
    rows = stream_rows(data_dir, "front", "main")
    new = rows[len(old):]
    assert rows[: len(old)] == old and new
    code, out, _err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    assert "front/main: " not in out, "no forecast line without a maximum age"

    code, out, err = moonfire(
        capsys, "camera", "edit", "front", "--max-days", "1", "--data-dir", data_dir
    )
    assert (code, err) == (0, "")
    assert f"deleted {len(old)} of front/main's oldest recordings" in out
    assert "maximum age of 1 days" in out
    assert stream_rows(data_dir, "front", "main") == new  # at once: no recorder was running
    assert sample_files(data_dir) == stream_files(data_dir, "front", "main")
    assert_storage_consistent(data_dir)

    [camera] = camera_list_json(capsys, data_dir)
    [main] = camera["streams"]
    assert main["max_age_days"] == 1
    assert main["budget_holds_90k"] > DAY_90K
    assert main["forecast"].startswith(f"the budget holds {main['budget_holds']}, more than")
    code, out, _err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    header, row, *forecasts = out.splitlines()
    assert "1 days" in row.split("  ")
    assert forecasts == [f"front/main: {main['forecast']}"]

    # --max-days 0 removes the limit (and with it the forecast).
    assert moonfire(capsys, "camera", "edit", "front", "--max-days", "0",
                    "--data-dir", data_dir)[0] == 0
    [camera] = camera_list_json(capsys, data_dir)
    assert (camera["streams"][0]["max_age_days"], camera["streams"][0]["forecast"]) == (
        None, None)


def test_forecast_says_when_the_budget_deletes_before_the_maximum_age(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    # Recordings of now (those of record_synthetic, from 2023, would go at any maximum age).
    assert moonfire(capsys, "run", "--for", "3", "--data-dir", data_dir)[0] == 0
    rows = stream_rows(data_dir, "front", "main")
    usage = sum(r.sample_file_bytes for r in rows)
    # A budget of twice what was recorded holds seconds: far less than 30 days.
    code, _out, err = moonfire(
        capsys, "camera", "edit", "front", "--retain", str(2 * usage), "--max-days", "30",
        "--data-dir", data_dir,
    )
    assert (code, err) == (0, "")
    [camera] = camera_list_json(capsys, data_dir)
    [main] = camera["streams"]
    assert stream_rows(data_dir, "front", "main") == rows, "nothing is too old or too big"
    assert main["budget_holds_90k"] < DAY_90K
    assert "less than the maximum age of 30 days: the budget deletes first" in main["forecast"]
    # A stream with a maximum age but no recordings yet has no bitrate to forecast from.
    add_camera(capsys, data_dir, "back", "--max-days", "7")
    code, out, _err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["front/main", "back/main"]
    assert lines[3:] == [f"front/main: {main['forecast']}"]


def test_moving_a_stream_to_another_dir_needs_it_to_have_no_recordings(
    data_dir, disk2, capsys
):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", TESTSRC_URL, "--retain", "1GiB",
        "--sub-url", SUB_URL, "--sub-retain", "1MiB", "--data-dir", data_dir,
    )
    assert (code, err) == (0, "")
    record_synthetic(data_dir, "front", 4)  # main only
    count = len(stream_rows(data_dir, "front", "main"))
    before = camera_list_json(capsys, data_dir)

    code, _out, err = moonfire(
        capsys, "camera", "edit", "front", "--dir", "disk2", "--retain", "2GiB",
        "--data-dir", data_dir,
    )
    one_line_error(code, err, f"stream front/main has {count} recordings",
                   "it can move to another only without any")
    assert camera_list_json(capsys, data_dir) == before, "a refused edit changes nothing"

    code, out, err = moonfire(
        capsys, "camera", "edit", "front", "--sub-dir", "disk2", "--data-dir", data_dir
    )
    assert (code, err) == (0, "")
    [camera] = camera_list_json(capsys, data_dir)
    assert [(s["type"], s["dir"]) for s in camera["streams"]] == [
        ("main", "default"), ("sub", "disk2")]
    assert dir_list_json(capsys, data_dir)["disk2"]["streams"] == ["front/sub"]
    record_synthetic(data_dir, "front", 3, stream="sub")
    assert sample_files(data_dir, "disk2") == stream_files(data_dir, "front", "sub")
    assert_storage_consistent(data_dir)


def test_unknown_dir_is_named(data_dir, capsys):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", TESTSRC_URL, "--retain", "1GiB",
        "--dir", "nowhere", "--data-dir", data_dir,
    )
    one_line_error(code, err, "'nowhere'", "moonfire dir list")
    assert camera_list_json(capsys, data_dir) == []


def test_export_of_a_missing_sub_stream_is_refused(data_dir, capsys, tmp_path):
    add_camera(capsys, data_dir, "front")
    output = tmp_path / "out.mp4"
    code, out, err = moonfire(
        capsys, "export", "front", "--stream", "sub", "--start", "0", "--end", "1000",
        "-o", str(output), "--data-dir", data_dir,
    )
    one_line_error(code, err, "camera 'front' has no sub stream")
    assert out == "" and not output.exists()


# ---- URLs and transports (issue 10 §4) ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("rtsp://[::1", "not a valid URL: Invalid IPv6 URL"),
        ("rtsp://cam:port/main", "not a valid URL: Port could not be cast"),
        ("rtsp:///main", "an RTSP URL needs a host"),
        ("http://cam.example/video.mjpg", "unsupported URL scheme 'http'"),
        ("testsrc://?fps=0", "testsrc fps, gop and bitrate must be positive"),
    ],
    ids=["unclosed-ipv6", "bad-port", "no-host", "http", "bad-testsrc"],
)
def test_camera_add_and_edit_refuse_a_url_no_session_could_open(data_dir, capsys, url, fragment):
    code, out, err = moonfire(capsys, "camera", "add", "bad", "--url", url, "--retain", "1GB",
                              "--data-dir", data_dir)
    one_line_error(code, err, f"--url {url}: {fragment}")
    add_camera(capsys, data_dir, "front")
    code, out, err = moonfire(capsys, "camera", "edit", "front", "--sub-url", url,
                              "--sub-retain", "1GB", "--data-dir", data_dir)
    one_line_error(code, err, f"--sub-url {url}: {fragment}")
    assert [c["name"] for c in camera_list_json(capsys, data_dir)] == ["front"]
    assert [s["type"] for s in camera_list_json(capsys, data_dir)[0]["streams"]] == ["main"]


def test_a_bad_url_stored_before_validation_breaks_neither_list_nor_the_recorder(
    data_dir, capsys
):
    """``rtsp://[::1`` once killed its streamer with a traceback and made ``camera list`` fail
    for every camera.  Stored the way an older release let it in, it is now named and
    retried, and the other camera records."""
    add_camera(capsys, data_dir, "good")
    with datadir.open_db(data_dir) as db:
        db.add_camera("bad", url="rtsp://admin:pw@[::1", retain_bytes=10**9)
    cameras = {c["name"]: c for c in camera_list_json(capsys, data_dir)}
    assert cameras["bad"]["streams"][0]["url"] == "rtsp://admin:***@[::1"
    from moonfire.ingest.daemon import start_daemon  # PyAV: only this test needs it

    daemon = start_daemon(data_dir)
    try:
        streamers = {s.camera.short_name: s for s in daemon.streamers}
        deadline = time.monotonic() + 15
        while streamers["bad"].status().errors < 2 or streamers["good"].status().frames < 30:
            assert time.monotonic() < deadline, {n: s.status() for n, s in streamers.items()}
            time.sleep(0.05)
        bad = streamers["bad"].status()
        assert streamers["bad"].running, "the streamer thread died"
    finally:
        assert daemon.shutdown() == 0
    assert bad.state == "retrying" and "not a valid URL: Invalid IPv6 URL" in bad.last_error
    assert "pw" not in bad.last_error.replace("***", "")


def test_transport_is_set_per_stream_on_add_and_edit_and_listed(data_dir, capsys):
    add_camera(capsys, data_dir, "front", "--transport", "udp", "--sub-url", SUB_URL,
               "--sub-retain", "1GB", "--sub-transport", "tcp")
    (camera,) = camera_list_json(capsys, data_dir)
    assert [(s["type"], s["transport"]) for s in camera["streams"]] == [
        ("main", "udp"), ("sub", "tcp")]
    code, out, err = moonfire(capsys, "camera", "edit", "front", "--transport", "auto",
                              "--data-dir", data_dir)
    assert (code, err) == (0, "") and "transport" in out
    (camera,) = camera_list_json(capsys, data_dir)
    assert [s["transport"] for s in camera["streams"]] == ["auto", "tcp"]
    with pytest.raises(SystemExit) as exited:
        moonfire(capsys, "camera", "edit", "front", "--transport", "quic", "--data-dir", data_dir)
    assert exited.value.code == 2
    assert "argument --transport: invalid choice: 'quic'" in capsys.readouterr().err
