"""Recordings only the recorder's memory holds, as the API lists and serves them.

``Syncer.uncommitted`` lists a closed recording until its transaction commits (held
here in the syncer's directory fsync); ``unsaved_recordings`` predicts their ids
from the newest committed row, drops one committed since, and cuts the recording
being written to the samples whose bytes reached its file.
"""

from __future__ import annotations

import dataclasses

import pytest

from moonfire.db import RecordingRow, Stream
from moonfire.db.rows import composite_id
from moonfire.web.api import coalesce_recordings
from moonfire.web.unsaved import RecorderState, unsaved_recordings
from moonfire_core import decode_index, encode_index
from moonfire_core._fault_hook import set_fault_hook
from moonfire_core.records import RecordingToSave, WriterSnapshot
from tests.support.engine import engine, write_frames  # noqa: F401 - fixture
from tests.test_group_commit import Syscalls

STREAM = Stream(
    id=3, camera_id=1, type="main", url="testsrc://", record=True, retain_bytes=10**9,
    max_age_days=None, sample_file_dir_id=1, next_recording_id=10,
)
T0 = 1_700_000_000 * 90000
SECOND = 90000


def closed(start: int, duration: int = 60 * SECOND, run_offset: int = 1) -> RecordingToSave:
    index = encode_index([duration], [1000], [True])
    return RecordingToSave(
        stream_id=STREAM.id, sample_file_uuid=start.to_bytes(16, "big"), fd=-1,
        run_offset=run_offset, flags=0, sample_file_bytes=1000, start_time_90k=start,
        duration_90k=duration, local_time_delta_90k=0, video_samples=1, video_sync_samples=1,
        video_sample_entry_id=2, video_index=index, sample_file_sha1=b"\0" * 20,
    )


def snapshot(start: int, sizes: list[int], file_bytes: int, run_offset: int = 2) -> WriterSnapshot:
    durations = [3000] * len(sizes)
    keys = [i % 15 == 0 for i in range(len(sizes))]
    return WriterSnapshot(
        stream_id=STREAM.id, sample_file_uuid=b"g" * 16, run_offset=run_offset,
        start_time_90k=start, duration_90k=sum(durations), local_time_delta_90k=5,
        video_samples=len(sizes), video_sync_samples=sum(keys), sample_file_bytes=sum(sizes),
        file_bytes=file_bytes, video_sample_entry_id=2,
        video_index=encode_index(durations, sizes, keys),
    )


def committed(
    recording_id: int, start: int, duration: int = 60 * SECOND, run_offset: int = 0
) -> RecordingRow:
    return RecordingRow(
        composite_id=composite_id(STREAM.id, recording_id), stream_id=STREAM.id,
        run_offset=run_offset,
        flags=0, sample_file_bytes=1000, start_time_90k=start, duration_90k=duration,
        local_time_delta_90k=0, video_samples=1, video_sync_samples=1, video_sample_entry_id=2,
        open_id=7,
    )


def test_ids_follow_the_newest_committed_recording_in_order() -> None:
    newest = committed(41, T0)
    state = RecorderState(
        snapshot(T0 + 180 * SECOND, [100] * 30, file_bytes=3000),
        [closed(T0 + 60 * SECOND), closed(T0 + 120 * SECOND)],
        open_id=7,
    )
    found = unsaved_recordings(state, STREAM, newest)
    assert [u.row.recording_id for u in found] == [42, 43, 44]
    assert [u.growing for u in found] == [False, False, True]
    assert all(u.row.open_id == 7 and u.row.stream_id == STREAM.id for u in found)


def test_with_nothing_committed_ids_start_at_the_streams_next_id() -> None:
    state = RecorderState(None, [closed(T0)], open_id=1)
    (found,) = unsaved_recordings(state, STREAM, None)
    assert found.row.recording_id == STREAM.next_recording_id


def test_a_recording_committed_after_the_state_was_read_is_left_out() -> None:
    state = RecorderState(None, [closed(T0), closed(T0 + 60 * SECOND)], open_id=7)
    newest = committed(5, T0)  # the first one committed in between
    found = unsaved_recordings(state, STREAM, newest)
    assert [(u.row.recording_id, u.row.start_time_90k) for u in found] == [(6, T0 + 60 * SECOND)]


def test_a_snapshot_of_a_recording_closed_since_gives_way_to_the_closed_one() -> None:
    state = RecorderState(snapshot(T0, [100] * 30, 3000), [closed(T0)], open_id=7)
    (found,) = unsaved_recordings(state, STREAM, None)
    assert not found.growing and found.row.duration_90k == 60 * SECOND


def test_the_growing_recording_is_cut_to_the_bytes_in_its_file() -> None:
    sizes = [500, 100, 100, 100, 100]
    # 750 bytes on disk: samples 0-2 end at 500, 600, 700; sample 3 ends at 800 (buffered).
    state = RecorderState(snapshot(T0, sizes, file_bytes=750), [], open_id=7)
    (found,) = unsaved_recordings(state, STREAM, None)
    row = found.row
    assert (row.video_samples, row.sample_file_bytes, row.duration_90k) == (3, 700, 9000)
    assert (row.video_sync_samples, row.run_offset, row.local_time_delta_90k) == (1, 2, 5)
    decoded = decode_index(found.video_index)
    assert decoded.sizes.tolist() == [500, 100, 100]
    assert decoded.durations.tolist() == [3000, 3000, 3000]


def test_a_growing_recording_with_no_whole_sample_on_disk_is_not_listed() -> None:
    state = RecorderState(snapshot(T0, [500, 100], file_bytes=499), [], open_id=7)
    assert unsaved_recordings(state, STREAM, None) == []


def test_coalescing_marks_first_uncommitted_and_growing() -> None:
    rows = [committed(41, T0)]
    state = RecorderState(
        snapshot(T0 + 120 * SECOND, [100] * 30, 3000, run_offset=2),
        [closed(T0 + 60 * SECOND, run_offset=1)],
        open_id=7,
    )
    unsaved = unsaved_recordings(state, STREAM, rows[-1])
    # Make them one run starting at 41 (run offsets 0, 1, 2).
    (agg,) = coalesce_recordings(rows, None, unsaved)
    assert (agg["startId"], agg["endId"], agg["firstUncommitted"]) == (41, 43, 42)
    assert agg["growing"] is True
    assert agg["endTime90k"] == T0 + 120 * SECOND + 30 * 3000
    # A recording in both (committed in between) is listed once, as committed.
    again = coalesce_recordings(
        [*rows, committed(42, T0 + 60 * SECOND, run_offset=1)], None, unsaved
    )
    assert again[0]["firstUncommitted"] == 43 and again[0]["endId"] == 43


def test_syncer_lists_a_closed_recording_until_it_commits(engine) -> None:  # noqa: F811
    db, sample_file_dir, entry_id = engine
    cam = db.add_camera("front", retain_bytes=10**9)
    hook = Syscalls()
    with sample_file_dir.start_syncer() as syncer:
        writer = syncer.create_writer(None, cam.main.id, entry_id)
        write_frames(writer, cam.main.id, count=20)
        assert syncer.uncommitted(cam.main.id) == []
        set_fault_hook(hook)
        hook.hold.set()
        writer.close()
        try:
            assert hook.held.wait(30)  # in the dir fsync: durable soon, not committed
            (pending,) = syncer.uncommitted(cam.main.id)
            assert pending.video_samples == 20
            assert syncer.uncommitted(cam.main.id + 1) == []
            assert db.list_recordings(cam.main.id) == []
        finally:
            hook.release.set()
        syncer.flush()
        assert syncer.uncommitted(cam.main.id) == []
        (row,) = db.list_recordings(cam.main.id)
        assert row.start_time_90k == pending.start_time_90k


@pytest.mark.parametrize("file_bytes", [0, 10**6])
def test_snapshot_cut_never_exceeds_the_index(file_bytes: int) -> None:
    state = RecorderState(snapshot(T0, [100] * 10, file_bytes), [], open_id=None)
    found = unsaved_recordings(state, STREAM, None)
    assert [u.row.video_samples for u in found] == ([] if file_bytes == 0 else [10])


def test_a_cut_keeps_the_b_frames_composition_offsets() -> None:
    durations, sizes, keys = [3000] * 4, [500, 100, 100, 100], [True] + [False] * 3
    offsets = [6000, 0, 3000, -3000]
    growing = dataclasses.replace(
        snapshot(T0, sizes, file_bytes=700),
        video_index=encode_index(durations, sizes, keys, offsets),
    )
    (found,) = unsaved_recordings(RecorderState(growing, [], open_id=7), STREAM, None)
    assert decode_index(found.video_index).composition_offsets.tolist() == [6000, 0, 3000]
