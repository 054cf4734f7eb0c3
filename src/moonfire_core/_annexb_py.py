"""Annex B byte streams → AVC length-prefixed samples (brief §4.1, "Sample transform").

This is the readable reference; ``_annexb_c.pyx`` is its compiled twin with the same names,
results, exceptions and messages.

Cameras hand us H.264 access units in Annex B form: each NAL unit is preceded by a start code,
two or more zero bytes then ``01`` (the brief's regex ``\\x00{2,}\\x01``).  Sample files and
``.mp4`` readers want the AVC form instead: each NAL unit preceded by its length as a 4-byte
big-endian integer (the ``avcC`` says ``lengthSizeMinusOne = 3``).

Splitting rules, shared by both twins:

* the data must begin with a start code (``00 00 01``, ``00 00 00 01`` or more zeros before the
  ``01``); anything else is a ``ValueError`` naming offset 0 and the bytes found there;
* zero bytes just before a start code belong to the start code, not to the NAL unit before it
  (Annex B's ``trailing_zero_8bits``/``zero_byte``);
* zero bytes at the very end of the data stay in the last NAL unit (no start code follows, so
  they may be its ``cabac_zero_word``\\ s; this is what the regex split does);
* empty NAL units (two start codes back to back) are dropped;
* NAL bytes are copied verbatim, emulation prevention bytes (``00 00 03``) included.
"""

import re

from ._bytes_like import byte_view

__all__ = ["annex_b_to_avc", "is_annex_b", "split_annex_b"]

#: What the functions accept: anything with a contiguous byte buffer.
_BytesLike = bytes | bytearray | memoryview

_START_CODE = re.compile(rb"\x00{2,}\x01")
_MAX_AVC_NAL_LENGTH = 0xFFFFFFFF


def is_annex_b(data: _BytesLike) -> bool:
    """True when ``data`` starts with a 3- or 4-byte start code (``00 00 01``/``00 00 00 01``).

    This is the brief's test for "extradata is Annex B, not an AVCDecoderConfigurationRecord"
    (a record starts with version ``01``, so it can never match).
    """
    head = bytes(byte_view(data)[:4])
    return head[:3] == b"\x00\x00\x01" or head == b"\x00\x00\x00\x01"


def split_annex_b(data: _BytesLike) -> list[bytes]:
    """The NAL units of an Annex B byte stream, in order, without start codes."""
    raw = data if type(data) is bytes else bytes(byte_view(data))
    if _START_CODE.match(raw) is None:
        raise _missing_start_code(raw)
    # The leading start code makes the first piece empty; empty NAL units are dropped anyway.
    return [nal for nal in _START_CODE.split(raw) if nal]


def annex_b_to_avc(data: _BytesLike) -> bytes:
    """Rewrite an Annex B access unit as 4-byte big-endian length + NAL, for each NAL unit."""
    pieces = []
    for nal in split_annex_b(data):
        if len(nal) > _MAX_AVC_NAL_LENGTH:
            raise ValueError(
                f"NAL unit of {len(nal)} bytes does not fit a 4-byte AVC length prefix"
            )
        pieces.append(len(nal).to_bytes(4, "big"))
        pieces.append(nal)
    return b"".join(pieces)



def _missing_start_code(raw: bytes) -> ValueError:
    """The error both twins raise for data that does not begin with a start code."""
    if not raw:
        return ValueError("Annex B data is empty: expected a start code at offset 0")
    return ValueError(
        f"Annex B data does not begin with a start code: offset 0 holds {raw[:4].hex(' ')}"
    )
