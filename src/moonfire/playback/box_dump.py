"""A text outline of an ISO BMFF file's boxes, for the ``.txt`` debug forms of the API.

``view.mp4.txt``, ``view.m4s.txt`` and ``/api/init/<id>.mp4.txt`` (web-api.md §3) let
someone debugging a player see what moonfire would send without a hex editor.  Only
box headers are read (8 or 16 bytes each, at their offsets), so outlining a day-long
``view.mp4`` with a 30 MB ``moov`` costs a few dozen small reads, not the tables.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

#: Boxes whose payload is a sequence of boxes.
CONTAINERS = frozenset(
    {b"moov", b"trak", b"edts", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf"}
)
#: Full boxes whose payload, after version/flags and an entry count, holds boxes.
_ENTRY_CONTAINERS = {b"stsd": 8, b"dref": 8}
#: Deepest nesting outlined (a corrupt file can't recurse forever).
MAX_DEPTH = 12


def outline(read: Callable[[int, int], bytes], size: int) -> list[str]:
    """``offset size type`` per box, indented by depth; problems as ``! …`` lines."""
    lines: list[str] = []
    _walk(read, 0, size, 0, lines)
    return lines


def _walk(
    read: Callable[[int, int], bytes], start: int, stop: int, depth: int, lines: list[str]
) -> None:
    offset = start
    while offset < stop:
        header = read(offset, 16)
        if len(header) < 8:
            lines.append(f"{'  ' * depth}! {stop - offset} trailing bytes at {offset}")
            return
        box_size, fourcc = struct.unpack(">I4s", header[:8])
        header_len = 8
        if box_size == 1 and len(header) >= 16:
            (box_size,) = struct.unpack(">Q", header[8:16])
            header_len = 16
        elif box_size == 0:
            box_size = stop - offset
        name = fourcc.decode("latin-1")
        if box_size < header_len or offset + box_size > stop:
            lines.append(f"{'  ' * depth}! box {name!r} at {offset} claims {box_size} bytes")
            return
        lines.append(f"{'  ' * depth}{offset:>12} {box_size:>12} {name}")
        if depth < MAX_DEPTH:
            if fourcc in CONTAINERS:
                _walk(read, offset + header_len, offset + box_size, depth + 1, lines)
            elif fourcc in _ENTRY_CONTAINERS:
                skip = _ENTRY_CONTAINERS[fourcc]
                _walk(read, offset + header_len + skip, offset + box_size, depth + 1, lines)
        offset += box_size
