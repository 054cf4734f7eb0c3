"""The ``moonfire`` command: every subcommand in-process, plus real subprocesses.

In-process calls (``moonfire.cli.main``) cover configuration, listing and the
error messages; subprocesses cover what only a real process shows: one-line
errors with no traceback, the exit code after SIGINT, and the ``demo`` command
end to end on the synthetic camera.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from moonfire.cli import main as cli
from moonfire.cli.demo import DEMO_ROTATE_SEC
from moonfire.errors import MoonfireError
from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.time import parse_time
from moonfire_core import CorruptIndexError
from tests.support.cli import (
    add_camera,
    assert_storage_consistent,
    moonfire,
    moonfire_process,
    record_synthetic,
    sample_files,
)
from tests.support.engine import BASE_TIME_90K, ENTRY
from tests.support.net import free_port
from tests.support.synthetic_stream import feed

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir(tmp_path, capsys) -> str:
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    return path


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    assert err.startswith("moonfire: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in err


# ---- init and camera configuration ------------------------------------------------------


def test_init_camera_add_list_edit_remove_round_trip(data_dir, capsys):
    code, out, _ = moonfire(
        capsys, "camera", "add", "front", "--url", "rtsp://admin:secret@10.0.0.1/s1",
        "--username", "u", "--password", "p", "--retain", "10GiB", "--rotate-seconds", "30",
        "--description", "porch", "--data-dir", data_dir,
    )
    assert code == 0 and "front" in out
    code, out, _ = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    [listed] = json.loads(out)
    assert listed["name"] == "front"
    [main] = listed["streams"]  # no --sub-url: the main stream alone
    assert (main["type"], main["record"], main["dir"]) == ("main", True, "default")
    assert main["url"] == "rtsp://admin:***@10.0.0.1/s1"
    assert main["retain_bytes"] == 10 * 2**30
    assert listed["rotate_interval_sec"] == 30
    assert (listed["username"], listed["has_password"]) == ("u", True)
    assert (main["recordings"], main["usage_bytes"]) == (0, 0)
    assert "secret" not in out and '"p"' not in out

    code, out, _ = moonfire(
        capsys, "camera", "edit", "front", "--retain", "500MB", "--rename", "porch",
        "--data-dir", data_dir,
    )
    assert code == 0
    with datadir.open_db(data_dir, read_only=True) as db:
        camera = db.get_camera("porch")
    assert camera.main.retain_bytes == 500_000_000
    assert (camera.main.url, camera.rotate_interval_sec, camera.description) == (
        "rtsp://admin:secret@10.0.0.1/s1", 30, "porch")  # untouched by the edit

    code, out, _ = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    header, row = out.splitlines()
    assert header.split()[:4] == ["STREAM", "URL", "DIR", "BUDGET"]
    assert row.split()[:5] == ["porch/main", "rtsp://admin:***@10.0.0.1/s1", "default", "476.8",
                               "MiB"]

    assert moonfire(capsys, "camera", "remove", "porch", "--data-dir", data_dir)[0] == 0
    code, out, _ = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    assert json.loads(out) == []


def test_list_forecasts_how_much_video_the_budget_holds(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    code, out, _ = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    assert json.loads(out)[0]["streams"][0]["budget_holds_90k"] is None  # no bitrate yet
    record_synthetic(data_dir, "front", 10)
    code, out, _ = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    [listed] = json.loads(out)[0]["streams"]
    rate = listed["usage_bytes"] / listed["duration_90k"]
    assert listed["budget_holds_90k"] == pytest.approx(2**30 / rate, rel=1e-6)
    code, out, _ = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    assert out.splitlines()[0].split()[:7] == ["STREAM", "URL", "DIR", "BUDGET", "MAX", "AGE",
                                               "HOLDS"]
    assert listed["budget_holds"] in out


def test_init_puts_the_sample_dir_where_asked(tmp_path, capsys):
    data, samples = str(tmp_path / "data"), str(tmp_path / "disk2" / "moonfire")
    assert moonfire(capsys, "init", "--data-dir", data, "--sample-dir", samples)[0] == 0
    with datadir.open_db(data, read_only=True) as db:
        [row] = db.list_sample_file_dirs()
        assert (row.name, row.path) == ("default", samples)
    assert not os.path.exists(os.path.join(data, datadir.SAMPLE_DIR_NAME))


def test_second_init_is_refused(data_dir, capsys):
    code, _out, err = moonfire(capsys, "init", "--data-dir", data_dir)
    assert_one_line_error(code, err, "already a moonfire data directory")


def test_duplicate_camera_name_is_refused(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", "x", "--retain", "1G", "--data-dir", data_dir
    )
    assert_one_line_error(code, err, "'front' already exists")


@pytest.mark.parametrize(
    ("retain", "fragment"),
    [("--retain=-5GiB", "negative"), ("--retain=lots", "unparseable size 'lots'"),
     ("--retain=1.5", "fraction of a byte"), ("--retain=10XB", "unparseable size '10XB'")],
)
def test_bad_budget_is_refused_naming_the_value(data_dir, capsys, retain, fragment):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", "x", retain, "--data-dir", data_dir
    )
    assert_one_line_error(code, err, fragment)
    code, _out, err = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    assert json.loads(_out) == []


def test_password_without_username_is_refused_by_add(data_dir, capsys):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", "x", "--retain", "1G",
        "--password", "p", "--data-dir", data_dir,
    )
    assert_one_line_error(code, err, "'front'", "a password needs a username")
    code, out, _err = moonfire(capsys, "camera", "list", "--json", "--data-dir", data_dir)
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("setup", "edit"),
    [([], ["--password", "p"]), (["--username", "u", "--password", "p"], ["--username", ""])],
    ids=["password-alone", "clear-username-keep-password"],
)
def test_edit_leaving_a_password_without_username_is_refused(data_dir, capsys, setup, edit):
    add_camera(capsys, data_dir, "front", *setup)
    code, _out, err = moonfire(capsys, "camera", "edit", "front", *edit, "--data-dir", data_dir)
    assert_one_line_error(code, err, "'front'", "a password needs a username")
    with datadir.open_db(data_dir, read_only=True) as db:
        camera = db.get_camera("front")
    assert (camera.username, camera.password) == ((None, None) if not setup else ("u", "p"))


def test_bad_rotate_interval_is_refused(data_dir, capsys):
    code, _out, err = moonfire(
        capsys, "camera", "add", "front", "--url", "x", "--retain", "1G",
        "--rotate-seconds", "300", "--data-dir", data_dir,
    )
    assert_one_line_error(code, err, "rotate_interval_sec", "300")


@pytest.mark.parametrize(
    "argv",
    [["camera", "edit", "nope", "--retain", "1G"], ["camera", "remove", "nope"],
     ["recordings", "nope"], ["run", "--camera", "nope"]],
    ids=["edit", "remove", "recordings", "run"],
)
def test_unknown_camera_is_named(data_dir, capsys, argv):
    add_camera(capsys, data_dir, "front")  # so `run` gets as far as the name
    code, _out, err = moonfire(capsys, *argv, "--data-dir", data_dir)
    assert_one_line_error(code, err, "no camera 'nope'")


def test_edit_with_nothing_to_change_is_refused(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    code, _out, err = moonfire(capsys, "camera", "edit", "front", "--data-dir", data_dir)
    assert_one_line_error(code, err, "nothing to change")


@pytest.mark.parametrize(
    "argv",
    [["camera", "list"], ["camera", "add", "x", "--url", "u", "--retain", "1G"],
     ["recordings", "x"], ["run"], ["check"]],
    ids=["list", "add", "recordings", "run", "check"],
)
def test_missing_data_dir_says_to_run_init(tmp_path, capsys, argv):
    missing = str(tmp_path / "nowhere")
    code, _out, err = moonfire(capsys, *argv, "--data-dir", missing)
    assert_one_line_error(code, err, f"moonfire init --data-dir {missing}")
    assert not os.path.exists(missing)


def test_run_without_cameras_is_refused(data_dir, capsys):
    code, _out, err = moonfire(capsys, "run", "--for", "1", "--data-dir", data_dir)
    assert_one_line_error(code, err, "no cameras to record")


@pytest.mark.parametrize(
    "error",
    [
        MoonfireError("the camera's budget is too small for one recording"),
        CorruptIndexError("video_index byte 3: varint runs past the end"),  # core_user_errors()
    ],
    ids=["MoonfireError", "CorruptIndexError"],
)
def test_a_user_facing_error_prints_one_line(data_dir, capsys, monkeypatch, error):
    from moonfire.cli import camera

    def refuse(args):
        raise error

    monkeypatch.setattr(camera, "list_cameras", refuse)
    code, _out, err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    assert_one_line_error(code, err)
    assert err == f"moonfire: {error}\n"


@pytest.mark.parametrize(
    ("bug", "message"),
    [
        (lambda: {}["short_name"], "(KeyError): 'short_name'"),
        (lambda: int("x"), "(ValueError): invalid literal for int() with base 10: 'x'"),
    ],
    ids=["KeyError", "ValueError"],
)
def test_a_bug_prints_as_an_internal_error_with_the_hint(
    data_dir, capsys, monkeypatch, bug, message
):
    from moonfire.cli import camera

    monkeypatch.setattr(camera, "list_cameras", lambda args: bug())
    code, _out, err = moonfire(capsys, "camera", "list", "--data-dir", data_dir)
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == [
        f"moonfire: internal error {message}",
        "moonfire: rerun with --verbose for the traceback",
    ]
    with pytest.raises((KeyError, ValueError)):
        cli.main(["--verbose", "camera", "list", "--data-dir", data_dir])


def test_an_os_error_names_its_file(tmp_path, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    code, _out, err = moonfire(capsys, "init", "--data-dir", str(not_a_dir / "data"))
    assert_one_line_error(code, err, "Not a directory", str(not_a_dir / "data"))


HELP_ARGV = (
    [[name] for name in cli.COMMANDS]
    + [["camera", action] for action in ("add", "list", "edit", "remove")]
    + [["dir", action] for action in ("add", "list", "remove")]
)


@pytest.mark.parametrize("argv", HELP_ARGV, ids=" ".join)
def test_help_for_every_subcommand_exits_zero(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: moonfire" in capsys.readouterr().out


#: What the light commands must not import: each of these costs 0.1-0.4 s at start-up.
HEAVY_MODULES = ("av", "aiohttp", "boto3", "tqdm", "moonfire.web.app", "moonfire.cli.camera")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["status", "--help"]], ids=" ".join)
def test_a_command_imports_only_its_own_module(argv):
    """``moonfire.cli.main`` imports only the module of the command run (lazy subcommands):
    importing every command made ``moonfire --help`` or ``status`` take ~0.9 s."""
    probe = (
        "import sys\n"
        "from moonfire.cli import main\n"
        "try:\n"
        f"    main.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stderr.strip().splitlines()[-1] == "[]", completed.stderr
    if argv == ["--help"]:
        for name, line in cli.COMMANDS.items():  # every command listed, with its help
            assert name in completed.stdout and line.split()[0] in completed.stdout


def test_usage_errors_exit_two(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["camera", "add", "front"])  # --url and --retain are required
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


# ---- commands over recordings -----------------------------------------------------------


def test_remove_refuses_a_camera_with_recordings(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=5)
    files = sample_files(data_dir)
    assert files
    code, _out, err = moonfire(capsys, "camera", "remove", "front", "--data-dir", data_dir)
    assert_one_line_error(code, err, "--delete-recordings")
    assert sample_files(data_dir) == files
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.get_camera("front").main.retain_bytes == 2**30


def test_remove_with_delete_recordings_leaves_no_rows_or_files(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    add_camera(capsys, data_dir, "back")
    record_synthetic(data_dir, "front", seconds=7)
    record_synthetic(data_dir, "back", seconds=5)
    with datadir.open_db(data_dir, read_only=True) as db:
        back_id = db.get_camera("back").main.id
        back_rows = db.list_recordings(back_id)
    code, out, _ = moonfire(
        capsys, "camera", "remove", "front", "--delete-recordings", "--data-dir", data_dir
    )
    assert code == 0 and "removed camera 'front'" in out
    with datadir.open_db(data_dir, read_only=True) as db:
        assert [c.short_name for c in db.list_cameras()] == ["back"]
        assert db.list_recordings(back_id) == back_rows  # the other camera keeps everything
        assert sample_files(data_dir) == {
            uuid_name(db.get_playback(r.composite_id).sample_file_uuid) for r in back_rows
        }
    assert_storage_consistent(data_dir)
    assert moonfire(capsys, "check", "--data-dir", data_dir)[0] == 0


def test_remove_is_refused_while_the_recorder_holds_the_directory(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    db, sample_file_dir = datadir.open_for_recording(data_dir)  # as `moonfire run` would
    try:
        code, _out, err = moonfire(capsys, "camera", "remove", "front", "--data-dir", data_dir)
    finally:
        sample_file_dir.close()
        db.close()
    assert_one_line_error(code, err, "while `moonfire run` is recording")
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.get_camera("front")


def test_lowering_the_budget_deletes_the_oldest_recordings_at_once(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=9)
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
    newest = rows[-1]
    code, out, _ = moonfire(
        capsys, "camera", "edit", "front", "--retain", str(newest.sample_file_bytes),
        "--data-dir", data_dir,
    )
    assert code == 0 and f"deleted {len(rows) - 1} of front/main's oldest recordings" in out
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.list_recordings(newest.stream_id) == [newest]
    assert len(sample_files(data_dir)) == 1
    assert_storage_consistent(data_dir)


def test_lowering_the_budget_while_recording_applies_at_the_recorders_next_save(
    data_dir, capsys
):
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=5)
    files = sample_files(data_dir)
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    try:
        with sample_file_dir.start_syncer() as syncer:  # the running recorder's syncer
            code, out, _ = moonfire(
                capsys, "camera", "edit", "front", "--retain", "0", "--data-dir", data_dir
            )
            assert code == 0 and "take effect when it next saves a recording" in out
            assert sample_files(data_dir) == files
            camera = db.get_camera("front")
            entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
            recorder = StreamRecorder(syncer, camera.main.id, "front/main", 2)
            feed([recorder], entry_id, 0, 30, BASE_TIME_90K + 3600 * 90000)
            recorder.end_run()
            syncer.flush()
            [new] = db.list_recordings(camera.main.id)  # only the one just saved is left
            new_file = uuid_name(db.get_playback(new.composite_id).sample_file_uuid)
    finally:
        sample_file_dir.close()
        db.close()
    assert sample_files(data_dir) == {new_file}
    assert_storage_consistent(data_dir)


def test_recordings_json_matches_the_database(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=7)
    code, out, _ = moonfire(capsys, "recordings", "front", "--json", "--data-dir", data_dir)
    assert code == 0
    listing = json.loads(out)
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
    [run] = listing["runs"]  # one synthetic session: one run
    listed = run["recordings"]
    assert [
        (r["composite_id"], r["id"], r["run_offset"], r["start_90k"], r["duration_90k"],
         r["sample_file_bytes"], r["video_samples"], r["video_sync_samples"], r["flags"],
         r["trailing_zero"])
        for r in listed
    ] == [
        (r.composite_id, r.recording_id, r.run_offset, r.start_time_90k, r.duration_90k,
         r.sample_file_bytes, r.video_samples, r.video_sync_samples, r.flags,
         r.has_trailing_zero)
        for r in rows
    ]
    assert [r["trailing_zero"] for r in listed] == [False] * (len(rows) - 1) + [True]
    assert (run["start_90k"], run["end_90k"]) == (rows[0].start_time_90k, rows[-1].end_time_90k)
    assert all(parse_time(r["start"]) == r["start_90k"] for r in listed)

    # A time range selects the overlapping recordings only.
    second = rows[1]
    code, out, _ = moonfire(
        capsys, "recordings", "front", "--json", "--start", str(second.start_time_90k),
        "--end", str(second.end_time_90k), "--data-dir", data_dir,
    )
    [run] = json.loads(out)["runs"]
    assert [r["id"] for r in run["recordings"]] == [second.recording_id]

    code, out, _ = moonfire(capsys, "recordings", "front", "--data-dir", data_dir)
    assert out.startswith("run 1: ") and f"{len(rows)} recordings" in out


def test_recordings_rejects_an_empty_time_range(data_dir, capsys):
    add_camera(capsys, data_dir, "front")
    code, _out, err = moonfire(
        capsys, "recordings", "front", "--start", "200", "--end", "100", "--data-dir", data_dir
    )
    assert_one_line_error(code, err, "not before")


# ---- recording real (synthetic) cameras -------------------------------------------------


def test_run_for_records_and_leaves_no_reservations(data_dir, capsys):
    add_camera(capsys, data_dir, "cam", "--rotate-seconds", "1")
    code, _out, _err = moonfire(capsys, "run", "--for", "5", "--data-dir", data_dir)
    assert code == 0
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("cam").main.id)
    assert len(rows) >= 1
    assert rows[-1].has_trailing_zero
    assert_storage_consistent(data_dir)


def test_sigint_stops_run_in_order_with_exit_130(data_dir, capsys):
    add_camera(capsys, data_dir, "cam")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for_a_sample_file(data_dir, proc)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert_storage_consistent(data_dir)
    with datadir.open_db(data_dir, read_only=True) as db:
        assert len(db.list_recordings(db.get_camera("cam").main.id)) == 1


def _wait_for_a_sample_file(data_dir: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not sample_files(data_dir):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the recorder never created a sample file"
        time.sleep(0.1)
    time.sleep(1)  # a second of video, so the recording is not abandoned as empty


def test_errors_in_a_real_process_are_one_line_without_traceback(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = moonfire_process("camera", "list", "--data-dir", missing)
    assert_one_line_error(result.returncode, result.stderr, "no moonfire database")
    result = moonfire_process("--verbose", "camera", "list", "--data-dir", missing)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_demo_records_serves_the_player_and_prints_the_export_command(tmp_path):
    """The quickstart's command: records, serves the player on loopback while it does, and
    says how to export what it recorded."""
    demo_dir = str(tmp_path / "demo")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "demo", "--seconds", "16", "--data-dir", demo_dir,
         "--listen", f"127.0.0.1:{port}"],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("watch it live: "):
                break
        ui_url = lines[-1].split(": ", 1)[1].strip()
        assert ui_url == f"http://127.0.0.1:{port}/#/live"
        with urllib.request.urlopen(ui_url, timeout=10) as page:  # the fragment stays here
            assert page.status == 200 and b'<script type="module"' in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/", timeout=10) as api:
            assert [c["shortName"] for c in json.loads(api.read())["cameras"]] == ["demo"]
        rest, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(lines) + rest
    assert proc.returncode == 0, err
    [command] = [line for line in stdout.splitlines() if "moonfire export" in line]
    argv = shlex.split(command.split(": ", 1)[1])
    assert argv[:3] == ["moonfire", "export", "demo"]
    start = parse_time(argv[argv.index("--start") + 1])
    end = parse_time(argv[argv.index("--end") + 1])
    assert argv[argv.index("--data-dir") + 1] == demo_dir
    with datadir.open_db(demo_dir, read_only=True) as db:
        camera = db.get_camera("demo")
        rows = db.list_recordings(camera.main.id)
    assert camera.rotate_interval_sec == DEMO_ROTATE_SEC
    # The first recording spans one to two intervals (plus up to a GOP) of wall time from
    # its first frame, so it ends within 11 s of that frame; 16 s leaves 5 s for start-up
    # (imports, the encoder's first frame) on a loaded machine.  12 s once failed in CI.
    assert len(rows) >= 2
    assert rows and (start, end) == (rows[0].start_time_90k, rows[-1].end_time_90k)
    assert f"recorded {len(rows)} recording" in stdout
    assert_storage_consistent(demo_dir)
