"""A sample file directory on a small tmpfs fills up: recording goes on, nothing committed is lost.

The camera's budget is far larger than the disk, so retention never kicks in
and the disk fills.  Each time a write fails with ENOSPC, the recording it hit
is closed (keeping the samples that reached the disk, or abandoned if they
didn't), the syncer deletes the camera's oldest recordings to make room, and
the next key frame starts a new run.  Throughout, every committed recording
stays byte-identical until retention removes it, oldest first, and no row
ever references a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from moonfire import datadir
from moonfire.check import check
from moonfire.dir import uuid_name
from moonfire.recorder import CameraRecorder
from synthetic_stream import frames, make_packet, verify_recording

BASE_TIME_90K = 1_700_000_000 * 90000
ENTRY = bytes(range(90))
TMPFS_BYTES = 640 * 1024  # about 20 one-second recordings of the synthetic stream


@pytest.fixture
def small_tmpfs(tmp_path):
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        message = f"can't mount a tmpfs (needs root): {proc.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def snapshot(db, sample_path: str, camera_id: int) -> dict[int, bytes]:
    out = {}
    for row in db.list_recordings(camera_id):
        playback = db.get_playback(row.composite_id)
        data = Path(sample_path, uuid_name(playback.sample_file_uuid)).read_bytes()
        verify_recording(data, playback.video_index, camera_id)
        out[row.composite_id] = hashlib.sha1(data).digest()
    return out


def test_full_disk_rotates_and_goes_on_without_losing_committed_recordings(
    tmp_path, small_tmpfs, caplog
):
    db, sample_dir = datadir.init(str(tmp_path / "data"), sample_dir=str(small_tmpfs))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    cam = db.add_camera("front", retain_bytes=10**9)
    seen: dict[int, bytes] = {}
    try:
        with sample_dir.start_syncer() as syncer:
            recorder = CameraRecorder(sample_dir, syncer, cam.id, rotate_interval_sec=1)
            for f in frames(0, 30 * 90, BASE_TIME_90K):
                recorder.write(
                    make_packet(cam.id, f.number, f.is_key),
                    f.local_time_90k,
                    f.pts_90k,
                    f.is_key,
                    entry_id,
                )
                if f.number % 150 == 0:
                    syncer.flush()
                    now = snapshot(db, sample_dir.path, cam.id)
                    lost = [i for i in seen if i not in now]
                    assert not now or all(i < min(now) for i in lost), "a newer recording vanished"
                    assert all(now[i] == seen.get(i, now[i]) for i in now), "a recording changed"
                    seen = now
            recorder.end_run()
        assert "No space left on device" in caplog.text
        assert "is full before the camera reached its budget" in caplog.text
        problems = [str(v) for v in check(db, sample_dir.path, hash_contents=True)]
        assert problems == []
        final = db.list_recordings(cam.id)
        assert sum(r.sample_file_bytes for r in final) <= TMPFS_BYTES
        assert len({r.composite_id - r.run_offset for r in final}) >= 2  # ENOSPC ended a run
        # Recording went on to the end.  (The very last recording may itself have
        # hit a full disk and been cut short or abandoned: that is uncommitted video.)
        last = final[-1]
        playback = db.get_playback(last.composite_id)
        data = Path(sample_dir.path, uuid_name(playback.sample_file_uuid)).read_bytes()
        assert verify_recording(data, playback.video_index, cam.id)[-1] >= 30 * 85
        assert db.list_reserved_sample_files() == []
    finally:
        sample_dir.close()
        db.close()
