"""Sample entries from extradata and SPS parsing (brief §4.1 "extradata → sample entry")."""

import fractions
import struct

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire.codec import h264, h264_sps
from moonfire_core.annexb import split_annex_b
from tests.support.nal import escape_emulation

START_CODE = b"\x00\x00\x00\x01"


# --- helpers ----------------------------------------------------------------------------------


def x264_extradata(width: int, height: int, pix_fmt: str = "yuv420p", **options: str) -> bytes:
    """Annex B SPS+PPS from PyAV's libx264, opened with a global header (no frames needed)."""
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = fractions.Fraction(1, 30)
    context.options = {"preset": "ultrafast", **options}
    context.flags |= av.codec.context.Flags.global_header
    context.open()
    return context.extradata


def nal_of_type(annex_b: bytes, nal_type: int) -> bytes:
    (nal,) = [n for n in split_annex_b(annex_b) if n[0] & 0x1F == nal_type]
    return nal


class BitWriter:
    """Test-side encoder of u(n)/ue(v)/se(v), independent of ``h264.BitReader``."""

    def __init__(self) -> None:
        self.bits: list[str] = []

    def u(self, count: int, value: int) -> None:
        if count:
            self.bits.append(format(value, f"0{count}b"))

    def ue(self, value: int) -> None:
        code = format(value + 1, "b")
        self.bits.append("0" * (len(code) - 1) + code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        """The bits plus rbsp_trailing_bits (a one, then zeros to a byte boundary)."""
        text = "".join(self.bits) + "1"
        text += "0" * (-len(text) % 8)
        return int(text, 2).to_bytes(len(text) // 8, "big")


# --- exp-Golomb and RBSP ----------------------------------------------------------------------


def reader(bit_text: str) -> h264.BitReader:
    padded = bit_text + "0" * (-len(bit_text) % 8)
    return h264.BitReader(int(padded, 2).to_bytes(len(padded) // 8, "big"))


@pytest.mark.parametrize(
    ("bit_text", "ue", "se"),
    [
        ("1", 0, 0),
        ("010", 1, 1),
        ("011", 2, -1),
        ("00100", 3, 2),
        ("00101", 4, -2),
        ("00111", 6, -3),
        ("0001000", 7, 4),
        ("000000011111111", 254, -127),
        ("0" * 31 + "1" + "1" * 31, 2**32 - 2, -(2**31 - 1)),
    ],
)
def test_exp_golomb_table(bit_text: str, ue: int, se: int) -> None:
    ue_reader, se_reader = reader(bit_text), reader(bit_text)
    assert ue_reader.read_ue() == ue
    assert se_reader.read_se() == se
    assert ue_reader.position == len(bit_text)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("u"), st.integers(1, 32)).flatmap(
                lambda kind: st.tuples(st.just(kind), st.integers(0, 2 ** kind[1] - 1))
            ),
            st.tuples(st.just(("ue", 0)), st.integers(0, 2**32 - 2)),
            st.tuples(st.just(("se", 0)), st.integers(-(2**31) + 1, 2**31 - 1)),
        ),
        max_size=30,
    )
)
def test_bit_reader_reads_back_what_was_written(fields) -> None:
    writer = BitWriter()
    for (kind, count), value in fields:
        if kind == "u":
            writer.u(count, value)
        else:
            getattr(writer, kind)(value)
    bits = h264.BitReader(writer.rbsp())
    for (kind, count), value in fields:
        read = bits.read_bits(count) if kind == "u" else getattr(bits, f"read_{kind}")()
        assert read == value
    assert bits.read_flag()  # the rbsp_stop_one_bit is next


def test_reading_past_the_end_names_the_bit() -> None:
    bits = h264.BitReader(b"\xff", "SPS")
    bits.read_bits(5)
    with pytest.raises(
        h264.BitstreamError, match="SPS truncated at bit 8: 4 bits needed from bit 5"
    ):
        bits.read_bits(4)


def test_exp_golomb_code_with_32_leading_zeros_is_rejected() -> None:
    with pytest.raises(h264.BitstreamError, match="at bit 0 with more than 31 leading zero bits"):
        reader("0" * 32 + "1" + "0" * 32).read_ue()


@pytest.mark.parametrize(
    ("nal", "rbsp"),
    [
        (b"\x67\x00\x00\x03\x01", b"\x67\x00\x00\x01"),
        (b"\x00\x00\x03\x00\x00\x03\x00", b"\x00\x00\x00\x00\x00"),
        (b"\x00\x00\x03\x03", b"\x00\x00\x03"),  # the second 03 is data
        (b"\x00\x03\x00", b"\x00\x03\x00"),  # one zero is not enough
        (b"\x65\x88", b"\x65\x88"),
    ],
)
def test_rbsp_drops_only_emulation_prevention_bytes(nal: bytes, rbsp: bytes) -> None:
    assert h264.rbsp_from_nal(nal) == rbsp


# --- the real camera's avc1 entry -------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_avc1(testdata) -> bytes:
    return (testdata / "avc1_1920x1080").read_bytes()


def test_camera_entry_is_1920x1080_after_cropping(camera_avc1: bytes) -> None:
    entry = h264.sample_entry_from_avc1(camera_avc1)
    assert (entry.width, entry.height) == (1920, 1080)
    assert entry.rfc6381_codec == "avc1.4d0029"
    sps = h264.parse_sps(h264.parse_avc_decoder_config(camera_avc1[94:]).sps[0])
    assert (sps.coded_width, sps.coded_height, sps.crop_bottom) == (1920, 1088, 8)
    assert (sps.profile_idc, sps.constraint_flags, sps.level_idc) == (77, 0, 41)
    # Its VUI (timing info, no bitstream restriction) states no reorder depth: Main 4.1 at
    # 8160 macroblocks a frame infers MaxDpbFrames = 32768 // 8160.
    assert (sps.pic_order_cnt_type, sps.max_num_reorder_frames) == (0, None)
    assert h264_sps.reorder_depth(sps) == 4


def test_camera_avcc_record_parses(camera_avc1: bytes) -> None:
    config = h264.parse_avc_decoder_config(camera_avc1[94:])
    assert (config.profile_idc, config.profile_compatibility, config.level_idc) == (0x4D, 0, 0x29)
    assert config.nal_length_size == 4
    assert [len(s) for s in config.sps] == [25] and b"\x00\x00\x03" in config.sps[0]
    assert config.pps == (bytes.fromhex("68ee3c80"),)


def test_entry_rebuilt_from_the_avcc_record_is_byte_identical(camera_avc1: bytes) -> None:
    entry = h264.sample_entry_from_extradata(camera_avc1[94:])
    assert entry.data == camera_avc1
    assert entry.need_transform is False


def test_entry_rebuilt_from_annex_b_sps_pps_is_byte_identical(camera_avc1: bytes) -> None:
    config = h264.parse_avc_decoder_config(camera_avc1[94:])
    annex_b = START_CODE + config.sps[0] + b"\x00\x00\x01" + config.pps[0]
    entry = h264.sample_entry_from_extradata(annex_b)
    assert entry.data == camera_avc1
    assert (entry.width, entry.height, entry.rfc6381_codec) == (1920, 1080, "avc1.4d0029")
    assert entry.need_transform is True


def test_annex_b_extradata_ignores_aud_and_sei(camera_avc1: bytes) -> None:
    config = h264.parse_avc_decoder_config(camera_avc1[94:])
    aud, sei = b"\x09\xf0", b"\x06\x05\x01\x80"
    annex_b = b"".join(START_CODE + n for n in [aud, config.sps[0], sei, config.pps[0]])
    assert h264.sample_entry_from_extradata(annex_b).data == camera_avc1


# --- the brief's 1280x720 vector and real encodes ---------------------------------------------


def test_brief_vector_38_byte_avcc_gives_132_byte_avc1() -> None:
    # These options make this PyAV wheel's libx264 emit a 23-byte SPS + 4-byte PPS.
    extradata = x264_extradata(1280, 720, preset="veryfast", **{"x264-params": "bframes=0"})
    sps, pps = nal_of_type(extradata, 7), nal_of_type(extradata, 8)
    record = h264.avc_decoder_config(sps, [pps])
    assert len(record) == 38, f"libx264 changed its headers: SPS {len(sps)} B, PPS {len(pps)} B"
    entry = h264.sample_entry_from_extradata(extradata)
    assert len(entry.data) == 132
    assert entry.data[:8] == bytes.fromhex("00000084 61766331")
    assert entry.data[86:94] == struct.pack(">I4s", 46, b"avcC")
    assert entry.data[94:] == record
    assert (entry.width, entry.height) == (1280, 720)
    assert entry.rfc6381_codec == f"avc1.{sps[1:4].hex()}"


def test_avc1_layout_field_by_field() -> None:
    box = h264.avc1_box(b"\x01\x64\x00\x1f\xff\xe1", 1280, 720)
    (size, kind, reference_index, width, height, h_dpi, v_dpi, reserved, frames, depth, predef) = (
        struct.unpack_from(">I4s6xH16xHHIIIH32xHh", box)
    )
    assert (size, kind, reference_index) == (len(box), b"avc1", 1)
    assert (width, height, h_dpi, v_dpi, reserved, frames) == (1280, 720, 0x480000, 0x480000, 0, 1)
    assert (depth, predef) == (0x18, -1)
    assert box[8:14] == bytes(6) and box[16:32] == bytes(16) and box[50:82] == bytes(32)


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options"),
    [
        pytest.param(640, 360, "yuv420p", {}, id="640x360"),
        pytest.param(1280, 720, "yuv420p", {}, id="1280x720"),
        # coded as 1088 lines, 4 chroma rows cropped at the bottom
        pytest.param(1920, 1080, "yuv420p", {}, id="1920x1080-cropped"),
        pytest.param(1366, 768, "yuv420p", {}, id="1366x768-cropped-right"),
        # field pairs: map units are two macroblock rows and CropUnitY is 4
        pytest.param(
            1920, 1080, "yuv420p", {"x264-params": "interlaced=1"}, id="1920x1080-interlaced"
        ),
        pytest.param(641, 361, "yuv444p", {}, id="odd-size-4:4:4"),  # CropUnitX = CropUnitY = 1
        pytest.param(642, 361, "yuv422p", {}, id="odd-height-4:2:2"),  # CropUnitY = 1
        pytest.param(640, 360, "gray", {}, id="monochrome"),  # chroma_format_idc 0
        pytest.param(1280, 720, "yuv420p10le", {}, id="high-10"),
    ],
)
def test_real_encodes_give_their_picture_size(width, height, pix_fmt, options) -> None:
    entry = h264.sample_entry_from_extradata(x264_extradata(width, height, pix_fmt, **options))
    assert (entry.width, entry.height) == (width, height)
    assert h264.sample_entry_from_avc1(entry.data) == h264.AvcSampleEntry(
        entry.data, width, height, entry.rfc6381_codec, need_transform=False
    )


def test_interlaced_encode_is_parsed_as_field_pairs() -> None:
    extradata = x264_extradata(1920, 1080, **{"x264-params": "interlaced=1"})
    sps = h264.parse_sps(nal_of_type(extradata, 7))
    assert sps.frame_mbs_only is False
    assert (sps.coded_height, sps.crop_bottom) == (1088, 8)


def test_clip_mp4_extradata_matches_pyav_dimensions(testdata) -> None:
    with av.open(str(testdata / "clip.mp4")) as container:
        context = container.streams.video[0].codec_context
        extradata, size = context.extradata, (context.width, context.height)
    entry = h264.sample_entry_from_extradata(extradata)
    assert (entry.width, entry.height) == size
    assert entry.need_transform is False  # mp4 extradata is already an avcC record
    assert entry.data[94:] == extradata


# --- synthetic SPS: every syntax branch -------------------------------------------------------


HIGH_PROFILE_IDCS = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]
#: (SubWidthC, SubHeightC) per chroma_format_idc, H.264 Table 6-1; None: crop in luma samples.
CHROMA_SUBSAMPLING = {0: None, 1: (2, 2), 2: (2, 1), 3: (1, 1)}


@st.composite
def synthetic_sps(draw):
    """An SPS written field by field, plus the picture size H.264 §7.4.2.1.1 says it has."""
    w = BitWriter()
    profile = draw(st.sampled_from([66, 77, 88, *HIGH_PROFILE_IDCS]))
    w.u(8, profile)
    w.u(8, draw(st.integers(0, 255)))  # constraint flags
    w.u(8, draw(st.integers(0, 255)))  # level_idc
    w.ue(draw(st.integers(0, 31)))  # seq_parameter_set_id
    chroma, separate_planes = 1, False
    if profile in HIGH_PROFILE_IDCS:
        chroma = draw(st.integers(0, 3))
        w.ue(chroma)
        if chroma == 3:
            separate_planes = draw(st.booleans())
            w.u(1, separate_planes)
        w.ue(draw(st.integers(0, 6)))
        w.ue(draw(st.integers(0, 6)))
        w.u(1, draw(st.integers(0, 1)))
        scaling_matrix = draw(st.booleans())
        w.u(1, scaling_matrix)
        if scaling_matrix:
            for i in range(12 if chroma == 3 else 8):
                present = draw(st.booleans())
                w.u(1, present)
                if present:
                    last = next_ = 8
                    for _ in range(16 if i < 6 else 64):
                        if next_ != 0:
                            delta = draw(st.integers(-128, 127))
                            w.se(delta)
                            next_ = (last + delta + 256) % 256
                        last = next_ or last
    w.ue(draw(st.integers(0, 12)))  # log2_max_frame_num_minus4
    poc_type = draw(st.integers(0, 2))
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(draw(st.integers(0, 12)))
    elif poc_type == 1:
        w.u(1, draw(st.integers(0, 1)))
        w.se(draw(st.integers(-1000, 1000)))
        w.se(draw(st.integers(-1000, 1000)))
        offsets = draw(st.lists(st.integers(-1000, 1000), max_size=5))
        w.ue(len(offsets))
        for offset in offsets:
            w.se(offset)
    w.ue(draw(st.integers(0, 16)))  # max_num_ref_frames
    w.u(1, draw(st.integers(0, 1)))
    width_mbs, height_units = draw(st.integers(1, 240)), draw(st.integers(1, 135))
    w.ue(width_mbs - 1)
    w.ue(height_units - 1)
    frame_mbs_only = draw(st.booleans())
    w.u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, draw(st.integers(0, 1)))
    w.u(1, draw(st.integers(0, 1)))  # direct_8x8_inference_flag
    height = 16 * height_units * (1 if frame_mbs_only else 2)
    width = 16 * width_mbs
    subsampling = None if separate_planes else CHROMA_SUBSAMPLING[chroma]
    unit_x = 1 if subsampling is None else subsampling[0]
    unit_y = (1 if subsampling is None else subsampling[1]) * (1 if frame_mbs_only else 2)
    cropping = draw(st.booleans())
    w.u(1, cropping)
    if cropping:
        left = draw(st.integers(0, (width - 1) // unit_x))
        right = draw(st.integers(0, (width - 1) // unit_x - left))
        top = draw(st.integers(0, (height - 1) // unit_y))
        bottom = draw(st.integers(0, (height - 1) // unit_y - top))
        for value in (left, right, top, bottom):
            w.ue(value)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    # vui_parameters_present_flag, and no VUI: when set, the trailing bits are all there is.
    w.u(1, draw(st.integers(0, 1)))
    return b"\x67" + escape_emulation(w.rbsp()), width, height, chroma, poc_type


@given(synthetic_sps())
def test_synthetic_sps_gives_the_cropped_size(case) -> None:
    nal, width, height, chroma, poc_type = case
    sps = h264.parse_sps(nal)
    assert (sps.width, sps.height, sps.chroma_format_idc) == (width, height, chroma)
    assert (sps.pic_order_cnt_type, sps.max_num_reorder_frames) == (poc_type, None)


# --- reorder depth: max_num_reorder_frames from the VUI, or inferred --------------------------


def x264_encode(params: str, frames: int = 24) -> tuple[h264.SpsInfo, list[int]]:
    """The SPS of a libx264 encode with ``x264-params`` ``params``, and its packets' pts (in
    decode order) to check the SPS's claim against."""
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = 320, 240, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    context.options = {"preset": "ultrafast", "x264-params": params}
    context.flags |= av.codec.context.Flags.global_header
    context.open()
    packets = []
    ramp = np.arange(320, dtype=np.uint8)
    for number in range(frames):
        image = np.empty((360, 320), dtype=np.uint8)  # yuv420p planes, stacked
        image[:] = ramp + np.uint8(7 * number % 256)  # moving: something to predict
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = number
        packets += context.encode(frame)
    packets += context.encode(None)
    sps = h264.parse_sps(nal_of_type(bytes(context.extradata), 7))
    return sps, [packet.pts for packet in packets]


def reordering_seen(pts_in_decode_order: list[int]) -> int:
    """The most frames ever decoded before one that they follow in output order: the least
    depth a decoder could have used on this stream."""
    return max(
        sum(earlier > pts for earlier in pts_in_decode_order[:i])
        for i, pts in enumerate(pts_in_decode_order)
    )


@pytest.mark.parametrize(
    ("params", "profile_idc", "stated", "depth", "seen"),
    [
        pytest.param("bframes=0", 66, 0, 0, 0, id="baseline"),
        # B-frames need Main; x264 states 1 without a pyramid.
        pytest.param("bframes=2:b-pyramid=none:b-adapt=0", 77, 1, 1, 1, id="main-2b"),
        pytest.param("bframes=2:b-pyramid=none:b-adapt=0:8x8dct=1", 100, 1, 1, 1, id="high-2b"),
        # With a pyramid x264 states 2 whatever it then does: two B-frames reorder only one
        # deep, three (the middle one a reference) two.
        pytest.param(
            "bframes=2:b-pyramid=normal:b-adapt=0:8x8dct=1", 100, 2, 2, 1, id="high-2b-pyramid"
        ),
        pytest.param(
            "bframes=3:b-pyramid=strict:b-adapt=0:8x8dct=1", 100, 2, 2, 2, id="high-3b-pyramid"
        ),
        # Every frame a key frame: High with constraint_set3_flag (an intra profile), for
        # which x264 leaves out the bitstream restriction and H.264 §E.2.1 infers 0.
        pytest.param("keyint=1:8x8dct=1", 100, None, 0, 0, id="high-intra"),
    ],
)
def test_real_encodes_state_their_reorder_depth(params, profile_idc, stated, depth, seen) -> None:
    sps, pts = x264_encode(params)
    assert sps.profile_idc == profile_idc
    assert sps.max_num_reorder_frames == stated
    assert h264_sps.reorder_depth(sps) == depth
    assert reordering_seen(pts) == seen <= depth


def test_real_sps_cut_anywhere_in_its_vui_keeps_its_size() -> None:
    nal = nal_of_type(x264_extradata(320, 240, **{"x264-params": "bframes=2:b-adapt=0"}), 7)
    assert h264.parse_sps(nal).max_num_reorder_frames == 2  # x264's default pyramid
    # 320x240 without cropping is coded in the first 8 bytes; the VUI takes the rest.
    for length in range(8, len(nal)):
        cut = h264.parse_sps(nal[:length])
        assert (cut.width, cut.height, cut.max_num_reorder_frames) == (320, 240, None), length


def sps_through_cropping(
    profile: int = 77,
    constraint_flags: int = 0,
    level: int = 31,
    width_mbs: int = 80,
    height_map_units: int = 45,
    poc_type: int = 0,
    frame_mbs_only: bool = True,
) -> BitWriter:
    """An SPS written up to (not including) vui_parameters_present_flag; no cropping."""
    w = BitWriter()
    w.u(8, profile)
    w.u(8, constraint_flags)
    w.u(8, level)
    w.ue(0)  # seq_parameter_set_id
    if profile in HIGH_PROFILE_IDCS:
        w.ue(1)  # chroma_format_idc
        w.ue(0)  # bit_depth_luma_minus8
        w.ue(0)  # bit_depth_chroma_minus8
        w.u(2, 0)  # qpprime_y_zero_transform_bypass_flag, seq_scaling_matrix_present_flag
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(2)  # log2_max_pic_order_cnt_lsb_minus4
    w.ue(4)  # max_num_ref_frames
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(width_mbs - 1)
    w.ue(height_map_units - 1)
    w.u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 0)  # mb_adaptive_frame_field_flag
    w.u(2, 0b10)  # direct_8x8_inference_flag, frame_cropping_flag
    return w


def sps_nal(w: BitWriter, vui: BitWriter | None = None) -> bytes:
    w.u(1, vui is not None)  # vui_parameters_present_flag
    if vui is not None:
        w.bits += vui.bits
    return b"\x67" + escape_emulation(w.rbsp())


@st.composite
def vui_parameters(draw) -> tuple[BitWriter, int | None]:
    """A vui_parameters() (H.264 §E.1.1) taking every branch by turns, and the
    max_num_reorder_frames it states (None without bitstream_restriction_flag)."""
    w = BitWriter()

    def flag() -> bool:
        value = draw(st.booleans())
        w.u(1, value)
        return value

    def hrd_parameters() -> None:
        rates = draw(st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 2**20)), min_size=1,
                              max_size=32))
        w.ue(len(rates) - 1)  # cpb_cnt_minus1
        w.u(8, draw(st.integers(0, 255)))  # bit_rate_scale, cpb_size_scale
        for bit_rate, cpb_size in rates:
            w.ue(bit_rate)
            w.ue(cpb_size)
            flag()  # cbr_flag
        w.u(20, draw(st.integers(0, 2**20 - 1)))  # four 5-bit lengths

    if flag():  # aspect_ratio_info_present_flag
        aspect_ratio_idc = draw(st.sampled_from([1, 2, 16, 255]))
        w.u(8, aspect_ratio_idc)
        if aspect_ratio_idc == 255:  # Extended_SAR
            w.u(16, draw(st.integers(0, 0xFFFF)))
            w.u(16, draw(st.integers(0, 0xFFFF)))
    if flag():  # overscan_info_present_flag
        flag()
    if flag():  # video_signal_type_present_flag
        w.u(3, draw(st.integers(0, 5)))
        flag()  # video_full_range_flag
        if flag():  # colour_description_present_flag
            w.u(24, draw(st.integers(0, 2**24 - 1)))
    if flag():  # chroma_loc_info_present_flag
        w.ue(draw(st.integers(0, 5)))
        w.ue(draw(st.integers(0, 5)))
    if flag():  # timing_info_present_flag
        w.u(32, draw(st.integers(1, 2**32 - 1)))
        w.u(32, draw(st.integers(1, 2**32 - 1)))
        flag()  # fixed_frame_rate_flag
    hrd = []
    for _ in range(2):  # nal_hrd_parameters_present_flag, vcl_hrd_parameters_present_flag
        hrd.append(flag())
        if hrd[-1]:
            hrd_parameters()
    if any(hrd):
        flag()  # low_delay_hrd_flag
    flag()  # pic_struct_present_flag
    if not flag():  # bitstream_restriction_flag
        return w, None
    flag()  # motion_vectors_over_pic_boundaries_flag
    for limit in (16, 16, 15, 15):  # max_bytes_per_pic_denom .. log2_max_mv_length_vertical
        w.ue(draw(st.integers(0, limit)))
    max_dec_frame_buffering = draw(st.integers(0, 16))
    max_num_reorder_frames = draw(st.integers(0, max_dec_frame_buffering))
    w.ue(max_num_reorder_frames)
    w.ue(max_dec_frame_buffering)
    return w, max_num_reorder_frames


@given(vui_parameters())
def test_vui_gives_max_num_reorder_frames(case) -> None:
    vui, stated = case
    sps = h264.parse_sps(sps_nal(sps_through_cropping(), vui))
    assert (sps.width, sps.height, sps.max_num_reorder_frames) == (1280, 720, stated)


@given(vui_parameters(), st.data())
def test_vui_cut_short_gives_none_and_the_size(case, data) -> None:
    vui, _ = case
    text = "".join(vui.bits)
    cut = BitWriter()
    cut.bits.append(text[: data.draw(st.integers(0, len(text) - 1), label="cut at bit")])
    sps = h264.parse_sps(sps_nal(sps_through_cropping(), cut))
    assert (sps.width, sps.height, sps.max_num_reorder_frames) == (1280, 720, None)


def test_vui_cut_where_its_stop_bit_reads_as_the_last_field() -> None:
    # Cut just before max_dec_frame_buffering and closed with trailing bits that end the
    # byte: the stop bit reads as ue 0, a plausible last field.  Only the missing stop bit
    # after it shows the VUI was cut.
    for width_mbs in range(1, 81):
        w = sps_through_cropping(width_mbs=width_mbs)
        w.u(1, 1)  # vui_parameters_present_flag
        full = "".join(restricted_vui(0, 0).bits)
        w.bits.append(full[: -len("1")])  # ue(0) is the single bit 1
        if len("".join(w.bits)) % 8 == 7:
            break
    else:
        raise AssertionError("no width puts the stop bit at a byte's end")
    sps = h264.parse_sps(b"\x67" + escape_emulation(w.rbsp()))
    assert (sps.width, sps.max_num_reorder_frames) == (16 * width_mbs, None)


def restricted_vui(
    max_num_reorder_frames: int = 2,
    max_dec_frame_buffering: int = 3,
    chroma_sample_loc_type: int | None = None,
    cpb_cnt_minus1: int | None = None,
) -> BitWriter:
    """A VUI with nothing but (optionally) chroma location or NAL HRD and a bitstream
    restriction."""
    w = BitWriter()
    w.u(3, 0)  # aspect_ratio_info, overscan_info, video_signal_type present flags
    w.u(1, chroma_sample_loc_type is not None)
    if chroma_sample_loc_type is not None:
        w.ue(chroma_sample_loc_type)
        w.ue(0)
    w.u(1, 0)  # timing_info_present_flag
    w.u(1, cpb_cnt_minus1 is not None)  # nal_hrd_parameters_present_flag
    if cpb_cnt_minus1 is not None:
        w.ue(cpb_cnt_minus1)
        w.u(8, 0)
        for _ in range(cpb_cnt_minus1 + 1):
            w.ue(1000)
            w.ue(1000)
            w.u(1, 0)
        w.u(20, 0)
    w.u(1, 0)  # vcl_hrd_parameters_present_flag
    if cpb_cnt_minus1 is not None:
        w.u(1, 0)  # low_delay_hrd_flag
    w.u(3, 0b010)  # pic_struct_present_flag, bitstream_restriction_flag, motion_vectors_...
    for value in (2, 1, 16, 16):
        w.ue(value)
    w.ue(max_num_reorder_frames)
    w.ue(max_dec_frame_buffering)
    return w


@pytest.mark.parametrize(
    ("vui", "after", "stated"),
    [
        pytest.param(restricted_vui(), b"", 2, id="well-formed"),
        pytest.param(restricted_vui(16, 16, 5, 31), b"", 16, id="at-every-limit"),
        pytest.param(restricted_vui(3, 2), b"", None, id="reorders-more-than-it-buffers"),
        pytest.param(restricted_vui(3, 17), b"", None, id="buffers-more-than-16"),
        pytest.param(restricted_vui(chroma_sample_loc_type=6), b"", None, id="chroma-loc-6"),
        pytest.param(restricted_vui(cpb_cnt_minus1=32), b"", None, id="33-cpbs"),
        # Zero bytes after the trailing bits are still only zeros; a one there means misread.
        pytest.param(restricted_vui(), b"\x00\x00", 2, id="zero-bytes-after"),
        pytest.param(restricted_vui(), b"\x01", None, id="a-one-after-the-stop-bit"),
    ],
)
def test_malformed_vui_gives_none(vui: BitWriter, after: bytes, stated: int | None) -> None:
    sps = h264.parse_sps(sps_nal(sps_through_cropping(), vui) + after)
    assert (sps.width, sps.height, sps.max_num_reorder_frames) == (1280, 720, stated)


def test_vui_without_its_stop_bit_gives_none() -> None:
    w = sps_through_cropping()
    w.u(1, 1)  # vui_parameters_present_flag
    w.bits += restricted_vui().bits
    text = "".join(w.bits)

    def nal(bits: str) -> bytes:
        bits += "0" * (-len(bits) % 8)
        return b"\x67" + escape_emulation(int(bits, 2).to_bytes(len(bits) // 8, "big"))

    assert h264.parse_sps(nal(text + "1")).max_num_reorder_frames == 2
    assert h264.parse_sps(nal(text)).max_num_reorder_frames is None  # zeros, or nothing, after


def test_sps_ending_before_the_vui_flag_still_parses() -> None:
    # An SPS whose cropping fields end on a byte boundary, and then nothing: not even the flag.
    candidates = (
        "".join(sps_through_cropping(width_mbs=width, frame_mbs_only=frame_mbs_only).bits)
        for frame_mbs_only in (True, False)
        for width in range(1, 81)
    )
    text = next(bits for bits in candidates if len(bits) % 8 == 0)
    sps = h264.parse_sps(b"\x67" + escape_emulation(int(text, 2).to_bytes(len(text) // 8, "big")))
    assert (sps.height, sps.max_num_reorder_frames) == (720 if sps.frame_mbs_only else 1440, None)


def timing_only_vui() -> BitWriter:
    """A VUI with timing info only: what many cameras send."""
    w = BitWriter()
    w.u(5, 0b00001)  # aspect, overscan, video signal, chroma loc: none; timing_info_present
    w.u(32, 1)
    w.u(32, 60)
    w.u(1, 1)
    w.u(5, 0)  # no HRD, no pic_struct, no bitstream restriction
    return w


@pytest.mark.parametrize(
    ("fields", "depth"),
    [
        # MaxDpbMbs // frame macroblocks (H.264 Table A-1, §A.3.1 h), at most 16
        pytest.param({"level": 40, "width_mbs": 120, "height_map_units": 68}, 4, id="1080p-4.0"),
        pytest.param({"level": 31}, 5, id="720p-3.1"),
        pytest.param({"profile": 100, "level": 31}, 5, id="720p-3.1-high"),
        pytest.param(
            {"level": 40, "width_mbs": 120, "height_map_units": 34, "frame_mbs_only": False},
            4,
            id="1080i-4.0",  # field pairs: 34 map units are 68 macroblock rows
        ),
        pytest.param({"level": 51, "width_mbs": 20, "height_map_units": 15}, 16, id="small-5.1"),
        pytest.param({"level": 11, "width_mbs": 11, "height_map_units": 9}, 9, id="qcif-1.1"),
        # level 1b: level_idc 11 with constraint_set3_flag in Main, level_idc 9 in High
        pytest.param(
            {"level": 11, "constraint_flags": 0x10, "width_mbs": 11, "height_map_units": 9},
            4,
            id="qcif-1b-main",
        ),
        pytest.param(
            {"profile": 100, "level": 9, "width_mbs": 11, "height_map_units": 9}, 4, id="qcif-1b"
        ),
        # a level too small for the frame (a camera misstating it), or none the table has
        pytest.param({"level": 30, "width_mbs": 120, "height_map_units": 68}, 16, id="1080p-3.0"),
        pytest.param({"level": 99}, 16, id="unknown-level"),
        # streams that cannot reorder
        pytest.param({"poc_type": 2}, 0, id="poc-type-2"),
        pytest.param({"profile": 66}, 0, id="baseline"),
        pytest.param({"profile": 110, "constraint_flags": 0x10}, 0, id="high-10-intra"),
        pytest.param({"profile": 44}, 5, id="cavlc-444-without-set3"),
        pytest.param({"profile": 44, "constraint_flags": 0x10}, 0, id="cavlc-444-intra"),
        # constraint_set3_flag means nothing of the kind in Main
        pytest.param({"constraint_flags": 0x10}, 5, id="main-set3"),
    ],
)
def test_reorder_depth_is_inferred_without_a_bitstream_restriction(fields, depth) -> None:
    for vui in (None, timing_only_vui()):
        sps = h264.parse_sps(sps_nal(sps_through_cropping(**fields), vui))
        assert sps.max_num_reorder_frames is None
        assert h264_sps.reorder_depth(sps) == depth


def test_a_stated_depth_wins_over_inference() -> None:
    sps = h264.parse_sps(sps_nal(sps_through_cropping(level=99), restricted_vui(1, 4)))
    assert (sps.max_num_reorder_frames, h264_sps.reorder_depth(sps)) == (1, 1)


# --- errors -----------------------------------------------------------------------------------


def test_two_sps_in_annex_b_extradata_is_rejected(camera_avc1: bytes) -> None:
    config = h264.parse_avc_decoder_config(camera_avc1[94:])
    annex_b = b"".join(START_CODE + n for n in [config.sps[0], config.sps[0], config.pps[0]])
    with pytest.raises(h264.DecoderConfigError, match="extradata has 2 SPS NAL units; expected 1"):
        h264.sample_entry_from_extradata(annex_b)


def test_annex_b_extradata_without_pps_is_rejected(camera_avc1: bytes) -> None:
    sps = h264.parse_avc_decoder_config(camera_avc1[94:]).sps[0]
    with pytest.raises(h264.DecoderConfigError, match="0 PPS NAL units; expected at least 1"):
        h264.sample_entry_from_extradata(START_CODE + sps)


def test_empty_extradata_says_the_camera_sent_no_parameter_sets() -> None:
    message = r"camera sent no SPS/PPS in its stream setup \(extradata is empty\)"
    with pytest.raises(h264.DecoderConfigError, match=message):
        h264.sample_entry_from_extradata(b"")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\x01\x4d\x00", "AVCDecoderConfigurationRecord of 3 bytes is too short"),
        (b"\x02\x4d\x00\x29\xff\xe1\x00", "version is 2 at offset 0; expected 1"),
        (b"\x01\x4d\x00\x29\xff\xe1\x00", "truncated at offset 6: no length for SPS 1 of 1"),
        (b"\x01\x4d\x00\x29\xff\xe1\x00\x05\x67", "SPS 1 of 1 needs 5 bytes, 1 left"),
        (b"\x01\x4d\x00\x29\xff\xe1\x00\x01\x67", "truncated at offset 9: no PPS count"),
        (b"\x01\x4d\x00\x29\xff\xe0\x01\x00\x01\x68", "has no SPS; expected at least 1"),
    ],
)
def test_bad_avcc_records_name_the_problem(record: bytes, message: str) -> None:
    with pytest.raises(h264.DecoderConfigError, match=message):
        h264.sample_entry_from_extradata(record)


@pytest.mark.parametrize(
    ("nal", "error", "message"),
    [
        (b"", h264.SpsError, "SPS NAL unit is empty"),
        (b"\x68\xee\x3c\x80", h264.SpsError, "NAL unit type is 8; an SPS has type 7"),
        (bytes.fromhex("674d0029"), h264.BitstreamError, "SPS truncated at bit 32"),
        (bytes.fromhex("6764001f 8780"), h264.SpsError, "chroma_format_idc is 29; at most 3"),
    ],
)
def test_bad_sps_names_the_problem(nal: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        h264.parse_sps(nal)


def test_errors_are_value_errors() -> None:
    for error in (h264.BitstreamError, h264.SpsError, h264.DecoderConfigError):
        assert issubclass(error, h264.H264Error) and issubclass(error, ValueError)
    assert issubclass(h264.SampleEntryError, ValueError)


def test_bad_avc1_boxes_name_the_problem(camera_avc1: bytes) -> None:
    cases = [
        (camera_avc1[:90], "avc1 box of 90 bytes is too short"),
        (camera_avc1[:4] + b"avc3" + camera_avc1[8:], r"box type at offset 4 is b'avc3'"),
        (camera_avc1 + b"\x00", "size field is 134 at offset 0; the data is 135 bytes"),
        (
            camera_avc1[:32] + struct.pack(">H", 1280) + camera_avc1[34:],
            "avc1 box says 1280x1080 but its SPS gives 1920x1080",
        ),
        (
            camera_avc1[:90] + b"avcX" + camera_avc1[94:],
            "avc1 box has no avcC child",
        ),
        (
            camera_avc1[:86] + b"\x00\x00\x00\x40" + camera_avc1[90:],
            r"child box b'avcC' at offset 86 has size 64; 48 bytes remain",
        ),
    ]
    for data, message in cases:
        with pytest.raises(h264.SampleEntryError, match=message):
            h264.sample_entry_from_avc1(data)
