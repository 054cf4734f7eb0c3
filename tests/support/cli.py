"""Driving the ``moonfire`` command in-process, for the tests of whole user workflows."""

from __future__ import annotations

import os

from moonfire.cli import main as cli
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
    code, _out, err = moonfire(
        capsys, "camera", "add", name, "--url", TESTSRC_URL, "--retain", "1GiB",
        "--data-dir", data_dir, *extra,
    )
    assert (code, err) == (0, "")


def record_synthetic(data_dir: str, camera_name: str, seconds: int) -> None:
    """Record synthetic packets through the storage engine, rotating every 2 s."""
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    try:
        camera = db.get_camera(camera_name)
        entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
        with sample_file_dir.start_syncer() as syncer:
            recorder = StreamRecorder(syncer, camera.id, camera_name, 2)
            feed([recorder], entry_id, 0, 30 * seconds, BASE_TIME_90K)
            recorder.end_run()
    finally:
        sample_file_dir.close()
        db.close()


def assert_storage_consistent(data_dir: str) -> None:
    with datadir.open_db(data_dir, read_only=True) as db:
        problems = [str(v) for v in check(db, db.sample_file_dir().path, hash_contents=True)]
        assert db.list_reserved_sample_files() == []
    assert problems == []


def sample_files(data_dir: str) -> set[str]:
    return set(os.listdir(os.path.join(data_dir, datadir.SAMPLE_DIR_NAME))) - NON_SAMPLE_NAMES


def lower_budget_to_newest(capsys, data_dir: str, camera: str = "front") -> None:
    """``moonfire camera edit --retain`` the size of the newest recording: the rest go."""
    with datadir.open_db(data_dir, read_only=True) as db:
        newest = db.list_recordings(db.get_camera(camera).id)[-1]
    code, out, err = moonfire(
        capsys, "camera", "edit", camera, "--retain", str(newest.sample_file_bytes),
        "--data-dir", data_dir,
    )
    assert code == 0, err
    assert "deleted" in out
