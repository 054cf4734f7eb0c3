"""Sample entries from extradata and SPS parsing (brief §4.1 "extradata → sample entry")."""

import fractions
import struct

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire.codec import h264
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
    w.u(1, draw(st.integers(0, 1)))  # vui_parameters_present_flag (not read)
    return b"\x67" + escape_emulation(w.rbsp()), width, height, chroma


@given(synthetic_sps())
def test_synthetic_sps_gives_the_cropped_size(case) -> None:
    nal, width, height, chroma = case
    sps = h264.parse_sps(nal)
    assert (sps.width, sps.height, sps.chroma_format_idc) == (width, height, chroma)


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
