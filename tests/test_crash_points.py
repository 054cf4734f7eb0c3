"""Which crash points the engine reaches when: ``recovery.*`` only while recovering.

The SIGKILL test (``test_crash_safety``) proves a kill at each point is safe; this one proves,
in-process, that the points mean what they are named: a normal save, a budget rotation
(``enforce_retention``) and a full-disk rotation (``make_room``) never reach a ``recovery.*``
point, while the start's recovery reaches every one of them.
"""

from __future__ import annotations

import threading

from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage.crash_points import CRASH_POINTS, observe
from tests.support.engine import BASE_TIME_90K
from tests.support.synthetic_stream import feed

RECOVERY_POINTS = [p for p in CRASH_POINTS if p.startswith("recovery.")]


class Reached:
    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.names.append(name)

    def take(self) -> list[str]:
        with self._lock:
            names, self.names = self.names, []
        return names




def usage(db, stream_id: int) -> int:
    return sum(r.sample_file_bytes for r in db.list_recordings(stream_id))


def test_recovery_points_are_reached_only_by_the_starts_recovery(engine):
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    with sample_file_dir.start_syncer() as syncer:
        recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
        feed([recorder], entry_id, 0, 30 * 12, BASE_TIME_90K)
        recorder.end_run()
    total = usage(db, cam.main.id)
    db.update_camera(cam.id, retain_bytes=total // 2)

    reached = Reached()
    with observe(reached):
        syncer = sample_file_dir.start_syncer()
        try:
            at_start = reached.take()
            # Recovery brought the stream within its lowered budget, through every step.
            assert at_start == RECOVERY_POINTS
            assert usage(db, cam.main.id) <= total // 2

            # Normal operation: saves that rotate by budget ...
            recorder = StreamRecorder(syncer, cam.main.id, rotate_interval_sec=1)
            feed([recorder], entry_id, 100_000, 30 * 6, BASE_TIME_90K + 600 * 90000)
            recorder.end_run()
            syncer.flush()
            # ... a rotation to a lowered budget ...
            before = len(db.list_recordings(cam.main.id))
            db.update_camera(cam.id, retain_bytes=usage(db, cam.main.id) // 2)
            syncer.enforce_retention()
            after_enforce = len(db.list_recordings(cam.main.id))
            assert after_enforce < before
            # ... and a full-disk rotation.
            syncer.make_room(cam.main.id)
            syncer.flush()
            assert len(db.list_recordings(cam.main.id)) == after_enforce - 1
            syncer.flush()
            normal = reached.take()
        finally:
            syncer.close()
        at_shutdown = reached.take()

    assert set(normal) <= set(CRASH_POINTS)
    assert [n for n in normal if n.startswith("recovery.")] == []
    assert {"save.after_unlink", "save.after_file_fsync", "save.after_dir_fsync",
            "save.after_commit"} <= set(normal)
    # enforce_retention and make_room are rotations outside a save: their own points.
    assert {"rotation.after_delete_transaction", "rotation.after_unlink",
            "rotation.after_dir_fsync", "rotation.after_mark_transaction"} <= set(normal)
    assert [n for n in at_shutdown if not n.startswith("shutdown.")] == []


def test_a_start_with_nothing_to_recover_reaches_no_point(engine):
    db, sample_file_dir, _entry_id = engine
    db.add_camera("front", retain_bytes=10**9)
    reached = Reached()
    with observe(reached):
        sample_file_dir.start_syncer().close()
    assert reached.take() == []


def test_observe_restores_the_previous_observer():
    outer, inner = Reached(), Reached()
    from moonfire.storage.crash_points import crash_point

    with observe(outer):
        with observe(inner):
            crash_point("save.after_commit")
        crash_point("save.after_unlink")
    crash_point("save.after_dir_fsync")
    assert inner.take() == ["save.after_commit"]
    assert outer.take() == ["save.after_unlink"]
