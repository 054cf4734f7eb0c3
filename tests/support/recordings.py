"""Builders for recording rows, sample files and ``.mp4`` box trees used by the segment/mp4 tests.

Rows are built by hand (as ``moonfire.db`` would return them) from per-sample columns, with the
index encoded by ``moonfire_core.encode_index``, so a test states only the samples it cares about.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moonfire.db import RecordingRow, VideoSampleEntry, composite_id
from moonfire_core import encode_index
from moonfire_core.records import FLAG_TRAILING_ZERO

#: An arbitrary 2026 wall-clock start, in 90 kHz units since the Unix epoch.
BASE_TIME_90K = 1_780_000_000 * 90_000

CONTAINER_BOXES = {b"moov", b"trak", b"edts", b"mdia", b"minf", b"dinf", b"stbl"}


@dataclass(frozen=True)
class Recording:
    row: RecordingRow
    video_index: bytes


def make_recording(
    durations: Sequence[int],
    sizes: Sequence[int],
    is_key: Sequence[bool],
    *,
    stream_id: int = 1,
    recording_id: int = 1,
    run_offset: int = 0,
    start_time_90k: int = BASE_TIME_90K,
    sample_entry_id: int = 1,
    composition_offsets: Sequence[int] | None = None,
) -> Recording:
    """A committed recording with these samples (flags computed from the last duration);
    ``composition_offsets`` (B-frames, pts - dts) make a version-2 index."""
    offsets = None if composition_offsets is None else list(composition_offsets)
    blob = encode_index(list(durations), list(sizes), list(is_key), offsets)
    row = RecordingRow(
        composite_id=composite_id(stream_id, recording_id),
        stream_id=stream_id,
        run_offset=run_offset,
        flags=FLAG_TRAILING_ZERO if durations[-1] == 0 else 0,
        sample_file_bytes=sum(sizes),
        start_time_90k=start_time_90k,
        duration_90k=sum(durations),
        local_time_delta_90k=0,
        video_samples=len(durations),
        video_sync_samples=sum(bool(k) for k in is_key),
        video_sample_entry_id=sample_entry_id,
    )
    return Recording(row, blob)


def sample_entry(data: bytes, entry_id: int = 1) -> VideoSampleEntry:
    """A ``VideoSampleEntry`` for an ``avc1`` box, width/height read from the box itself."""
    width, height = struct.unpack(">HH", data[32:36])
    return VideoSampleEntry(id=entry_id, sha1=b"\0" * 20, width=width, height=height, data=data)


class SampleFiles:
    """Sample files in a directory, one per composite id; the opener ``build_mp4`` needs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.opened = 0

    def path(self, row: RecordingRow) -> Path:
        return self.directory / f"{row.composite_id:016x}"

    def write(self, row: RecordingRow, data: bytes) -> None:
        assert len(data) == row.sample_file_bytes
        self.path(row).write_bytes(data)

    def open(self, row: RecordingRow):
        self.opened += 1
        return open(self.path(row), "rb")


@dataclass
class Box:
    fourcc: bytes
    offset: int  # of the header, in the file
    size: int
    payload: bytes  # for leaf boxes; empty for containers
    children: list[Box]

    def find(self, path: str) -> Box:
        """The first descendant at ``a/b/c``; fails the test when missing."""
        box = self
        for name in path.split("/"):
            matches = [c for c in box.children if c.fourcc == name.encode()]
            assert matches, f"no {name} box under {box.fourcc!r} (path {path})"
            box = matches[0]
        return box

    def has(self, path: str) -> bool:
        try:
            self.find(path)
        except AssertionError:
            return False
        return True


def parse_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """Parses a box tree, asserting that every size is sane and children fill their parent."""
    end = len(data) if end is None else end
    boxes = []
    offset = start
    while offset < end:
        size, fourcc = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        assert size >= header, f"{fourcc!r} at {offset}: size {size} below its header"
        assert offset + size <= end, f"{fourcc!r} at {offset}: size {size} overruns parent {end}"
        body = (offset + header, offset + size)
        if fourcc in CONTAINER_BOXES:
            boxes.append(Box(fourcc, offset, size, b"", parse_boxes(data, *body)))
        else:
            boxes.append(Box(fourcc, offset, size, data[body[0] : body[1]], []))
        offset += size
    assert offset == end, f"boxes end at {offset}, parent ends at {end}"
    return boxes


def parse_file(data: bytes) -> Box:
    return Box(b"file", 0, len(data), b"", parse_boxes(data))


def table_entries(box: Box, fmt: str, header: str = ">I") -> list[tuple[int, ...]]:
    """Entries of a full-box table after version/flags and the ``header`` fields."""
    head = struct.calcsize(header)
    entry = struct.calcsize(fmt)
    body = box.payload[4 + head :]
    assert len(body) % entry == 0
    return [struct.unpack_from(fmt, body, i) for i in range(0, len(body), entry)]
