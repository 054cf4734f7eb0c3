"""``VirtualFile``: box contents (brief §4.2 vectors), byte ranges, ETags, and real playback.

The playback tests use a real client: PyAV (FFmpeg's mov demuxer and H.264 decoder) reads the
``.mp4`` built over sample files holding the real H.264 frames of ``testdata/clip.mp4``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
import re
import struct
from unittest import mock

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire.playback import mp4, mp4_boxes
from moonfire.playback.mp4 import FORMAT_VERSION, SampleFileSpan, build_mp4, split_at_gaps
from moonfire.playback.segment import Segment
from tests.support import bframes
from tests.support.recordings import (
    BASE_TIME_90K,
    Box,
    Recording,
    SampleFiles,
    make_recording,
    parse_file,
    sample_entry,
    table_entries,
)

DURATIONS = [2, 4, 6, 8, 10]
SIZES = [3, 6, 9, 12, 15]
HALF_SYNC = [True, False, True, False, True]
STBL = "moov/trak/mdia/minf/stbl"


@pytest.fixture(scope="module")
def clip_avc1(testdata) -> bytes:
    """The ``avc1`` sample entry of ``clip.mp4``, taken from its own ``stsd``."""
    stsd = parse_file((testdata / "clip.mp4").read_bytes()).find(f"{STBL}/stsd")
    return stsd.payload[8:]


@pytest.fixture
def files(tmp_path) -> SampleFiles:
    return SampleFiles(tmp_path)


def synthetic(files: SampleFiles, is_key=HALF_SYNC, **kwargs) -> Recording:
    """A recording of the brief's 2..10 / 3..15 vector; sample i's bytes are all ``i``."""
    rec = make_recording(DURATIONS, SIZES, is_key, **kwargs)
    files.write(rec.row, b"".join(bytes([i]) * size for i, size in enumerate(SIZES)))
    return rec


def segment(rec: Recording, desired: tuple[int, int] | None = None) -> Segment:
    return Segment(rec.row, rec.video_index, desired or (0, rec.row.duration_90k))


def build(segments, files, entry_data: bytes):
    return build_mp4(segments, {1: sample_entry(entry_data)}, files.open)


def whole(vf) -> bytes:
    return vf.read(0, vf.size)


def tree(vf) -> Box:
    return parse_file(whole(vf))


@pytest.fixture
def avc1(testdata) -> bytes:
    return (testdata / "avc1_1920x1080").read_bytes()


def test_all_sync_frames_need_no_edit_list(files, avc1):
    rec = synthetic(files, is_key=[True] * 5)
    root = tree(build([segment(rec, (2, 20))], files, avc1))
    stbl = root.find(STBL)
    assert not root.find("moov/trak").has("edts")
    assert table_entries(stbl.find("stts"), ">II") == [(1, 4), (1, 6), (1, 8)]
    assert table_entries(stbl.find("stsz"), ">I", ">II") == [(6,), (9,), (12,)]
    assert table_entries(stbl.find("stss"), ">I") == [(1,), (2,), (3,)]


def test_half_sync_frames_skip_the_gop_prefix_with_an_edit_list(files, avc1):
    rec = synthetic(files)
    root = tree(build([segment(rec, (12, 20))], files, avc1))
    elst = root.find("moov/trak/edts/elst")
    assert elst.payload[0] == 1, "elst version 1 (64-bit fields)"
    assert table_entries(elst, ">QqI") == [(8, 6, 0x0001_0000)]
    assert elst.payload[-4:] == b"\x00\x01\x00\x00", "media rate exactly 1.0"
    stbl = root.find(STBL)
    assert table_entries(stbl.find("stts"), ">II") == [(1, 6), (1, 8)]
    assert table_entries(stbl.find("stsz"), ">I", ">II") == [(9,), (12,)]
    assert table_entries(stbl.find("stss"), ">I") == [(1,)]


def test_last_stts_delta_is_trimmed_to_the_desired_end(files, avc1):
    rec = synthetic(files)
    root = tree(build([segment(rec, (0, 21))], files, avc1))
    assert table_entries(root.find(f"{STBL}/stts"), ">II")[-1] == (1, 1)


def run_of_two(files) -> tuple[Recording, Recording]:
    first = synthetic(files, recording_id=1)
    second = synthetic(files, recording_id=2, run_offset=1, start_time_90k=first.row.end_time_90k)
    return first, second


def test_stss_numbers_follow_trimmed_frame_counts(files, avc1):
    """af282c3: numbering must advance by the frames a segment contributes, not the row's."""
    first, second = run_of_two(files)
    root = tree(build([segment(first, (12, 30)), segment(second)], files, avc1))
    # first contributes samples 3..5 (keys 3, 5); second all five (keys 1, 3, 5).
    assert table_entries(root.find(f"{STBL}/stss"), ">I") == [(1,), (3,), (4,), (6,), (8,)]


def test_one_chunk_per_segment_pointing_at_its_bytes(files, avc1):
    first, second = run_of_two(files)
    vf = build([segment(first, (12, 30)), segment(second)], files, avc1)
    data = whole(vf)
    stbl = parse_file(data).find(STBL)
    assert table_entries(stbl.find("stsc"), ">III") == [(1, 3, 1), (2, 5, 1)]
    offsets = [o for (o,) in table_entries(stbl.find("co64"), ">Q")]
    assert data[offsets[0] : offsets[0] + 9 + 12 + 15] == b"\2" * 9 + b"\3" * 12 + b"\4" * 15
    assert offsets[1] == offsets[0] + 36
    assert data[offsets[1] : offsets[1] + 3] == b"\0" * 3


def test_contiguous_segments_merge_into_one_edit(files, avc1):
    first, second = run_of_two(files)
    root = tree(build([segment(first, (13, 30)), segment(second)], files, avc1))
    # 17 from the first (media starts at its key frame 6: skip 7), then all 30 of the second.
    assert table_entries(root.find("moov/trak/edts/elst"), ">QqI") == [(47, 7, 0x0001_0000)]


def test_durations_in_headers(files, avc1):
    first, second = run_of_two(files)
    root = tree(build([segment(first, (13, 30)), segment(second)], files, avc1))
    mvhd = root.find("moov/mvhd").payload
    creation, modification, timescale, duration = struct.unpack_from(">IIII", mvhd, 4)
    assert (timescale, duration) == (90_000, 47)
    assert creation == modification == second.row.end_time_90k // 90_000 + 2_082_844_800
    assert struct.unpack_from(">I", mvhd, 96)[0] == 2, "next_track_id"
    tkhd = root.find("moov/trak/tkhd").payload
    assert tkhd[:4] == b"\x00\x00\x00\x07"
    assert struct.unpack_from(">I", tkhd, 20)[0] == 47
    assert struct.unpack_from(">II", tkhd, 76) == (1920 << 16, 1080 << 16)
    mdhd = root.find("moov/trak/mdia/mdhd").payload
    assert struct.unpack_from(">IIH", mdhd, 12) == (90_000, 54, 0x55C4), "media: 24 + 30"


def test_long_durations_switch_headers_to_version_1():
    day_90k = 24 * 3600 * 90_000
    mvhd = mp4_boxes.mvhd(3_900_000_000, day_90k)
    assert mvhd[8] == 1 and struct.unpack_from(">Q", mvhd, 32)[0] == day_90k
    assert mp4_boxes.mdhd(3_900_000_000, day_90k)[8] == 1
    assert mp4_boxes.tkhd(3_900_000_000, 1, day_90k, 1, 1)[8] == 1
    assert mp4_boxes.mvhd(3_900_000_000, 90_000)[8] == 0


def test_fixed_boxes_and_64_bit_mdat_header(files, avc1):
    rec = synthetic(files)
    vf = build([segment(rec)], files, avc1)
    data = whole(vf)
    root = parse_file(data)
    assert [b.fourcc for b in root.children] == [b"ftyp", b"moov", b"mdat"]
    assert data[:32] == (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41")
    mdat = root.children[2]
    assert data[mdat.offset : mdat.offset + 16] == b"\0\0\0\1mdat" + struct.pack(">Q", 16 + 45)
    assert root.find(f"{STBL}/stsd").payload[8:] == avc1
    assert root.find("moov/trak/mdia/hdlr").size == 33
    assert root.find("moov/trak/mdia/minf/dinf/dref").payload[8:] == (
        b"\x00\x00\x00\x0curl \x00\x00\x00\x01"
    )
    assert vf.size == len(data)
    assert vf.media_data_offset == mdat.offset + 16


def test_two_sample_entries_get_their_own_stsd_positions(files, avc1, clip_avc1):
    first, second = run_of_two(files)
    second_row = dataclasses.replace(second.row, video_sample_entry_id=7)
    segments = [segment(first), Segment(second_row, second.video_index, (0, 30))]
    entries = {1: sample_entry(clip_avc1, 1), 7: sample_entry(avc1, 7)}
    root = tree(build_mp4(segments, entries, files.open))
    stbl = root.find(STBL)
    assert stbl.find("stsd").payload[4:8] == b"\0\0\0\2"
    assert [d for (_, _, d) in table_entries(stbl.find("stsc"), ">III")] == [1, 2]
    tkhd = root.find("moov/trak/tkhd").payload
    assert struct.unpack_from(">II", tkhd, 76) == (1920 << 16, 1080 << 16), "max of 320, 1920"


def test_unknown_sample_entry_and_no_segments_are_refused(files, avc1):
    rec = synthetic(files, sample_entry_id=9)
    with pytest.raises(ValueError, match="recording 1/1: unknown video sample entry 9"):
        build([segment(rec)], files, avc1)
    with pytest.raises(ValueError, match="no segments"):
        build([], files, avc1)


def trailing_zero_recording(files, **kwargs) -> Recording:
    rec = make_recording([2, 4, 0], [3, 6, 9], [True, False, True], **kwargs)
    files.write(rec.row, bytes(18))
    return rec


def test_appending_after_a_trailing_zero_in_the_same_run_is_refused(files, avc1):
    first = trailing_zero_recording(files)
    same_run = synthetic(files, recording_id=2, run_offset=1, start_time_90k=first.row.end_time_90k)
    with pytest.raises(ValueError, match="recording 1/2 after recording 1/1 with trailing zero"):
        build([segment(first), segment(same_run)], files, avc1)


def test_new_run_after_a_trailing_zero_keeps_the_zero_duration(files, avc1):
    first = trailing_zero_recording(files)
    new_run = synthetic(files, recording_id=2, run_offset=0, start_time_90k=first.row.end_time_90k)
    root = tree(build([segment(first), segment(new_run)], files, avc1))
    stts = [d for (_, d) in table_entries(root.find(f"{STBL}/stts"), ">II")]
    assert stts == [2, 4, 0, 2, 4, 6, 8, 10]


def test_gap_between_segments_is_refused_and_split_at_gaps_separates_them(files, avc1):
    first, second = run_of_two(files)
    segments = [segment(first, (0, 20)), segment(second)]
    with pytest.raises(ValueError, match="gap of 10 .* recording 1/1 and recording 1/2"):
        build(segments, files, avc1)
    assert split_at_gaps(segments) == [segments[:1], segments[1:]]
    contiguous = [segment(first), segment(second)]
    assert split_at_gaps(contiguous) == [contiguous]


def test_runs_overlapping_by_more_than_a_second_are_split_not_interleaved(files, avc1):
    """The NVR clock stepped back between runs: each run plays in a file of its own."""
    first = synthetic(files, recording_id=1)
    slightly = synthetic(files, recording_id=2, start_time_90k=first.row.end_time_90k - 9000)
    stepped = synthetic(files, recording_id=3, start_time_90k=first.row.end_time_90k - 2 * 90_000)
    assert len(split_at_gaps([segment(first), segment(slightly)])) == 1
    assert len(split_at_gaps([segment(first), segment(stepped)])) == 2


def test_same_request_gives_identical_bytes_and_etag(files, avc1):
    first, second = run_of_two(files)

    def request():
        return build([segment(first, (13, 30)), segment(second, (0, 25))], files, avc1)

    one, two = request(), request()
    assert whole(one) == whole(two)
    assert one.etag == two.etag
    assert re.fullmatch(r'"[0-9a-f]{40}"', one.etag)


def test_etag_changes_with_the_range_and_the_format_version(files, avc1, monkeypatch):
    first, second = run_of_two(files)
    base = build([segment(first, (13, 30)), segment(second)], files, avc1).etag
    assert build([segment(first, (12, 30)), segment(second)], files, avc1).etag != base
    assert build([segment(first, (13, 30)), segment(second, (0, 29))], files, avc1).etag != base
    monkeypatch.setattr("moonfire.playback.mp4.FORMAT_VERSION", FORMAT_VERSION + 1)
    assert build([segment(first, (13, 30)), segment(second)], files, avc1).etag != base


def test_http_metadata(files, avc1):
    first, second = run_of_two(files)
    vf = build([segment(first), segment(second)], files, avc1)
    assert vf.content_type == 'video/mp4; codecs="avc1.4d0029"', "Main profile, level 4.1"
    expected = datetime.datetime.fromtimestamp(second.row.end_time_90k // 90_000, tz=datetime.UTC)
    assert vf.last_modified == expected


def test_read_clips_at_the_end_and_rejects_negative_ranges(files, avc1):
    vf = build([segment(synthetic(files))], files, avc1)
    assert vf.read(vf.size - 3, 100) == whole(vf)[-3:]
    assert vf.read(vf.size, 10) == b""
    with pytest.raises(ValueError, match="offset -1"):
        vf.read(-1, 4)


def test_short_sample_file_is_reported_with_the_recording(files, avc1):
    rec = synthetic(files, stream_id=2, recording_id=5)
    files.path(rec.row).write_bytes(bytes(40))
    vf = build([segment(rec)], files, avc1)
    with pytest.raises(ValueError, match="recording 2/5 is too short: wanted 45 bytes at offset 0"):
        whole(vf)


def test_write_to_streams_the_whole_file_with_progress(files, avc1):
    first, second = run_of_two(files)
    vf = build([segment(first), segment(second)], files, avc1)
    out = io.BytesIO()
    progress = []
    vf.write_to(out, progress.append)
    assert out.getvalue() == whole(vf)
    assert sum(progress) == vf.size


@pytest.fixture(scope="module")
def ranged_file(tmp_path_factory, testdata):
    files = SampleFiles(tmp_path_factory.mktemp("ranged"))
    first, second = run_of_two(files)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    vf = build([segment(first, (13, 30)), segment(second)], files, avc1)
    return vf, whole(vf)


@given(data=st.data())
def test_any_byte_range_equals_the_slice_of_the_whole_file(ranged_file, data):
    vf, full = ranged_file
    offset = data.draw(st.integers(0, len(full)))
    length = data.draw(st.integers(0, len(full) - offset + 8))
    assert vf.read(offset, length) == full[offset : offset + length]


# ---- real playback through FFmpeg (PyAV) --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipPacket:
    pts: int
    is_key: bool
    data: bytes


@pytest.fixture(scope="module")
def clip_packets(testdata) -> list[ClipPacket]:
    with av.open(str(testdata / "clip.mp4")) as container:
        stream = container.streams.video[0]
        packets = [
            ClipPacket(p.pts, p.is_keyframe, bytes(p)) for p in container.demux(stream) if p.size
        ]
    assert [p.is_key for p in packets] == [True, False, False, False] * 2 + [True, False]
    return packets


def clip_run(files: SampleFiles, packets: list[ClipPacket], bounds: list[int]) -> list[Recording]:
    """One run of recordings over ``packets[bounds[i]:bounds[i+1]]``, ending in a trailing zero."""
    recordings = []
    start = BASE_TIME_90K
    for offset, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        chunk = packets[lo:hi]
        ends = [p.pts for p in packets[lo + 1 : hi + 1]]
        durations = [end - p.pts for p, end in zip(chunk, ends, strict=False)]
        durations += [0] * (len(chunk) - len(durations))
        rec = make_recording(
            durations,
            [len(p.data) for p in chunk],
            [p.is_key for p in chunk],
            recording_id=offset + 1,
            run_offset=offset,
            start_time_90k=start,
        )
        files.write(rec.row, b"".join(p.data for p in chunk))
        recordings.append(rec)
        start = rec.row.end_time_90k
    return recordings


def demux_and_decode(data: bytes) -> tuple[list[tuple[int, bool, int]], int]:
    """Packets (pts, key, size) as FFmpeg's demuxer sees them, and the count of decoded frames."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe, p.size) for p in container.demux(stream) if p.size]
    with av.open(io.BytesIO(data)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    return packets, decoded


@pytest.mark.parametrize("bounds", [[0, 10], [0, 4, 10], [0, 4, 8, 10]], ids=["1", "2", "3"])
def test_ffmpeg_plays_every_frame_of_whole_recordings(files, clip_packets, clip_avc1, bounds):
    recordings = clip_run(files, clip_packets, bounds)
    vf = build([segment(r) for r in recordings], files, clip_avc1)
    packets, decoded = demux_and_decode(whole(vf))
    expected = [(p.pts - clip_packets[0].pts, p.is_key, len(p.data)) for p in clip_packets]
    assert packets == expected
    assert decoded == len(clip_packets)


def test_ffmpeg_honours_the_edit_list_of_a_mid_gop_start(files, clip_packets, clip_avc1):
    first, second, third = clip_run(files, clip_packets, [0, 4, 8, 10])
    skip = 100_000  # inside the second frame (90379..180263)
    segments = [segment(first, (skip, first.row.duration_90k)), segment(second), segment(third)]
    data = whole(build(segments, files, clip_avc1))
    assert parse_file(data).has("moov/trak/edts/elst")
    packets, decoded = demux_and_decode(data)
    # The run's trailing zero-duration frame has no presentation time, so it lies outside the
    # edit and FFmpeg drops it; every other sample is demuxed (the GOP prefix is needed to
    # decode), timed as in the index...
    presented = clip_packets[:-1]
    assert [(k, size) for _, k, size in packets] == [(p.is_key, len(p.data)) for p in presented]
    steps = [b[0] - a[0] for a, b in zip(packets, packets[1:], strict=False)]
    durations = [b.pts - a.pts for a, b in zip(presented, presented[1:], strict=False)]
    assert steps == durations
    # ...and only frames starting at or after the desired start are output by the decoder.
    assert decoded == sum(1 for p in presented if p.pts >= skip)


def test_ffmpeg_decodes_every_frame_of_a_new_run_after_a_trailing_zero(
    files, clip_packets, clip_avc1
):
    (first,) = clip_run(files, clip_packets, [0, 10])
    second_run = dataclasses.replace(
        first.row, composite_id=first.row.composite_id + 1, start_time_90k=first.row.end_time_90k
    )
    files.write(second_run, b"".join(p.data for p in clip_packets))
    segments = [segment(first), Segment(second_run, first.video_index, (0, 810_005))]
    packets, decoded = demux_and_decode(whole(build(segments, files, clip_avc1)))
    assert len(packets) == decoded == 2 * len(clip_packets)


# ---- spans: the bytes of read() as in-memory pieces and sample file ranges ---------------------


def span_bytes(vf, offset: int, length: int) -> tuple[bytes, list]:
    """What ``spans`` describes, each file span read through its own ``open()`` (and closed),
    and the pieces themselves."""
    pieces = list(vf.spans(offset, length))
    out = bytearray()
    for piece in pieces:
        if isinstance(piece, bytes):
            out += piece
        else:
            fd = piece.open()
            try:
                out += os.pread(fd, piece.length, piece.offset)
            finally:
                os.close(fd)
    return bytes(out), pieces


@given(data=st.data())
def test_spans_describe_exactly_the_bytes_of_read(ranged_file, data):
    """Random ranges and random in-memory piece limits (so boxes and tables are cut and
    joined at every place): the pieces are exactly ``read``'s bytes, none empty, bytes pieces
    at most the limit and joined up to it, each file span inside its segment's sample bytes."""
    vf, full = ranged_file
    offset = data.draw(st.integers(0, len(full) + 3))
    length = data.draw(st.integers(0, len(full) - offset + 8))
    limit = data.draw(st.one_of(st.integers(1, 64), st.just(mp4.STREAM_CHUNK_BYTES)))
    with mock.patch.object(mp4, "STREAM_CHUNK_BYTES", limit):
        got, pieces = span_bytes(vf, offset, length)
    assert got == vf.read(offset, length) == full[offset : offset + length]
    sample_ranges = {s.row.composite_id: s.sample_byte_range for s in vf.segments}
    for previous, piece in zip([None, *pieces], pieces, strict=False):
        if isinstance(piece, bytes):
            assert 0 < len(piece) <= limit
            if isinstance(previous, bytes):
                assert len(previous) == limit, "adjacent in-memory pieces are joined"
        else:
            assert isinstance(piece, SampleFileSpan) and piece.length > 0
            start, end = sample_ranges[piece.row.composite_id]
            assert start <= piece.offset and piece.offset + piece.length <= end


def test_whole_file_spans_are_the_moov_then_one_span_per_segment(files, avc1):
    first, second = run_of_two(files)
    vf = build([segment(first), segment(second, (0, 12))], files, avc1)
    pieces = list(vf.spans(0, vf.size))
    assert [type(p) for p in pieces] == [bytes, SampleFileSpan, SampleFileSpan]
    assert len(pieces[0]) == vf.media_data_offset
    assert [(p.row.recording_id, p.offset, p.length) for p in pieces[1:]] == [
        (1, 0, 45), (2, 0, sum(SIZES[:3]))]
    assert str(pieces[2]) == "bytes 0-17 of the sample file of recording 1/2"


def test_spans_open_no_file_until_asked_and_give_a_descriptor_to_close(files, avc1):
    rec = synthetic(files)
    vf = build([segment(rec)], files, avc1)
    opened = files.opened
    (head, span) = vf.spans(0, vf.size)
    assert files.opened == opened, "making spans opens nothing"
    fd = span.open()  # SampleFiles.open returns a file object: its descriptor is duplicated
    try:
        assert files.opened == opened + 1
        assert os.pread(fd, 45, 0) == whole(vf)[vf.media_data_offset :]
    finally:
        os.close(fd)
    raw = os.open(files.path(rec.row), os.O_RDONLY)
    as_fd = dataclasses.replace(span, open_sample_file=lambda row: raw)
    assert as_fd.open() == raw, "an opener's descriptor is handed over as it is"
    os.close(raw)


def test_spans_check_the_range_at_once_and_end_with_the_file(files, avc1):
    vf = build([segment(synthetic(files))], files, avc1)
    with pytest.raises(ValueError, match="offset -1"):
        vf.spans(-1, 4)
    with pytest.raises(ValueError, match="length -2"):
        vf.spans(0, -2)
    assert list(vf.spans(vf.size, 10)) == [] == list(vf.spans(3, 0))
    (tail,) = vf.spans(vf.size - 3, 100)
    assert (tail.offset, tail.length) == (42, 3)


# ---- B-frames (issue 10 §1): ctts, and the edit list that starts at the first shown frame ------

#: I P B B P B B in decode order (durations are decode-time deltas): shown at 6, 15, 9, 12, ...
BFRAME_DURATIONS = [3, 3, 3, 3, 3, 3, 3]
BFRAME_OFFSETS = [6, 12, 3, 3, 12, 3, 3]
BFRAME_KEYS = [True, False, False, False, False, False, False]


def bframe_recording(files: SampleFiles) -> Recording:
    rec = make_recording(
        BFRAME_DURATIONS, SIZES + [18, 21], BFRAME_KEYS, composition_offsets=BFRAME_OFFSETS
    )
    files.write(rec.row, b"".join(bytes([i]) * size for i, size in enumerate(SIZES + [18, 21])))
    return rec


def test_b_frames_get_a_ctts_and_an_edit_list_from_the_first_shown_frame(files, avc1):
    rec = bframe_recording(files)
    root = tree(build([segment(rec)], files, avc1))
    stbl = root.find(STBL)
    assert [child.fourcc for child in stbl.children][:4] == [b"stsd", b"stts", b"ctts", b"stsc"]
    ctts = stbl.find("ctts")
    assert ctts.payload[:4] == b"\0\0\0\0", "ctts version 0: the offsets are not negative"
    assert table_entries(ctts, ">II") == [(1, offset) for offset in BFRAME_OFFSETS]
    assert table_entries(stbl.find("stts"), ">II") == [(1, 3)] * 7
    # The first frame is shown at media time 6: the (only) edit starts there.
    elst = root.find("moov/trak/edts/elst")
    assert table_entries(elst, ">QqI") == [(21, 6, 0x0001_0000)]


def test_a_clipped_b_frame_segment_keeps_its_offsets_and_starts_at_its_key_frame(files, avc1):
    rec = bframe_recording(files)
    root = tree(build([segment(rec, (4, 12))], files, avc1))  # from the key frame at 0
    assert table_entries(root.find(f"{STBL}/ctts"), ">II") == [(1, o) for o in BFRAME_OFFSETS[:4]]
    # Skip 4 of decode time, shifted by the key frame's offset 6.
    assert table_entries(root.find("moov/trak/edts/elst"), ">QqI") == [(8, 10, 0x0001_0000)]


def test_recordings_without_b_frames_next_to_ones_with_get_zero_offsets(files, avc1):
    plain = synthetic(files, is_key=[True] * 5)
    with_b = make_recording(
        BFRAME_DURATIONS, SIZES + [18, 21], BFRAME_KEYS, composition_offsets=BFRAME_OFFSETS,
        recording_id=2, run_offset=1, start_time_90k=plain.row.end_time_90k,
    )
    files.write(with_b.row, bytes(sum(SIZES) + 39))
    root = tree(build([segment(plain), segment(with_b)], files, avc1))
    entries = table_entries(root.find(f"{STBL}/ctts"), ">II")
    assert entries == [(1, 0)] * 5 + [(1, offset) for offset in BFRAME_OFFSETS]
    assert not root.find("moov/trak").has("edts"), "the first shown frame is at 0"


@pytest.fixture(scope="module")
def bframe_clip() -> tuple[list[bframes.BFramePacket], bytes]:
    """45 frames (3 GOPs) of x264 with 2 B-frames, in decode order, and their ``avc1``."""
    return bframes.encode_clip()


def decoded_pts(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.pts for frame in container.decode(video=0)]


def test_ffmpeg_plays_every_b_frame_in_presentation_order(files, bframe_clip):
    packets, avc1_box = bframe_clip
    keys = [i for i, p in enumerate(packets) if p.is_key]
    recordings = bframes.run_of(files, packets, [0, keys[1], keys[2], len(packets)])
    data = whole(build([segment(r) for r in recordings], files, avc1_box))
    pts = decoded_pts(data)
    # Every frame, the first shown at 0, each one frame after the other: the camera's pts.
    first = min(p.pts for p in packets)
    assert pts == sorted(p.pts - first for p in packets)
    assert pts == [3000 * i for i in range(len(packets))]


def test_a_b_frame_export_from_a_later_key_frame_starts_at_0(files, bframe_clip):
    packets, avc1_box = bframe_clip
    (rec,) = bframes.run_of(files, packets, [0, len(packets)])
    keys = [i for i, p in enumerate(packets) if p.is_key]
    key_start = packets[keys[1]].dts - packets[0].dts
    data = whole(build([segment(rec, (key_start, rec.row.duration_90k))], files, avc1_box))
    pts = decoded_pts(data)
    assert pts == [3000 * i for i in range(len(packets) - keys[1])]
