"""A sample file directory on a small tmpfs fills up: recording goes on, nothing committed is lost.

The stream's budget is far larger than the disk.  Each save keeps room for a
few recordings by deleting the stream's oldest ones, so writes don't fail.
When another program fills the disk anyway, the write that hits ENOSPC ends
the run (the recording keeps the samples that reached the disk, or is
abandoned if none did), the syncer deletes the stream's oldest recordings to
make room, and the next key frame starts a new run.  Throughout, every
committed recording stays byte-identical until retention removes it, oldest
first, and no row ever references a half-written file.
"""

from __future__ import annotations

import errno
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage.invariants import check
from moonfire.storage.sample_file_dir import uuid_name
from tests.support.synthetic_stream import frames, make_packet, verify_recording
from tests.support.tmpfs import mounted_tmpfs

BASE_TIME_90K = 1_700_000_000 * 90000
ENTRY = bytes(range(90))
TMPFS_BYTES = 640 * 1024  # about 20 one-second recordings of the synthetic stream


@pytest.fixture
def small_tmpfs(tmp_path):
    # The sample dir is a subdirectory, so a ballast fits beside it.
    with mounted_tmpfs(tmp_path / "tmpfs", f"size={TMPFS_BYTES}") as mountpoint:
        yield mountpoint


def snapshot(db, sample_path: str, stream_id: int) -> dict[int, bytes]:
    out = {}
    for row in db.list_recordings(stream_id):
        playback = db.get_playback(row.composite_id)
        data = Path(sample_path, uuid_name(playback.sample_file_uuid)).read_bytes()
        verify_recording(data, playback.video_index, stream_id)
        out[row.composite_id] = hashlib.sha1(data).digest()
    return out


def fill_disk(path: Path) -> None:
    """What another program sharing the disk does: write until ENOSPC."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def record_checking_history(db, sample_file_dir, stream_id, entry_id, count, before_frame=None):
    """Record ``count`` frames; every 5 s assert that committed recordings are intact and
    that the only ones that vanished are older than every survivor."""
    seen: dict[int, bytes] = {}
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, stream_id, rotate_interval_sec=1)
        for f in frames(0, count, BASE_TIME_90K):
            if before_frame is not None:
                before_frame(f.number)
            packet = make_packet(stream_id, f.number, f.is_key)
            recorder.write(packet, f.local_time_90k, f.pts_90k, f.is_key, entry_id)
            if f.number % 150 == 0:
                syncer.flush()
                now = snapshot(db, sample_file_dir.path, stream_id)
                lost = [i for i in seen if i not in now]
                assert not now or all(i < min(now) for i in lost), "a newer recording vanished"
                assert all(now[i] == seen.get(i, now[i]) for i in now), "a recording changed"
                seen = now
        recorder.end_run()
    dir_row = db.sample_file_dir(sample_file_dir.id)
    assert [str(v) for v in check(db, dir_row, hash_contents=True)] == []
    assert db.list_reserved_sample_files(sample_file_dir.id) == []


def last_frame_recorded(db, sample_file_dir, stream_id) -> int:
    last = db.list_recordings(stream_id)[-1]
    playback = db.get_playback(last.composite_id)
    data = Path(sample_file_dir.path, uuid_name(playback.sample_file_uuid)).read_bytes()
    return verify_recording(data, playback.video_index, stream_id)[-1]


@contextmanager
def engine_on(tmp_path, mountpoint: Path):
    """A data directory whose sample files go to ``mountpoint``; one stream, one entry."""
    db, sample_file_dir = datadir.init(
        str(tmp_path / "data"), sample_file_dir_path=str(mountpoint / "sample")
    )
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    stream_id = db.add_camera("front", retain_bytes=10**9).main.id
    try:
        yield db, sample_file_dir, stream_id, entry_id
    finally:
        sample_file_dir.close()
        db.close()


@pytest.fixture
def engine_on_tmpfs(tmp_path, small_tmpfs):
    with engine_on(tmp_path, small_tmpfs) as engine:
        yield engine


def test_budget_larger_than_the_disk_keeps_room_and_loses_no_frame(engine_on_tmpfs, caplog):
    db, sample_file_dir, stream_id, entry_id = engine_on_tmpfs
    count = 30 * 90  # ~3x what the disk holds
    record_checking_history(db, sample_file_dir, stream_id, entry_id, count)
    assert "No space left on device" not in caplog.text
    assert "bytes free: deleting" in caplog.text
    rows = db.list_recordings(stream_id)
    assert sum(r.sample_file_bytes for r in rows) <= TMPFS_BYTES
    assert len({r.composite_id - r.run_offset for r in rows}) == 1  # never interrupted
    assert last_frame_recorded(db, sample_file_dir, stream_id) == count - 1


def test_disk_filled_by_another_program_ends_the_run_and_recording_goes_on(
    engine_on_tmpfs, small_tmpfs, caplog
):
    db, sample_file_dir, stream_id, entry_id = engine_on_tmpfs
    count = 30 * 60

    def fill_at_20_seconds(frame: int) -> None:
        if frame == 30 * 20 + 7:
            fill_disk(small_tmpfs / "ballast")

    record_checking_history(db, sample_file_dir, stream_id, entry_id, count, fill_at_20_seconds)
    assert "No space left on device" in caplog.text
    assert "is full before the stream reached its budget" in caplog.text
    # Recording went on to the end.  (The recording the full disk hit may have
    # been cut short or abandoned: that video was never committed.)
    assert last_frame_recorded(db, sample_file_dir, stream_id) == count - 1


#: Inodes of the few-inodes tmpfs: its root, the sample dir and ``meta`` take 3.
TMPFS_INODES = 16


@pytest.fixture
def few_inodes_engine(tmp_path):
    with mounted_tmpfs(tmp_path / "tmpfs", f"size=64m,nr_inodes={TMPFS_INODES}") as mountpoint:
        with engine_on(tmp_path, mountpoint) as engine:
            yield engine


def test_few_inodes_delete_the_oldest_and_recording_goes_on(few_inodes_engine, caplog):
    """Files run out before bytes: the inode floor deletes the oldest, so no create fails."""
    db, sample_file_dir, stream_id, entry_id = few_inodes_engine
    count = 30 * 45  # ~45 one-second recordings, 3x the inodes (it used to stop at ~13)
    record_checking_history(db, sample_file_dir, stream_id, entry_id, count)
    assert "No space left on device" not in caplog.text
    assert "inodes free: deleting" in caplog.text and "stream front/main's budget" in caplog.text
    rows = db.list_recordings(stream_id)
    assert 1 < len(rows) < TMPFS_INODES
    assert rows[0].composite_id & 0xFFFFFFFF > 1  # the oldest went
    assert len({r.composite_id - r.run_offset for r in rows}) == 1  # never interrupted
    assert last_frame_recorded(db, sample_file_dir, stream_id) == count - 1
