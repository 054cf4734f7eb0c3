"""``Segment``: one recording clipped to a time range (brief §2.5).

A ``.mp4`` is built from segments.  A segment never starts mid-GOP: it begins at the last key
frame at or before the desired start (the ``.mp4`` hides the extra prefix with an edit list) and
ends at the first frame starting at or after the desired end, so the picture at every desired
instant can be decoded.

Two paths, as in Moonfire NVR:

* **fast path** (``[0, duration)``, the whole recording): nothing is decoded at construction; the
  counts, the byte range and the trailing-zero flag come from the database row.  Interior
  recordings of a long export all take this path, which keeps building a 24-hour file cheap.
* **slow path** (anything else): the ``video_index`` is decoded once (vectorised, numpy) to find
  the begin and end frames.

Zero-length ranges ``[s, s)`` (e.g. a request for the frame at one instant) yield at least one
frame: the frames from the key frame at or before ``s`` up to ``s``, or just that key frame when it
starts exactly at ``s``.  Its last duration is trimmed to ``s - last_start``, possibly 0.

``sample_tables()`` produces the per-sample durations, sizes and key flags of just this segment,
with the last duration trimmed to the desired end, and cross-checks the counts against the row.

B-frames (issue 10 §1): frames are stored in decode order, so every time here (starts,
durations, the ranges) is a decode time; a version-2 index adds each frame's composition offset
(shown at start + offset), which ``sample_tables()`` passes on for the ``.mp4``'s ``ctts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from moonfire.db.rows import index_mismatches
from moonfire.errors import MoonfireError
from moonfire_core import CorruptIndexError, DecodedIndex, decode_index
from moonfire_core.index import has_composition_offsets

if TYPE_CHECKING:
    from moonfire.db import RecordingRow


@dataclass(frozen=True, slots=True)
class SampleTables:
    """Per-sample columns of one segment (``durations`` already trimmed to the desired end)."""

    durations: np.ndarray  # int32, 90 kHz units
    sizes: np.ndarray  # int32, bytes
    is_key: np.ndarray  # bool
    #: int32, presentation minus decode time; None when the recording has none (no B-frames).
    composition_offsets: np.ndarray | None = None


class ArchivedSampleData(Protocol):
    """The sample file of a recording only an archive holds (schema 7): its bytes come
    from there (``moonfire.storage.archive_reader.ArchivedSampleFile``), not from a local
    file.  ``read`` blocks (a request to the store) and raises ``MoonfireError``s naming
    the archive or the recording."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class SegmentError(MoonfireError, ValueError):
    """A recording's row or index can't give the segment asked for (a bad range, an index that
    disagrees with its row); the message names the recording."""


def recording_name(row: RecordingRow) -> str:
    """``stream/recording`` (ids) as used in error messages (and in ``view.mp4?s=`` URLs)."""
    return f"{row.stream_id}/{row.recording_id}"


class Segment:
    """A recording clipped to ``desired_range_90k`` (relative to the recording's start).

    Times are in 90 kHz units relative to the recording start; ``actual_start_90k`` is at or
    before the desired start, ``actual_end_90k`` at or after the desired end (equal when the
    desired end is the recording's end).
    """

    __slots__ = (
        "row",
        "desired_range_90k",
        "actual_start_90k",
        "actual_end_90k",
        "frames",
        "key_frames",
        "sample_byte_range",
        "have_trailing_zero",
        "first_frame_index",
        "has_composition_offsets",
        "archived",
        "_video_index",
        "_decoded",
        "_tables",
    )

    def __init__(
        self,
        row: RecordingRow,
        video_index: bytes,
        desired_range_90k: tuple[int, int],
        archived: ArchivedSampleData | None = None,
    ) -> None:
        start, end = desired_range_90k
        if start < 0 or start > end or end > row.duration_90k:
            raise SegmentError(
                f"recording {recording_name(row)}: desired range [{start}, {end}) is not within "
                f"its duration [0, {row.duration_90k})"
            )
        self.row = row
        self.desired_range_90k = (start, end)
        #: Where the sample data is when the local file is gone; None: the local file.
        self.archived = archived
        self._video_index = video_index
        #: Known from the index's first byte, without decoding it (the ``.mp4`` sizes its
        #: ``ctts`` from this).
        self.has_composition_offsets = has_composition_offsets(video_index)
        self._decoded: DecodedIndex | None = None
        self._tables: SampleTables | None = None
        if start == 0 and end == row.duration_90k and row.video_samples > 0:
            self._init_whole_recording()
        else:
            self._init_clipped(start, end)

    def _init_whole_recording(self) -> None:
        row = self.row
        self.actual_start_90k = 0
        self.actual_end_90k = row.duration_90k
        self.frames = row.video_samples
        self.key_frames = row.video_sync_samples
        self.sample_byte_range = (0, row.sample_file_bytes)
        self.have_trailing_zero = bool(row.has_trailing_zero)
        self.first_frame_index = 0

    def _init_clipped(self, start: int, end: int) -> None:
        decoded = self._decode()
        name = recording_name(self.row)
        count = len(decoded.durations)
        if count == 0:
            raise SegmentError(f"recording {name}: video_index has no frames")
        if not decoded.is_key[0]:
            raise SegmentError(f"recording {name}: first frame is not a key frame")
        starts = decoded.starts
        # First frame starting at or after the desired end; when the end is the recording's end,
        # everything (a trailing zero-duration frame too), consistent with the fast path.
        stop = count if end == self.row.duration_90k else int(np.searchsorted(starts, end, "left"))
        last_at_or_before_start = min(int(np.searchsorted(starts, start, "right")) - 1, stop)
        key_indexes = np.flatnonzero(decoded.is_key[: last_at_or_before_start + 1])
        begin = int(key_indexes[-1])
        stop = max(stop, begin + 1)  # a zero-length range still yields one frame
        last = stop - 1
        self.first_frame_index = begin
        self.frames = stop - begin
        self.key_frames = int(np.count_nonzero(decoded.is_key[begin:stop]))
        self.actual_start_90k = int(starts[begin])
        self.actual_end_90k = int(starts[last]) + int(decoded.durations[last])
        self.sample_byte_range = (
            int(decoded.positions[begin]),
            int(decoded.positions[last]) + int(decoded.sizes[last]),
        )
        self.have_trailing_zero = bool(decoded.durations[last] == 0)

    def _decode(self) -> DecodedIndex:
        """Decodes the whole index once, adding the recording's name to a corruption error."""
        if self._decoded is None:
            try:
                decoded = decode_index(self._video_index)
            except CorruptIndexError as e:
                raise CorruptIndexError(f"recording {recording_name(self.row)}: {e}") from e
            self._check_against_row(decoded)
            self._decoded = decoded
        return self._decoded

    def _check_against_row(self, decoded: DecodedIndex) -> None:
        """The index must describe the row's file: else the ``.mp4`` would point at wrong bytes.

        Runs for every segment of an export, so the recording's name is formatted only for an
        error.
        """
        problems = index_mismatches(self.row, decoded)
        if problems:
            raise SegmentError(f"recording {recording_name(self.row)}: {problems[0]}")

    def first_composition_offset_90k(self) -> int:
        """Presentation minus decode time of the segment's first (key) frame: how far into the
        media the first frame is shown.  0 without B-frames (no decoding then)."""
        if not self.has_composition_offsets:
            return 0
        if self._tables is not None:
            assert self._tables.composition_offsets is not None
            return int(self._tables.composition_offsets[0])
        return int(self._decode().composition_offsets[self.first_frame_index])

    def shown_until_90k(self) -> int:
        """For a segment ending its run (trailing zero) with B-frames: when its last shown frame
        ends, relative to its actual start (a zero-duration frame counting one tick, so it is
        shown at all).  Otherwise the media duration: frames shown past the desired end of a
        clip are outside the range asked for."""
        if not (self.has_composition_offsets and self.have_trailing_zero):
            return self.media_duration_90k
        tables = self.sample_tables()
        assert tables.composition_offsets is not None
        starts = np.concatenate(([0], np.cumsum(tables.durations[:-1], dtype=np.int64)))
        ends = starts + tables.composition_offsets + np.maximum(tables.durations, 1)
        return max(int(ends.max()), self.media_duration_90k)

    @property
    def media_duration_90k(self) -> int:
        """Σ of the trimmed sample durations: from the actual start to the desired end."""
        return self.desired_range_90k[1] - self.actual_start_90k

    def sample_tables(self) -> SampleTables:
        """Durations (last one trimmed), sizes and key flags of this segment's frames; cached."""
        if self._tables is None:
            decoded = self._decode()
            begin = self.first_frame_index
            stop = begin + self.frames
            durations = decoded.durations[begin:stop].astype(np.int32, copy=False)
            last_start = int(decoded.starts[stop - 1])
            trimmed = min(self.desired_range_90k[1] - last_start, int(durations[-1]))
            if trimmed != durations[-1]:  # copy only to trim: whole recordings need no copy
                durations = durations.copy()
                durations[-1] = trimmed
            offsets = None
            if self.has_composition_offsets:
                offsets = decoded.composition_offsets[begin:stop].astype(np.int32, copy=False)
            self._tables = SampleTables(
                durations=durations,
                sizes=decoded.sizes[begin:stop].astype(np.int32, copy=False),
                is_key=decoded.is_key[begin:stop].astype(np.bool_, copy=False),
                composition_offsets=offsets,
            )
            self._decoded = None  # the tables are all later readers need
        return self._tables

    def __repr__(self) -> str:
        start, end = self.desired_range_90k
        return (
            f"Segment({recording_name(self.row)}, desired=[{start}, {end}), "
            f"actual=[{self.actual_start_90k}, {self.actual_end_90k}), frames={self.frames})"
        )
