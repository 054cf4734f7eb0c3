"""ISO BMFF box encoders for the fixed (small) boxes of a virtual ``.mp4`` (brief §4.2).

Each function returns the complete box as ``bytes``.  The big per-sample tables (``stts``,
``stsz``, ``stss``) are not built here: ``moonfire.playback.mp4`` emits only their headers with
:func:`full_box_header` and produces the entries lazily, segment by segment.

Durations and times use version 0 (32-bit) fields when they fit and version 1 (64-bit) otherwise:
a 90 kHz u32 overflows after 13.25 hours, shorter than a day-long export.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

U32_MAX = 0xFFFF_FFFF

#: Seconds from 1904-01-01 (the ISO BMFF epoch) to 1970-01-01.
EPOCH_1904_OFFSET = 2_082_844_800

TIMESCALE_90K = 90_000

_UNITY_MATRIX = struct.pack(">9I", 0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000)

#: ``elst`` media rate: integer 1, fraction 0 (era-1's ``00 01 00 01`` was a bug, 5ea2c2f).
MEDIA_RATE_ONE = b"\x00\x01\x00\x00"


def box_header(fourcc: bytes, payload_len: int) -> bytes:
    """An 8-byte header; refuses a box too large for the 32-bit size field."""
    size = 8 + payload_len
    if size > U32_MAX:
        raise ValueError(f"{fourcc.decode()} box of {size} bytes exceeds the 32-bit box size")
    return struct.pack(">I4s", size, fourcc)


def full_box_header(fourcc: bytes, payload_len: int, version: int = 0, flags: int = 0) -> bytes:
    """Header of a "full box": size, type, version (1 byte) and flags (3 bytes)."""
    return box_header(fourcc, 4 + payload_len) + struct.pack(">I", (version << 24) | flags)


def box(fourcc: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return box_header(fourcc, len(body)) + body


def full_box(fourcc: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return full_box_header(fourcc, len(body), version, flags) + body


def needs_version_1(*values: int) -> bool:
    return any(v > U32_MAX for v in values)


def ftyp() -> bytes:
    """32 bytes: major ``isom``, minor 0x200, compatible isom iso2 avc1 mp41."""
    return box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")


def _times_at_90k(creation_time_1904: int, duration_90k: int) -> tuple[int, bytes]:
    """(version, creation/modification time + timescale + duration) of ``mvhd``/``mdhd``.

    Version 1 (64-bit fields) only when a value doesn't fit 32 bits, e.g. a file over 13 h.
    """
    if needs_version_1(creation_time_1904, duration_90k):
        fields = ">QQIQ"
        version = 1
    else:
        fields = ">IIII"
        version = 0
    times = struct.pack(fields, creation_time_1904, creation_time_1904, TIMESCALE_90K, duration_90k)
    return version, times


def mvhd(creation_time_1904: int, duration_90k: int, next_track_id: int = 2) -> bytes:
    """Movie header: timescale 90 kHz, rate 1.0, volume 1.0, unity matrix."""
    version, times = _times_at_90k(creation_time_1904, duration_90k)
    return full_box(
        b"mvhd",
        version,
        0,
        times,
        struct.pack(">IH10x", 0x0001_0000, 0x0100),  # rate 1.0, volume 1.0, reserved
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", next_track_id),
    )


def tkhd(
    creation_time_1904: int, track_id: int, duration_90k: int, width: int, height: int
) -> bytes:
    """Track header, flags 7 (enabled, in movie, in preview); width/height as 16.16 fixed."""
    if needs_version_1(creation_time_1904, duration_90k):
        head = struct.pack(
            ">QQIIQ", creation_time_1904, creation_time_1904, track_id, 0, duration_90k
        )
        version = 1
    else:
        head = struct.pack(
            ">IIIII", creation_time_1904, creation_time_1904, track_id, 0, duration_90k
        )
        version = 0
    return full_box(
        b"tkhd",
        version,
        7,
        head,
        bytes(8),  # reserved
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate_group, volume (0: video), reserved
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )


def edts(entries: Sequence[tuple[int, int]]) -> bytes:
    """``edts/elst`` v1: (segment_duration, media_time) pairs, media rate exactly 1.0."""
    body = [struct.pack(">I", len(entries))]
    body.extend(struct.pack(">Qq", d, t) + MEDIA_RATE_ONE for d, t in entries)
    return box(b"edts", full_box(b"elst", 1, 0, *body))


def mdhd(creation_time_1904: int, duration_90k: int) -> bytes:
    """Media header: timescale 90 kHz, language ``und`` (0x55c4)."""
    version, times = _times_at_90k(creation_time_1904, duration_90k)
    return full_box(b"mdhd", version, 0, times, struct.pack(">HH", 0x55C4, 0))


def hdlr_video() -> bytes:
    """33 bytes: handler ``vide`` with an empty (NUL-terminated) name."""
    return full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"\x00")


def vmhd() -> bytes:
    return full_box(b"vmhd", 0, 1, bytes(8))  # graphicsmode 0, opcolor 0,0,0


def dinf() -> bytes:
    """One ``url `` entry with flags 1: the media data is in this file."""
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def stsd(sample_entries: Iterable[bytes]) -> bytes:
    entries = list(sample_entries)
    return full_box(b"stsd", 0, 0, struct.pack(">I", len(entries)), *entries)


def stsc(chunks: Sequence[tuple[int, int]]) -> bytes:
    """One entry per chunk i (1-based): (first_chunk i, samples_per_chunk, description index)."""
    body = b"".join(
        struct.pack(">III", i, frames, description)
        for i, (frames, description) in enumerate(chunks, start=1)
    )
    return full_box(b"stsc", 0, 0, struct.pack(">I", len(chunks)), body)


def mdat_header(payload_len: int) -> bytes:
    """64-bit ``largesize`` form (QuickTime rejects the until-EOF form)."""
    return struct.pack(">I4sQ", 1, b"mdat", 16 + payload_len)
