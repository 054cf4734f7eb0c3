"""``Writer.snapshot``: the recording being written, as the API serves it while it grows.

Both twins: the snapshot must describe exactly what ``close`` would save for the
samples indexed so far (same index bytes, start, duration), say how many bytes
reached the file, and never change the writer.
"""

from __future__ import annotations

from pathlib import Path

from moonfire_core.records import PreviousWriter
from tests.test_writer import FRAME, T0, FakeSink, new_writer


def test_no_snapshot_before_a_sample_is_indexed(impl, tmp_path: Path) -> None:
    writer = new_writer(impl, tmp_path, FakeSink())
    assert writer.snapshot() is None
    writer.write(b"key", T0, 0, True)
    assert writer.snapshot() is None  # its duration isn't known until the next pts
    writer.close()


def test_snapshot_matches_what_close_saves_for_the_same_samples(impl, tmp_path: Path) -> None:
    sink = FakeSink()
    writer = new_writer(impl, tmp_path, sink, buffer_bytes=16)
    sizes = [10, 3, 4, 5, 6]
    for i, size in enumerate(sizes):
        writer.write(bytes([i]) * size, T0 + i * FRAME + 7, i * FRAME, i == 0)
    snap = writer.snapshot()
    assert snap is not None
    writer.close(next_pts=len(sizes) * FRAME)
    saved = sink.only_saved
    # Four samples indexed (the fifth waits for its duration).
    assert (snap.video_samples, snap.video_sync_samples) == (4, 1)
    assert snap.sample_file_bytes == sum(sizes[:4])
    assert snap.duration_90k == 4 * FRAME
    assert snap.start_time_90k == saved.start_time_90k
    assert (snap.stream_id, snap.video_sample_entry_id, snap.run_offset) == (7, 3, 0)
    assert snap.sample_file_uuid == saved.sample_file_uuid
    expected_index = impl.index.encode_index([FRAME] * 4, sizes[:4], [True, False, False, False])
    assert snap.video_index == expected_index
    assert saved.video_index.startswith(expected_index)
    # With a 16-byte buffer, the 10-byte key frame and the next ones went out in writes;
    # whatever the snapshot says reached the file is really in it, and in order.
    assert 0 < snap.file_bytes <= sum(sizes)
    data = Path(writer.path).read_bytes()
    assert len(data) == sum(sizes)


def test_snapshot_counts_only_bytes_that_reached_the_file(impl, tmp_path: Path) -> None:
    writer = new_writer(impl, tmp_path, FakeSink(), buffer_bytes=1 << 16)
    writer.write(b"a" * 100, T0, 0, True)
    writer.write(b"b" * 100, T0 + FRAME, FRAME, False)
    snap = writer.snapshot()
    assert snap is not None and snap.sample_file_bytes == 100
    assert snap.file_bytes == 0  # all still buffered
    assert Path(writer.path).stat().st_size == 0
    writer.write(b"c" * (1 << 16), T0 + 2 * FRAME, 2 * FRAME, False)  # forces the flush
    snap = writer.snapshot()
    assert snap is not None and snap.file_bytes >= snap.sample_file_bytes == 200
    assert Path(writer.path).stat().st_size == snap.file_bytes
    writer.close()


def test_snapshot_of_a_later_recording_starts_at_the_previous_end(impl, tmp_path: Path) -> None:
    prev = PreviousWriter(end_time_90k=T0 + 90_000, local_time_delta_90k=0, run_offset=4)
    writer = new_writer(impl, tmp_path, FakeSink(), prev=prev)
    writer.write(b"x", T0 + 90_000, 0, True)
    writer.write(b"y", T0 + 90_000 + FRAME, FRAME, False)
    snap = writer.snapshot()
    assert snap is not None
    assert (snap.start_time_90k, snap.run_offset) == (T0 + 90_000, 5)
    writer.close()


def test_closed_writers_have_no_snapshot_and_snapshots_change_nothing(
    impl, tmp_path: Path
) -> None:
    sink = FakeSink()
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"x", T0, 0, True)
    writer.write(b"y", T0 + FRAME, FRAME, False)
    first = writer.snapshot()
    assert writer.snapshot() == first
    assert writer.video_samples == 1
    writer.close()
    assert writer.snapshot() is None
    assert sink.only_saved.video_samples == 2
