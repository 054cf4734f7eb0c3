"""The codec-independent part of a video sample entry box (ISO/IEC 14496-12 §12.1.3).

Every video sample entry (``avc1``, ``hvc1``, ...) is the same 86-byte VisualSampleEntry header,
with the codec's configuration box (``avcC``, ``hvcC``) and optional boxes (``pasp``) as
children.  Codec modules build their boxes with ``visual_sample_entry`` and read them with
``read_visual_sample_entry`` (``child_box`` finds any other child).
"""

from __future__ import annotations

import struct

from moonfire.codec.base import CodecError

__all__ = ["HEADER_BYTES", "child_box", "read_visual_sample_entry", "visual_sample_entry"]

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


def read_visual_sample_entry(
    data: bytes, fourcc: bytes, config_box: bytes, error: type[CodecError]
) -> tuple[int, int, bytes]:
    """(width, height, payload of the ``config_box`` child) of a stored ``fourcc`` box, or
    ``error`` naming the field that is wrong: its length, type, size field or children."""
    name = fourcc.decode("latin-1")
    if len(data) < HEADER_BYTES + 8:
        raise error(
            f"{name} box of {len(data)} bytes is too short; at least {HEADER_BYTES + 8} expected"
        )
    size, box_type = struct.unpack_from(">I4s", data, 0)
    if box_type != fourcc:
        raise error(f"box type at offset 4 is {box_type!r}; expected {fourcc!r}")
    if size != len(data):
        raise error(f"{name} box size field is {size} at offset 0; the data is {len(data)} bytes")
    width, height = struct.unpack_from(">HH", data, 32)
    return width, height, child_box(data, config_box, error)
