"""``Segment``: clipping a recording to a time range (brief §2.5 test vectors and errors)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import moonfire.playback.segment as recording_module
from moonfire.playback.segment import Segment
from moonfire_core import CorruptIndexError
from tests.support.recordings import make_recording

DURATIONS = [2, 4, 6, 8, 10]
SIZES = [3, 6, 9, 12, 15]


def all_sync():
    return make_recording(DURATIONS, SIZES, [True] * 5)


def half_sync():
    return make_recording(DURATIONS, SIZES, [True, False, True, False, True])


@pytest.fixture
def index_decodes(monkeypatch):
    """Counts ``decode_index`` calls, to prove which path a segment took."""
    calls = []
    real = recording_module.decode_index

    def counting(blob):
        calls.append(len(blob))
        return real(blob)

    monkeypatch.setattr(recording_module, "decode_index", counting)
    return calls


def durations_of(segment: Segment) -> list[int]:
    return segment.sample_tables().durations.tolist()


def sizes_of(segment: Segment) -> list[int]:
    return segment.sample_tables().sizes.tolist()


def test_clipping_with_all_sync_starts_at_the_frame_containing_the_start():
    rec = all_sync()
    segment = Segment(rec.row, rec.video_index, (2, 20))
    assert durations_of(segment) == [4, 6, 8]
    assert sizes_of(segment) == [6, 9, 12]
    assert (segment.actual_start_90k, segment.actual_end_90k) == (2, 20)
    assert segment.sample_byte_range == (3, 30)
    assert (segment.frames, segment.key_frames, segment.first_frame_index) == (3, 3, 1)


def test_clipping_with_half_sync_pulls_in_the_preceding_key_frame():
    rec = half_sync()
    segment = Segment(rec.row, rec.video_index, (13, 20))
    assert durations_of(segment) == [6, 8]
    assert segment.sample_tables().is_key.tolist() == [True, False]
    assert segment.actual_start_90k == 6
    assert segment.sample_byte_range == (9, 30)
    assert (segment.frames, segment.key_frames) == (2, 1)


def test_last_duration_is_trimmed_to_the_desired_end():
    rec = all_sync()
    segment = Segment(rec.row, rec.video_index, (0, 21))
    assert durations_of(segment) == [2, 4, 6, 8, 1]
    assert segment.actual_end_90k == 30  # the untrimmed end of the last frame
    assert segment.media_duration_90k == 21


def test_range_ending_at_the_recording_end_includes_the_trailing_zero_frame():
    rec = make_recording([1, 1, 0], [1, 2, 3], [True, True, True])
    segment = Segment(rec.row, rec.video_index, (1, 2))
    assert sizes_of(segment) == [2, 3]
    assert durations_of(segment) == [1, 0]
    assert segment.have_trailing_zero


def test_fast_path_reads_no_index_until_tables_are_wanted(index_decodes):
    rec = all_sync()
    segment = Segment(rec.row, rec.video_index, (0, 30))
    assert index_decodes == []
    assert (segment.frames, segment.key_frames, segment.sample_byte_range) == (5, 5, (0, 45))
    assert not segment.have_trailing_zero
    assert durations_of(segment) == [2, 4, 6, 8, 10]
    assert len(index_decodes) == 1
    durations_of(segment)
    assert len(index_decodes) == 1, "sample tables are cached"


def test_fast_path_with_trailing_zero_takes_the_flag_from_the_row(index_decodes):
    rec = make_recording([1, 1, 0], [1, 2, 3], [True, True, True])
    segment = Segment(rec.row, rec.video_index, (0, 2))
    assert index_decodes == []
    assert segment.have_trailing_zero
    assert sizes_of(segment) == [1, 2, 3]


def test_zero_length_range_still_yields_the_key_frame():
    rec = make_recording([1], [1], [True])
    segment = Segment(rec.row, rec.video_index, (0, 0))
    assert sizes_of(segment) == [1]
    assert durations_of(segment) == [0]
    assert segment.media_duration_90k == 0


def test_zero_length_range_mid_gop_yields_the_frames_up_to_that_instant():
    rec = half_sync()
    segment = Segment(rec.row, rec.video_index, (13, 13))
    assert sizes_of(segment) == [9, 12]
    assert durations_of(segment) == [6, 1]


def test_sample_tables_are_numpy_columns_with_documented_dtypes():
    rec = half_sync()
    tables = Segment(rec.row, rec.video_index, (0, 30)).sample_tables()
    assert tables.durations.dtype == np.int32
    assert tables.sizes.dtype == np.int32
    assert tables.is_key.dtype == np.bool_


@pytest.mark.parametrize(
    ("desired", "message"),
    [((3, 2), r"\[3, 2\)"), ((0, 31), r"\[0, 31\) .*\[0, 30\)"), ((-1, 2), r"\[-1, 2\)")],
)
def test_range_outside_the_recording_is_refused(desired, message):
    rec = all_sync()
    with pytest.raises(ValueError, match=rf"recording 1/1: desired range {message}"):
        Segment(rec.row, rec.video_index, desired)


def test_first_frame_must_be_a_key_frame():
    rec = make_recording(DURATIONS, SIZES, [False, True, True, True, True])
    with pytest.raises(ValueError, match="recording 1/1: first frame is not a key frame"):
        Segment(rec.row, rec.video_index, (2, 20))


def test_corrupt_index_error_names_the_recording():
    rec = make_recording(DURATIONS, SIZES, [True] * 5, stream_id=3, recording_id=42)
    with pytest.raises(CorruptIndexError, match=r"recording 3/42: .*offset 0"):
        Segment(rec.row, b"\x80", (2, 20))


def test_corrupt_index_on_the_fast_path_surfaces_when_tables_are_built():
    rec = all_sync()
    segment = Segment(rec.row, b"\x80", (0, 30))
    with pytest.raises(CorruptIndexError, match="recording 1/1"):
        segment.sample_tables()


def test_index_with_fewer_frames_than_the_row_is_refused():
    rec = all_sync()
    row = dataclasses.replace(rec.row, video_samples=7)
    segment = Segment(row, rec.video_index, (0, 30))
    with pytest.raises(ValueError, match="recording 1/1: expected 7 frames, found only 5"):
        segment.sample_tables()


def test_index_with_other_key_frame_count_than_the_row_is_refused():
    rec = half_sync()
    row = dataclasses.replace(rec.row, video_sync_samples=2)
    with pytest.raises(ValueError, match="expected 2 key frames, found 3"):
        Segment(row, rec.video_index, (2, 20))


def test_index_with_other_byte_total_than_the_row_is_refused():
    rec = half_sync()
    row = dataclasses.replace(rec.row, sample_file_bytes=44)
    with pytest.raises(ValueError, match="expected 44 sample file bytes, index sums to 45"):
        Segment(row, rec.video_index, (2, 20))


# ---- B-frames (issue 10 §1): composition offsets ---------------------------------------------

BFRAME_OFFSETS = [6, 12, 3, 3, 12]


def with_offsets():
    return make_recording(
        [3, 3, 3, 3, 3], SIZES, [True, False, False, True, False],
        composition_offsets=BFRAME_OFFSETS,
    )


def test_offsets_are_known_on_the_fast_path_without_decoding(index_decodes):
    rec = with_offsets()
    segment = Segment(rec.row, rec.video_index, (0, rec.row.duration_90k))
    assert segment.has_composition_offsets
    assert index_decodes == []
    plain = all_sync()
    plain_segment = Segment(plain.row, plain.video_index, (0, plain.row.duration_90k))
    assert not plain_segment.has_composition_offsets
    assert plain_segment.first_composition_offset_90k() == 0
    assert plain_segment.sample_tables().composition_offsets is None
    assert index_decodes == [len(plain.video_index)]  # the tables only


def test_sample_tables_carry_the_clipped_offsets():
    rec = with_offsets()
    segment = Segment(rec.row, rec.video_index, (10, 14))  # from the key frame at 9
    assert segment.first_frame_index == 3
    assert segment.first_composition_offset_90k() == 3
    offsets = segment.sample_tables().composition_offsets
    assert offsets is not None and offsets.dtype == np.int32
    assert offsets.tolist() == BFRAME_OFFSETS[3:]
    assert segment.first_composition_offset_90k() == 3  # from the cached tables too


def test_a_run_ending_b_frame_segment_is_shown_past_its_last_decode_time():
    rec = make_recording(
        [3, 3, 3, 0], SIZES[:4], [True, False, False, False], composition_offsets=[6, 12, 3, 3]
    )
    segment = Segment(rec.row, rec.video_index, (0, rec.row.duration_90k))
    # The P frame decoded at 3 is shown at 15 for one frame: until 18 (the media ends at 9).
    assert segment.shown_until_90k() == 18
    no_trailing_zero = with_offsets()
    whole = Segment(no_trailing_zero.row, no_trailing_zero.video_index, (0, 15))
    assert whole.shown_until_90k() == whole.media_duration_90k == 15
