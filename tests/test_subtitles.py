"""The timestamp subtitle track's layout (``moonfire.playback.subtitles``).

Through HTTP and PyAV, ``tests/test_web_api.py`` checks a real file; here the
arithmetic: which seconds each segment shows, their durations, the text (across a
DST change) and that any byte range of the payload is the same bytes as the whole.
"""

from __future__ import annotations

import datetime
import struct
import zoneinfo

from hypothesis import given
from hypothesis import strategies as st

from moonfire.playback.segment import Segment
from moonfire.playback.subtitles import SAMPLE_BYTES, SubtitleTrack, sample_text
from tests.support.recordings import make_recording

SECOND = 90000
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
#: 2026-03-29 00:59:58 UTC: Paris goes from +0100 to +0200 two seconds later.
BEFORE_DST = 1774745998


def segment(start_90k: int, duration_90k: int, desired: tuple[int, int] | None = None) -> Segment:
    recording = make_recording([duration_90k], [100], [True], start_time_90k=start_90k)
    return Segment(recording.row, recording.video_index, desired or (0, duration_90k))


def texts(track: SubtitleTrack) -> list[str]:
    data = track.read(0, track.size)
    return [data[i + 2 : i + SAMPLE_BYTES].decode() for i in range(0, len(data), SAMPLE_BYTES)]


def test_one_sample_per_second_overlapped_with_partial_first_and_last() -> None:
    start = BEFORE_DST * SECOND + SECOND // 2  # half way through a second
    track = SubtitleTrack([segment(start, 3 * SECOND)], PARIS)
    assert track.samples == 4  # .5 of the first second, two whole, .5 of the last
    assert track.duration_90k == 3 * SECOND
    assert texts(track) == [
        "2026-03-29 01:59:58 +0100",
        "2026-03-29 01:59:59 +0100",
        "2026-03-29 03:00:00 +0200",  # the hour that doesn't exist is skipped
        "2026-03-29 03:00:01 +0200",
    ]
    stts = track.trak(0, 0)
    # stts: (1, 45000) (2, 90000) (1, 45000)
    assert struct.pack(">IIIIIII", 3, 1, 45000, 2, 90000, 1, 45000) in stts


def test_each_segment_shows_its_own_desired_range() -> None:
    first = segment(BEFORE_DST * SECOND, 2 * SECOND, (SECOND // 3, 2 * SECOND))
    second = segment(BEFORE_DST * SECOND + 2 * SECOND, SECOND, (0, SECOND // 2))
    track = SubtitleTrack([first, second], datetime.UTC)
    assert track.samples == 3
    assert track.duration_90k == (2 * SECOND - SECOND // 3) + SECOND // 2
    assert texts(track) == [
        "2026-03-29 00:59:58 +0000", "2026-03-29 00:59:59 +0000", "2026-03-29 01:00:00 +0000",
    ]


def test_a_sample_is_its_length_and_25_characters() -> None:
    data = sample_text(0, datetime.UTC)
    assert data == b"\x00\x19" + b"1970-01-01 00:00:00 +0000"


@given(
    start_ms=st.integers(0, 10_000),
    durations_ms=st.lists(st.integers(1, 5_000), min_size=1, max_size=4),
    data=st.data(),
)
def test_any_byte_range_is_the_same_bytes_as_the_whole(start_ms, durations_ms, data) -> None:
    segments = []
    at = BEFORE_DST * SECOND + start_ms * 90
    for duration_ms in durations_ms:
        segments.append(segment(at, duration_ms * 90))
        at += duration_ms * 90
    track = SubtitleTrack(segments, PARIS)
    whole = track.read(0, track.size)
    assert len(whole) == track.size == track.samples * SAMPLE_BYTES
    assert track.duration_90k == sum(durations_ms) * 90
    begin = data.draw(st.integers(0, track.size))
    end = data.draw(st.integers(begin, track.size))
    assert track.read(begin, end) == whole[begin:end]
