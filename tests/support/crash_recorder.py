"""A recorder process for the crash tests: records synthetic packets until done or killed.

Usage, from the repository root: python -m tests.support.crash_recorder DATA_DIR RUN_NUMBER FRAMES

Every camera in the database records ``FRAMES`` frames of a synthetic 30 fps
stream, rotating every second, with frame numbers starting at
``RUN_NUMBER * 100000`` so every packet ever written is unique.  It first
abandons one empty writer (to reach the abandon crash point), then records,
abandons another (so the shutdown has a deletion to finish and reaches the
``shutdown.*`` points: the pool's unused reservations alone need no unlink),
then shuts down in order.  ``MOONFIRE_CRASH_AT`` makes it SIGKILL itself at a
named step of the storage engine.

Frames are paced (``FRAME_PAUSE``, much faster than real time) and the
directory fsync is slowed down (``SLOW_DIR_FSYNC``, through the fault hook) as
on a busy disk, so rotations arrive while the syncer is busy and it commits
batches of several recordings: the crash points inside a batch
(``save.after_some_file_fsyncs``) are reached several times per run.
"""

import sys
import time

from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire_core import RecordingAbandonedError
from moonfire_core._fault_hook import set_fault_hook
from tests.support.synthetic_stream import frames, make_packet

BASE_TIME_90K = 1_700_000_000 * 90000
ENTRY = bytes(range(90))
SLOW_DIR_FSYNC = 0.02  # seconds
FRAME_PAUSE = 0.0005  # seconds between frames: a rotation every ~15 ms


def slow_disk(operation: str, path: str) -> None:
    if operation == "fsync_dir":
        time.sleep(SLOW_DIR_FSYNC)


def abandon_one(syncer, camera_id: int, entry_id: int) -> None:
    try:
        syncer.create_writer(None, camera_id, entry_id).close()
    except RecordingAbandonedError:
        pass


def lower_budgets_for_a_moment(db, syncer) -> None:
    """``camera edit --retain`` while recording: a rotation outside any save (``rotation.*``)."""
    budgets = {c.id: c.retain_bytes for c in db.list_cameras()}
    for camera_id in budgets:
        _recordings, used_bytes, _duration = db.camera_usage(camera_id)
        db.update_camera(camera_id, retain_bytes=used_bytes // 2)  # at least one row goes
    syncer.enforce_retention()
    for camera_id, budget in budgets.items():
        db.update_camera(camera_id, retain_bytes=budget)


def main() -> None:
    data_dir, run, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    set_fault_hook(slow_disk)
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    syncer = sample_file_dir.start_syncer()
    cameras = db.list_cameras()
    abandon_one(syncer, cameras[0].id, entry_id)
    recorders = [
        StreamRecorder(syncer, c.id, c.short_name, 1, i) for i, c in enumerate(cameras)
    ]
    for i, f in enumerate(frames(run * 100_000, count, BASE_TIME_90K)):
        for r in recorders:
            r.write(make_packet(r.camera_id, f.number, f.is_key), f.local_time_90k, f.pts_90k,
                    f.is_key, entry_id)
        if i == count // 2:
            lower_budgets_for_a_moment(db, syncer)
        time.sleep(FRAME_PAUSE)
    for r in recorders:
        r.end_run()
    abandon_one(syncer, cameras[0].id, entry_id)
    syncer.close()
    sample_file_dir.close()
    db.close()
    print("clean exit")


if __name__ == "__main__":
    main()
