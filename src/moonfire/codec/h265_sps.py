"""H.265 (HEVC) NAL unit types and sequence parameter sets: what an ``hvc1`` entry must declare.

ITU-T H.265 §7.3.2.2, read only as far as the ``hvcC`` record and the sample entry need:
``profile_tier_level`` (profile, tier, level, compatibility and constraint flags: the record's
header and the RFC 6381 codec string), chroma format, the coded picture size and its
conformance window (a camera coding 1088 lines shows 1080), the bit depths, and
sps_max_num_reorder_pics (how far pictures are reordered: what deriving decode times from
presentation times needs for B-frame cameras, see ``reorder_depth``).  Pure Python
because it runs once per camera session, not per frame; the bit reader and emulation-prevention
removal are H.264's (the syntax is the same), with their errors re-raised as ``SpsError``.
``moonfire.codec.h265`` re-exports the names it needs from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from moonfire.codec import h264_sps
from moonfire.codec.base import CodecError

__all__ = [
    "IRAP_NAL_TYPES",
    "NAL_TYPE_AUD",
    "NAL_TYPE_PPS",
    "NAL_TYPE_SEI_PREFIX",
    "NAL_TYPE_SEI_SUFFIX",
    "NAL_TYPE_SPS",
    "NAL_TYPE_VPS",
    "H265Error",
    "ProfileTierLevel",
    "SpsError",
    "SpsInfo",
    "nal_type",
    "parse_sps",
    "reorder_depth",
]

# nal_unit_type values (H.265 Table 7-1): the only place moonfire spells them out.
#: Intra random access point pictures (BLA, IDR, CRA and the reserved IRAP types 22-23): a
#: decoder can start at one, so these are the key frames.
IRAP_NAL_TYPES = range(16, 24)
NAL_TYPE_VPS = 32
NAL_TYPE_SPS = 33
NAL_TYPE_PPS = 34
NAL_TYPE_AUD = 35  # access unit delimiter
NAL_TYPE_SEI_PREFIX = 39
NAL_TYPE_SEI_SUFFIX = 40

#: Picture sides must fit the sample entry's 16-bit width/height fields.
_MAX_SIDE = 0xFFFF

#: Pictures a decoded picture buffer may hold, at most (H.265 §A.4.2, MaxDpbSize).
MAX_DPB_SIZE = 16


class H265Error(CodecError):
    """Malformed H.265 configuration data; the message names what and where."""


class SpsError(H265Error):
    """An H.265 sequence parameter set is truncated or holds a value the standard forbids."""


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of an H.265 NAL unit: bits 1-6 of its two-byte header (§7.3.1.2)."""
    return (nal[0] >> 1) & 0x3F


@dataclass(frozen=True, slots=True)
class ProfileTierLevel:
    """The ``general_*`` fields of profile_tier_level() (§7.3.3), as ``hvcC`` copies them."""

    profile_space: int  # 0 for every profile so far; 1-3 reserved
    tier_flag: bool  # High tier
    profile_idc: int  # 1 Main, 2 Main 10, 3 Main Still Picture, 4 range extensions, ...
    #: general_profile_compatibility_flag[0..31], flag[0] in the top bit (as coded).
    compatibility_flags: int
    #: The 48 bits from general_progressive_source_flag on, progressive_source in the top bit.
    constraint_flags: int
    level_idc: int  # 30 times the level number: 93 is level 3.1


@dataclass(frozen=True, slots=True)
class SpsInfo:
    """The fields of an H.265 sequence parameter set that the sample entry needs."""

    video_parameter_set_id: int
    max_sub_layers: int  # sps_max_sub_layers_minus1 + 1: hvcC numTemporalLayers
    temporal_id_nesting: bool  # hvcC temporalIdNested
    profile: ProfileTierLevel
    seq_parameter_set_id: int
    chroma_format_idc: int  # 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4
    separate_colour_plane: bool
    coded_width: int  # pic_width_in_luma_samples, before the conformance window
    coded_height: int
    crop_left: int  # in luma samples (conf_win_*_offset times SubWidthC/SubHeightC)
    crop_right: int
    crop_top: int
    crop_bottom: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int  # displayed size, inside the conformance window
    height: int
    #: sps_max_num_reorder_pics of the highest sub-layer (HighestTid = max_sub_layers - 1):
    #: the whole stream's reordering, which is what a recorder receives.
    max_num_reorder_pics: int


def reorder_depth(info: SpsInfo) -> int:
    """How many pictures a decoder may hold back before output: ``d`` in "a picture's decode
    time is the (d+1)-th largest presentation time seen so far".

    H.265 makes every SPS state it (sps_max_num_reorder_pics is not optional, unlike H.264's
    VUI field), so nothing is inferred here.
    """
    return info.max_num_reorder_pics


def _ue_at_most(bits: h264_sps.BitReader, name: str, limit: int) -> int:
    value = bits.read_ue()
    if value > limit:
        raise SpsError(f"H.265 SPS {name} is {value}; at most {limit} is allowed")
    return value


def _read_profile_tier_level(
    bits: h264_sps.BitReader, max_sub_layers_minus1: int
) -> ProfileTierLevel:
    """profile_tier_level(1, max_sub_layers_minus1) (§7.3.3): the general fields, then skip the
    sub-layer ones (the record describes the whole stream)."""
    profile_space = bits.read_bits(2)
    tier_flag = bits.read_flag()
    profile_idc = bits.read_bits(5)
    compatibility_flags = bits.read_bits(32)
    constraint_flags = bits.read_bits(48)
    level_idc = bits.read_bits(8)
    present = [(bits.read_flag(), bits.read_flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.read_bits(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        if profile_present:
            bits.read_bits(88)  # sub_layer profile space .. constraint flags
        if level_present:
            bits.read_bits(8)  # sub_layer_level_idc
    return ProfileTierLevel(
        profile_space=profile_space,
        tier_flag=tier_flag,
        profile_idc=profile_idc,
        compatibility_flags=compatibility_flags,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
    )


def parse_sps(sps: bytes) -> SpsInfo:
    """Parse an H.265 SPS NAL unit (two-byte header included, emulation prevention allowed).

    Reads through the sub-layer ordering info (the reorder depth); what follows (reference
    picture sets, VUI) is not needed.
    """
    if len(sps) < 2:
        raise SpsError(f"H.265 SPS NAL unit of {len(sps)} bytes is too short for its header")
    found = nal_type(sps)
    if found != NAL_TYPE_SPS:
        raise SpsError(f"NAL unit type is {found}; an H.265 SPS has type {NAL_TYPE_SPS}")
    try:
        return _parse_sps_rbsp(h264_sps.BitReader(h264_sps.rbsp_from_nal(sps), "H.265 SPS"))
    except h264_sps.BitstreamError as e:
        raise SpsError(str(e)) from None


def _parse_sps_rbsp(bits: h264_sps.BitReader) -> SpsInfo:
    bits.read_bits(16)  # NAL header, checked by the caller
    video_parameter_set_id = bits.read_bits(4)
    max_sub_layers_minus1 = bits.read_bits(3)
    if max_sub_layers_minus1 > 6:
        raise SpsError(f"H.265 SPS sps_max_sub_layers_minus1 is {max_sub_layers_minus1}; at most 6")
    temporal_id_nesting = bits.read_flag()
    profile = _read_profile_tier_level(bits, max_sub_layers_minus1)
    seq_parameter_set_id = _ue_at_most(bits, "sps_seq_parameter_set_id", 15)
    chroma_format_idc = _ue_at_most(bits, "chroma_format_idc", 3)
    separate_colour_plane = chroma_format_idc == 3 and bits.read_flag()
    coded_width = bits.read_ue()
    coded_height = bits.read_ue()
    for name, side in (
        ("pic_width_in_luma_samples", coded_width),
        ("pic_height_in_luma_samples", coded_height),
    ):
        if not 0 < side <= _MAX_SIDE:
            raise SpsError(f"H.265 SPS {name} is {side}; expected 1 to {_MAX_SIDE}")
    window = [0, 0, 0, 0]  # left, right, top, bottom, in chroma samples
    if bits.read_flag():  # conformance_window_flag
        window = [bits.read_ue() for _ in range(4)]
    bit_depth_luma = 8 + _ue_at_most(bits, "bit_depth_luma_minus8", 8)
    bit_depth_chroma = 8 + _ue_at_most(bits, "bit_depth_chroma_minus8", 8)
    bits.read_ue()  # log2_max_pic_order_cnt_lsb_minus4
    max_num_reorder_pics = _read_max_num_reorder_pics(bits, max_sub_layers_minus1)

    sub_width, sub_height = h264_sps.chroma_subsampling(chroma_format_idc, separate_colour_plane)
    left, right = window[0] * sub_width, window[1] * sub_width
    top, bottom = window[2] * sub_height, window[3] * sub_height
    width, height = coded_width - left - right, coded_height - top - bottom
    if width <= 0 or height <= 0:
        raise SpsError(
            f"H.265 SPS conformance window (left {left}, right {right}, top {top}, bottom "
            f"{bottom}) leaves nothing of the {coded_width}x{coded_height} coded picture"
        )
    return SpsInfo(
        video_parameter_set_id=video_parameter_set_id,
        max_sub_layers=max_sub_layers_minus1 + 1,
        temporal_id_nesting=temporal_id_nesting,
        profile=profile,
        seq_parameter_set_id=seq_parameter_set_id,
        chroma_format_idc=chroma_format_idc,
        separate_colour_plane=separate_colour_plane,
        coded_width=coded_width,
        coded_height=coded_height,
        crop_left=left,
        crop_right=right,
        crop_top=top,
        crop_bottom=bottom,
        bit_depth_luma=bit_depth_luma,
        bit_depth_chroma=bit_depth_chroma,
        width=width,
        height=height,
        max_num_reorder_pics=max_num_reorder_pics,
    )


def _read_max_num_reorder_pics(bits: h264_sps.BitReader, max_sub_layers_minus1: int) -> int:
    """sps_sub_layer_ordering_info_present_flag and the ordering info (§7.3.2.2.1): the highest
    sub-layer's sps_max_num_reorder_pics.

    Without the flag only the highest sub-layer is coded (the lower ones are inferred equal to
    it).  Values are checked as FFmpeg's decoder checks them, so that what FFmpeg decodes
    parses here: a DPB of more than MaxDpbSize pictures, or more reordering than the DPB
    could ever hold, is an error; reordering more than this SPS's own DPB (a common slip)
    is tolerated.
    """
    present = bits.read_flag()
    max_num_reorder_pics = 0
    for _ in range(0 if present else max_sub_layers_minus1, max_sub_layers_minus1 + 1):
        _ue_at_most(bits, "sps_max_dec_pic_buffering_minus1", MAX_DPB_SIZE - 1)
        max_num_reorder_pics = _ue_at_most(bits, "sps_max_num_reorder_pics", MAX_DPB_SIZE - 1)
        bits.read_ue()  # sps_max_latency_increase_plus1
    return max_num_reorder_pics
