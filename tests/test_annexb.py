"""Annex B → AVC conversion (brief §4.1 "Sample transform"), run against both twins."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire_core import _annexb_py as reference
from tests.support.nal import nal_payload

SPS = bytes.fromhex("674d00299a6603c0113f2cd404040500000303e80000ea6004")  # with 00 00 03
PPS = bytes.fromhex("68ee3c80")
IDR = bytes.fromhex("65888400ff")


def avc(*nals: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in nals)


# (name, Annex B input, NAL units it holds)
VECTORS = [
    ("three-byte start code", b"\x00\x00\x01" + IDR, [IDR]),
    ("four-byte start code", b"\x00\x00\x00\x01" + IDR, [IDR]),
    ("many zeros before the first start code", b"\x00" * 7 + b"\x01" + IDR, [IDR]),
    (
        "sps pps idr with mixed start codes",
        b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR,
        [SPS, PPS, IDR],
    ),
    (
        "zeros before a start code belong to the start code",
        b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x00\x00\x01" + IDR,
        [PPS, IDR],
    ),
    (
        "emulation prevention bytes are kept verbatim",
        b"\x00\x00\x01" + b"\x06\x00\x00\x03\x01\x00\x00\x03\x00\x80",
        [b"\x06\x00\x00\x03\x01\x00\x00\x03\x00\x80"],
    ),
    ("back-to-back start codes give no empty NAL", b"\x00\x00\x01\x00\x00\x01" + PPS, [PPS]),
    ("a trailing start code gives no empty NAL", b"\x00\x00\x01" + PPS + b"\x00\x00\x01", [PPS]),
    ("a start code alone holds nothing", b"\x00\x00\x00\x01", []),
    (
        "zeros at the very end stay in the last NAL",
        b"\x00\x00\x01" + PPS + b"\x00\x00",
        [PPS + b"\x00\x00"],
    ),
    (
        "a single zero before 01 is not a start code",
        b"\x00\x00\x01\x09\x00\x01\x10",
        [b"\x09\x00\x01\x10"],
    ),
]


@pytest.mark.parametrize(("annex_b", "nals"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_split_and_convert_known_vectors(impl, annex_b: bytes, nals: list[bytes]) -> None:
    assert impl.annexb.split_annex_b(annex_b) == nals
    assert impl.annexb.annex_b_to_avc(annex_b) == avc(*nals)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda t: t.__name__)
def test_accepts_any_bytes_like_input(impl, wrap) -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS
    assert impl.annexb.annex_b_to_avc(wrap(data)) == avc(SPS, PPS)
    assert impl.annexb.split_annex_b(wrap(data)) == [SPS, PPS]
    assert impl.annexb.is_annex_b(wrap(data))


def test_converts_a_slice_of_a_larger_buffer(impl) -> None:
    data = b"junk" + b"\x00\x00\x01" + IDR + b"more"
    assert impl.annexb.annex_b_to_avc(memoryview(data)[4:-4]) == avc(IDR)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Annex B data is empty: expected a start code at offset 0"),
        (IDR, "does not begin with a start code: offset 0 holds 65 88 84 00"),
        (b"\x00\x01" + IDR, "does not begin with a start code: offset 0 holds 00 01 65 88"),
        (b"\x00\x00\x00\x00", "does not begin with a start code: offset 0 holds 00 00 00 00"),
        (b"\x00\x00\x02\x01", "does not begin with a start code: offset 0 holds 00 00 02 01"),
        (avc(SPS, PPS)[:3], "does not begin with a start code: offset 0 holds 00 00 00"),
    ],
    ids=["empty", "no start code", "one zero", "only zeros", "00 00 02", "avc not annex b"],
)
def test_data_without_a_leading_start_code_is_rejected(impl, data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        impl.annexb.annex_b_to_avc(data)
    with pytest.raises(ValueError, match=message):
        impl.annexb.split_annex_b(data)


@pytest.mark.parametrize("not_bytes", ["\x00\x00\x01e", 1, None], ids=["str", "int", "None"])
def test_non_buffer_input_is_a_type_error(impl, not_bytes: object) -> None:
    message = f"a bytes-like object is required, not '{type(not_bytes).__name__}'"
    for function in (impl.annexb.annex_b_to_avc, impl.annexb.split_annex_b, impl.annexb.is_annex_b):
        with pytest.raises(TypeError, match=message):
            function(not_bytes)


def test_strided_buffer_is_a_buffer_error(impl) -> None:
    strided = memoryview(b"\x00\x00\x01" + IDR)[::2]
    message = "a contiguous buffer is required, not a strided 'memoryview'"
    for function in (impl.annexb.annex_b_to_avc, impl.annexb.split_annex_b, impl.annexb.is_annex_b):
        with pytest.raises(BufferError, match=message):
            function(strided)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00\x01", True),
        (b"\x00\x00\x01" + IDR, True),
        (b"\x00\x00\x00\x01" + IDR, True),
        (b"\x00\x00\x00\x00\x01", False),  # the brief's test: exactly 3- or 4-byte codes
        (b"\x01\x4d\x00\x29\xff\xe1", False),  # an AVCDecoderConfigurationRecord
        (b"\x00\x00", False),
        (b"", False),
    ],
)
def test_is_annex_b_checks_only_the_leading_start_code(impl, data: bytes, expected: bool) -> None:
    assert impl.annexb.is_annex_b(data) is expected


# Bytes drawn mostly from the interesting ones (0, 1, 3) so start-code-like runs are common.
interesting_bytes = st.lists(
    st.one_of(st.sampled_from([0, 0, 0, 1, 3]), st.integers(0, 255)), max_size=40
).map(bytes)
nal_units = st.builds(
    lambda header, payload: bytes([header]) + nal_payload(payload),
    st.integers(1, 0x7F),  # forbidden_zero_bit clear, header byte never 0
    interesting_bytes,
)
start_codes = st.integers(2, 5).map(lambda zeros: b"\x00" * zeros + b"\x01")


@given(st.lists(st.tuples(start_codes, nal_units), min_size=1, max_size=8))
def test_round_trip_annex_b_to_avc_gives_length_prefixed_nals(impl, units) -> None:
    annex_b = b"".join(code + nal for code, nal in units)
    nals = [nal for _, nal in units]
    assert impl.annexb.split_annex_b(annex_b) == nals
    assert impl.annexb.annex_b_to_avc(annex_b) == avc(*nals)


def outcome(function, data: bytes) -> object:
    try:
        return function(data)
    except ValueError as error:
        return ("ValueError", str(error))


starting_with_a_start_code = st.builds(bytes.__add__, start_codes, interesting_bytes)


@given(st.one_of(interesting_bytes, starting_with_a_start_code))
def test_twin_matches_reference_on_arbitrary_bytes(impl, data: bytes) -> None:
    """Same bytes, same NAL list, same errors and messages as the pure-Python reference."""
    for name in ("annex_b_to_avc", "split_annex_b", "is_annex_b"):
        assert outcome(getattr(impl.annexb, name), data) == outcome(getattr(reference, name), data)
