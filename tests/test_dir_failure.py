"""A sample file directory that fails under a running ``moonfire run`` is never a silent stop.

Each test runs the real recorder in a subprocess on the synthetic camera and
then removes, lazily unmounts or swaps its sample file directory.  The
recorder must log an ERROR naming the directory, commit no row for a file
written after the failure, and exit 1 within 60 s so a service manager
restarts it; the restart then refuses and says why.

With several sample file directories (one per disk) a failed one stops only
its own streams: the in-process daemon tests at the end record two streams on
two directories from a paced synthetic source, remove one directory (or start
with one missing) and check that the other stream records on, and that
``run_cameras`` exits 1 once no stream can record.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moonfire.ingest import daemon as daemon_module
from moonfire.ingest.sources import SourcePacket
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import META_NAME
from moonfire.storage.invariants import check
from moonfire.time import TIME_UNITS_PER_SEC
from tests.support.cli import moonfire
from tests.support.tmpfs import mounted_tmpfs

TESTSRC_URL = "testsrc://?size=160x120&fps=15&bitrate=100k&gop=15"
EXIT_WITHIN_SEC = 60


def init(capsys, tmp_path: Path, sample_dir: Path | None = None) -> str:
    data_dir = str(tmp_path / "data")
    extra = ["--sample-dir", str(sample_dir)] if sample_dir is not None else []
    assert moonfire(capsys, "init", "--data-dir", data_dir, *extra)[0] == 0
    code, _out, err = moonfire(
        capsys, "camera", "add", "cam", "--url", TESTSRC_URL, "--retain", "1GiB",
        "--rotate-seconds", "1", "--data-dir", data_dir,
    )
    assert (code, err) == (0, "")
    return data_dir


def start_run(data_dir: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def rows(data_dir: str) -> list:
    with datadir.open_db(data_dir, read_only=True) as db:
        return db.list_recordings(db.get_camera("cam").main.id)


def wait_for_rows(data_dir: str, proc: subprocess.Popen, count: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while len(rows(data_dir)) < count:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the recorder committed too few recordings"
        time.sleep(0.2)


def wait_for_exit(proc: subprocess.Popen) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=EXIT_WITHIN_SEC + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, time.monotonic() - started


def rm_rf(path: str) -> None:
    """``rm -rf`` a directory a recorder is writing to: again while it creates files in it
    (the syncer makes its pool's files ahead), until it is gone."""
    deadline = time.monotonic() + 10
    while os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        assert time.monotonic() < deadline, f"{path} could not be removed"


def assert_error_names(err: str, sample_dir: str) -> None:
    lines = [line for line in err.splitlines() if " ERROR " in line and sample_dir in line]
    assert lines, err
    assert "Traceback" not in err.split("moonfire: ")[-1]


def assert_nothing_committed_after(data_dir: str, wall_sec: float) -> None:
    limit_90k = int((wall_sec + 0.1) * TIME_UNITS_PER_SEC)
    late = [r for r in rows(data_dir) if r.end_time_90k > limit_90k]
    assert late == [], f"{len(late)} recordings committed for files written after the failure"


def test_removed_sample_dir_stops_run_with_an_error_and_exit_1(tmp_path, capsys, caplog):
    data_dir = init(capsys, tmp_path)
    sample_dir = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    proc = start_run(data_dir)
    wait_for_rows(data_dir, proc, 1)
    rm_rf(sample_dir)
    removed_at = time.time()
    code, err, took = wait_for_exit(proc)
    assert code == 1, err
    assert took < EXIT_WITHIN_SEC
    assert_error_names(err, sample_dir)
    assert_nothing_committed_after(data_dir, removed_at)
    # The service manager's restart fails at once, naming the directory: its only stream
    # can't record.
    started = time.monotonic()
    code, _out, err = moonfire(capsys, "run", "--for", "30", "--data-dir", data_dir)
    assert code == 1, err
    assert time.monotonic() - started < 10  # on its own, not at the time limit
    assert "Traceback" not in err
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(sample_dir in message for message in errors), errors


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "tmpfs", "size=64m") as mountpoint:
        yield mountpoint


def test_lazily_unmounted_sample_dir_commits_nothing_after_and_exits_1(tmp_path, tmpfs, capsys):
    sample_dir = tmpfs / "sample"
    data_dir = init(capsys, tmp_path, sample_dir)
    proc = start_run(data_dir)
    wait_for_rows(data_dir, proc, 2)
    subprocess.run(["umount", "-l", str(tmpfs)], check=True)
    unmounted_at = time.time()
    code, err, took = wait_for_exit(proc)
    assert code == 1, err
    assert took < EXIT_WITHIN_SEC
    assert_error_names(err, str(sample_dir))
    assert len(rows(data_dir)) >= 2
    assert_nothing_committed_after(data_dir, unmounted_at)


def test_swapped_sample_dir_commits_nothing_after_and_exits_1(tmp_path, capsys):
    data_dir = init(capsys, tmp_path)
    sample_dir = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    proc = start_run(data_dir)
    wait_for_rows(data_dir, proc, 1)
    meta = json.loads(Path(sample_dir, META_NAME).read_text())
    os.rename(sample_dir, sample_dir + ".old")
    os.mkdir(sample_dir, 0o700)
    meta["dir_uuid"] = str(uuid.uuid4())  # a fake: another directory's meta
    Path(sample_dir, META_NAME).write_text(json.dumps(meta))
    swapped_at = time.time()
    code, err, took = wait_for_exit(proc)
    assert code == 1, err
    assert took < EXIT_WITHIN_SEC
    assert_error_names(err, sample_dir)
    assert_nothing_committed_after(data_dir, swapped_at)
    assert os.listdir(sample_dir) == [META_NAME]  # nothing written to, or deleted from, the new one
    code, _out, err = moonfire(capsys, "run", "--for", "1", "--data-dir", data_dir)
    assert code == 1 and "different sample file directory" in err, err


# ---- moonfire status ----------------------------------------------------------------------


def wait_for_status(data_dir: str, proc: subprocess.Popen, fragment: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "moonfire", "status", "--data-dir", data_dir],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        if fragment in result.stdout:
            return result.stdout
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.5)


def test_status_of_a_running_daemon_and_after_it_stopped(tmp_path, capsys):
    data_dir = init(capsys, tmp_path)
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    assert (code, out) == (0, "not running\ncam/main: not running; no recordings\n")
    proc = start_run(data_dir)
    try:
        wait_for_rows(data_dir, proc, 1)
        out = wait_for_status(data_dir, proc, "cam/main: recording; last recording ends ")
        assert out.startswith(f"running (pid {proc.pid},")
    finally:
        proc.terminate()
        code, err, _took = wait_for_exit(proc)
    assert code == 0, err
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("not running (last seen ") and "stopped" in lines[0]
    assert lines[1].startswith("cam/main: not running; last recording ends ")


def test_status_says_failed_with_the_reason(tmp_path, capsys):
    data_dir = init(capsys, tmp_path)
    sample_dir = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    proc = start_run(data_dir)
    wait_for_rows(data_dir, proc, 1)
    rm_rf(sample_dir)
    code, err, _took = wait_for_exit(proc)
    assert code == 1, err
    doc = json.loads(Path(data_dir, "status.json").read_text())
    [stream] = doc["streams"]
    assert (stream["name"], stream["state"]) == ("cam/main", "failed")
    assert sample_dir in stream["reason"]
    assert list(doc["storage_errors"]) == ["default"]
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    assert "sample file directory default had failed: " in out and sample_dir in out
    assert "cam/main: not running; last recording ends " in out


def test_a_stale_status_file_is_not_a_running_daemon(tmp_path, capsys):
    data_dir = init(capsys, tmp_path)
    Path(data_dir, "status.json").write_text(json.dumps({
        "pid": os.getpid(), "updated": time.time() - 3600, "running": True, "streams": [],
        "storage_errors": {}, "sample_file_dirs": {},
    }))
    code, out, _err = moonfire(capsys, "status", "--data-dir", data_dir)
    assert out.startswith("not running (last seen ") and "stale status file" in out


def test_a_failed_directory_closes_the_pools_files_made_ahead(tmp_path):
    """Their fds would keep a removed or unmounted filesystem pinned; the files stay."""
    from moonfire.storage.syncer import SyncerStoppedError
    from tests.support.engine import ENTRY, write_frames

    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    cameras = [db.add_camera(f"cam{i}", retain_bytes=10**12) for i in range(3)]
    path = sample_file_dir.path

    def open_sample_file_fds() -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith((path + "/", path + ".moved/")):
                found.append(target)
        return found

    syncer = sample_file_dir.start_syncer()
    for camera in cameras:
        writer = syncer.create_writer(None, camera.main.id, entry_id)
        write_frames(writer, camera.main.id)
        writer.close()
    syncer.flush()
    assert len(open_sample_file_fds()) >= 3  # the pool's files made ahead
    writer = syncer.create_writer(None, cameras[0].main.id, entry_id)
    write_frames(writer, cameras[0].main.id, start=3000)
    os.rename(path, path + ".moved")
    writer.close()
    with pytest.raises(SyncerStoppedError):
        syncer.flush()
    with pytest.raises(SyncerStoppedError):
        syncer.close()
    sample_file_dir.close()
    db.close()
    assert open_sample_file_fds() == []


def test_a_passing_emfile_in_the_directory_check_does_not_stop_recording(tmp_path, monkeypatch):
    """Only errors that mean the directory is gone stop it; EMFILE says nothing about it."""
    import errno

    from tests.support.engine import ENTRY, write_frames

    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    camera = db.add_camera("cam", retain_bytes=10**12)
    path = sample_file_dir.path
    real_stat = os.stat

    def stat(target, *args, **kwargs):
        if os.fspath(target) == path:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), target)
        return real_stat(target, *args, **kwargs)

    with sample_file_dir.start_syncer() as syncer:
        monkeypatch.setattr(os, "stat", stat)
        writer = syncer.create_writer(None, camera.main.id, entry_id)
        write_frames(writer, camera.main.id)
        writer.close()
        syncer.flush()
        monkeypatch.undo()
        assert syncer.fatal_error is None
    assert len(db.list_recordings(camera.main.id)) == 1
    sample_file_dir.close()
    db.close()


def test_the_daemon_raises_the_open_file_limit_to_the_hard_limit():
    """The pool of files made ahead costs an fd per stream: hundreds of streams need room."""
    import resource

    from moonfire.ingest.daemon import raise_open_file_limit

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, before[1]))
        limit = raise_open_file_limit()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert soft == limit
        assert soft == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_failed_syncer_repeats_its_error_until_closed(tmp_path, monkeypatch, caplog):
    """Never a silent stop: the ERROR comes back every FATAL_REMINDER_SEC, until ``close``."""
    from moonfire.storage import syncer as syncer_module
    from moonfire.storage.syncer import SyncerStoppedError
    from tests.support.engine import ENTRY, write_frames

    monkeypatch.setattr(syncer_module, "FATAL_REMINDER_SEC", 0.05)
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    camera = db.add_camera("cam", retain_bytes=10**12)
    syncer = sample_file_dir.start_syncer()
    writer = syncer.create_writer(None, camera.main.id, entry_id)
    write_frames(writer, camera.main.id)
    os.rename(sample_file_dir.path, sample_file_dir.path + ".moved")
    writer.close()
    with pytest.raises(SyncerStoppedError):
        syncer.flush()

    def reminders() -> int:
        return sum("nothing is being recorded" in r.getMessage() for r in caplog.records)

    deadline = time.monotonic() + 5
    while reminders() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reminders() >= 2
    with pytest.raises(SyncerStoppedError):
        syncer.close()
    time.sleep(0.1)
    after_close = reminders()
    time.sleep(0.3)
    assert reminders() == after_close
    sample_file_dir.close()
    db.close()


# ---- two sample file directories, one daemon (in-process) ---------------------------------

FPS = 30


class PacedSource:
    """A synthetic camera: tiny AVCC packets at 30 fps, a key frame every half second,
    paced in real time (rotation follows the wall clock)."""

    width, height = 1920, 1080

    def __init__(self, url: str, extradata: bytes) -> None:
        self.url = url
        self.extradata = extradata
        self._stop = threading.Event()

    def packets(self) -> Iterator[SourcePacket]:
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            delay = start + n / FPS - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            yield SourcePacket(b"\x00\x00\x00\x01\x65", n * (90000 // FPS), n % (FPS // 2) == 0)
            n += 1

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def paced_sources(testdata) -> Callable[..., PacedSource]:
    extradata = (testdata / "avc1_1920x1080").read_bytes()[94:]  # its avcC box's contents
    return lambda url, _username=None, _password=None: PacedSource(url, extradata)


def two_dir_data_dir(tmp_path: Path) -> tuple[str, str, str]:
    """A data directory with camera ``a`` in its first sample file directory and camera
    ``b`` in a second one, ``b``, elsewhere: (data dir, A's path, B's path)."""
    data_dir = str(tmp_path / "data")
    db, first = datadir.init(data_dir)
    path_a = first.path
    first.close()
    db.close()
    path_b = str(tmp_path / "disk-b" / "sample")
    datadir.add_dir(data_dir, "b", path_b)
    with datadir.open_db(data_dir) as db:
        db.add_camera("a", url="fake://a", retain_bytes=10**9, rotate_interval_sec=1)
        db.add_camera("b", url="fake://b", retain_bytes=10**9, rotate_interval_sec=1,
                      sample_file_dir="b")
    return data_dir, path_a, path_b


def streams_of(daemon) -> dict[str, dict]:
    return {s["name"]: s for s in daemon.status_doc(True)["streams"]}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def committed(data_dir: str, camera: str) -> list:
    with datadir.open_db(data_dir, read_only=True) as db:
        return db.list_recordings(db.get_camera(camera).main.id)


def test_a_removed_directory_stops_only_its_streams_and_run_exits_1_when_none_is_left(
    tmp_path, paced_sources, monkeypatch
):
    data_dir, path_a, path_b = two_dir_data_dir(tmp_path)
    real_start_daemon = daemon_module.start_daemon
    started = []

    def start_daemon(data_dir: str, **kwargs):
        daemon = real_start_daemon(data_dir, source_factory=paced_sources, **kwargs)
        started.append(daemon)
        return daemon

    monkeypatch.setattr(daemon_module, "start_daemon", start_daemon)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon_module.run_cameras(data_dir)))
    thread.start()
    try:
        wait_until(lambda: bool(started), 10, "the daemon to start")
        daemon = started[0]
        assert set(daemon.syncers) == {row.id for row in daemon.db.list_sample_file_dirs()}
        wait_until(
            lambda: all(s["recordings"] >= 1 for s in streams_of(daemon).values()),
            15, "both streams to record",
        )
        rm_rf(path_b)
        removed_at = time.time()
        wait_until(lambda: streams_of(daemon)["b/main"]["state"] == "failed", 15, "b to fail")
        streams = streams_of(daemon)
        assert path_b in streams["b/main"]["reason"]
        assert streams["a/main"]["state"] == "recording"
        assert path_b in daemon.status_doc(True)["storage_errors"]["b"]
        # The other directory's stream records on: more recordings closed, and committed.
        before = streams["a/main"]["recordings"]
        rows_before = len(committed(data_dir, "a"))
        wait_until(
            lambda: streams_of(daemon)["a/main"]["recordings"] >= before + 2
            and len(committed(data_dir, "a")) >= rows_before + 2,
            15, "a to go on recording",
        )
        assert streams_of(daemon)["a/main"]["state"] == "recording"
        assert thread.is_alive(), "run_cameras returned while a stream could still record"
        assert daemon.fatal_error is not None  # the exit code will say storage failed
        # The last directory goes too: no stream can record, so the run ends with 1.
        rm_rf(path_a)
        thread.join(30)
        assert not thread.is_alive(), "run_cameras did not return once no stream could record"
        assert result == [1]
    finally:
        if thread.is_alive() and started:
            started[0].stop_event.set()
        thread.join(60)
    assert len(committed(data_dir, "a")) >= rows_before + 2
    limit_90k = int((removed_at + 0.1) * TIME_UNITS_PER_SEC)
    assert [r for r in committed(data_dir, "b") if r.end_time_90k > limit_90k] == []
    doc = json.loads(Path(data_dir, "status.json").read_text())
    assert {s["name"]: s["state"] for s in doc["streams"]} == {
        "a/main": "failed", "b/main": "failed"
    }
    assert set(doc["storage_errors"]) == {"default", "b"}


def test_a_directory_missing_at_start_fails_its_streams_while_the_other_records(
    tmp_path, paced_sources
):
    data_dir, path_a, path_b = two_dir_data_dir(tmp_path)
    shutil.rmtree(path_b)
    daemon = daemon_module.start_daemon(data_dir, source_factory=paced_sources)
    try:
        assert set(daemon.syncers) == {daemon.db.sample_file_dir("default").id}
        streams = streams_of(daemon)
        assert streams["b/main"]["state"] == "failed"
        assert path_b in streams["b/main"]["reason"]
        assert [u.camera for u in daemon.unstarted] == ["b"]
        assert list(daemon.status_doc(True)["storage_errors"]) == ["b"]
        wait_until(lambda: streams_of(daemon)["a/main"]["recordings"] >= 2, 15, "a to record")
        assert streams_of(daemon)["a/main"]["state"] == "recording"
        assert not daemon.no_camera_can_record()
    finally:
        code = daemon.shutdown()
    assert code == 1  # a storage failure in the run: a service manager hears of it
    assert len(committed(data_dir, "a")) >= 2
    assert committed(data_dir, "b") == []
    doc = json.loads(Path(data_dir, "status.json").read_text())
    assert {s["name"]: s["state"] for s in doc["streams"]}["b/main"] == "failed"
    with datadir.open_db(data_dir, read_only=True) as db:
        dir_a = db.sample_file_dir("default")
        assert [str(v) for v in check(db, dir_a, hash_contents=True)] == []
        assert db.list_reserved_sample_files(dir_a.id) == []


def test_run_exits_1_at_once_when_every_directory_is_missing_at_start(
    tmp_path, paced_sources, monkeypatch
):
    data_dir, path_a, path_b = two_dir_data_dir(tmp_path)
    shutil.rmtree(path_a)
    shutil.rmtree(path_b)
    real_start_daemon = daemon_module.start_daemon
    monkeypatch.setattr(
        daemon_module, "start_daemon",
        lambda data_dir, **kwargs: real_start_daemon(
            data_dir, source_factory=paced_sources, **kwargs
        ),
    )
    started = time.monotonic()
    assert daemon_module.run_cameras(data_dir, duration_sec=60) == 1
    assert time.monotonic() - started < 10  # on its own, long before the time limit
    doc = json.loads(Path(data_dir, "status.json").read_text())
    streams = {s["name"]: s for s in doc["streams"]}
    assert {name: s["state"] for name, s in streams.items()} == {
        "a/main": "failed", "b/main": "failed"
    }
    assert path_a in streams["a/main"]["reason"] and path_b in streams["b/main"]["reason"]
    assert set(doc["storage_errors"]) == {"default", "b"}
