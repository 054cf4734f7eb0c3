"""Driving the ``moonfire`` command, in-process or as a real process, for the tests of whole
user workflows."""

from __future__ import annotations

import os
import subprocess
import sys

from moonfire.cli import main as cli
from moonfire.db import MAIN
from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import NON_SAMPLE_NAMES
from moonfire.storage.invariants import check
from tests.support.engine import BASE_TIME_90K, ENTRY
from tests.support.synthetic_stream import feed

#: Small and cheap to encode: the machine is shared.
TESTSRC_URL = "testsrc://?size=320x240&fps=30&bitrate=300k&gop=30"


def moonfire(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``moonfire ARGV`` in this process: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_camera(capsys, data_dir: str, name: str, *extra: str) -> None:
    """``moonfire camera add NAME`` on the synthetic camera with a 1 GiB budget; ``extra``
    options come last, so they also override those (``--retain 100GiB``)."""
    code, _out, err = moonfire(
        capsys, "camera", "add", name, "--url", TESTSRC_URL, "--retain", "1GiB",
        "--data-dir", data_dir, *extra,
    )
    assert (code, err) == (0, "")


def moonfire_process(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``moonfire ARGV`` as a real process (``python -m moonfire``), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "moonfire", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def record_synthetic(data_dir: str, camera_name: str, seconds: int, stream: str = MAIN) -> None:
    """Record synthetic packets of one stream (main unless told) through the storage engine,
    in the stream's own sample file directory, rotating every 2 s."""
    with datadir.open_db(data_dir, read_only=True) as db:
        dir_id = db.get_camera(camera_name).stream(stream).sample_file_dir_id
    db, sample_file_dir = datadir.open_for_recording(data_dir, dir_id)
    try:
        recording = db.get_camera(camera_name).stream(stream)
        entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
        with sample_file_dir.start_syncer() as syncer:
            recorder = StreamRecorder(syncer, recording.id, f"{camera_name}/{stream}", 2)
            feed([recorder], entry_id, 0, 30 * seconds, BASE_TIME_90K)
            recorder.end_run()
    finally:
        sample_file_dir.close()
        db.close()


def assert_storage_consistent(data_dir: str) -> None:
    """``check --hash`` finds nothing in any sample file directory and none holds a
    reservation."""
    problems: list[str] = []
    with datadir.open_db(data_dir, read_only=True) as db:
        for row in db.list_sample_file_dirs():
            problems += [str(v) for v in check(db, row, hash_contents=True)]
            assert db.list_reserved_sample_files(row.id) == [], row.name
    assert problems == []


def sample_files(data_dir: str, dir_name: str | None = None) -> set[str]:
    """The sample files in the data directory's own ``sample`` directory, or in the
    sample file directory named ``dir_name`` (wherever the database says it is)."""
    if dir_name is None:
        path = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    else:
        with datadir.open_db(data_dir, read_only=True) as db:
            path = db.sample_file_dir(dir_name).path
    return set(os.listdir(path)) - NON_SAMPLE_NAMES


def lower_budget_to_newest(capsys, data_dir: str, camera: str = "front") -> None:
    """``moonfire camera edit --retain`` the size of the main stream's newest recording:
    the rest go."""
    with datadir.open_db(data_dir, read_only=True) as db:
        newest = db.list_recordings(db.get_camera(camera).main.id)[-1]
    code, out, err = moonfire(
        capsys, "camera", "edit", camera, "--retain", str(newest.sample_file_bytes),
        "--data-dir", data_dir,
    )
    assert code == 0, err
    assert "deleted" in out
