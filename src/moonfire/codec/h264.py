"""H.264 sample entries: camera extradata → ISO/IEC 14496-12 ``avc1`` box (brief §4.1, §5.9).

A recording's ``video_sample_entry`` row holds a complete ``avc1`` VisualSampleEntry box, the
bytes the virtual ``.mp4`` copies into ``stsd``.  Cameras describe their stream through ffmpeg's
``extradata`` in one of two forms:

* **Annex B** (starts with ``00 00 01``/``00 00 00 01``): SPS and PPS NAL units behind start
  codes.  We build the AVCDecoderConfigurationRecord (``avcC``) ourselves, and the packets will
  also be Annex B, so the entry says ``need_transform``: every sample must go through
  ``moonfire_core.annexb.annex_b_to_avc`` before it is written.
* otherwise an **AVCDecoderConfigurationRecord** already; it is copied verbatim into the
  ``avcC`` box and packets are already length-prefixed.

Era 1 required the Annex B extradata to hold exactly one SPS and one PPS.  We require exactly
one SPS (the entry has one picture size) and at least one PPS (all of them go into the record);
other NAL types (AUD, SEI) are ignored because they are not part of the decoder configuration.

The width and height written into the box come from the SPS *after frame cropping*, so a 1080p
camera, which codes 1088 lines and crops 8, gets 1920x1080.  ``moonfire.codec.h264_sps`` parses the
SPS for that; its names are re-exported here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from moonfire.codec.base import CodecSampleEntry
from moonfire.codec.h264_sps import (
    NAL_TYPE_AUD,
    NAL_TYPE_IDR,
    NAL_TYPE_NON_IDR,
    NAL_TYPE_PPS,
    NAL_TYPE_SEI,
    NAL_TYPE_SPS,
    BitReader,
    BitstreamError,
    H264Error,
    SpsError,
    SpsInfo,
    nal_type,
    parse_sps,
    rbsp_from_nal,
)
from moonfire.codec.nal_units import (
    annex_b_parameter_sets,
    extradata_from_parameter_sets,
    length_prefixed_nals,
    nals_by_type,
    u16_length_nals,
)
from moonfire.codec.visual_entry import read_visual_sample_entry, visual_sample_entry
from moonfire_core.annexb import annex_b_to_avc, is_annex_b

__all__ = [
    "NAL_TYPE_AUD",
    "NAL_TYPE_IDR",
    "NAL_TYPE_NON_IDR",
    "NAL_TYPE_PPS",
    "NAL_TYPE_SEI",
    "NAL_TYPE_SPS",
    "AvcDecoderConfig",
    "AvcSampleEntry",
    "BitReader",
    "BitstreamError",
    "DecoderConfigError",
    "H264Error",
    "SampleEntryError",
    "SampleError",
    "SpsError",
    "SpsInfo",
    "avc1_box",
    "avc_decoder_config",
    "nal_type",
    "parse_avc_decoder_config",
    "parse_sps",
    "rbsp_from_nal",
    "sample_entry_from_avc1",
    "sample_entry_from_extradata",
]

#: The sample entry box type this module reads and writes.
FOURCC = b"avc1"

_PARAMETER_SET_TYPES = (NAL_TYPE_SPS, NAL_TYPE_PPS)


class DecoderConfigError(H264Error):
    """Extradata is neither usable Annex B SPS/PPS nor a valid AVCDecoderConfigurationRecord."""


class SampleEntryError(H264Error):
    """A stored ``avc1`` box is malformed or disagrees with its own SPS."""


class SampleError(H264Error):
    """A sample's length-prefixed NAL units overrun the sample."""


# --- AVCDecoderConfigurationRecord --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AvcDecoderConfig:
    """An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1), as stored in ``avcC``."""

    profile_idc: int
    profile_compatibility: int
    level_idc: int
    nal_length_size: int  # bytes of each sample's NAL length prefix
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def avc_decoder_config(sps: bytes, pps: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Build the record the brief describes: version 1, profile/compatibility/level from SPS
    bytes 1–3, 4-byte NAL lengths (``0xff``), one SPS (``0xe1``), then the PPS list."""
    if len(sps) < 4:
        raise DecoderConfigError(f"SPS of {len(sps)} bytes is too short; at least 4 expected")
    if not 1 <= len(pps) <= 255:
        raise DecoderConfigError(f"{len(pps)} PPS NAL units; a record holds 1 to 255")
    for name, nal in [("SPS", sps), *(("PPS", p) for p in pps)]:
        if len(nal) > 0xFFFF:
            raise DecoderConfigError(f"{name} of {len(nal)} bytes does not fit a u16 length")
    parts = [bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps]
    parts.append(bytes([len(pps)]))
    for nal in pps:
        parts += [struct.pack(">H", len(nal)), nal]
    return b"".join(parts)


def parse_avc_decoder_config(record: bytes) -> AvcDecoderConfig:
    """Validate and split an AVCDecoderConfigurationRecord.

    Bytes after the PPS list (the high-profile chroma/bit-depth extension) are allowed and
    ignored; the record is always stored verbatim, so nothing is lost.
    """
    record = bytes(record)
    if len(record) < 7:
        raise DecoderConfigError(
            f"AVCDecoderConfigurationRecord of {len(record)} bytes is too short; "
            "at least 7 expected"
        )
    if record[0] != 1:
        raise DecoderConfigError(
            f"AVCDecoderConfigurationRecord version is {record[0]} at offset 0; expected 1"
        )
    offset = 5
    sps, offset = _read_nal_list(record, offset, record[offset] & 0x1F, "SPS")
    if offset >= len(record):
        raise DecoderConfigError(
            f"AVCDecoderConfigurationRecord truncated at offset {offset}: no PPS count"
        )
    pps, offset = _read_nal_list(record, offset, record[offset], "PPS")
    if not sps:
        raise DecoderConfigError("AVCDecoderConfigurationRecord has no SPS; expected at least 1")
    return AvcDecoderConfig(
        profile_idc=record[1],
        profile_compatibility=record[2],
        level_idc=record[3],
        nal_length_size=(record[4] & 0x03) + 1,
        sps=tuple(sps),
        pps=tuple(pps),
    )


def _read_nal_list(record: bytes, offset: int, count: int, name: str) -> tuple[list[bytes], int]:
    """``count`` u16-length-prefixed NAL units starting after the count byte at ``offset``."""
    return u16_length_nals(
        record, offset + 1, count, DecoderConfigError, "AVCDecoderConfigurationRecord", name
    )


# --- sample entries ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AvcSampleEntry(CodecSampleEntry):
    """A ``video_sample_entry`` of H.264: the ``avc1`` box plus what the recorder needs to know.

    Implements ``moonfire.codec.base.SampleEntry`` (``box`` is ``data``, ``codec_string`` is
    ``rfc6381_codec``; ``nal_length_size`` comes from ``avcC``).  ``need_transform`` is true
    when samples arrive in Annex B form and must be converted (``to_sample``) before they are
    written.
    """

    def to_sample(self, packet: bytes) -> bytes:
        return annex_b_to_avc(packet) if self.need_transform else packet

    def is_key_frame(self, sample: bytes) -> bool:
        """True if the sample holds a slice of an IDR picture."""
        return any(
            nal and nal_type(nal) == NAL_TYPE_IDR
            for nal in length_prefixed_nals(sample, self.nal_length_size, SampleError)
        )

    def parameter_sets(self, annex_b: bytes) -> tuple[bytes, ...]:
        return annex_b_parameter_sets(annex_b, _PARAMETER_SET_TYPES, nal_type)

    def extradata_from_parameter_sets(self, nals: Sequence[bytes]) -> bytes | None:
        return extradata_from_parameter_sets(nals, _PARAMETER_SET_TYPES, nal_type)


def avc1_box(avc_config_record: bytes, width: int, height: int) -> bytes:
    """A VisualSampleEntry ``avc1`` box (ISO/IEC 14496-12 §12.1.3) holding an ``avcC`` box."""
    if not (0 < width <= 0xFFFF and 0 < height <= 0xFFFF):
        raise SampleEntryError(f"picture size {width}x{height} does not fit the avc1 u16 fields")
    avcc = struct.pack(">I4s", 8 + len(avc_config_record), b"avcC") + avc_config_record
    return visual_sample_entry(FOURCC, width, height, avcc)


def _rfc6381_codec(sps: bytes) -> str:
    """``avc1.PPCCLL``: profile, constraint flags and level in hex (RFC 6381 §3.3)."""
    return f"avc1.{sps[1:4].hex()}"


def sample_entry_from_extradata(extradata: bytes) -> AvcSampleEntry:
    """The sample entry for a stream, from its ffmpeg ``extradata`` (see the module docstring)."""
    extradata = bytes(extradata)
    if not extradata:
        # Said in camera terms: "a 0-byte record is too short" would send the reader to
        # the avcC parser when the stream setup (SDP sprop-parameter-sets) had no SPS/PPS.
        raise DecoderConfigError("camera sent no SPS/PPS in its stream setup (extradata is empty)")
    if is_annex_b(extradata):
        found = nals_by_type(extradata, _PARAMETER_SET_TYPES, nal_type, header_bytes=1)
        sps_list, pps_list = found[NAL_TYPE_SPS], found[NAL_TYPE_PPS]
        if len(sps_list) != 1:
            raise DecoderConfigError(f"extradata has {len(sps_list)} SPS NAL units; expected 1")
        if not pps_list:
            raise DecoderConfigError("extradata has 0 PPS NAL units; expected at least 1")
        sps = sps_list[0]
        record = avc_decoder_config(sps, pps_list)
        need_transform = True
        nal_length_size = 4  # avc_decoder_config writes 0xff
    else:
        config = parse_avc_decoder_config(extradata)
        sps = config.sps[0]
        record = extradata
        need_transform = False
        nal_length_size = config.nal_length_size
    info = parse_sps(sps)
    return AvcSampleEntry(
        data=avc1_box(record, info.width, info.height),
        width=info.width,
        height=info.height,
        rfc6381_codec=_rfc6381_codec(sps),
        need_transform=need_transform,
        nal_length_size=nal_length_size,
    )


def sample_entry_from_avc1(data: bytes) -> AvcSampleEntry:
    """Parse a stored ``avc1`` box back into an ``AvcSampleEntry`` (for playback and checks).

    The box must hold an ``avcC`` child (other children, e.g. ``pasp``, are allowed) and its
    width/height fields must match the SPS; ``need_transform`` is false because what is stored
    is already length-prefixed.
    """
    data = bytes(data)
    width, height, record = read_visual_sample_entry(data, FOURCC, b"avcC", SampleEntryError)
    config = parse_avc_decoder_config(record)
    sps = config.sps[0]
    info = parse_sps(sps)
    if (info.width, info.height) != (width, height):
        raise SampleEntryError(
            f"avc1 box says {width}x{height} but its SPS gives {info.width}x{info.height}"
        )
    return AvcSampleEntry(
        data=data,
        width=width,
        height=height,
        rfc6381_codec=_rfc6381_codec(sps),
        need_transform=False,
        nal_length_size=config.nal_length_size,
    )
