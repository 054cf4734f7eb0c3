"""The storage engine end to end: real SQLite on disk, real files, real fsync.

Scenarios of the 2017 seed (write/close/rotate, abandon, rotation across
cameras, a lowered budget) plus the guarantees the seed lacked: an orderly
shutdown leaves no reservations, injected I/O errors lose nothing committed,
a failed directory fsync stops the syncer, and a perfect clock gives exact
durations over four hours.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time

import pytest

from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage import syncer as syncer_module
from moonfire.storage.dir_meta import DirectoryMismatchError
from moonfire.storage.invariants import check
from moonfire.storage.retention import DAY_90K
from moonfire.storage.sample_file_dir import SampleFileDir, uuid_name
from moonfire.storage.syncer import Syncer, SyncerStoppedError
from moonfire_core import RecordingAbandonedError
from moonfire_core._fault_hook import set_fault_hook
from tests.support.engine import BASE_TIME_90K, add_sample_file_dir, write_frames
from tests.support.synthetic_stream import FRAME_90K, feed, frames, make_packet, verify_recording


def record(recorder: StreamRecorder, entry_id: int, count: int, start_frame: int = 0) -> None:
    feed([recorder], entry_id, start_frame, count, BASE_TIME_90K)


def assert_invariants(db, sample_file_dir: SampleFileDir) -> None:
    dir_row = db.sample_file_dir(sample_file_dir.id)
    problems = [str(v) for v in check(db, dir_row, hash_contents=True)]
    assert problems == []


def read_recordings(db, sample_dir_path: str, stream_id: int) -> list[list[int]]:
    """Frame numbers of each committed recording, after proving their bytes."""
    out = []
    for row in db.list_recordings(stream_id):
        playback = db.get_playback(row.composite_id)
        with open(os.path.join(sample_dir_path, uuid_name(playback.sample_file_uuid)), "rb") as f:
            out.append(verify_recording(f.read(), playback.video_index, stream_id))
    return out


def test_write_close_rotate_gives_a_run_of_abutting_recordings(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=2)
        record(recorder, entry_id, 30 * 9)  # 9 s of video
        recorder.end_run()
    rows = db.list_recordings(cam.main.id)
    # First recording waits for the second boundary (2-4 s), then every 2 s.
    assert len(rows) >= 3
    assert [r.run_offset for r in rows] == list(range(len(rows)))
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.start_time_90k == a.start_time_90k + a.duration_90k
        assert not a.has_trailing_zero
    assert rows[-1].has_trailing_zero
    assert sum(r.video_samples for r in rows) == 270
    assert sum(r.duration_90k for r in rows) == 269 * FRAME_90K
    recorded = [n for rec in read_recordings(db, sample_file_dir.path, cam.main.id) for n in rec]
    assert recorded == list(range(270))
    assert db.list_reserved_sample_files(sample_file_dir.id) == []
    assert_invariants(db, sample_file_dir)


def test_recordings_start_with_a_key_frame_and_early_packets_are_dropped(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=2)
        record(recorder, entry_id, 100, start_frame=5)  # frames 5..29 aren't after a key frame
        recorder.end_run()
    recs = read_recordings(db, sample_file_dir.path, cam.main.id)
    assert recs[0][0] == 30


def test_abandoned_writer_leaves_no_row_no_file_and_no_reservation(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        writer = syncer.create_writer(None, cam.main.id, entry_id)
        with pytest.raises(RecordingAbandonedError):
            writer.close()
        syncer.flush()
    assert db.list_recordings(cam.main.id) == []
    assert sample_file_dir.directory.list_names() == ["meta"]
    assert db.list_reserved_sample_files(sample_file_dir.id) == []


def test_retention_rotates_each_stream_within_its_own_budget(engine):
    db, sample_file_dir, entry_id = engine
    small = db.add_camera("small", retain_bytes=60_000)
    large = db.add_camera("large", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorders = [
            StreamRecorder(syncer, c.main.id, rotate_interval_sec=1) for c in (small, large)
        ]
        feed(recorders, entry_id, 0, 30 * 12, BASE_TIME_90K)
        for r in recorders:
            r.end_run()
        syncer.flush()
    small_rows, large_rows = db.list_recordings(small.main.id), db.list_recordings(large.main.id)
    assert sum(r.sample_file_bytes for r in small_rows) <= 60_000
    assert len(small_rows) < len(large_rows)
    # Oldest went first: what's left of "small" is the newest suffix of "large"'s frames.
    small_frames = [n for rec in read_recordings(db, sample_file_dir.path, small.main.id)
                    for n in rec]
    assert small_frames == list(range(360 - len(small_frames), 360))
    large_frames = [n for rec in read_recordings(db, sample_file_dir.path, large.main.id)
                    for n in rec]
    assert large_frames == list(range(360))
    assert_invariants(db, sample_file_dir)


def test_lowered_budget_deletes_oldest_at_enforce_and_at_restart(engine, tmp_path):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 10)
        recorder.end_run()
        syncer.flush()
        total = sum(r.sample_file_bytes for r in db.list_recordings(cam.main.id))
        db.update_camera(cam.id, retain_bytes=total // 2)
        syncer.enforce_retention()
        assert sum(r.sample_file_bytes for r in db.list_recordings(cam.main.id)) <= total // 2
    db.update_camera(cam.id, retain_bytes=total // 4)
    with sample_file_dir.start_syncer():  # initial rotation at start
        pass
    remaining = db.list_recordings(cam.main.id)
    assert 0 < sum(r.sample_file_bytes for r in remaining) <= total // 4
    assert remaining[-1].has_trailing_zero  # the newest survived
    assert_invariants(db, sample_file_dir)


def test_budget_smaller_than_one_recording_logs_and_goes_on(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=1)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 6)
        recorder.end_run()
    assert len(db.list_recordings(cam.main.id)) == 1  # only the newest is kept
    assert "can't get within its budget" in caplog.text
    assert_invariants(db, sample_file_dir)


def test_orderly_shutdown_leaves_no_reservations_even_after_a_crash(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with db.transaction() as tx:  # what a crash mid-write leaves behind
        leftover = tx.reserve_sample_file(sample_file_dir.id)
    fd = sample_file_dir.directory.create_file(uuid_name(leftover))
    os.write(fd, b"half a recording")
    os.close(fd)
    with sample_file_dir.start_syncer() as syncer:
        assert uuid_name(leftover) not in sample_file_dir.directory.list_names()
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 4)
        recorder.end_run()
    assert db.list_reserved_sample_files(sample_file_dir.id) == []
    assert_invariants(db, sample_file_dir)


def test_directory_of_another_database_is_refused_and_untouched(tmp_path):
    db_a, dir_a = datadir.init(str(tmp_path / "a"))
    db_b, dir_b = datadir.init(str(tmp_path / "b"))
    dir_a.close()
    with db_a.transaction() as tx:
        stray = tx.reserve_sample_file(dir_a.id)
    open(os.path.join(dir_b.path, uuid_name(stray)), "wb").write(b"b's data")
    dir_b.close()
    db_a.set_sample_file_dir_path(dir_a.id, dir_b.path)  # a's row now leads to b's directory
    with pytest.raises(DirectoryMismatchError, match="belongs to another database"):
        SampleFileDir.open(db_a, dir_a.id)
    assert uuid_name(stray) in os.listdir(dir_b.path)
    assert db_a.list_reserved_sample_files(dir_a.id) != []  # nothing recovered either
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
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        record(recorder, entry_id, 30 * 4)  # rotates at frame 90; 90..119 are buffered
        set_fault_hook(_inject("write", errno.EIO))
        record(recorder, entry_id, 30 * 3, start_frame=120)
        set_fault_hook(None)
        record(recorder, entry_id, 30 * 3, start_frame=210)
        recorder.end_run()
    assert "Input/output error (injected)" in caplog.text
    assert_invariants(db, sample_file_dir)
    rows = db.list_recordings(cam.main.id)
    assert len({r.composite_id - r.run_offset for r in rows}) == 2  # the error split the run
    recordings = read_recordings(db, sample_file_dir.path, cam.main.id)
    assert recordings[0] == list(range(90))  # committed before the fault: intact
    recorded = {n for rec in recordings for n in rec}
    assert 90 not in recorded  # the recording the failed write hit was abandoned whole
    assert set(range(210, 300)) <= recorded  # and recording went on after it


def test_eio_on_file_fsync_abandons_the_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        set_fault_hook(_inject("fsync", errno.EIO))
        writer = syncer.create_writer(None, cam.main.id, entry_id)
        for f in frames(0, 10, BASE_TIME_90K):
            writer.write(
                make_packet(cam.main.id, f.number, f.is_key), f.local_time_90k, f.pts_90k, f.is_key
            )
        writer.close()
        syncer.flush()
        set_fault_hook(None)
    assert db.list_recordings(cam.main.id) == []
    assert "due to error while saving" in caplog.text
    assert sample_file_dir.directory.list_names() == ["meta"]
    assert_invariants(db, sample_file_dir)


def test_failed_directory_fsync_stops_the_syncer_and_reports(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    fatal = []
    syncer = sample_file_dir.start_syncer(on_fatal=fatal.append)
    set_fault_hook(_inject("fsync_dir", errno.EIO))
    writer = syncer.create_writer(None, cam.main.id, entry_id)
    writer.write(make_packet(cam.main.id, 0, True), BASE_TIME_90K, 0, True)
    writer.close()
    with pytest.raises(SyncerStoppedError):
        syncer.flush()
    set_fault_hook(None)
    assert len(fatal) == 1 and fatal[0].errno == errno.EIO
    with pytest.raises(SyncerStoppedError):
        syncer.close()
    assert db.list_recordings(cam.main.id) == []  # never committed without a durable dirent
    with sample_file_dir.start_syncer():  # the next start recovers
        pass
    assert db.list_reserved_sample_files(sample_file_dir.id) == []
    assert_invariants(db, sample_file_dir)


def test_perfect_clock_four_hours_sums_exactly(engine):
    """Brief §7 item 16: Σ durations = (frames − 1)·3000 and the run has no gaps."""
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    n = 4 * 3600 * 30
    packet = b"\x00\x00\x00\x01x"
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=60)
        for i in range(n):
            pts = i * FRAME_90K
            recorder.write(packet, BASE_TIME_90K + pts + FRAME_90K, pts, i % 30 == 0, entry_id)
        recorder.end_run()
    rows = db.list_recordings(cam.main.id)
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
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=200)
        record_ticks(recorder, entry_id, 30 * 60 * 15)
        recorder.end_run()
        syncer.flush()
    rows = db.list_recordings(cam.main.id)
    assert all(r.duration_90k < 5 * 60 * 90000 for r in rows)
    assert sum(r.video_samples for r in rows) == 30 * 60 * 15
    assert len({r.composite_id - r.run_offset for r in rows}) == 1


def test_camera_without_key_frames_ends_the_run_before_five_minutes(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=60)
        record_ticks(recorder, entry_id, 30 * 60 * 7, key_every=30 * 60 * 6)  # one key in 6 min
        recorder.end_run()
    rows = db.list_recordings(cam.main.id)
    assert "no key frame for" in caplog.text
    assert rows and all(r.duration_90k < 5 * 60 * 90000 for r in rows)
    assert rows[0].video_samples < 30 * 60 * 5  # ended early, not rejected at 5 minutes
    assert_invariants(db, sample_file_dir)


def test_pts_going_backwards_at_a_rotation_ends_the_run_and_keeps_the_recording(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**12)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        record_ticks(recorder, entry_id, 100)
        # The camera restarts its clock: pts jump back at a key frame past the boundary.
        record_ticks(recorder, entry_id, 60, start=120, pts_offset=-120 * FRAME_90K)
        recorder.end_run()
    assert "back to 0; ending the run" in caplog.text
    rows = db.list_recordings(cam.main.id)
    assert sum(r.video_samples for r in rows) == 160
    assert len({r.composite_id - r.run_offset for r in rows}) == 2
    assert_invariants(db, sample_file_dir)


def test_a_file_that_cannot_be_unlinked_is_retried_and_recording_goes_on(engine, caplog):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=60_000)
    stuck = set()

    def refuse_first_unlink(operation: str, path: str) -> None:
        if operation == "unlink" and (not stuck or path in stuck):
            stuck.add(path)
            raise OSError(errno.EACCES, "Permission denied (injected)", path)

    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        set_fault_hook(refuse_first_unlink)
        record(recorder, entry_id, 30 * 8)
        syncer.flush()
        assert "Permission denied (injected)" in caplog.text
        # The stuck one, and the pool.
        assert len(db.list_reserved_sample_files(sample_file_dir.id)) >= 2
        # Saves went on while the file was stuck (the 2017 code discarded them).
        assert read_recordings(db, sample_file_dir.path, cam.main.id)[-1][-1] >= 200
        set_fault_hook(None)
        record(recorder, entry_id, 30 * 4, start_frame=240)
        recorder.end_run()
    frames_recorded = [
        n for rec in read_recordings(db, sample_file_dir.path, cam.main.id) for n in rec
    ]
    assert frames_recorded[-1] == 359  # nothing was discarded for the stuck file
    # Unlinked once the fault cleared.
    assert db.list_reserved_sample_files(sample_file_dir.id) == []
    assert_invariants(db, sample_file_dir)


# ---- maximum age ---------------------------------------------------------------------------

HOUR_90K = 3600 * 90000


class Clock:
    """The syncer's wall clock, set by the test (seconds, like ``time.time``)."""

    def __init__(self, now_90k: int) -> None:
        self.now_90k = now_90k

    def __call__(self) -> float:
        return self.now_90k / 90000


def write_recording(syncer, stream_id: int, entry_id: int, start_90k: int) -> None:
    """One recording of its own run (10 frames, a third of a second) starting at
    ``start_90k``, saved before this returns."""
    writer = syncer.create_writer(None, stream_id, entry_id)
    write_frames(writer, stream_id, base_time_90k=start_90k)
    writer.close()
    syncer.flush()


def starts(db, stream_id: int) -> list[int]:
    """The start of each of the stream's recordings, relative to BASE_TIME_90K."""
    return [r.start_time_90k - BASE_TIME_90K for r in db.list_recordings(stream_id)]


def start_syncer(sample_file_dir, db, clock) -> Syncer:
    return Syncer(sample_file_dir.directory, db, sample_file_dir.id, clock=clock)


def test_recordings_past_the_maximum_age_go_at_the_next_save_enforce_and_start(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9, max_age_days=2)
    stream_id = cam.main.id
    clock = Clock(BASE_TIME_90K)  # every recording below is young at first
    days = [0, DAY_90K, 2 * DAY_90K, 3 * DAY_90K]
    with start_syncer(sample_file_dir, db, clock) as syncer:
        for start in days:
            write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + start)
        assert starts(db, stream_id) == days  # within the age while the clock says day 0

        # Day 3 plus an hour: the cutoff is day 1 plus an hour.  The next save deletes the
        # two that ended before it; the day-2 one ended a day later and stays.
        clock.now_90k = BASE_TIME_90K + 3 * DAY_90K + HOUR_90K
        latest = 3 * DAY_90K + 2 * HOUR_90K
        write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + latest)
        assert starts(db, stream_id) == [2 * DAY_90K, 3 * DAY_90K, latest]

        # No save at all: enforce_retention applies the age too.
        clock.now_90k = BASE_TIME_90K + 4 * DAY_90K + HOUR_90K
        syncer.enforce_retention()
        assert starts(db, stream_id) == [3 * DAY_90K, latest]

    # The start's recovery: the cutoff (day 3 plus 90 minutes) passes the end of the
    # day-3 recording but not of the one two hours later.
    clock.now_90k = BASE_TIME_90K + 5 * DAY_90K + 90 * 60 * 90000
    with start_syncer(sample_file_dir, db, clock):
        assert starts(db, stream_id) == [latest]
    assert db.list_reserved_sample_files(sample_file_dir.id) == []
    assert_invariants(db, sample_file_dir)


def test_a_stream_without_a_maximum_age_keeps_old_recordings(engine):
    db, sample_file_dir, entry_id = engine
    limited = db.add_camera("limited", retain_bytes=10**9, max_age_days=1)
    unlimited = db.add_camera("unlimited", retain_bytes=10**9)
    clock = Clock(BASE_TIME_90K)
    with start_syncer(sample_file_dir, db, clock) as syncer:
        for start in (0, DAY_90K):
            for cam in (limited, unlimited):
                write_recording(syncer, cam.main.id, entry_id, BASE_TIME_90K + start)
        clock.now_90k = BASE_TIME_90K + 30 * DAY_90K
        syncer.enforce_retention()
    assert starts(db, limited.main.id) == []
    assert starts(db, unlimited.main.id) == [0, DAY_90K]
    assert_invariants(db, sample_file_dir)


def test_the_budget_still_applies_to_young_recordings(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9, max_age_days=30)
    stream_id = cam.main.id
    clock = Clock(BASE_TIME_90K + 10 * DAY_90K)  # every recording is within 30 days
    with start_syncer(sample_file_dir, db, clock) as syncer:
        for hour in range(6):
            write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + hour * HOUR_90K)
        rows = db.list_recordings(stream_id)
        assert len(rows) == 6
        # A budget for the newest two: the age alone would keep all six; the budget wins.
        db.update_camera(cam.id, retain_bytes=sum(r.sample_file_bytes for r in rows[-2:]))
        syncer.enforce_retention()
        assert starts(db, stream_id) == [4 * HOUR_90K, 5 * HOUR_90K]
        # And at a save: the budget makes room for the new one.
        write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + 6 * HOUR_90K)
        assert starts(db, stream_id)[-1] == 6 * HOUR_90K
        assert len(db.list_recordings(stream_id)) <= 2
    assert_invariants(db, sample_file_dir)


def test_the_age_wins_over_a_budget_that_would_keep_more(engine, caplog):
    caplog.set_level(logging.INFO, logger="moonfire.storage.syncer")
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9, max_age_days=1)
    stream_id = cam.main.id
    clock = Clock(BASE_TIME_90K)
    with start_syncer(sample_file_dir, db, clock) as syncer:
        for day in range(4):
            write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + day * DAY_90K)
        rows = db.list_recordings(stream_id)
        # The budget asks for the oldest one only; the age for the oldest three.
        db.update_camera(cam.id, retain_bytes=sum(r.sample_file_bytes for r in rows[1:]))
        clock.now_90k = BASE_TIME_90K + 3 * DAY_90K + HOUR_90K
        syncer.enforce_retention()
    assert starts(db, stream_id) == [3 * DAY_90K]
    assert "older than its maximum age of 1 days" in caplog.text


def test_an_idle_syncer_applies_the_maximum_age_by_itself(engine, monkeypatch):
    """A stream that stopped recording has no save to trigger it: the idle check does."""
    monkeypatch.setattr(syncer_module, "RETENTION_CHECK_SEC", 0.05)
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9, max_age_days=1)
    stream_id = cam.main.id
    clock = Clock(BASE_TIME_90K)
    with start_syncer(sample_file_dir, db, clock) as syncer:
        write_recording(syncer, stream_id, entry_id, BASE_TIME_90K)
        write_recording(syncer, stream_id, entry_id, BASE_TIME_90K + DAY_90K)
        clock.now_90k = BASE_TIME_90K + DAY_90K + HOUR_90K  # only the first is past a day
        deadline = time.monotonic() + 10
        while len(db.list_recordings(stream_id)) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert starts(db, stream_id) == [DAY_90K]
        assert syncer.stats.saved == 2  # no save did it
    assert_invariants(db, sample_file_dir)


# ---- several sample file directories -------------------------------------------------------


@pytest.fixture
def two_dirs(engine, tmp_path):
    """(db, dir A (the first), dir B (another disk), entry id, streams by name).

    Camera ``a`` records its main stream in A and its sub stream in B; camera ``b`` its
    main stream in B.  So stream ids differ from camera ids, and B holds two streams.
    """
    db, dir_a, entry_id = engine
    dir_b = add_sample_file_dir(db, "b", tmp_path / "disk-b" / "sample")
    a = db.add_camera("a", url="rtsp://a/main", retain_bytes=60_000, sub_url="rtsp://a/sub",
                      sub_retain_bytes=10**9, sub_sample_file_dir="b")
    b = db.add_camera("b", url="rtsp://b/main", retain_bytes=60_000, sample_file_dir="b")
    assert a.sub is not None
    streams = {"a/main": a.main, "a/sub": a.sub, "b/main": b.main}
    assert b.main.id != b.id
    try:
        yield db, dir_a, dir_b, entry_id, streams
    finally:
        dir_b.close()


def files_of(db, stream_id: int) -> set[str]:
    return {
        uuid_name(db.get_playback(r.composite_id).sample_file_uuid)
        for r in db.list_recordings(stream_id)
    }


def test_each_directorys_syncer_rotates_only_its_own_streams(two_dirs):
    db, dir_a, dir_b, entry_id, streams = two_dirs
    assert {s.id for s in db.list_streams(dir_a.id)} == {streams["a/main"].id}
    assert {s.id for s in db.list_streams(dir_b.id)} == {streams["a/sub"].id,
                                                           streams["b/main"].id}
    with dir_a.start_syncer() as syncer_a, dir_b.start_syncer() as syncer_b:
        recorders = [
            StreamRecorder(syncer_a, streams["a/main"].id, "a/main", rotate_interval_sec=1),
            StreamRecorder(syncer_b, streams["a/sub"].id, "a/sub", rotate_interval_sec=1),
            StreamRecorder(syncer_b, streams["b/main"].id, "b/main", rotate_interval_sec=1),
        ]
        feed(recorders, entry_id, 0, 30 * 12, BASE_TIME_90K)
        for r in recorders:
            r.end_run()
        syncer_a.flush()
        syncer_b.flush()
        # Each small budget rotated its stream; a/sub, in B beside b/main, kept everything.
        for name in ("a/main", "b/main"):
            rows = db.list_recordings(streams[name].id)
            assert sum(r.sample_file_bytes for r in rows) <= 60_000
            assert len(rows) < len(db.list_recordings(streams["a/sub"].id))
        sub_frames = [n for rec in read_recordings(db, dir_b.path, streams["a/sub"].id)
                      for n in rec]
        assert sub_frames == list(range(360))
        # Every file is in its own stream's directory, and nothing else is there.
        in_a = files_of(db, streams["a/main"].id)
        in_b = files_of(db, streams["a/sub"].id) | files_of(db, streams["b/main"].id)
        # (The pools' files made ahead are there too while the syncers run.)
        pool_a = {uuid_name(u) for u, _state in db.list_reserved_sample_files(dir_a.id)}
        pool_b = {uuid_name(u) for u, _state in db.list_reserved_sample_files(dir_b.id)}
        assert set(dir_a.directory.list_names()) - {"meta"} - pool_a == in_a
        assert set(dir_b.directory.list_names()) - {"meta"} - pool_b == in_b

        # A lowered budget of a stream in B: A's syncer leaves it alone, B's applies it.
        b_main = streams["b/main"].id
        before = db.list_recordings(b_main)
        db.update_camera("b", retain_bytes=before[-1].sample_file_bytes)
        syncer_a.enforce_retention()
        assert db.list_recordings(b_main) == before
        assert files_of(db, streams["a/main"].id) == in_a
        syncer_b.enforce_retention()
        assert db.list_recordings(b_main) == before[-1:]
    assert read_recordings(db, dir_b.path, b_main)[-1][-1] == 359
    for d in (dir_a, dir_b):
        assert db.list_reserved_sample_files(d.id) == []
        assert_invariants(db, d)
    assert files_of(db, streams["a/main"].id) <= set(os.listdir(dir_a.path))
    assert not files_of(db, streams["a/main"].id) & set(os.listdir(dir_b.path))


def test_each_syncers_recovery_touches_only_its_own_directorys_reservations(two_dirs):
    db, dir_a, dir_b, entry_id, streams = two_dirs
    leftovers = {}
    for d in (dir_a, dir_b):  # what a crash mid-write leaves in each directory
        with db.transaction() as tx:
            leftovers[d.id] = tx.reserve_sample_file(d.id)
        fd = d.directory.create_file(uuid_name(leftovers[d.id]))
        os.write(fd, b"half a recording")
        os.close(fd)
    with dir_a.start_syncer() as syncer_a:
        assert uuid_name(leftovers[dir_a.id]) not in dir_a.directory.list_names()
        # B's reservation and file are left for B's syncer; A's pool is A's.
        assert db.list_reserved_sample_files(dir_b.id) == [(leftovers[dir_b.id], 0)]
        assert uuid_name(leftovers[dir_b.id]) in dir_b.directory.list_names()
        reserved_a = db.list_reserved_sample_files(dir_a.id)
        assert reserved_a and leftovers[dir_a.id] not in {u for u, _ in reserved_a}
        write_recording(syncer_a, streams["a/main"].id, entry_id, BASE_TIME_90K)
    # A's orderly close drops A's reservations only.
    assert db.list_reserved_sample_files(dir_a.id) == []
    assert db.list_reserved_sample_files(dir_b.id) == [(leftovers[dir_b.id], 0)]
    assert uuid_name(leftovers[dir_b.id]) in dir_b.directory.list_names()
    with dir_b.start_syncer():
        assert uuid_name(leftovers[dir_b.id]) not in dir_b.directory.list_names()
    assert db.list_reserved_sample_files(dir_b.id) == []
    assert len(db.list_recordings(streams["a/main"].id)) == 1
    for d in (dir_a, dir_b):
        assert_invariants(db, d)

