"""H.264 sequence parameter sets: the picture size a sample entry must declare, and how far
the stream reorders pictures.

ITU-T H.264 §7.3.2.1.1 through frame cropping gives the displayed size: a 1080p camera codes
1088 lines and crops 8, so the entry must say 1920x1080.  The VUI (§E.1.1) is read only for
max_num_reorder_frames, which ``reorder_depth`` turns into the number of frames a decoder may
hold back: what deriving decode times from presentation times needs for B-frame cameras.  Pure
Python because it runs once per camera session, not per frame.  ``moonfire.codec.h264``
re-exports the names it needs from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from moonfire.codec.base import CodecError

__all__ = [
    "NAL_TYPE_AUD",
    "NAL_TYPE_IDR",
    "NAL_TYPE_NON_IDR",
    "NAL_TYPE_PPS",
    "NAL_TYPE_SEI",
    "NAL_TYPE_SPS",
    "BitReader",
    "BitstreamError",
    "H264Error",
    "SpsError",
    "SpsInfo",
    "nal_type",
    "parse_sps",
    "rbsp_from_nal",
    "reorder_depth",
]

# nal_unit_type values (H.264 Table 7-1): the only place moonfire spells them out.
NAL_TYPE_NON_IDR = 1  # coded slice of a non-IDR picture
NAL_TYPE_IDR = 5  # coded slice of an IDR picture: a key frame
NAL_TYPE_SEI = 6
NAL_TYPE_SPS = 7
NAL_TYPE_PPS = 8
NAL_TYPE_AUD = 9  # access unit delimiter

#: profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling matrices.
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class H264Error(CodecError):
    """Malformed H.264 configuration data; the message names what and where."""


class BitstreamError(H264Error):
    """An RBSP ended early or held an invalid exp-Golomb code."""


class SpsError(H264Error):
    """A sequence parameter set holds a value outside what the standard allows."""


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of a NAL unit (the low 5 bits of its first byte)."""
    return nal[0] & 0x1F


# --- bits -------------------------------------------------------------------------------------


def rbsp_from_nal(nal: bytes) -> bytes:
    """Remove emulation prevention bytes: every ``00 00 03`` becomes ``00 00`` (H.264 §7.4.1).

    A ``03`` is dropped when the two bytes kept just before it are zeros, and the count of zeros
    starts over after it: the mirror image of how an encoder inserts them.
    """
    if b"\x00\x00\x03" not in nal:
        return bytes(nal)
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class BitReader:
    """Reads big-endian bit fields and exp-Golomb codes from an RBSP (H.264 §7.2, §9.1).

    ``what`` names the structure in error messages ("SPS truncated at bit 123"); bit positions
    count from the first bit of ``data``.
    """

    def __init__(self, data: bytes, what: str = "RBSP") -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = 8 * len(data)
        self.position = 0
        self.what = what

    @property
    def bits_left(self) -> int:
        return self._bits - self.position

    def read_bits(self, count: int) -> int:
        """The next ``count`` bits as an unsigned integer (``u(n)``)."""
        if count > self.bits_left:
            raise BitstreamError(
                f"{self.what} truncated at bit {self._bits}: "
                f"{count} bits needed from bit {self.position}"
            )
        end = self.position + count
        value = (self._value >> (self._bits - end)) & ((1 << count) - 1)
        self.position = end
        return value

    def read_flag(self) -> bool:
        return self.read_bits(1) == 1

    def read_ue(self) -> int:
        """An unsigned exp-Golomb code (``ue(v)``): n zeros, a one, then n bits of suffix."""
        start = self.position
        zeros = 0
        while self.read_bits(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError(
                    f"{self.what} has an exp-Golomb code at bit {start} with more than 31 "
                    "leading zero bits"
                )
        return (1 << zeros) - 1 + self.read_bits(zeros)

    def read_se(self) -> int:
        """A signed exp-Golomb code (``se(v)``): 0, 1, -1, 2, -2, ... (H.264 §9.1.1)."""
        code = self.read_ue()
        magnitude = (code + 1) // 2
        return magnitude if code % 2 else -magnitude


# --- SPS --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpsInfo:
    """The fields of a sequence parameter set that a sample entry needs."""

    profile_idc: int
    constraint_flags: int  # the whole byte: constraint_set0_flag is its top bit
    level_idc: int
    seq_parameter_set_id: int
    chroma_format_idc: int
    separate_colour_plane: bool
    bit_depth_luma: int
    bit_depth_chroma: int
    frame_mbs_only: bool
    coded_width: int  # in samples, before cropping
    coded_height: int
    crop_left: int  # in samples (frame_crop_*_offset times CropUnitX/CropUnitY)
    crop_right: int
    crop_top: int
    crop_bottom: int
    width: int  # displayed size, after cropping
    height: int
    pic_order_cnt_type: int  # 2: output order is decode order, so nothing is reordered
    #: From the VUI's bitstream restriction; None when the SPS has no VUI, the VUI has no
    #: bitstream restriction, or the VUI is cut short or malformed (see ``reorder_depth``).
    max_num_reorder_frames: int | None


#: Pictures a decoded picture buffer may hold, at most (H.264 §A.3.1 item h, MaxDpbFrames).
MAX_DPB_FRAMES = 16

#: MaxDpbMbs per level_idc (H.264 Table A-1; level 1b is handled in ``_max_dpb_mbs``).
_MAX_DPB_MBS = {
    9: 396,  # level 1b, as the High profiles code it
    10: 396,
    11: 900,
    12: 2376,
    13: 2376,
    20: 2376,
    21: 4752,
    22: 8100,
    30: 8100,
    31: 18000,
    32: 20480,
    40: 32768,
    41: 32768,
    42: 34816,
    50: 110400,
    51: 184320,
    52: 184320,
    60: 696320,
    61: 696320,
    62: 696320,
}

#: Profiles that, with constraint_set3_flag, are intra-only (H.264 §A.2.8-A.2.11, §E.2.1).
_INTRA_CAPABLE_PROFILES = frozenset({44, 86, 100, 110, 122, 244})
_CONSTRAINT_SET3 = 0x10  # in SpsInfo.constraint_flags: set0 is the top bit
PROFILE_BASELINE = 66


def reorder_depth(info: SpsInfo) -> int:
    """How many frames a decoder may hold back before output: ``d`` in "a frame's decode time is
    the (d+1)-th largest presentation time seen so far".

    * max_num_reorder_frames, when the VUI states it (x264 does but for intra-only streams);
    * 0 when the stream cannot reorder: pic_order_cnt_type 2 (output order is decode order),
      Baseline profile (no B slices), or an intra-only profile (constraint_set3_flag with
      profile_idc 44, 86, 100, 110, 122 or 244, which §E.2.1 infers as 0);
    * otherwise the value §E.2.1 infers, MaxDpbFrames: Table A-1's MaxDpbMbs for the level over
      the frame's macroblocks, at most 16.  This is derived rather than always 16 because the
      table is small and because the depth is also a latency: guessing 16 would hold every
      decode time back 16 frames on a stream that can buffer 4.  An unknown level, or one too
      small for the frame size (a camera that misstates its level), gives 16: the only value
      that is safe whatever the stream does.
    """
    if info.max_num_reorder_frames is not None:
        return info.max_num_reorder_frames
    if info.pic_order_cnt_type == 2 or info.profile_idc == PROFILE_BASELINE:
        return 0
    if info.profile_idc in _INTRA_CAPABLE_PROFILES and info.constraint_flags & _CONSTRAINT_SET3:
        return 0
    max_dpb_mbs = _max_dpb_mbs(info)
    frame_mbs = (info.coded_width // 16) * (info.coded_height // 16)
    if max_dpb_mbs is None or max_dpb_mbs < frame_mbs:
        return MAX_DPB_FRAMES
    return min(max_dpb_mbs // frame_mbs, MAX_DPB_FRAMES)


def _max_dpb_mbs(info: SpsInfo) -> int | None:
    """Table A-1's MaxDpbMbs for the SPS's level, None for a level_idc the table lacks.

    Baseline, Main and Extended code level 1b as level_idc 11 with constraint_set3_flag
    (§A.3.1, §A.3.2); the other profiles use level_idc 9, which the table maps directly.
    """
    if info.level_idc == 11 and info.profile_idc in (66, 77, 88):
        if info.constraint_flags & _CONSTRAINT_SET3:
            return _MAX_DPB_MBS[9]
    return _MAX_DPB_MBS.get(info.level_idc)


def _ue_at_most(bits: BitReader, name: str, limit: int) -> int:
    value = bits.read_ue()
    if value > limit:
        raise SpsError(f"SPS {name} is {value}; at most {limit} is allowed")
    return value


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    """Consume a scaling_list() of ``size`` entries (H.264 §7.3.2.1.1.1); the values are unused.

    Coding stops early once a delta makes next_scale 0 ("use the previous value from now on").
    """
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta_scale = bits.read_se()
            if not -128 <= delta_scale <= 127:
                raise SpsError(f"SPS scaling list delta_scale is {delta_scale}; outside -128..127")
            next_scale = (last_scale + delta_scale + 256) % 256
        last_scale = next_scale if next_scale != 0 else last_scale


def parse_sps(sps: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (header byte included, emulation prevention bytes allowed).

    Reads through frame cropping, which must be there and valid, for the cropped picture size;
    then, leniently, the VUI for max_num_reorder_frames (``_read_max_num_reorder_frames``).
    """
    if not sps:
        raise SpsError("SPS NAL unit is empty")
    found = nal_type(sps)
    if found != NAL_TYPE_SPS:
        raise SpsError(f"NAL unit type is {found}; an SPS has type {NAL_TYPE_SPS}")
    bits = BitReader(rbsp_from_nal(sps), "SPS")
    bits.read_bits(8)  # NAL header, checked above
    profile_idc = bits.read_bits(8)
    constraint_flags = bits.read_bits(8)
    level_idc = bits.read_bits(8)
    seq_parameter_set_id = _ue_at_most(bits, "seq_parameter_set_id", 31)

    chroma_format_idc, separate_colour_plane, bit_depth_luma, bit_depth_chroma = 1, False, 8, 8
    if profile_idc in HIGH_PROFILES:
        chroma_format_idc = _ue_at_most(bits, "chroma_format_idc", 3)
        if chroma_format_idc == 3:
            separate_colour_plane = bits.read_flag()
        bit_depth_luma = 8 + _ue_at_most(bits, "bit_depth_luma_minus8", 6)
        bit_depth_chroma = 8 + _ue_at_most(bits, "bit_depth_chroma_minus8", 6)
        bits.read_flag()  # qpprime_y_zero_transform_bypass_flag
        if bits.read_flag():  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if bits.read_flag():  # seq_scaling_list_present_flag[i]
                    _skip_scaling_list(bits, 16 if i < 6 else 64)

    _ue_at_most(bits, "log2_max_frame_num_minus4", 12)
    pic_order_cnt_type = _ue_at_most(bits, "pic_order_cnt_type", 2)
    if pic_order_cnt_type == 0:
        _ue_at_most(bits, "log2_max_pic_order_cnt_lsb_minus4", 12)
    elif pic_order_cnt_type == 1:
        bits.read_flag()  # delta_pic_order_always_zero_flag
        bits.read_se()  # offset_for_non_ref_pic
        bits.read_se()  # offset_for_top_to_bottom_field
        cycle = _ue_at_most(bits, "num_ref_frames_in_pic_order_cnt_cycle", 255)
        for _ in range(cycle):
            bits.read_se()  # offset_for_ref_frame[i]
    bits.read_ue()  # max_num_ref_frames
    bits.read_flag()  # gaps_in_frame_num_value_allowed_flag
    width_in_mbs = bits.read_ue() + 1
    height_in_map_units = bits.read_ue() + 1
    frame_mbs_only = bits.read_flag()
    if not frame_mbs_only:
        bits.read_flag()  # mb_adaptive_frame_field_flag
    bits.read_flag()  # direct_8x8_inference_flag
    crop = [0, 0, 0, 0]  # left, right, top, bottom, in crop units
    if bits.read_flag():  # frame_cropping_flag
        crop = [bits.read_ue() for _ in range(4)]
    max_num_reorder_frames = _read_max_num_reorder_frames(bits)

    coded_width = 16 * width_in_mbs
    coded_height = 16 * height_in_map_units * (1 if frame_mbs_only else 2)
    crop_unit_x, crop_unit_y = chroma_subsampling(chroma_format_idc, separate_colour_plane)
    if not frame_mbs_only:
        crop_unit_y *= 2
    left, right = crop[0] * crop_unit_x, crop[1] * crop_unit_x
    top, bottom = crop[2] * crop_unit_y, crop[3] * crop_unit_y
    width, height = coded_width - left - right, coded_height - top - bottom
    if width <= 0 or height <= 0:
        raise SpsError(
            f"SPS cropping (left {left}, right {right}, top {top}, bottom {bottom}) leaves "
            f"nothing of the {coded_width}x{coded_height} coded picture"
        )
    return SpsInfo(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        seq_parameter_set_id=seq_parameter_set_id,
        chroma_format_idc=chroma_format_idc,
        separate_colour_plane=separate_colour_plane,
        bit_depth_luma=bit_depth_luma,
        bit_depth_chroma=bit_depth_chroma,
        frame_mbs_only=frame_mbs_only,
        coded_width=coded_width,
        coded_height=coded_height,
        crop_left=left,
        crop_right=right,
        crop_top=top,
        crop_bottom=bottom,
        width=width,
        height=height,
        pic_order_cnt_type=pic_order_cnt_type,
        max_num_reorder_frames=max_num_reorder_frames,
    )


class _MalformedVui(H264Error):
    """A VUI field outside its range: the VUI was misread or misencoded, so trust none of it."""


def _read_max_num_reorder_frames(bits: BitReader) -> int | None:
    """vui_parameters_present_flag and vui_parameters() (§E.1.1): max_num_reorder_frames, or None.

    Never raises: the SPS fields before the VUI are what sample entries need, and cameras send
    odd VUIs, so a VUI cut short, holding an out-of-range value, or not followed by
    rbsp_trailing_bits (a one, then only zeros) gives None, which ``reorder_depth`` treats like
    a stream that states nothing.  So does an SPS that ends before the flag.  Insisting on the
    stop bit is what makes a cut VUI safe: an SPS cut inside its VUI and closed with trailing
    bits again can never pass for a complete VUI, because the syntax is read deterministically
    and a proper prefix of it does not end where a complete one would.
    """
    try:
        if not bits.read_flag():  # vui_parameters_present_flag
            return None
        value = _read_vui(bits)
        if not bits.read_flag() or bits.read_bits(bits.bits_left) != 0:
            return None  # no rbsp_stop_one_bit where the VUI ended, or ones after it
        return value
    except (BitstreamError, _MalformedVui):
        return None


def _read_vui(bits: BitReader) -> int | None:
    if bits.read_flag():  # aspect_ratio_info_present_flag
        if bits.read_bits(8) == 255:  # aspect_ratio_idc Extended_SAR
            bits.read_bits(32)  # sar_width, sar_height
    if bits.read_flag():  # overscan_info_present_flag
        bits.read_flag()  # overscan_appropriate_flag
    if bits.read_flag():  # video_signal_type_present_flag
        bits.read_bits(4)  # video_format, video_full_range_flag
        if bits.read_flag():  # colour_description_present_flag
            bits.read_bits(24)  # colour_primaries, transfer_characteristics, matrix_coefficients
    if bits.read_flag():  # chroma_loc_info_present_flag
        _vui_ue_at_most(bits, 5)  # chroma_sample_loc_type_top_field
        _vui_ue_at_most(bits, 5)  # chroma_sample_loc_type_bottom_field
    if bits.read_flag():  # timing_info_present_flag
        bits.read_bits(65)  # num_units_in_tick, time_scale, fixed_frame_rate_flag
    nal_hrd = bits.read_flag()
    if nal_hrd:
        _skip_hrd_parameters(bits)
    vcl_hrd = bits.read_flag()
    if vcl_hrd:
        _skip_hrd_parameters(bits)
    if nal_hrd or vcl_hrd:
        bits.read_flag()  # low_delay_hrd_flag
    bits.read_flag()  # pic_struct_present_flag
    if not bits.read_flag():  # bitstream_restriction_flag
        return None
    bits.read_flag()  # motion_vectors_over_pic_boundaries_flag
    for _ in range(4):  # max_bytes_per_pic_denom, max_bits_per_mb_denom, log2_max_mv_length_*
        bits.read_ue()
    max_num_reorder_frames = bits.read_ue()
    max_dec_frame_buffering = _vui_ue_at_most(bits, MAX_DPB_FRAMES)
    if max_num_reorder_frames > max_dec_frame_buffering:  # §E.2.1: 0..max_dec_frame_buffering
        raise _MalformedVui
    return max_num_reorder_frames


def _skip_hrd_parameters(bits: BitReader) -> None:
    """hrd_parameters() (§E.1.2); none of it is kept."""
    cpb_cnt = _vui_ue_at_most(bits, 31) + 1  # cpb_cnt_minus1
    bits.read_bits(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(cpb_cnt):
        bits.read_ue()  # bit_rate_value_minus1
        bits.read_ue()  # cpb_size_value_minus1
        bits.read_flag()  # cbr_flag
    # initial_cpb_removal_delay_length_minus1, cpb_removal_delay_length_minus1,
    # dpb_output_delay_length_minus1, time_offset_length
    bits.read_bits(20)


def _vui_ue_at_most(bits: BitReader, limit: int) -> int:
    value = bits.read_ue()
    if value > limit:
        raise _MalformedVui
    return value


def chroma_subsampling(chroma_format_idc: int, separate_colour_plane: bool) -> tuple[int, int]:
    """(SubWidthC, SubHeightC) (H.264 and H.265 Table 6-1): the units, in luma samples, of
    H.264 frame cropping (CropUnitX/Y of a frame picture, eq. 7-19..7-22) and of the H.265
    conformance window, so ``h265_sps`` uses it too.

    Monochrome or separately coded planes count in luma samples; otherwise in chroma samples:
    4:2:0 is subsampled both ways, 4:2:2 horizontally only, 4:4:4 not at all.
    """
    if separate_colour_plane or chroma_format_idc == 0:
        return 1, 1
    return {1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_format_idc]
