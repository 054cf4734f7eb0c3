"""NAL unit framing shared by H.264 and H.265 (ISO/IEC 14496-15 samples, ITU-T Annex B).

The two codecs frame NAL units the same way: samples are NAL units behind big-endian length
prefixes, decoder configuration records list them behind u16 lengths, extradata and camera
packets put them behind start codes.  Only the NAL header
(which type a unit is) differs, so each function here takes the codec's ``nal_type`` and its
parameter set types; the codec modules keep their own error classes, so messages still say
which codec failed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Sequence

from moonfire.codec.base import CodecError
from moonfire_core.annexb import split_annex_b

__all__ = [
    "START_CODE",
    "annex_b_parameter_sets",
    "extradata_from_parameter_sets",
    "length_prefixed_nals",
    "nals_by_type",
    "u16_length_nals",
]

#: The start code put before each NAL unit of the Annex B extradata we write.
START_CODE = b"\x00\x00\x00\x01"

NalType = Callable[[bytes], int]


def length_prefixed_nals(sample: bytes, size: int, error: type[CodecError]) -> list[bytes]:
    """The NAL units of a sample whose NAL units each follow a ``size``-byte length, or
    ``error`` naming the offset where the sample ends too soon."""
    view = memoryview(sample)
    nals = []
    offset = 0
    while offset < len(view):
        if offset + size > len(view):
            raise error(
                f"sample truncated at offset {offset}: {len(view) - offset} bytes left for a "
                f"{size}-byte NAL unit length"
            )
        length = int.from_bytes(view[offset : offset + size], "big")
        offset += size
        if offset + length > len(view):
            raise error(
                f"sample truncated at offset {offset}: NAL unit of {length} bytes, "
                f"{len(view) - offset} left"
            )
        nals.append(bytes(view[offset : offset + length]))
        offset += length
    return nals


def u16_length_nals(
    record: bytes,
    offset: int,
    count: int,
    error: type[CodecError],
    record_name: str,
    unit: str,
    unit_suffix: str = "",
) -> tuple[list[bytes], int]:
    """``count`` NAL units of a decoder configuration record, each behind a u16 length, from
    ``offset``; and the offset after them.  A truncated list is ``error`` naming the record,
    the offset and which unit: "``unit`` 2 of 3``unit_suffix``" (e.g. "PPS 2 of 3")."""
    nals = []
    for i in range(count):
        which = f"{unit} {i + 1} of {count}{unit_suffix}"
        if offset + 2 > len(record):
            raise error(f"{record_name} truncated at offset {offset}: no length for {which}")
        (length,) = struct.unpack_from(">H", record, offset)
        offset += 2
        if offset + length > len(record):
            raise error(
                f"{record_name} truncated at offset {offset}: {which} needs {length} bytes, "
                f"{len(record) - offset} left"
            )
        nals.append(record[offset : offset + length])
        offset += length
    return nals, offset


def annex_b_parameter_sets(
    annex_b: bytes, types: Collection[int], nal_type: NalType
) -> tuple[bytes, ...]:
    """The distinct NAL units of ``annex_b`` whose type is one of ``types``, in first-seen
    order (``SampleEntry.parameter_sets``: cameras repeat them before every key frame)."""
    nals = split_annex_b(annex_b)
    return tuple(dict.fromkeys(n for n in nals if n and nal_type(n) in types))


def nals_by_type(
    annex_b: bytes, types: Sequence[int], nal_type: NalType, header_bytes: int
) -> dict[int, list[bytes]]:
    """Each of ``types`` → the NAL units of ``annex_b`` of that type, in stream order.  Units
    shorter than the codec's ``header_bytes`` NAL header have no type and are left out."""
    nals = [n for n in split_annex_b(annex_b) if len(n) >= header_bytes]
    return {kind: [n for n in nals if nal_type(n) == kind] for kind in types}


def extradata_from_parameter_sets(
    nals: Sequence[bytes], required_types: Collection[int], nal_type: NalType
) -> bytes | None:
    """Annex B extradata of ``nals`` if they hold one of each of ``required_types`` (a set a
    new sample entry can be built from), else None (a partial update)."""
    types = {nal_type(n) for n in nals if n}
    if not types.issuperset(required_types):
        return None
    return b"".join(START_CODE + n for n in nals)
