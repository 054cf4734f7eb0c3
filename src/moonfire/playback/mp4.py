"""``VirtualFile``: a ``.mp4`` over recorded segments, never written to disk (brief §4.2).

The file is a list of *slices*; any byte range is produced on demand by a binary search over the
slices' end offsets.  Slices are small fixed boxes (built eagerly), one slice per sample table
(the ``stts``/``stsz``/``stss`` entries of all segments, converted on each read from just the
segments it covers, whose decoded columns are cached) and per-segment sample data (read from the
sample file with ``os.pread`` per request, or, for a recording only an archive holds, from its
``Segment.archived`` object: ``moonfire.storage.archive_reader``).  The size is known without
decoding any index: interior segments take the fast path.

Layout (``moov`` before ``mdat`` so players can start at once)::

    ftyp  moov{mvhd trak{tkhd [edts/elst] mdia{mdhd hdlr minf{vmhd dinf
          stbl{stsd stts [ctts] stsc stsz co64 stss}}}} [trak (timestamp subtitles)]}
          mdat(64-bit header)

Choices, each a decision a reader might otherwise have to reverse-engineer:

* ``stts`` has one entry per sample, as in era 1: its size is then known from the frame counts
  without decoding interior indexes (run-length merging would need every index decoded up front).
* One chunk per segment: ``stsc`` has one entry per segment, ``co64`` one offset per segment.
* Each segment's last ``stts`` delta is trimmed to the desired end; ``stss`` numbers are 1-based
  and advance by the frames each *segment* contributes (not the recording's count; af282c3).
* Edit list: per segment skip ``desired start - actual start`` and keep the desired duration;
  contiguous keeps merge; ``edts`` is written only when the result is not one entry at media
  time 0.
* **Gaps**: a ``.mp4`` covers one stretch of time without gaps.  ``build_mp4`` refuses (naming
  the recording and the gap) a segment starting, in wall time (recording start + desired start),
  later than the previous one ended; :func:`split_at_gaps` groups segments into such stretches,
  one file each.  Empty edits (media time -1) could bridge a gap in one file, but FFmpeg's mov
  demuxer mishandles edit lists with several entries (it re-emitted earlier samples when tried),
  so the output would not play faithfully.  A segment starting earlier than the previous one
  ended (runs overlapping by clock error, or a range repeated) is simply played next.
* **Trailing zero**: appending a segment after one whose recording ends in a zero-duration frame
  is refused, unless the new segment's recording starts a new run (``run_offset == 0``, or another
  run or camera).  That zero-duration frame keeps duration 0: the next sample then shares its
  decode time, so every frame is still demuxed and decoded, and no presentation time is invented.
* **B-frames** (issue 10 §1): samples are in decode order and ``stts`` holds decode-time deltas.
  When any segment's index has composition offsets, ``ctts`` gives every sample its offset
  (one entry per sample, as ``stts``; 0 for recordings without B-frames), version 0: the
  offsets are the camera's pts - dts, never negative for the cameras seen and for decode times
  moonfire derives (at most the pts; ``moonfire.ingest.decode_times``); a camera sending
  dts > pts would give a negative entry, which FFmpeg still reads right (it reads ``ctts``
  entries as signed in either version), other players perhaps not.  The first frame is then
  shown at its offset, not at 0, so every edit's media time is shifted by the first segment's
  first-frame offset: the first *shown* frame starts at the requested time, and FFmpeg (which
  plays ``<video>`` in Chromium too) gives strictly increasing presentation times from 0.
  Version 0 plus an edit list is the form every player reads (media-notes §3).  A file ending
  its run stretches its last edit over the frames shown after its last decode time.  Files
  without B-frames keep their bytes (no ``ctts``, no shift), so ``FORMAT_VERSION`` stays.
* Durations too large for 32 bits (over 13.25 hours) switch ``mvhd``/``tkhd``/``mdhd`` to
  version 1.  ``mdhd`` holds the media duration (Σ ``stts``); ``mvhd``/``tkhd`` the presentation
  duration (Σ desired durations).

``etag`` is a strong, quoted hex SHA-1 over ``FORMAT_VERSION`` and each segment's identity
(camera id, recording id, recording start, desired range).  Bump ``FORMAT_VERSION`` whenever
the bytes produced for the same request change, or clients could splice ranges of two formats.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

from moonfire.codec import CodecError, sample_entry_from_box
from moonfire.playback import mp4_boxes as boxes
from moonfire.playback.segment import ArchivedSampleData, Segment, recording_name
from moonfire.playback.subtitles import SubtitleTrack

if TYPE_CHECKING:
    from moonfire.db import RecordingRow, VideoSampleEntry

#: Version of the bytes this module produces; part of every ETag.
FORMAT_VERSION = 1

#: Chunk size used by ``write_to``.
STREAM_CHUNK_BYTES = 1 << 20

#: Opens a recording's sample file for reading; ``VirtualFile`` closes what it returns (an fd or
#: a binary file object) after each read.
SampleFileOpener = Callable[["RecordingRow"], "int | BinaryIO"]


class _Slice(Protocol):
    @property
    def size(self) -> int: ...

    def read(self, start: int, stop: int) -> bytes | memoryview: ...


@dataclass(slots=True)
class _Static:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, start: int, stop: int) -> memoryview:
        return memoryview(self.data)[start:stop]


STTS, STSZ, STSS, CTTS = 0, 1, 2, 3

#: Bytes per entry of each table kind.
_ENTRY_BYTES = {STTS: 8, STSZ: 4, STSS: 4, CTTS: 8}


class _Table:
    """The ``stts``, ``ctts``, ``stsz`` or ``stss`` entries (``kind``) of *all* segments, as one
    slice.

    One slice rather than one per segment, so a read of the whole ``moov`` converts every segment
    covered with a handful of large numpy operations (``np.concatenate`` straight into the
    big-endian dtype) instead of several small ones per segment: a day-long export has 1440
    segments and 2.6 M samples.  Still lazy: a read decodes and converts only the segments whose
    entries it overlaps (``Segment.sample_tables()`` is cached per segment), so serving a small
    range never builds every table.  Nothing big-endian is cached: each read converts just what
    it returns, once, which is also the single copy a cache would have made.
    """

    __slots__ = ("segments", "kind", "size", "_begins", "_ends", "_first_frame_numbers")

    def __init__(self, segments: Sequence[Segment], kind: int) -> None:
        self.segments = segments
        self.kind = kind
        counts = [s.key_frames if kind == STSS else s.frames for s in segments]
        entry_bytes = _ENTRY_BYTES[kind]
        self._ends: list[int] = []
        self._begins: list[int] = []
        end = 0
        for count in counts:
            self._begins.append(end)
            end += entry_bytes * count
            self._ends.append(end)
        self.size = end
        # 1-based number, in the whole file, of each segment's first frame (for stss).
        self._first_frame_numbers = np.cumsum([1] + [s.frames for s in segments]).tolist()

    def read(self, start: int, stop: int) -> memoryview:
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._begins, stop, lo=first) - 1
        base = self._begins[first]
        entries = self._entries(first, last)
        return entries.data.cast("B")[start - base : stop - base]

    def _entries(self, first: int, last: int) -> np.ndarray:
        """Big-endian entries of segments ``first..last`` (inclusive), one contiguous array."""
        tables = [self.segments[i].sample_tables() for i in range(first, last + 1)]
        if self.kind == STSZ:
            # Sizes and (below) durations and frame numbers are positive int32 values, so their
            # ">i4" bytes are those of the ">u4" fields the boxes define.
            return np.concatenate([t.sizes for t in tables], dtype=">i4")
        if self.kind == STTS:
            # (sample count 1, delta) pairs: the delta column written straight into the pairs.
            pairs = np.empty((sum(len(t.durations) for t in tables), 2), dtype=">i4")
            pairs[:, 0] = 1
            np.concatenate([t.durations for t in tables], out=pairs[:, 1])
            return pairs
        if self.kind == CTTS:
            # (sample count 1, offset) pairs; a recording without offsets contributes zeros.
            pairs = np.zeros((sum(len(t.durations) for t in tables), 2), dtype=">i4")
            pairs[:, 0] = 1
            at = 0
            for t in tables:
                if t.composition_offsets is not None:
                    pairs[at : at + len(t.durations), 1] = t.composition_offsets
                at += len(t.durations)
            return pairs
        is_key = np.concatenate([t.is_key for t in tables])
        numbers = np.flatnonzero(is_key).astype(">i4")
        numbers += self._first_frame_numbers[first]
        return numbers


@dataclass(frozen=True, slots=True)
class SampleFileSpan:
    """Bytes ``[offset, offset + length)`` of a recording's sample file: a piece of
    ``VirtualFile.spans`` that a server sends straight from the file (``os.sendfile``).

    It names the file rather than holding it open, so a span that is never sent costs no
    descriptor; :meth:`open` opens it when its turn comes.
    """

    row: RecordingRow
    open_sample_file: SampleFileOpener
    offset: int
    length: int

    def open(self) -> int:
        """A new descriptor of the sample file, which the caller closes (blocking: it opens a
        file).  An opener returning a file object has its descriptor duplicated and the object
        closed, so the caller has one thing to close either way."""
        handle = self.open_sample_file(self.row)
        if isinstance(handle, int):
            return handle
        try:
            return os.dup(handle.fileno())
        finally:
            handle.close()

    def __str__(self) -> str:
        return (
            f"bytes {self.offset}-{self.offset + self.length - 1} of the sample file of "
            f"recording {recording_name(self.row)}"
        )


@dataclass(slots=True)
class _SampleData:
    """A segment's byte range of its sample file."""

    segment: Segment
    open_sample_file: SampleFileOpener
    size: int

    def span(self, start: int, stop: int) -> SampleFileSpan:
        """Bytes ``[start, stop)`` of this slice, as a range of the sample file."""
        return SampleFileSpan(
            self.segment.row, self.open_sample_file,
            self.segment.sample_byte_range[0] + start, stop - start,
        )

    def read(self, start: int, stop: int) -> bytes:
        file_offset = self.segment.sample_byte_range[0] + start
        wanted = stop - start
        if self.segment.archived is not None:
            return self.segment.archived.read(file_offset, wanted)
        handle = self.open_sample_file(self.segment.row)
        try:
            fd = handle if isinstance(handle, int) else handle.fileno()
            data = os.pread(fd, wanted, file_offset)
        finally:
            if isinstance(handle, int):
                os.close(handle)
            else:
                handle.close()
        if len(data) != wanted:
            raise ValueError(
                f"sample file of recording {recording_name(self.segment.row)} is too short: "
                f"wanted {wanted} bytes at offset {file_offset}, got {len(data)}"
            )
        return data


class VirtualFile:
    """A read-only ``.mp4`` whose bytes are computed on request; build it with :func:`build_mp4`."""

    def __init__(
        self,
        segments: Sequence[Segment],
        stsd_entries: Sequence[VideoSampleEntry],
        slices: list[_Slice],
        etag: str,
        last_modified_90k: int,
        media_data_offset: int,
    ) -> None:
        self.segments = tuple(segments)
        #: Offset of the first sample byte (just past the ``mdat`` header): the ``moov`` ends
        #: 16 bytes before it.
        self.media_data_offset = media_data_offset
        self._stsd_entries = tuple(stsd_entries)
        self._slices = slices
        self._ends: list[int] = []
        end = 0
        for piece in slices:
            end += piece.size
            self._ends.append(end)
        self._etag = etag
        self._last_modified_90k = last_modified_90k

    @property
    def size(self) -> int:
        return self._ends[-1] if self._ends else 0

    @property
    def etag(self) -> str:
        return self._etag

    @property
    def last_modified(self) -> datetime.datetime:
        """The latest segment's recording end, in UTC (whole seconds, as HTTP dates are)."""
        seconds = self._last_modified_90k // boxes.TIMESCALE_90K
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)

    @property
    def content_type(self) -> str:
        """``video/mp4; codecs="…"`` with the first sample entry's RFC 6381 codec string, or
        plain ``video/mp4`` when no codec module can read that entry."""
        try:
            entry = sample_entry_from_box(self._stsd_entries[0].data)
        except CodecError:
            return "video/mp4"
        return f'video/mp4; codecs="{entry.codec_string}"'

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)``, shorter only where the file ends."""
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        stop = min(offset + length, self.size)
        if offset >= stop:
            return b""
        parts = []
        index = bisect.bisect_right(self._ends, offset)
        while offset < stop:
            piece_end = self._ends[index]
            piece_start = piece_end - self._slices[index].size
            chunk_stop = min(stop, piece_end)
            parts.append(self._slices[index].read(offset - piece_start, chunk_stop - piece_start))
            offset = chunk_stop
            index += 1
        return b"".join(parts)

    def spans(self, offset: int, length: int) -> Iterator[bytes | SampleFileSpan]:
        """The bytes ``read(offset, length)`` returns, as pieces in order: in-memory bytes
        (boxes and sample tables, at most ``STREAM_CHUNK_BYTES`` each, adjacent ones joined)
        and a :class:`SampleFileSpan` per segment's sample data in the range; an archived
        segment's sample data comes as bytes instead, read from the archive a
        ``STREAM_CHUNK_BYTES``-aligned piece at a time as the iterator advances.  No piece is
        empty; their lengths add up to ``len(read(offset, length))``.

        The ranges are checked at once (``ValueError`` as in ``read``); the pieces are made as
        the iterator is advanced, which blocks (tables are converted then, as in ``read``), so
        advance it off the event loop.  Sample files are neither opened nor checked here: a
        short one shows when its span is sent.
        """
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        return self._spans(offset, min(offset + length, self.size))

    def _spans(self, offset: int, stop: int) -> Iterator[bytes | SampleFileSpan]:
        pending: list[bytes | memoryview] = []
        pending_bytes = 0
        index = bisect.bisect_right(self._ends, offset)
        while offset < stop:
            piece = self._slices[index]
            piece_end = self._ends[index]
            piece_start = piece_end - piece.size
            chunk_stop = min(stop, piece_end)
            if chunk_stop == offset:  # an empty slice
                index += 1
                continue
            if isinstance(piece, _SampleData):
                if pending:
                    yield b"".join(pending)
                    pending.clear()
                    pending_bytes = 0
                if piece.segment.archived is None:
                    yield piece.span(offset - piece_start, chunk_stop - piece_start)
                else:
                    yield from _archived_chunks(piece, offset - piece_start,
                                                chunk_stop - piece_start)
                offset = chunk_stop
            else:
                # Up to what fills the pending piece to STREAM_CHUNK_BYTES.
                part_stop = min(chunk_stop, offset + STREAM_CHUNK_BYTES - pending_bytes)
                pending.append(piece.read(offset - piece_start, part_stop - piece_start))
                pending_bytes += part_stop - offset
                offset = part_stop
                if pending_bytes == STREAM_CHUNK_BYTES:
                    yield b"".join(pending)
                    pending.clear()
                    pending_bytes = 0
            if offset == piece_end:
                index += 1
        if pending:
            yield b"".join(pending)

    def first_archived_byte(
        self, offset: int, length: int
    ) -> tuple[ArchivedSampleData, int] | None:
        """The first byte of ``[offset, offset + length)`` that an archive holds (a segment
        whose local file is gone), as (its sample data, offset in it); None if the range
        reads no archived bytes.  ``view.mp4`` reads it before answering, so an archive
        that can't be reached gets a 503 instead of a response cut short."""
        stop = min(offset + length, self.size)
        index = bisect.bisect_right(self._ends, offset)
        while offset < stop and index < len(self._slices):
            piece = self._slices[index]
            piece_start = self._ends[index] - piece.size
            if isinstance(piece, _SampleData) and piece.segment.archived is not None:
                start = max(offset, piece_start) - piece_start
                return piece.segment.archived, piece.segment.sample_byte_range[0] + start
            offset = self._ends[index]
            index += 1
        return None

    def write_to(self, fileobj: BinaryIO, progress: Callable[[int], object] | None = None) -> None:
        """Streams the whole file in chunks; ``progress(n)`` after each (e.g. ``tqdm.update``)."""
        for offset in range(0, self.size, STREAM_CHUNK_BYTES):
            chunk = self.read(offset, STREAM_CHUNK_BYTES)
            fileobj.write(chunk)
            if progress is not None:
                progress(len(chunk))

    def __repr__(self) -> str:
        return f"VirtualFile({len(self.segments)} segments, {self.size} bytes, etag {self._etag})"


def _archived_chunks(piece: _SampleData, start: int, stop: int) -> Iterator[bytes]:
    """Bytes ``[start, stop)`` of an archived segment's slice, read as the iterator advances
    in pieces ending on multiples of ``STREAM_CHUNK_BYTES`` of the sample file (the
    archive reader's blocks: each piece is then one cached block)."""
    base = piece.segment.sample_byte_range[0]
    while start < stop:
        file_offset = base + start
        chunk_stop = min(stop, (file_offset // STREAM_CHUNK_BYTES + 1) * STREAM_CHUNK_BYTES
                         - base)
        yield piece.read(start, chunk_stop)
        start = chunk_stop


def build_mp4(
    segments: Sequence[Segment],
    sample_entries: dict[int, VideoSampleEntry],
    open_sample_file: SampleFileOpener,
    timestamps: datetime.tzinfo | None = None,
) -> VirtualFile:
    """Lays out a ``.mp4`` over ``segments`` (in order).

    ``sample_entries`` maps ``video_sample_entry_id`` to the entry (at least those the segments
    use); ``open_sample_file(row)`` returns a readable fd or binary file of the row's sample file.
    ``timestamps`` adds a second track, of subtitles showing each second's wall-clock time in
    that zone (``moonfire.playback.subtitles``).
    Raises ``ValueError`` for no segments, an unknown sample entry, a gap between segments (see
    :func:`split_at_gaps`) or a segment after a trailing zero in the same run.
    """
    if not segments:
        raise ValueError("no segments: a .mp4 needs at least one recording")
    _check_trailing_zeros(segments)
    _check_no_gaps(segments)
    stsd_entries, description_numbers = _distinct_sample_entries(segments, sample_entries)
    with_ctts = any(segment.has_composition_offsets for segment in segments)
    # With B-frames the first frame is shown at its composition offset: the edits start there.
    first_shown_90k = segments[0].first_composition_offset_90k()
    edits, presentation_duration = _edit_list(segments, first_shown_90k)
    media_duration = sum(segment.media_duration_90k for segment in segments)
    last_modified_90k = max(segment.row.end_time_90k for segment in segments)
    creation_1904 = last_modified_90k // boxes.TIMESCALE_90K + boxes.EPOCH_1904_OFFSET
    width = max(entry.width for entry in stsd_entries)
    height = max(entry.height for entry in stsd_entries)

    frames = sum(segment.frames for segment in segments)
    key_frames = sum(segment.key_frames for segment in segments)
    fixed_stbl_head = boxes.stsd(entry.data for entry in stsd_entries)
    stsc = boxes.stsc([(s.frames, d) for s, d in zip(segments, description_numbers, strict=True)])
    # Payload lengths of the full boxes (after version/flags): count fields plus entries.
    stts_len = 4 + 8 * frames
    ctts_len = 4 + 8 * frames
    stsz_len = 8 + 4 * frames
    co64_len = 4 + 8 * len(segments)
    stss_len = 4 + 4 * key_frames
    full_box_overhead = 12
    table_lens = [stts_len, stsz_len, co64_len, stss_len] + ([ctts_len] if with_ctts else [])
    stbl_len = (
        len(fixed_stbl_head) + len(stsc) + sum(full_box_overhead + n for n in table_lens)
    )
    minf_head = boxes.vmhd() + boxes.dinf()
    minf_len = len(minf_head) + 8 + stbl_len
    mdia_head = boxes.mdhd(creation_1904, media_duration) + boxes.hdlr_video()
    mdia_len = len(mdia_head) + 8 + minf_len
    trak_head = boxes.tkhd(creation_1904, 1, presentation_duration, width, height)
    if edits is not None:
        trak_head += boxes.edts(edits)
    trak_len = len(trak_head) + 8 + mdia_len
    subtitles = None if timestamps is None else SubtitleTrack(segments, timestamps)
    subtitle_trak_len = 0 if subtitles is None else len(subtitles.trak(creation_1904, 0))
    moov_head = boxes.mvhd(
        creation_1904, presentation_duration, next_track_id=2 if subtitles is None else 3
    )
    moov_len = len(moov_head) + 8 + trak_len + subtitle_trak_len
    ftyp = boxes.ftyp()
    mdat_payload_start = len(ftyp) + 8 + moov_len + 16

    data_lengths = np.array(
        [end - start for start, end in (s.sample_byte_range for s in segments)], dtype=np.int64
    )
    chunk_offsets = mdat_payload_start + np.concatenate(([0], np.cumsum(data_lengths)[:-1]))

    pieces: list[_Slice] = []
    static = bytearray()

    def add_table(header: bytes, kind: int) -> None:
        static.extend(header)
        pieces.append(_Static(bytes(static)))
        static.clear()
        pieces.append(_Table(segments, kind))

    static += ftyp
    static += boxes.box_header(b"moov", moov_len) + moov_head
    static += boxes.box_header(b"trak", trak_len) + trak_head
    static += boxes.box_header(b"mdia", mdia_len) + mdia_head
    static += boxes.box_header(b"minf", minf_len) + minf_head
    static += boxes.box_header(b"stbl", stbl_len) + fixed_stbl_head
    add_table(
        boxes.full_box_header(b"stts", stts_len) + struct.pack(">I", frames),
        STTS,
    )
    if with_ctts:
        add_table(boxes.full_box_header(b"ctts", ctts_len) + struct.pack(">I", frames), CTTS)
    static += stsc
    add_table(
        boxes.full_box_header(b"stsz", stsz_len) + struct.pack(">II", 0, frames),
        STSZ,
    )
    static += boxes.full_box_header(b"co64", co64_len) + struct.pack(">I", len(segments))
    static += chunk_offsets.astype(">u8").tobytes()
    add_table(
        boxes.full_box_header(b"stss", stss_len) + struct.pack(">I", key_frames),
        STSS,
    )
    video_bytes = int(data_lengths.sum())
    if subtitles is not None:  # its samples follow the video's
        static += subtitles.trak(creation_1904, mdat_payload_start + video_bytes)
    static += boxes.mdat_header(video_bytes + (0 if subtitles is None else subtitles.size))
    pieces.append(_Static(bytes(static)))
    for segment, length in zip(segments, data_lengths.tolist(), strict=True):
        if length:
            pieces.append(_SampleData(segment, open_sample_file, length))
    if subtitles is not None and subtitles.size:
        pieces.append(subtitles)

    return VirtualFile(
        segments, stsd_entries, pieces, _etag(segments, timestamps), last_modified_90k,
        mdat_payload_start,
    )


def _check_trailing_zeros(segments: Sequence[Segment]) -> None:
    for previous, segment in zip(segments, segments[1:], strict=False):
        if previous.have_trailing_zero and not _starts_new_run(previous.row, segment.row):
            raise ValueError(
                f"unable to append recording {recording_name(segment.row)} after recording "
                f"{recording_name(previous.row)} with trailing zero"
            )


def _starts_new_run(previous: RecordingRow, row: RecordingRow) -> bool:
    if row.run_offset == 0 or row.stream_id != previous.stream_id:
        return True
    return row.recording_id - row.run_offset != previous.recording_id - previous.run_offset


def _distinct_sample_entries(
    segments: Sequence[Segment], sample_entries: dict[int, VideoSampleEntry]
) -> tuple[list[VideoSampleEntry], list[int]]:
    """Distinct entries in order of first use, and each segment's 1-based ``stsd`` position."""
    positions: dict[int, int] = {}
    entries: list[VideoSampleEntry] = []
    numbers = []
    for segment in segments:
        entry_id = segment.row.video_sample_entry_id
        if entry_id not in positions:
            entry = sample_entries.get(entry_id)
            if entry is None:
                raise ValueError(
                    f"recording {recording_name(segment.row)}: unknown video sample entry "
                    f"{entry_id}"
                )
            entries.append(entry)
            positions[entry_id] = len(entries)
        numbers.append(positions[entry_id])
    return entries, numbers


#: Overlap between consecutive segments (of different runs: a run's recordings abut
#: exactly) beyond which they start a new stretch.  Small overlaps come from each
#: run's start being an estimate and play back to back; a large one means the
#: NVR clock stepped back, and sorting by start time would interleave two runs.
MAX_OVERLAP_90K = 90_000


def split_at_gaps(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Groups consecutive segments into gap-free stretches, each acceptable to ``build_mp4``.

    A gap, or an overlap over ``MAX_OVERLAP_90K``, starts a new stretch.
    """
    stretches: list[list[Segment]] = []
    for previous, segment in zip([None, *segments], segments, strict=False):
        if previous is None or not -MAX_OVERLAP_90K <= _gap_90k(previous, segment) <= 0:
            stretches.append([])
        stretches[-1].append(segment)
    return stretches


def _gap_90k(previous: Segment, segment: Segment) -> int:
    """Wall time between the desired end of ``previous`` and the desired start of ``segment``."""
    previous_end = previous.row.start_time_90k + previous.desired_range_90k[1]
    return segment.row.start_time_90k + segment.desired_range_90k[0] - previous_end


def _check_no_gaps(segments: Sequence[Segment]) -> None:
    for previous, segment in zip(segments, segments[1:], strict=False):
        gap = _gap_90k(previous, segment)
        if gap > 0:
            raise ValueError(
                f"gap of {gap} (90 kHz units) between recording {recording_name(previous.row)} "
                f"and recording {recording_name(segment.row)}: a .mp4 covers one stretch "
                f"without gaps (see split_at_gaps)"
            )


def _edit_list(
    segments: Sequence[Segment], first_shown_90k: int = 0
) -> tuple[list[tuple[int, int]] | None, int]:
    """``elst`` entries (None when not needed) and the presentation duration they span.

    Each segment skips ``desired start - actual start`` of its media and keeps its desired
    duration; a keep continuing exactly where the previous entry's media ends extends it.
    ``first_shown_90k`` is the first frame's composition offset (B-frames): the media's
    presentation timeline starts there, so every edit starts that much later.

    A file ending where its run ended (a trailing zero) with B-frames has frames shown after its
    last decode time: the last edit is stretched to show them (FFmpeg drops frames outside every
    edit), which only the last segment can do without overlapping the next one's.
    """
    edits: list[list[int]] = []  # [segment_duration, media_time]
    media_time = first_shown_90k
    for number, segment in enumerate(segments):
        start, end = segment.desired_range_90k
        keep = end - start
        segment_media_time = media_time + start - segment.actual_start_90k
        if number == len(segments) - 1 and segment.has_composition_offsets:
            # Where the segment's frames are shown until, in this file's media time.
            shown_until = media_time - first_shown_90k + segment.shown_until_90k()
            keep = max(keep, shown_until - segment_media_time)
        if keep > 0:
            if edits and edits[-1][0] + edits[-1][1] == segment_media_time:
                edits[-1][0] += keep
            else:
                edits.append([keep, segment_media_time])
        media_time += segment.media_duration_90k
    presentation_duration = sum(duration for duration, _ in edits)
    if not edits or (len(edits) == 1 and edits[0][1] == 0):
        return None, presentation_duration
    return [(duration, time) for duration, time in edits], presentation_duration


def _etag(segments: Sequence[Segment], timestamps: datetime.tzinfo | None = None) -> str:
    # The subtitles' text depends on the zone.
    return segments_etag(segments, b"" if timestamps is None else f":ts:{timestamps}:".encode())


def segments_etag(segments: Sequence[Segment], variant: bytes = b"") -> str:
    """A strong, quoted ETag of the bytes a file over ``segments`` has: ``FORMAT_VERSION``,
    ``variant`` (what else changes them: the subtitles' zone, another layout such as
    ``view.m4s``'s) and each segment's identity and desired range."""
    digest = hashlib.sha1(bytes([FORMAT_VERSION]))
    digest.update(variant)
    for segment in segments:
        row = segment.row
        start, end = segment.desired_range_90k
        digest.update(
            struct.pack(">iiqii", row.stream_id, row.recording_id, row.start_time_90k, start, end)
        )
    return f'"{digest.hexdigest()}"'
