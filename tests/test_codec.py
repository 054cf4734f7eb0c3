"""The codec interface: ``moonfire.codec.SampleEntry`` and the dispatch to each codec module."""

import struct

import pytest

from moonfire.codec import (
    CodecError,
    SampleEntry,
    UnsupportedCodecError,
    h264,
    h265,
    sample_entry_from_box,
    sample_entry_from_extradata,
)
from moonfire.errors import MoonfireError

START_CODE = b"\x00\x00\x00\x01"
IDR = bytes.fromhex("65888400ff")  # nal_unit_type 5
NON_IDR = bytes.fromhex("419a2480")  # nal_unit_type 1
SEI = bytes.fromhex("06050180")
AUD = bytes.fromhex("09f0")


@pytest.fixture(scope="module")
def camera_avc1(testdata) -> bytes:
    return (testdata / "avc1_1920x1080").read_bytes()


@pytest.fixture(scope="module")
def entry(camera_avc1: bytes) -> SampleEntry:
    return sample_entry_from_box(camera_avc1)


@pytest.fixture(scope="module")
def parameter_sets(camera_avc1: bytes) -> tuple[bytes, bytes]:
    config = h264.parse_avc_decoder_config(camera_avc1[94:])
    return config.sps[0], config.pps[0]


def length_prefixed(*nals: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def annex_b(*nals: bytes) -> bytes:
    return b"".join(START_CODE + n for n in nals)


# --- what a stored box says ------------------------------------------------------------------


def test_codec_string_is_what_the_avcc_profile_bytes_say(camera_avc1: bytes, entry) -> None:
    # What playback/mp4.py used to read at fixed offsets of the avc1 box (avcC record bytes 1-3).
    assert camera_avc1[90:94] == b"avcC"
    assert entry.codec_string == f"avc1.{camera_avc1[95:98].hex()}" == "avc1.4d0029"


def test_stored_entry_describes_the_box(camera_avc1: bytes, entry) -> None:
    assert (entry.width, entry.height) == (1920, 1080)
    assert entry.box == camera_avc1
    assert entry.fourcc == b"avc1"
    assert entry.need_transform is False
    assert isinstance(entry, h264.AvcSampleEntry)


def test_entry_from_extradata_matches_the_stored_one(camera_avc1: bytes, parameter_sets) -> None:
    built = sample_entry_from_extradata(annex_b(*parameter_sets))
    assert built.box == camera_avc1
    assert (built.codec_string, built.width, built.height) == ("avc1.4d0029", 1920, 1080)
    assert built.need_transform is True
    assert sample_entry_from_extradata(camera_avc1[94:], codec="h264").need_transform is False


# --- dispatch ---------------------------------------------------------------------------------


def test_unknown_fourcc_is_refused_by_name(camera_avc1: bytes) -> None:
    vp09 = camera_avc1[:4] + b"vp09" + camera_avc1[8:]
    message = r"box type at offset 4 is b'vp09'; moonfire reads only b'avc1', b'hvc1'"
    with pytest.raises(UnsupportedCodecError, match=message):
        sample_entry_from_box(vp09)


def test_each_fourcc_goes_to_its_codec(camera_avc1: bytes) -> None:
    # An avc1 box relabelled hvc1 reaches the H.265 parser, which finds no hvcC in it.
    hvc1 = camera_avc1[:4] + b"hvc1" + camera_avc1[8:]
    with pytest.raises(h265.SampleEntryError, match="hvc1 box has no hvcC child"):
        sample_entry_from_box(hvc1)


def test_too_short_box_is_refused() -> None:
    with pytest.raises(CodecError, match="sample entry box of 6 bytes is too short"):
        sample_entry_from_box(b"\x00\x00\x00\x06av")


def test_malformed_box_of_a_known_codec_gets_that_codecs_error(camera_avc1: bytes) -> None:
    with pytest.raises(h264.SampleEntryError, match="size field is 134"):
        sample_entry_from_box(camera_avc1 + b"\x00")


def test_unknown_stream_codec_is_refused_by_name(parameter_sets) -> None:
    message = r"video codec is vp9; moonfire records only H.264 \(h264\) and H.265 \(hevc\)"
    with pytest.raises(UnsupportedCodecError, match=message):
        sample_entry_from_extradata(annex_b(*parameter_sets), codec="vp9")


def test_codec_errors_are_moonfire_errors_and_value_errors() -> None:
    for error in (
        CodecError,
        UnsupportedCodecError,
        h264.H264Error,
        h264.SampleEntryError,
        h264.SampleError,
        h264.DecoderConfigError,
        h264.SpsError,
        h264.BitstreamError,
    ):
        assert issubclass(error, MoonfireError) and issubclass(error, ValueError), error
    assert issubclass(h264.H264Error, CodecError)
    assert issubclass(h265.H265Error, CodecError)


# --- samples ----------------------------------------------------------------------------------


def test_idr_sample_is_a_key_frame(entry) -> None:
    assert entry.is_key_frame(length_prefixed(AUD, SEI, IDR))
    assert entry.is_key_frame(length_prefixed(IDR, IDR))


def test_non_idr_sample_is_not_a_key_frame(entry, parameter_sets) -> None:
    assert not entry.is_key_frame(length_prefixed(NON_IDR))
    assert not entry.is_key_frame(length_prefixed(AUD, *parameter_sets, SEI, NON_IDR))
    assert not entry.is_key_frame(b"")


def test_key_frame_test_follows_the_avcc_nal_length_size(camera_avc1: bytes) -> None:
    # lengthSizeMinusOne = 1: two-byte NAL unit lengths.
    record = bytearray(camera_avc1[94:])
    record[4] = 0xFC | 1
    two_byte = h264.sample_entry_from_extradata(bytes(record))
    assert two_byte.nal_length_size == 2
    assert two_byte.is_key_frame(struct.pack(">H", len(IDR)) + IDR)
    assert not two_byte.is_key_frame(struct.pack(">H", len(NON_IDR)) + NON_IDR)


def test_truncated_sample_names_the_offset(entry) -> None:
    message = "truncated at offset 4: NAL unit of 9 bytes, 5 left"
    with pytest.raises(h264.SampleError, match=message):
        entry.is_key_frame(struct.pack(">I", 9) + IDR)
    with pytest.raises(h264.SampleError, match="truncated at offset 9: 2 bytes left"):
        entry.is_key_frame(length_prefixed(IDR) + b"\x00\x00")


def test_annex_b_packets_become_length_prefixed_samples(parameter_sets) -> None:
    entry = sample_entry_from_extradata(annex_b(*parameter_sets))
    packet = START_CODE + SEI + b"\x00\x00\x01" + IDR
    sample = entry.to_sample(packet)
    assert sample == length_prefixed(SEI, IDR)
    assert entry.is_key_frame(sample)


def test_length_prefixed_packets_are_stored_unchanged(entry) -> None:
    sample = length_prefixed(NON_IDR)
    assert entry.to_sample(sample) is sample


# --- parameter sets in band ------------------------------------------------------------------


def test_parameter_sets_are_distinct_in_first_seen_order(entry, parameter_sets) -> None:
    sps, pps = parameter_sets
    packet = annex_b(AUD, sps, pps, SEI, sps, pps, IDR)
    assert entry.parameter_sets(packet) == (sps, pps)
    assert entry.parameter_sets(annex_b(pps, sps)) == (pps, sps)
    assert entry.parameter_sets(annex_b(AUD, NON_IDR)) == ()


def test_complete_parameter_sets_make_extradata(entry, parameter_sets) -> None:
    sps, pps = parameter_sets
    extradata = entry.extradata_from_parameter_sets((sps, pps))
    assert extradata == annex_b(sps, pps)
    assert sample_entry_from_extradata(extradata).box == entry.box


def test_partial_parameter_sets_make_no_extradata(entry, parameter_sets) -> None:
    sps, pps = parameter_sets
    assert entry.extradata_from_parameter_sets((sps,)) is None
    assert entry.extradata_from_parameter_sets((pps,)) is None
    assert entry.extradata_from_parameter_sets(()) is None
