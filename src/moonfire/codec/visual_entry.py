"""The codec-independent part of a video sample entry box (ISO/IEC 14496-12 §12.1.3).

Every video sample entry (``avc1``, ``hvc1``, ...) is the same 86-byte VisualSampleEntry header,
with the codec's configuration box (``avcC``, ``hvcC``) and optional boxes (``pasp``) as
children.  Codec modules build and read their boxes with these two functions.
"""

from __future__ import annotations

import struct

from moonfire.codec.base import CodecError

__all__ = ["HEADER_BYTES", "child_box", "visual_sample_entry"]

#: Size of a VisualSampleEntry without its children.
HEADER_BYTES = 86


def visual_sample_entry(fourcc: bytes, width: int, height: int, children: bytes) -> bytes:
    """A VisualSampleEntry box of type ``fourcc`` for a ``width`` x ``height`` picture, holding
    the already-built child boxes ``children``."""
    header = struct.pack(
        ">I4s6xH16xHHIIIH32xHh",
        HEADER_BYTES + len(children),
        fourcc,
        1,  # data_reference_index
        width,
        height,
        0x00480000,  # horizresolution: 72 dpi, 16.16
        0x00480000,  # vertresolution
        0,  # reserved
        1,  # frame_count
        0x0018,  # depth: colour, no alpha
        -1,  # pre_defined
    )
    return header + children


def child_box(data: bytes, wanted: bytes, error: type[CodecError]) -> bytes:
    """The payload of the first child box of type ``wanted`` of the sample entry ``data``,
    or ``error`` naming the offset of a malformed child, or the missing box."""
    name = data[4:8].decode("latin-1")
    offset = HEADER_BYTES
    while offset < len(data):
        if offset + 8 > len(data):
            raise error(f"{name} box truncated at offset {offset}: partial child header")
        size, box_type = struct.unpack_from(">I4s", data, offset)
        if size < 8 or offset + size > len(data):
            raise error(
                f"{name} box: child box {box_type!r} at offset {offset} has size {size}; "
                f"{len(data) - offset} bytes remain"
            )
        if box_type == wanted:
            return data[offset + 8 : offset + size]
        offset += size
    raise error(f"{name} box has no {wanted.decode('latin-1')} child")
