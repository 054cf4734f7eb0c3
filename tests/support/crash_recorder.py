"""A recorder process for the crash tests: records synthetic packets until done or killed.

Usage, from the repository root: python -m tests.support.crash_recorder DATA_DIR RUN_NUMBER FRAMES

Every recorded stream in the database (the test gives each camera a main and a
sub stream, spread over two sample file directories) records ``FRAMES`` frames
of a synthetic 30 fps stream, rotating every second, with frame numbers
starting at ``RUN_NUMBER * 100000`` so every packet ever written is unique.
Each directory has its own syncer, as under ``moonfire run``.  It first
abandons one empty writer per directory (to reach the abandon crash point),
then records, abandons another (so the shutdown has a deletion to finish and
reaches the ``shutdown.*`` points: the pool's unused reservations alone need
no unlink), then shuts down in order.  ``MOONFIRE_CRASH_AT`` makes it SIGKILL
itself at a named step of the storage engine, in whichever syncer reaches it.

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
from moonfire.storage.sample_file_dir import SampleFileDir
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


def abandon_one(syncer, stream_id: int, entry_id: int) -> None:
    try:
        syncer.create_writer(None, stream_id, entry_id).close()
    except RecordingAbandonedError:
        pass


def lower_budgets_for_a_moment(db, syncers) -> None:
    """``camera edit --retain`` while recording: a rotation outside any save (``rotation.*``)."""
    streams = [s for s in db.list_streams() if s.record]
    for stream in streams:
        _recordings, used_bytes, _duration = db.stream_usage(stream.id)
        set_budget(db, stream, used_bytes // 2)  # at least one row goes
    for syncer in syncers:
        syncer.enforce_retention()
    for stream in streams:
        set_budget(db, stream, stream.retain_bytes)


def set_budget(db, stream, retain_bytes: int) -> None:
    prefix = "" if stream.type == "main" else "sub_"
    db.update_camera(stream.camera_id, **{prefix + "retain_bytes": retain_bytes})


def main() -> None:
    data_dir, run, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    set_fault_hook(slow_disk)
    db = datadir.open_db(data_dir)
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    dirs = {row.id: SampleFileDir.open(db, row.id) for row in db.list_sample_file_dirs()}
    syncers = {dir_id: d.start_syncer() for dir_id, d in dirs.items()}
    streams = [s for s in db.list_streams() if s.record]
    for dir_id, syncer in syncers.items():
        abandon_one(syncer, next(s.id for s in streams if s.sample_file_dir_id == dir_id),
                    entry_id)
    recorders = [
        StreamRecorder(syncers[s.sample_file_dir_id], s.id, db.stream_name(s.id), 1, i)
        for i, s in enumerate(streams)
    ]
    for i, f in enumerate(frames(run * 100_000, count, BASE_TIME_90K)):
        for r in recorders:
            r.write(make_packet(r.stream_id, f.number, f.is_key), f.local_time_90k, f.pts_90k,
                    f.is_key, entry_id)
        if i == count // 2:
            lower_budgets_for_a_moment(db, syncers.values())
        time.sleep(FRAME_PAUSE)
    for r in recorders:
        r.end_run()
    for dir_id, syncer in syncers.items():
        abandon_one(syncer, next(s.id for s in streams if s.sample_file_dir_id == dir_id),
                    entry_id)
    for syncer in syncers.values():
        syncer.close()
    for d in dirs.values():
        d.close()
    db.close()
    print("clean exit")


if __name__ == "__main__":
    main()
