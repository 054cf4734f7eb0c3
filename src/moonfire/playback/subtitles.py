"""The timestamp subtitle track of a virtual ``.mp4`` (``ts=true``, ``export --timestamps``).

Users want footage that shows when it was recorded without re-encoding it (Frigate
#4631, ExNVR #187): a ``tx3g`` text track (3GPP TS 26.245; VLC, mpv and FFmpeg read it
as ``mov_text``) with one sample per wall-clock second, reading e.g.
``2026-12-01 15:15:36 +0100`` in the given time zone.  As in Moonfire (brief §4.2):

* each segment contributes the seconds its *desired* wall-time range overlaps, the
  first and last cut to that range, so the track follows each recording's own wall
  clock (runs that overlap by clock error still show their own times);
* a sample is a 16-bit length (25) and the 25 characters: 27 bytes, so ``stsz`` has
  one constant size and the payload is produced on demand for any byte range;
* the track's samples follow the video's in ``mdat``, in one chunk.

The subtitle track has no edit list: its time 0 is the first presented video frame,
which is the first segment's desired start.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from moonfire.playback import mp4_boxes as boxes
from moonfire.playback.segment import Segment

#: ``%Y-%m-%d %H:%M:%S %z``: 25 characters.
TEXT_LENGTH = 25
SAMPLE_BYTES = 2 + TEXT_LENGTH
_SECOND = boxes.TIMESCALE_90K
TRACK_ID = 2


@dataclass(frozen=True, slots=True)
class _Stretch:
    """The seconds one segment shows: ``count`` samples from wall second ``first_second``."""

    first_second: int
    count: int
    #: Sample number (0-based, in the whole track) of this stretch's first sample.
    first_sample: int


class SubtitleTrack:
    """The ``trak`` box and ``mdat`` payload of the timestamp track over ``segments``."""

    def __init__(self, segments: Sequence[Segment], zone: datetime.tzinfo) -> None:
        self.zone = zone
        self._stretches: list[_Stretch] = []
        # stts entries, run-length merged: [count, delta].
        self._stts: list[list[int]] = []
        samples = 0
        for segment in segments:
            start, end = segment.desired_range_90k
            wall_start = segment.row.start_time_90k + start
            wall_end = segment.row.start_time_90k + end
            if wall_end <= wall_start:
                continue
            first = wall_start // _SECOND
            last = -(-wall_end // _SECOND)  # ceiling
            self._stretches.append(_Stretch(first, last - first, samples))
            samples += last - first
            if last - first == 1:
                self._add_durations(wall_end - wall_start)
            else:  # a partial first second, whole ones, a partial last one
                self._add_durations((first + 1) * _SECOND - wall_start)
                self._add_durations(_SECOND, last - first - 2)
                self._add_durations(wall_end - (last - 1) * _SECOND)
        self.samples = samples
        self.duration_90k = sum(count * delta for count, delta in self._stts)

    def _add_durations(self, delta: int, count: int = 1) -> None:
        if count <= 0:
            return
        if self._stts and self._stts[-1][1] == delta:
            self._stts[-1][0] += count
        else:
            self._stts.append([count, delta])

    @property
    def payload_size(self) -> int:
        return SAMPLE_BYTES * self.samples

    def trak(self, creation_time_1904: int, chunk_offset: int) -> bytes:
        """The whole ``trak``; its length doesn't depend on ``chunk_offset``."""
        stts = boxes.full_box(
            b"stts", 0, 0, struct.pack(">I", len(self._stts)),
            b"".join(struct.pack(">II", count, delta) for count, delta in self._stts),
        )
        stbl = boxes.box(
            b"stbl",
            boxes.stsd([tx3g_sample_entry()]),
            stts,
            boxes.stsc([(self.samples, 1)]),
            boxes.full_box(b"stsz", 0, 0, struct.pack(">II", SAMPLE_BYTES, self.samples)),
            boxes.full_box(b"co64", 0, 0, struct.pack(">IQ", 1, chunk_offset)),
        )
        minf = boxes.box(b"minf", boxes.full_box(b"nmhd", 0, 0), boxes.dinf(), stbl)
        mdia = boxes.box(
            b"mdia",
            boxes.mdhd(creation_time_1904, self.duration_90k),
            boxes.full_box(b"hdlr", 0, 0, bytes(4), b"sbtl", bytes(12), b"\x00"),
            minf,
        )
        return boxes.box(
            b"trak", boxes.tkhd(creation_time_1904, TRACK_ID, self.duration_90k, 0, 0), mdia
        )

    def read(self, start: int, stop: int) -> bytes:
        """Payload bytes ``[start, stop)``: the samples they touch, formatted now."""
        first_sample = start // SAMPLE_BYTES
        last_sample = -(-stop // SAMPLE_BYTES)
        texts = [self._sample(n) for n in range(first_sample, last_sample)]
        base = first_sample * SAMPLE_BYTES
        return b"".join(texts)[start - base : stop - base]

    @property
    def size(self) -> int:
        return self.payload_size

    def _sample(self, number: int) -> bytes:
        low, high = 0, len(self._stretches) - 1
        while low < high:  # the last stretch whose first sample is <= number
            middle = (low + high + 1) // 2
            if self._stretches[middle].first_sample <= number:
                low = middle
            else:
                high = middle - 1
        stretch = self._stretches[low]
        second = stretch.first_second + number - stretch.first_sample
        return sample_text(second, self.zone)


def sample_text(second: int, zone: datetime.tzinfo) -> bytes:
    """One subtitle sample: the 16-bit length and ``YYYY-mm-dd HH:MM:SS +zzzz``."""
    when = datetime.datetime.fromtimestamp(second, zone)
    text = when.strftime("%Y-%m-%d %H:%M:%S %z").encode()
    if len(text) != TEXT_LENGTH:  # a year past 9999 or a zone offset with seconds
        text = text[:TEXT_LENGTH].ljust(TEXT_LENGTH)
    return struct.pack(">H", TEXT_LENGTH) + text


def tx3g_sample_entry() -> bytes:
    """A ``tx3g`` entry: centred at the bottom, white 18-px Monospace on no background."""
    font_name = b"Monospace"
    return boxes.box(
        b"tx3g",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        struct.pack(">I", 0),  # displayFlags
        struct.pack(">bb", 1, -1),  # horizontal centre, vertical bottom
        bytes(4),  # background colour RGBA: transparent
        struct.pack(">hhhh", 0, 0, 0, 0),  # default text box
        # style record: chars 0-0, font id 1, no face style, 18 px, white opaque
        struct.pack(">HHHBB", 0, 0, 1, 0, 18), b"\xff\xff\xff\xff",
        boxes.box(b"ftab", struct.pack(">HHB", 1, 1, len(font_name)), font_name),
    )
