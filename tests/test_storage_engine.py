"""The storage engine end to end: real SQLite on disk, real files, real fsync.

Scenarios of the 2017 seed (write/close/rotate, abandon, rotation across
cameras, a lowered budget) plus the guarantees the seed lacked: an orderly
shutdown leaves no reservations, injected I/O errors lose nothing committed,
a failed directory fsync stops the syncer, and a perfect clock gives exact
durations over four hours.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import DirectoryMismatchError
from moonfire.storage.invariants import check
from moonfire.storage.sample_file_dir import SampleFileDir, uuid_name
from moonfire.storage.syncer import SyncerStoppedError
from moonfire_core import RecordingAbandonedError
from moonfire_core._fault_hook import set_fault_hook
from tests.support.engine import BASE_TIME_90K
from tests.support.synthetic_stream import FRAME_90K, feed, frames, make_packet, verify_recording


def record(recorder: StreamRecorder, entry_id: int, count: int, start_frame: int = 0) -> None:
    feed([recorder], entry_id, start_frame, count, BASE_TIME_90K)


def assert_invariants(db, sample_dir_path: str) -> None:
    problems = [str(v) for v in check(db, sample_dir_path, hash_contents=True)]
    assert problems == []


def read_recordings(db, sample_dir_path: str, camera_id: int) -> list[list[int]]:
    """Frame numbers of each committed recording, after proving their bytes."""
    out = []
    for row in db.list_recordings(camera_id):
        playback = db.get_playback(row.composite_id)
        with open(os.path.join(sample_dir_path, uuid_name(playback.sample_file_uuid)), "rb") as f:
            out.append(verify_recording(f.read(), playback.video_index, camera_id))
    return out


def test_write_close_rotate_gives_a_run_of_abutting_recordings(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=2)
        record(recorder, entry_id, 30 * 9)  # 9 s of video
        recorder.end_run()
    rows = db.list_recordings(cam.id)
    # First recording waits for the second boundary (2-4 s), then every 2 s.
    assert len(rows) >= 3
    assert [r.run_offset for r in rows] == list(range(len(rows)))
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.start_time_90k == a.start_time_90k + a.duration_90k
        assert not a.has_trailing_zero
    assert rows[-1].has_trailing_zero
    assert sum(r.video_samples for r in rows) == 270
    assert sum(r.duration_90k for r in rows) == 269 * FRAME_90K
    recorded = [n for rec in read_recordings(db, sample_file_dir.path, cam.id) for n in rec]
    assert recorded == list(range(270))
    assert db.list_reserved_sample_files() == []
    assert_invariants(db, sample_file_dir.path)


def test_recordings_start_with_a_key_frame_and_early_packets_are_dropped(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=2)
        record(recorder, entry_id, 100, start_frame=5)  # frames 5..29 aren't after a key frame
        recorder.end_run()
    recs = read_recordings(db, sample_file_dir.path, cam.id)
    assert recs[0][0] == 30


def test_abandoned_writer_leaves_no_row_no_file_and_no_reservation(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        writer = syncer.create_writer(None, cam.id, entry_id)
        with pytest.raises(RecordingAbandonedError):
            writer.close()
        syncer.flush()
    assert db.list_recordings(cam.id) == []
    assert sample_file_dir.directory.list_names() == ["meta"]
    assert db.list_reserved_sample_files() == []


def test_retention_rotates_each_camera_within_its_own_budget(engine):
    db, sample_file_dir, entry_id = engine
    small = db.add_camera("small", retain_bytes=60_000)
    large = db.add_camera("large", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorders = [
            StreamRecorder(syncer, c.id, rotate_interval_sec=1) for c in (small, large)
        ]
        feed(recorders, entry_id, 0, 30 * 12, BASE_TIME_90K)
        for r in recorders:
            r.end_run()
        syncer.flush()
    small_rows, large_rows = db.list_recordings(small.id), db.list_recordings(large.id)
    assert sum(r.sample_file_bytes for r in small_rows) <= 60_000
    assert len(small_rows) < len(large_rows)
    # Oldest went first: what's left of "small" is the newest suffix of "large"'s frames.
    small_frames = [n for rec in read_recordings(db, sample_file_dir.path, small.id) for n in rec]
    assert small_frames == list(range(360 - len(small_frames), 360))
    assert [n for rec in read_recordings(db, sample_file_dir.path, large.id) for n in rec] == list(
        range(360)
    )
    assert_invariants(db, sample_file_dir.path)


def test_lowered_budget_deletes_oldest_at_enforce_and_at_restart(engine, tmp_path):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 10)
        recorder.end_run()
        syncer.flush()
        total = sum(r.sample_file_bytes for r in db.list_recordings(cam.id))
        db.update_camera(cam.id, retain_bytes=total // 2)
        syncer.enforce_retention()
        assert sum(r.sample_file_bytes for r in db.list_recordings(cam.id)) <= total // 2
    db.update_camera(cam.id, retain_bytes=total // 4)
    with sample_file_dir.start_syncer():  # initial rotation at start
        pass
    remaining = db.list_recordings(cam.id)
    assert 0 < sum(r.sample_file_bytes for r in remaining) <= total // 4
    assert remaining[-1].has_trailing_zero  # the newest survived
    assert_invariants(db, sample_file_dir.path)


def test_budget_smaller_than_one_recording_logs_and_goes_on(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=1)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 6)
        recorder.end_run()
    assert len(db.list_recordings(cam.id)) == 1  # only the newest is kept
    assert "can't get within its budget" in caplog.text
    assert_invariants(db, sample_file_dir.path)


def test_orderly_shutdown_leaves_no_reservations_even_after_a_crash(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with db.transaction() as tx:  # what a crash mid-write leaves behind
        leftover = tx.reserve_sample_file()
    fd = sample_file_dir.directory.create_file(uuid_name(leftover))
    os.write(fd, b"half a recording")
    os.close(fd)
    with sample_file_dir.start_syncer() as syncer:
        assert uuid_name(leftover) not in sample_file_dir.directory.list_names()
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 4)
        recorder.end_run()
    assert db.list_reserved_sample_files() == []
    assert_invariants(db, sample_file_dir.path)


def test_directory_of_another_database_is_refused_and_untouched(tmp_path):
    db_a, dir_a = datadir.init(str(tmp_path / "a"))
    db_b, dir_b = datadir.init(str(tmp_path / "b"))
    dir_a.close()
    with db_a.transaction() as tx:
        stray = tx.reserve_sample_file()
    open(os.path.join(dir_b.path, uuid_name(stray)), "wb").write(b"b's data")
    dir_b.close()
    with pytest.raises(DirectoryMismatchError, match="belongs to another database"):
        SampleFileDir.open(dir_b.path, db_a)
    assert uuid_name(stray) in os.listdir(dir_b.path)
    db_a.close()
    db_b.close()


def test_second_recorder_on_the_same_directory_is_refused(engine):
    db, sample_file_dir, _ = engine
    code = (
        "import sys; from moonfire.storage import data_dir as datadir\n"
        "try:\n    datadir.open_for_recording(sys.argv[1])\n"
        "except BlockingIOError as e:\n    print(e); sys.exit(3)\n"
    )
    data_dir = os.path.dirname(sample_file_dir.path)
    proc = subprocess.run([sys.executable, "-c", code, data_dir], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "in use by another process" in proc.stdout


def _inject(op: str, err: int):
    def hook(operation: str, path: str) -> None:
        if operation == op:
            raise OSError(err, f"{os.strerror(err)} (injected)", path)

    return hook


def test_eio_on_write_abandons_that_recording_only(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 4)  # rotates at frame 90; 90..119 are buffered
        set_fault_hook(_inject("write", errno.EIO))
        record(recorder, entry_id, 30 * 3, start_frame=120)
        set_fault_hook(None)
        record(recorder, entry_id, 30 * 3, start_frame=210)
        recorder.end_run()
    assert "Input/output error (injected)" in caplog.text
    assert_invariants(db, sample_file_dir.path)
    rows = db.list_recordings(cam.id)
    assert len({r.composite_id - r.run_offset for r in rows}) == 2  # the error split the run
    recordings = read_recordings(db, sample_file_dir.path, cam.id)
    assert recordings[0] == list(range(90))  # committed before the fault: intact
    recorded = {n for rec in recordings for n in rec}
    assert 90 not in recorded  # the recording the failed write hit was abandoned whole
    assert set(range(210, 300)) <= recorded  # and recording went on after it


def test_eio_on_file_fsync_abandons_the_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        set_fault_hook(_inject("fsync", errno.EIO))
        writer = syncer.create_writer(None, cam.id, entry_id)
        for f in frames(0, 10, BASE_TIME_90K):
            writer.write(
                make_packet(cam.id, f.number, f.is_key), f.local_time_90k, f.pts_90k, f.is_key
            )
        writer.close()
        syncer.flush()
        set_fault_hook(None)
    assert db.list_recordings(cam.id) == []
    assert "due to error while saving" in caplog.text
    assert sample_file_dir.directory.list_names() == ["meta"]
    assert_invariants(db, sample_file_dir.path)


def test_failed_directory_fsync_stops_the_syncer_and_reports(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    fatal = []
    syncer = sample_file_dir.start_syncer(on_fatal=fatal.append)
    set_fault_hook(_inject("fsync_dir", errno.EIO))
    writer = syncer.create_writer(None, cam.id, entry_id)
    writer.write(make_packet(cam.id, 0, True), BASE_TIME_90K, 0, True)
    writer.close()
    with pytest.raises(SyncerStoppedError):
        syncer.flush()
    set_fault_hook(None)
    assert len(fatal) == 1 and fatal[0].errno == errno.EIO
    with pytest.raises(SyncerStoppedError):
        syncer.close()
    assert db.list_recordings(cam.id) == []  # never committed without a durable dirent
    with sample_file_dir.start_syncer():  # the next start recovers
        pass
    assert db.list_reserved_sample_files() == []
    assert_invariants(db, sample_file_dir.path)


def test_perfect_clock_four_hours_sums_exactly(engine):
    """Brief §7 item 16: Σ durations = (frames − 1)·3000 and the run has no gaps."""
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    n = 4 * 3600 * 30
    packet = b"\x00\x00\x00\x01x"
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=60)
        for i in range(n):
            pts = i * FRAME_90K
            recorder.write(packet, BASE_TIME_90K + pts + FRAME_90K, pts, i % 30 == 0, entry_id)
        recorder.end_run()
    rows = db.list_recordings(cam.id)
    # The run starts 20 s past a minute (1,700,000,000 % 60 == 20): the first
    # recording waits for the second boundary, 100 s later, and ends at the
    # first key frame strictly past it (101 s); then one per minute; 19 s left.
    assert rows[0].duration_90k == 101 * 90000
    assert len(rows) == 1 + 238 + 1
    assert rows[-1].duration_90k == 19 * 90000 - FRAME_90K
    assert sum(r.duration_90k for r in rows) == (n - 1) * FRAME_90K
    assert sum(r.video_samples for r in rows) == n
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.start_time_90k == a.start_time_90k + a.duration_90k
    assert rows[0].start_time_90k == BASE_TIME_90K
    assert all(r.local_time_delta_90k == 0 for r in rows)


def record_ticks(recorder, entry_id, count, key_every=30, start=0, pts_offset=0):
    """Tiny packets on a perfect 30 fps clock; a key frame every ``key_every`` frames."""
    for i in range(start, start + count):
        pts = i * FRAME_90K
        recorder.write(
            b"\x00\x00\x00\x01x",
            BASE_TIME_90K + pts + FRAME_90K,
            pts + pts_offset,
            i % key_every == 0,
            entry_id,
        )


def test_long_rotation_intervals_never_make_a_recording_the_database_rejects(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12, rotate_interval_sec=200)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=200)
        record_ticks(recorder, entry_id, 30 * 60 * 15)
        recorder.end_run()
        syncer.flush()
    rows = db.list_recordings(cam.id)
    assert all(r.duration_90k < 5 * 60 * 90000 for r in rows)
    assert sum(r.video_samples for r in rows) == 30 * 60 * 15
    assert len({r.composite_id - r.run_offset for r in rows}) == 1


def test_camera_without_key_frames_ends_the_run_before_five_minutes(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=60)
        record_ticks(recorder, entry_id, 30 * 60 * 7, key_every=30 * 60 * 6)  # one key in 6 min
        recorder.end_run()
    rows = db.list_recordings(cam.id)
    assert "no key frame for" in caplog.text
    assert rows and all(r.duration_90k < 5 * 60 * 90000 for r in rows)
    assert rows[0].video_samples < 30 * 60 * 5  # ended early, not rejected at 5 minutes
    assert_invariants(db, sample_file_dir.path)


def test_pts_going_backwards_at_a_rotation_ends_the_run_and_keeps_the_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        record_ticks(recorder, entry_id, 100)
        # The camera restarts its clock: pts jump back at a key frame past the boundary.
        record_ticks(recorder, entry_id, 60, start=120, pts_offset=-120 * FRAME_90K)
        recorder.end_run()
    assert "back to 0; ending the run" in caplog.text
    rows = db.list_recordings(cam.id)
    assert sum(r.video_samples for r in rows) == 160
    assert len({r.composite_id - r.run_offset for r in rows}) == 2
    assert_invariants(db, sample_file_dir.path)


def test_a_file_that_cannot_be_unlinked_is_retried_and_recording_goes_on(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=60_000)
    stuck = set()

    def refuse_first_unlink(operation: str, path: str) -> None:
        if operation == "unlink" and (not stuck or path in stuck):
            stuck.add(path)
            raise OSError(errno.EACCES, "Permission denied (injected)", path)

    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.id, rotate_interval_sec=1)
        set_fault_hook(refuse_first_unlink)
        record(recorder, entry_id, 30 * 8)
        syncer.flush()
        assert "Permission denied (injected)" in caplog.text
        assert len(db.list_reserved_sample_files()) >= 2  # the stuck one, and the pool
        # Saves went on while the file was stuck (the 2017 code discarded them).
        assert read_recordings(db, sample_file_dir.path, cam.id)[-1][-1] >= 200
        set_fault_hook(None)
        record(recorder, entry_id, 30 * 4, start_frame=240)
        recorder.end_run()
    frames_recorded = [n for rec in read_recordings(db, sample_file_dir.path, cam.id) for n in rec]
    assert frames_recorded[-1] == 359  # nothing was discarded for the stuck file
    assert db.list_reserved_sample_files() == []  # unlinked once the fault cleared
    assert_invariants(db, sample_file_dir.path)
