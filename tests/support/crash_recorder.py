"""A recorder process for the crash tests: records synthetic packets until done or killed.

Usage, from the repository root: python -m tests.support.crash_recorder DATA_DIR RUN_NUMBER FRAMES

Every camera in the database records ``FRAMES`` frames of a synthetic 30 fps
stream, rotating every second, with frame numbers starting at
``RUN_NUMBER * 100000`` so every packet ever written is unique.  It first
abandons one empty writer (to reach the abandon crash point), then records,
then shuts down in order.  ``MOONFIRE_CRASH_AT`` makes it SIGKILL itself at a
named step of the storage engine.
"""

import sys

from moonfire.ingest.recorder import CameraRecorder
from moonfire.storage import data_dir as datadir
from moonfire_core import RecordingAbandonedError
from tests.support.synthetic_stream import feed

BASE_TIME_90K = 1_700_000_000 * 90000
ENTRY = bytes(range(90))


def main() -> None:
    data_dir, run, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    syncer = sample_file_dir.start_syncer()
    cameras = db.list_cameras()
    try:
        syncer.create_writer(None, cameras[0].id, entry_id).close()
    except RecordingAbandonedError:
        pass
    recorders = [
        CameraRecorder(syncer, c.id, c.short_name, 1, i) for i, c in enumerate(cameras)
    ]
    feed(recorders, entry_id, run * 100_000, count, BASE_TIME_90K)
    for r in recorders:
        r.end_run()
    syncer.close()
    sample_file_dir.close()
    db.close()
    print("clean exit")


if __name__ == "__main__":
    main()
