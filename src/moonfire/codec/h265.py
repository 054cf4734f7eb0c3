"""H.265 (HEVC) sample entries: camera extradata → ISO/IEC 14496-15 ``hvc1`` box.

Like H.264 (``moonfire.codec.h264``), a camera describes its stream through ffmpeg's
``extradata`` in one of two forms:

* **Annex B** (what PyAV gives over RTSP): VPS, SPS and PPS NAL units behind start codes.  We
  build the HEVCDecoderConfigurationRecord (``hvcC``) ourselves with 4-byte NAL lengths, and the
  packets are Annex B too, so the entry says ``need_transform``;
* otherwise an **HEVCDecoderConfigurationRecord** already (a file's ``hvcC``): copied verbatim,
  and packets are already length-prefixed.

The box is ``hvc1``, not ``hev1``: every parameter set is in ``hvcC`` (array_completeness = 1),
which is what Apple's players require.  So that the samples agree with that, ``to_sample`` drops
in-band VPS/SPS/PPS that repeat the entry's own (cameras send them before every key frame);
a parameter set that differs is kept, so a decoder still sees a partial in-band update.

We require at least one VPS, exactly one SPS (the entry has one picture size) and at least one
PPS; other NAL types (AUD, SEI) are not part of the decoder configuration and are ignored.  The
record's ``min_spatial_segmentation_idc`` and ``parallelismType`` are 0 ("no information",
always conformant: the real values are in the SPS VUI and the PPS, which we don't parse), and
avgFrameRate/constantFrameRate are 0, as FFmpeg writes them; FFmpeg's own ``hvcC`` for the same
parameter sets is byte-identical (tests/test_h265.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from moonfire.codec.base import CodecSampleEntry
from moonfire.codec.h265_sps import (
    IRAP_NAL_TYPES,
    NAL_TYPE_AUD,
    NAL_TYPE_PPS,
    NAL_TYPE_SEI_PREFIX,
    NAL_TYPE_SEI_SUFFIX,
    NAL_TYPE_SPS,
    NAL_TYPE_VPS,
    H265Error,
    ProfileTierLevel,
    SpsError,
    SpsInfo,
    nal_type,
    parse_sps,
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
    "FOURCC",
    "PLAYERS",
    "IRAP_NAL_TYPES",
    "NAL_TYPE_AUD",
    "NAL_TYPE_PPS",
    "NAL_TYPE_SEI_PREFIX",
    "NAL_TYPE_SEI_SUFFIX",
    "NAL_TYPE_SPS",
    "NAL_TYPE_VPS",
    "DecoderConfigError",
    "H265Error",
    "HevcDecoderConfig",
    "HevcSampleEntry",
    "ProfileTierLevel",
    "SampleEntryError",
    "SampleError",
    "SpsError",
    "SpsInfo",
    "codec_string",
    "hevc_decoder_config",
    "hvc1_box",
    "nal_type",
    "parse_hevc_decoder_config",
    "parse_sps",
    "sample_entry_from_extradata",
    "sample_entry_from_hvc1",
]

#: The sample entry box type this module reads and writes.
FOURCC = b"hvc1"

#: Who plays H.265, for the messages of commands that write it (``moonfire export``).
PLAYERS = (
    "H.265 video: VLC, mpv, ffplay, Safari/QuickTime and Chrome/Edge with hardware HEVC "
    "decoding play it; most Linux builds of Chromium and Firefox don't"
)

#: The parameter set types, in the order ``hvcC`` lists their arrays.
PARAMETER_SET_TYPES = (NAL_TYPE_VPS, NAL_TYPE_SPS, NAL_TYPE_PPS)
_PARAMETER_SET_NAMES = {NAL_TYPE_VPS: "VPS", NAL_TYPE_SPS: "SPS", NAL_TYPE_PPS: "PPS"}
#: The fixed fields of an HEVCDecoderConfigurationRecord, before numOfArrays.
_RECORD_HEADER_BYTES = 22


class DecoderConfigError(H265Error):
    """Extradata is neither usable Annex B VPS/SPS/PPS nor a valid HEVC decoder config record."""


class SampleEntryError(H265Error):
    """A stored ``hvc1`` box is malformed or disagrees with its own SPS."""


class SampleError(H265Error):
    """A sample's length-prefixed NAL units overrun the sample."""


# --- HEVCDecoderConfigurationRecord -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HevcDecoderConfig:
    """An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1), as stored in ``hvcC``."""

    profile: ProfileTierLevel
    nal_length_size: int  # bytes of each sample's NAL length prefix
    #: Every NAL unit of the record's arrays, by nal_unit_type, in record order.
    arrays: dict[int, tuple[bytes, ...]]

    def nals(self, nal_unit_type: int) -> tuple[bytes, ...]:
        return self.arrays.get(nal_unit_type, ())


def hevc_decoder_config(vps: Sequence[bytes], sps: bytes, pps: Sequence[bytes]) -> bytes:
    """The record for these parameter sets: general profile/tier/level, chroma format, bit
    depths and temporal layering from the SPS, 4-byte NAL lengths, then one array per type
    (VPS, SPS, PPS) with array_completeness = 1, as ``hvc1`` requires."""
    info = parse_sps(sps)
    arrays = {NAL_TYPE_VPS: list(vps), NAL_TYPE_SPS: [sps], NAL_TYPE_PPS: list(pps)}
    for kind, nals in arrays.items():
        name = _PARAMETER_SET_NAMES[kind]
        if not 1 <= len(nals) <= 0xFFFF:
            raise DecoderConfigError(f"{len(nals)} {name} NAL units; a record holds 1 to 65535")
        for nal in nals:
            if not 2 <= len(nal) <= 0xFFFF:
                raise DecoderConfigError(f"{name} of {len(nal)} bytes; expected 2 to 65535")
            if nal_type(nal) != kind:
                raise DecoderConfigError(
                    f"NAL unit type {nal_type(nal)} given as a {name}; expected type {kind}"
                )
    ptl = info.profile
    parts = [
        struct.pack(
            ">BBI6sBHBBBBHBB",
            1,  # configurationVersion
            (ptl.profile_space << 6) | (ptl.tier_flag << 5) | ptl.profile_idc,
            ptl.compatibility_flags,
            ptl.constraint_flags.to_bytes(6, "big"),
            ptl.level_idc,
            0xF000,  # reserved 1111, min_spatial_segmentation_idc 0: no information
            0xFC,  # reserved 111111, parallelismType 0: unknown
            0xFC | info.chroma_format_idc,
            0xF8 | (info.bit_depth_luma - 8),
            0xF8 | (info.bit_depth_chroma - 8),
            0,  # avgFrameRate: unspecified
            # constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
            (info.max_sub_layers << 3) | (info.temporal_id_nesting << 2) | 3,
            len(arrays),
        )
    ]
    for kind, nals in arrays.items():
        parts.append(struct.pack(">BH", 0x80 | kind, len(nals)))  # array_completeness = 1
        for nal in nals:
            parts += [struct.pack(">H", len(nal)), nal]
    return b"".join(parts)


def parse_hevc_decoder_config(record: bytes) -> HevcDecoderConfig:
    """Validate and split an HEVCDecoderConfigurationRecord; it must hold exactly one SPS
    (the sample entry has one picture size)."""
    record = bytes(record)
    if len(record) < _RECORD_HEADER_BYTES + 1:
        raise DecoderConfigError(
            f"HEVCDecoderConfigurationRecord of {len(record)} bytes is too short; "
            f"at least {_RECORD_HEADER_BYTES + 1} expected"
        )
    if record[0] != 1:
        raise DecoderConfigError(
            f"HEVCDecoderConfigurationRecord version is {record[0]} at offset 0; expected 1"
        )
    profile = ProfileTierLevel(
        profile_space=record[1] >> 6,
        tier_flag=bool(record[1] & 0x20),
        profile_idc=record[1] & 0x1F,
        compatibility_flags=int.from_bytes(record[2:6], "big"),
        constraint_flags=int.from_bytes(record[6:12], "big"),
        level_idc=record[12],
    )
    arrays: dict[int, list[bytes]] = {}
    offset = _RECORD_HEADER_BYTES + 1
    for i in range(record[_RECORD_HEADER_BYTES]):
        if offset + 3 > len(record):
            raise DecoderConfigError(
                f"HEVCDecoderConfigurationRecord truncated at offset {offset}: no header for "
                f"array {i + 1} of {record[_RECORD_HEADER_BYTES]}"
            )
        kind = record[offset] & 0x3F
        (count,) = struct.unpack_from(">H", record, offset + 1)
        nals, offset = u16_length_nals(
            record,
            offset + 3,
            count,
            DecoderConfigError,
            "HEVCDecoderConfigurationRecord",
            "NAL unit",
            f" of type {kind}",
        )
        if nals:  # an empty array leaves no entry, so ``arrays`` lists what the record holds
            arrays.setdefault(kind, []).extend(nals)
    sps_count = len(arrays.get(NAL_TYPE_SPS, ()))
    if sps_count != 1:
        raise DecoderConfigError(
            f"HEVCDecoderConfigurationRecord has {sps_count} SPS NAL units; expected 1"
        )
    return HevcDecoderConfig(
        profile=profile,
        nal_length_size=(record[21] & 0x03) + 1,
        arrays={kind: tuple(nals) for kind, nals in arrays.items()},
    )


# --- codec string and box -----------------------------------------------------------------------


def codec_string(profile: ProfileTierLevel) -> str:
    """``hvc1.<space><profile>.<compatibility>.<tier><level>[.<constraint bytes>]`` (ISO/IEC
    14496-15 annex E): the compatibility flags bit-reversed in hex, the six constraint bytes in
    hex with trailing zero bytes dropped, e.g. ``hvc1.1.6.L93.B0``."""
    space = ("", "A", "B", "C")[profile.profile_space]
    compatibility = int(f"{profile.compatibility_flags:032b}"[::-1], 2)
    tier = "H" if profile.tier_flag else "L"
    constraints = profile.constraint_flags.to_bytes(6, "big").rstrip(b"\x00")
    fields = [
        "hvc1",
        f"{space}{profile.profile_idc}",
        f"{compatibility:X}",
        f"{tier}{profile.level_idc}",
    ]
    return ".".join(fields + [f"{byte:X}" for byte in constraints])


def hvc1_box(hevc_config_record: bytes, width: int, height: int) -> bytes:
    """A VisualSampleEntry ``hvc1`` box (ISO/IEC 14496-15 §8.4.1) holding an ``hvcC`` box."""
    hvcc = struct.pack(">I4s", 8 + len(hevc_config_record), b"hvcC") + hevc_config_record
    return visual_sample_entry(FOURCC, width, height, hvcc)


# --- sample entries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HevcSampleEntry(CodecSampleEntry):
    """A ``video_sample_entry`` of H.265: the ``hvc1`` box plus what the recorder needs.

    Implements ``moonfire.codec.base.SampleEntry`` (``nal_length_size`` comes from ``hvcC``).
    ``in_record`` holds the record's parameter sets (trailing zero bytes removed), so that
    ``to_sample`` can drop their in-band repeats.
    """

    in_record: frozenset[bytes] = field(default_factory=frozenset)

    def to_sample(self, packet: bytes) -> bytes:
        """Annex B → 4-byte length prefixes, without the VPS/SPS/PPS ``hvcC`` already holds."""
        if not self.need_transform:
            return packet
        sample = annex_b_to_avc(packet)
        # Only NAL headers are looked at (no copies of slice data): this runs for every frame.
        kept: list[memoryview] = []
        view = memoryview(sample)
        offset = copied_up_to = 0
        while offset < len(sample):
            start = offset + 4
            end = start + int.from_bytes(view[offset:start], "big")
            if (
                end > start
                and (sample[start] >> 1) & 0x3F in _PARAMETER_SET_NAMES
                and _bare(sample[start:end]) in self.in_record
            ):
                kept.append(view[copied_up_to:offset])
                copied_up_to = end
            offset = end
        if not copied_up_to:
            return sample
        kept.append(view[copied_up_to:])
        return b"".join(kept)

    def is_key_frame(self, sample: bytes) -> bool:
        """True if the sample holds a slice of an IRAP picture (NAL types 16-23)."""
        return any(
            nal and nal_type(nal) in IRAP_NAL_TYPES
            for nal in length_prefixed_nals(sample, self.nal_length_size, SampleError)
        )

    def parameter_sets(self, annex_b: bytes) -> tuple[bytes, ...]:
        return annex_b_parameter_sets(annex_b, PARAMETER_SET_TYPES, nal_type)

    def extradata_from_parameter_sets(self, nals: Sequence[bytes]) -> bytes | None:
        return extradata_from_parameter_sets(nals, PARAMETER_SET_TYPES, nal_type)


def _bare(nal: bytes) -> bytes:
    """A parameter set without trailing zero bytes: they are Annex B trailing_zero_8bits, not
    part of the NAL unit (its last byte holds the RBSP stop bit), yet extradata may keep them."""
    return nal.rstrip(b"\x00")


def _entry(
    data: bytes, config: HevcDecoderConfig, info: SpsInfo, need_transform: bool
) -> HevcSampleEntry:
    return HevcSampleEntry(
        data=data,
        width=info.width,
        height=info.height,
        rfc6381_codec=codec_string(config.profile),
        need_transform=need_transform,
        nal_length_size=config.nal_length_size,
        in_record=frozenset(_bare(n) for kind in PARAMETER_SET_TYPES for n in config.nals(kind)),
    )


def sample_entry_from_extradata(extradata: bytes) -> HevcSampleEntry:
    """The sample entry for a stream, from its ffmpeg ``extradata`` (see the module docstring)."""
    extradata = bytes(extradata)
    if not extradata:
        raise DecoderConfigError(
            "camera sent no VPS/SPS/PPS in its stream setup (extradata is empty)"
        )
    if not is_annex_b(extradata):
        config = parse_hevc_decoder_config(extradata)
        info = parse_sps(config.nals(NAL_TYPE_SPS)[0])
        box = hvc1_box(extradata, info.width, info.height)
        return _entry(box, config, info, need_transform=False)
    found = nals_by_type(extradata, PARAMETER_SET_TYPES, nal_type, header_bytes=2)
    if not found[NAL_TYPE_VPS]:
        raise DecoderConfigError("extradata has 0 VPS NAL units; expected at least 1")
    if len(found[NAL_TYPE_SPS]) != 1:
        raise DecoderConfigError(
            f"extradata has {len(found[NAL_TYPE_SPS])} SPS NAL units; expected 1"
        )
    if not found[NAL_TYPE_PPS]:
        raise DecoderConfigError("extradata has 0 PPS NAL units; expected at least 1")
    record = hevc_decoder_config(found[NAL_TYPE_VPS], found[NAL_TYPE_SPS][0], found[NAL_TYPE_PPS])
    info = parse_sps(found[NAL_TYPE_SPS][0])
    box = hvc1_box(record, info.width, info.height)
    return _entry(box, parse_hevc_decoder_config(record), info, need_transform=True)


def sample_entry_from_hvc1(data: bytes) -> HevcSampleEntry:
    """Parse a stored ``hvc1`` box back into an ``HevcSampleEntry`` (for playback and checks).

    The box must hold an ``hvcC`` child (others, e.g. ``pasp``, are allowed) and its
    width/height fields must match the SPS; ``need_transform`` is false because what is stored
    is already length-prefixed.
    """
    data = bytes(data)
    width, height, record = read_visual_sample_entry(data, FOURCC, b"hvcC", SampleEntryError)
    config = parse_hevc_decoder_config(record)
    info = parse_sps(config.nals(NAL_TYPE_SPS)[0])
    if (info.width, info.height) != (width, height):
        raise SampleEntryError(
            f"hvc1 box says {width}x{height} but its SPS gives {info.width}x{info.height}"
        )
    return _entry(data, config, info, need_transform=False)
