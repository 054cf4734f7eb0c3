"""Fragmented MP4 for the live view: an init segment per sample entry and one media segment per
frame (media-notes §1; web-api.md §2.6, §2.7).

A browser's Media Source Extensions take the init segment (``/api/init/<id>.mp4``) once, then each
``moof``+``mdat`` the live WebSocket sends.  The choices, each one a player requirement:

* ``ftyp`` is ``iso5`` with ``iso6``/``mp41`` compatible and no ``avc1`` brand: ``tfhd`` uses
  default-base-is-moof, which the ``iso5`` brand announces.
* The init segment's sample tables (``stts``/``stsc``/``stsz``/``stco``) are empty: every sample
  is in a fragment, and ``mvex``/``trex`` says so (track 1, sample description 1).
* A media segment's ``tfhd`` has flag 0x020000 (default-base-is-moof), so ``trun``'s data offset
  counts from the start of the ``moof``; ``tfdt`` comes before ``trun`` and is 0 by default
  (Moonfire's UI appends each part at the end of what it has buffered, so every part starts at
  decode time 0); ``trun`` carries each sample's duration, size and flags, and composition
  offsets only when a sample has one (B-frames; version 1, signed).
* ``mdat`` has a 32-bit size: Safari rejects the 64-bit form.  One frame is far below 4 GiB.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moonfire.codec import CodecError, sample_entry_from_box
from moonfire.playback import mp4_boxes as boxes

if TYPE_CHECKING:
    from moonfire.db import VideoSampleEntry

#: ``tfhd`` flag: offsets count from the start of the enclosing ``moof``.
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
#: ``trun`` flags (ISO/IEC 14496-12 §8.8.8).
TRUN_DATA_OFFSET = 0x000001
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400
TRUN_COMPOSITION_OFFSET = 0x000800
#: Sample flags of a key frame: sample_depends_on = 2 (depends on no other sample).
KEY_SAMPLE_FLAGS = 0x0200_0000
#: Sample flags of any other frame: sample_depends_on = 1, sample_is_non_sync_sample = 1.
NON_KEY_SAMPLE_FLAGS = 0x0101_0000

_FTYP = boxes.box(b"ftyp", b"iso5", struct.pack(">I", 0x200), b"iso5", b"iso6", b"mp41")


@dataclass(frozen=True, slots=True)
class FragmentSample:
    """One sample of a media segment: its ``trun`` entry (its bytes go in ``mdat``, in order)."""

    duration_90k: int
    size: int
    is_key: bool
    #: Presentation minus decode time (B-frames); 0 for streams in presentation order.
    composition_offset_90k: int = 0


def codec_string(entry: VideoSampleEntry) -> str | None:
    """The RFC 6381 codec string of a stored sample entry (``avc1.640028``), or None when no
    codec module reads its box."""
    try:
        return sample_entry_from_box(entry.data).codec_string
    except CodecError:
        return None


def content_type(entry: VideoSampleEntry) -> str:
    """``video/mp4; codecs="…"``: MSE's ``isTypeSupported`` needs the codecs parameter."""
    codec = codec_string(entry)
    return "video/mp4" if codec is None else f'video/mp4; codecs="{codec}"'


def pixel_aspect(entry: VideoSampleEntry) -> tuple[int, int]:
    """(hSpacing, vSpacing) of the entry's ``pasp`` child box; (1, 1) (square pixels) without
    one.  The entries moonfire builds have none; a camera's own ``avc1`` box may."""
    data = entry.data
    offset = 86  # the VisualSampleEntry fields end here; child boxes follow
    while offset + 8 <= len(data):
        size, fourcc = struct.unpack_from(">I4s", data, offset)
        if size < 8 or offset + size > len(data):
            break
        if fourcc == b"pasp" and size >= 16:
            h, v = struct.unpack_from(">II", data, offset + 8)
            if h > 0 and v > 0:
                return h, v
            break
        offset += size
    return 1, 1


def aspect(entry: VideoSampleEntry) -> tuple[int, int]:
    """The reduced display aspect ratio (16, 9): the ``X-Aspect`` header the UI sizes its live
    ``<video>`` from (web-api.md §2.6)."""
    h, v = pixel_aspect(entry)
    width, height = entry.width * h, entry.height * v
    if width <= 0 or height <= 0:
        raise ValueError(f"sample entry {entry.id} has picture size {entry.width}x{entry.height}")
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


def init_segment(entry: VideoSampleEntry) -> bytes:
    """``ftyp`` + ``moov`` for fragments of ``entry``'s stream (media-notes §1).

    The track's width and height are the display size: the picture's width scaled by the
    pixel aspect ratio of a ``pasp`` child, if the entry has one (as FFmpeg does).
    """
    h, v = pixel_aspect(entry)
    display_width, display_height = round(entry.width * h / v), entry.height
    empty = struct.pack(">I", 0)  # entry_count 0
    stbl = boxes.box(
        b"stbl",
        boxes.stsd([entry.data]),
        boxes.full_box(b"stts", 0, 0, empty),
        boxes.full_box(b"stsc", 0, 0, empty),
        boxes.full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),  # sample_size, sample_count
        boxes.full_box(b"stco", 0, 0, empty),
    )
    minf = boxes.box(b"minf", boxes.vmhd(), boxes.dinf(), stbl)
    mdia = boxes.box(b"mdia", boxes.mdhd(0, 0), boxes.hdlr_video(), minf)
    trak = boxes.box(b"trak", boxes.tkhd(0, 1, 0, display_width, display_height), mdia)
    trex = boxes.full_box(
        b"trex",
        0,
        0,
        # track_ID, default sample description index, default duration, size, flags
        struct.pack(">IIIII", 1, 1, 0, 0, 0),
    )
    moov = boxes.box(b"moov", boxes.mvhd(0, 0), trak, boxes.box(b"mvex", trex))
    return _FTYP + moov


def media_segment(
    sequence: int,
    samples: Sequence[FragmentSample],
    data: bytes | bytearray | memoryview | Sequence[bytes],
    *,
    base_media_decode_time_90k: int = 0,
) -> bytes:
    """``moof`` + ``mdat`` holding ``samples`` (at least one), whose bytes are ``data`` (one buffer,
    or one per sample), for track 1.

    ``sequence`` is ``mfhd``'s sequence number (1, 2, … within a stream of fragments).  Raises
    ``ValueError`` when the sizes don't add up to the data or a value doesn't fit its field.
    """
    if not samples:
        raise ValueError("a media segment needs at least one sample")
    if not 0 <= sequence <= boxes.U32_MAX:
        raise ValueError(f"sequence number {sequence} does not fit 32 bits")
    payload = data if isinstance(data, bytes | bytearray | memoryview) else b"".join(data)
    total = sum(s.size for s in samples)
    if total != len(payload):
        raise ValueError(f"samples total {total} bytes; the data is {len(payload)} bytes")

    with_offsets = any(s.composition_offset_90k for s in samples)
    if with_offsets:
        entry = struct.Struct(">IIIi")
        entries = b"".join(
            entry.pack(s.duration_90k, s.size, _flags(s), s.composition_offset_90k)
            for s in samples
        )
    else:
        entry = struct.Struct(">III")
        entries = b"".join(entry.pack(s.duration_90k, s.size, _flags(s)) for s in samples)
    header = media_segment_header(
        sequence, len(samples), entries, with_offsets, len(payload),
        base_media_decode_time_90k=base_media_decode_time_90k,
    )
    return b"".join((header, payload))


def media_segment_header(
    sequence: int,
    sample_count: int,
    trun_entries: bytes,
    with_composition_offsets: bool,
    payload_len: int,
    *,
    base_media_decode_time_90k: int = 0,
) -> bytes:
    """The ``moof`` and the ``mdat`` header of a media segment whose ``trun`` entries are
    given already packed (duration, size, flags and, ``with_composition_offsets``, a signed
    offset per sample, big-endian): what comes before the ``payload_len`` sample bytes.

    For ``view.m4s``, which packs a recording's entries with numpy and sends its sample
    bytes straight from the file.
    """
    if payload_len > boxes.U32_MAX - 8:
        raise ValueError(f"{payload_len} bytes of samples: a media segment must stay under 4 GiB")
    trun_flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS
    if with_composition_offsets:
        trun_flags |= TRUN_COMPOSITION_OFFSET
    mfhd = boxes.full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    tfhd = boxes.full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", 1))
    if boxes.needs_version_1(base_media_decode_time_90k):
        tfdt = boxes.full_box(b"tfdt", 1, 0, struct.pack(">Q", base_media_decode_time_90k))
    else:
        tfdt = boxes.full_box(b"tfdt", 0, 0, struct.pack(">I", base_media_decode_time_90k))
    # trun: the data offset is known once the moof's size is (which doesn't depend on it).
    trun_len = 12 + 8 + len(trun_entries)  # full box header, sample_count + data_offset, entries
    traf_len = 8 + len(tfhd) + len(tfdt) + trun_len
    moof_len = 8 + len(mfhd) + traf_len
    data_offset = moof_len + 8  # past the mdat header
    trun = boxes.full_box(
        b"trun",
        1 if with_composition_offsets else 0,
        trun_flags,
        struct.pack(">Ii", sample_count, data_offset),
        trun_entries,
    )
    traf = boxes.box(b"traf", tfhd, tfdt, trun)
    moof = boxes.box(b"moof", mfhd, traf)
    assert len(moof) == moof_len
    return moof + boxes.box_header(b"mdat", payload_len)


def _flags(sample: FragmentSample) -> int:
    return KEY_SAMPLE_FLAGS if sample.is_key else NON_KEY_SAMPLE_FLAGS
