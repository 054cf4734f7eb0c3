"""Deterministic synthetic packets whose bytes say who they are.

Each packet starts with a header (magic, stream id, frame number, key flag)
followed by filler derived from the header, so a test can take any byte range
of a sample file, split it with the recording's index and prove every packet
is exactly the one that was written, in order, with nothing lost or mixed up.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from moonfire_core import decode_index

HEADER = struct.Struct(">4sIQ?")
MAGIC = b"MFSY"
FPS = 30
FRAME_90K = 90000 // FPS
GOP = FPS  # one key frame per second


def packet_size(frame: int, is_key: bool) -> int:
    # Sizes shaped like a real camera's (key frames ~4x larger), scaled down.
    return (3000 if is_key else 700) + (frame * 7919) % 500


def make_packet(stream_id: int, frame: int, is_key: bool) -> bytes:
    header = HEADER.pack(MAGIC, stream_id, frame, is_key)
    size = packet_size(frame, is_key)
    filler = hashlib.sha256(header).digest()
    body = (filler * (size // len(filler) + 1))[: size - len(header)]
    return header + body


@dataclass(frozen=True)
class Frame:
    number: int
    pts_90k: int
    local_time_90k: int
    is_key: bool


def frames(start_frame: int, count: int, base_time_90k: int, arrival_delay_90k: int = FRAME_90K):
    """A perfect 30 fps clock: frame i arrives ``arrival_delay`` after its capture starts.

    The default delay of one frame means each frame arrives as soon as it is
    complete, so a recording's local start estimate equals its true start.
    """
    for i in range(start_frame, start_frame + count):
        pts = i * FRAME_90K
        yield Frame(i, pts, base_time_90k + pts + arrival_delay_90k, i % GOP == 0)


def feed(recorders, entry_id: int, start_frame: int, count: int, base_time_90k: int) -> None:
    """Feed ``count`` synthetic frames to each ``StreamRecorder``, interleaved like live cameras."""
    for f in frames(start_frame, count, base_time_90k):
        for r in recorders:
            packet = make_packet(r.stream_id, f.number, f.is_key)
            r.write(packet, f.local_time_90k, f.pts_90k, f.is_key, entry_id)


def split_recording(data: bytes, video_index: bytes) -> Iterator[tuple[bytes, bool]]:
    """The packets of a sample file, cut by its index, with their key flags."""
    decoded = decode_index(video_index)
    assert decoded.sample_file_bytes == len(data), (decoded.sample_file_bytes, len(data))
    for pos, size, key in zip(decoded.positions, decoded.sizes, decoded.is_key, strict=True):
        yield data[int(pos) : int(pos) + int(size)], bool(key)


def verify_recording(data: bytes, video_index: bytes, stream_id: int) -> list[int]:
    """Assert every packet is the one written (for ``stream_id``); return the frame numbers,
    in order."""
    numbers = []
    for packet, is_key in split_recording(data, video_index):
        magic, stream, frame, key = HEADER.unpack_from(packet)
        assert magic == MAGIC, f"packet without synthetic header: {packet[:16]!r}"
        assert stream == stream_id and key == is_key
        assert packet == make_packet(stream, frame, key), f"frame {frame} bytes differ"
        numbers.append(frame)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "frames not consecutive"
    return numbers
