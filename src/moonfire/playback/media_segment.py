"""``view.m4s``: recorded segments as one fMP4 *media segment* (web-api.md §3).

A Media Source Extensions player appends it after ``/api/init/<id>.mp4``, as it
does the live view's parts, so a client can play recordings and live video with
one code path.  Moonfire's rules: the same ``s=`` as ``view.mp4``; no edit list
and ``tfdt`` 0, so the frames from the key frame before the requested start are
in it and the client trims that leading media itself (``X-Leading-Media-Duration``);
one sample entry; under 4 GiB (``mdat`` has a 32-bit size, which Safari requires).

The ``moof`` is built at once (its ``trun`` packed from the segments' sample
tables with numpy); the sample bytes are each segment's range of its file, read
on demand like ``view.mp4``'s (``VirtualFile``, so ranges and ``sendfile`` work).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from moonfire.playback import fragment
from moonfire.playback.mp4 import (
    SampleFileOpener,
    VirtualFile,
    _SampleData,
    _Static,
    segments_etag,
)
from moonfire.playback.segment import Segment, recording_name

if TYPE_CHECKING:
    from moonfire.db import VideoSampleEntry


def build_m4s(
    segments: Sequence[Segment],
    sample_entries: dict[int, VideoSampleEntry],
    open_sample_file: SampleFileOpener,
) -> VirtualFile:
    """One ``moof`` + ``mdat`` over ``segments`` (in order), for track 1 of the init segment.

    Raises ``ValueError`` for no segments, several sample entries, an unknown one, or
    sample data of 4 GiB or more.
    """
    if not segments:
        raise ValueError("no segments: a media segment needs at least one recording")
    entry_ids = {s.row.video_sample_entry_id for s in segments}
    if len(entry_ids) > 1:
        raise ValueError(
            f"recordings {recording_name(segments[0].row)} to {recording_name(segments[-1].row)} "
            f"use {len(entry_ids)} video sample entries; a media segment can hold only one "
            "(request the recordings of each separately)"
        )
    (entry_id,) = entry_ids
    entry = sample_entries.get(entry_id)
    if entry is None:
        raise ValueError(
            f"recording {recording_name(segments[0].row)}: unknown video sample entry {entry_id}"
        )
    tables = [s.sample_tables() for s in segments]
    with_offsets = any(t.composition_offsets is not None for t in tables)
    fields = [(">u4", "duration"), (">u4", "size"), (">u4", "flags")]
    if with_offsets:
        fields.append((">i4", "offset"))
    entries = np.zeros(
        sum(len(t.durations) for t in tables), dtype=[(name, kind) for kind, name in fields]
    )
    at = 0
    for t in tables:
        end = at + len(t.durations)
        entries["duration"][at:end] = t.durations
        entries["size"][at:end] = t.sizes
        entries["flags"][at:end] = np.where(
            t.is_key, fragment.KEY_SAMPLE_FLAGS, fragment.NON_KEY_SAMPLE_FLAGS
        )
        if t.composition_offsets is not None:
            entries["offset"][at:end] = t.composition_offsets
        at = end
    lengths = [end - start for start, end in (s.sample_byte_range for s in segments)]
    header = fragment.media_segment_header(
        1, len(entries), entries.tobytes(), with_offsets, sum(lengths)
    )
    pieces: list = [_Static(header)]
    pieces.extend(
        _SampleData(segment, open_sample_file, length)
        for segment, length in zip(segments, lengths, strict=True)
        if length
    )
    last_modified_90k = max(s.row.end_time_90k for s in segments)
    return VirtualFile(
        segments, [entry], pieces, segments_etag(segments, b"m4s:"), last_modified_90k,
        len(header),
    )


def leading_media_duration_90k(segment: Segment) -> int:
    """Media before the requested start in the first segment (from its key frame on)."""
    return segment.desired_range_90k[0] - segment.actual_start_90k
