"""The ``video_index`` codec (brief §2, §7 items 1-3): vectors, error rules, real camera data.

Every test named with ``impl`` runs against both twins; the tests at the bottom compare the twins
directly and exist only when the compiled core is part of the run.
"""

from __future__ import annotations

import os
import re
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire_core import _index_types
from moonfire_core._errors import CorruptIndexError

INT32_MAX = 2**31 - 1
# As in conftest: with the switch set there is no compiled twin to compare against.
NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))

# --------------------------------------------------------------------------- helpers


def encode_with_encoder(index: ModuleType, samples: list[tuple[int, int, bool]]) -> bytes:
    encoder = index.SampleIndexEncoder()
    for duration, size, is_key in samples:
        encoder.add_sample(duration, size, is_key)
    return encoder.video_index


def encode_batch(index: ModuleType, samples: list[tuple[int, int, bool]]) -> bytes:
    durations = [s[0] for s in samples]
    sizes = [s[1] for s in samples]
    keys = [s[2] for s in samples]
    return index.encode_index(durations, sizes, keys)


def encode_outcome(encode, index: ModuleType, samples: list[tuple[int, int, bool]]) -> tuple:
    """``("ok", bytes)`` or ``("error", type, message)``; other exceptions fail the test."""
    try:
        return ("ok", encode(index, samples))
    except (ValueError, TypeError) as e:
        return ("error", type(e), str(e))


def decode_outcome(index: ModuleType, blob: bytes) -> tuple:
    """Everything ``decode_index`` says about ``blob``, or its ``CorruptIndexError`` message."""
    try:
        d = index.decode_index(blob)
    except CorruptIndexError as e:
        return ("error", str(e))
    return (
        "ok",
        d.durations.tolist(),
        d.sizes.tolist(),
        d.is_key.tolist(),
        d.positions.tolist(),
        d.starts.tolist(),
        d.composition_offsets.tolist(),
        d.sample_file_bytes,
        d.total_duration_90k,
        d.video_samples,
        d.video_sync_samples,
        d.has_trailing_zero,
    )


def iterate_outcome(index: ModuleType, blob: bytes) -> tuple[list[tuple], str | None]:
    """The samples the iterator yields, and its error message if it stopped on one."""
    samples: list[tuple] = []
    try:
        for sample in index.SampleIndexIterator(blob):
            samples.append(tuple(sample))
    except CorruptIndexError as e:
        return samples, str(e)
    return samples, None


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    return ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF


def record(duration_delta: int, bytes_delta: int, is_key: bool) -> bytes:
    """One index record built from first principles (brief §2.2), independent of the codec."""
    return varint((zigzag(duration_delta) << 1) | is_key) + varint(zigzag(bytes_delta))


# --------------------------------------------------------------------------- §2.1 primitives

ZIGZAG_VECTORS = [
    (0, 0),
    (-1, 1),
    (1, 2),
    (-2, 3),
    (2147483647, 4294967294),
    (-2147483648, 4294967295),
]

VARINT_VECTORS = [
    (1, "01"),
    (257, "81 02"),
    (49409, "81 82 03"),
    (8438017, "81 82 83 04"),
    (1350615297, "81 82 83 84 05"),
    (2**32 - 1, "ff ff ff ff 0f"),
]


@pytest.mark.parametrize(("signed", "unsigned"), ZIGZAG_VECTORS)
def test_zigzag_matches_the_brief_vectors(impl, signed: int, unsigned: int) -> None:
    assert impl.index._zigzag32(signed) == unsigned
    assert impl.index._unzigzag32(unsigned) == signed


@pytest.mark.parametrize(("value", "encoded"), VARINT_VECTORS)
def test_varint_matches_the_brief_vectors(impl, value: int, encoded: str) -> None:
    blob = bytes.fromhex(encoded)
    assert impl.index._encode_varint(value) == blob
    assert impl.index._decode_varint(blob) == (value, len(blob))


@pytest.mark.parametrize("blob", ["", "80", "80 80", "80 80 80", "80 80 80 80"])
def test_varint_decoder_rejects_running_off_the_end(impl, blob: str) -> None:
    with pytest.raises(CorruptIndexError, match=r"^bad varint at offset 0: truncated$"):
        impl.index._decode_varint(bytes.fromhex(blob))


@pytest.mark.parametrize("blob", ["80 80 80 80 80", "80 80 80 80 80 00", "ff ff ff ff 10"])
def test_varint_decoder_rejects_a_fifth_byte_over_32_bits(impl, blob: str) -> None:
    with pytest.raises(CorruptIndexError, match=r"^bad varint at offset 0: over 32 bits$"):
        impl.index._decode_varint(bytes.fromhex(blob))


@given(st.integers(0, 2**32 - 1))
def test_varint_round_trips_every_u32(impl, value: int) -> None:
    encoded = impl.index._encode_varint(value)
    assert len(encoded) == 1 + sum(value >= 1 << (7 * k) for k in range(1, 5))
    assert impl.index._decode_varint(encoded + b"\x99") == (value, len(encoded))


@given(st.integers(-(2**31), 2**31 - 1))
def test_zigzag_round_trips_every_int32(impl, value: int) -> None:
    encoded = impl.index._zigzag32(value)
    assert 0 <= encoded <= 2**32 - 1
    assert encoded == 2 * abs(value) - (value < 0)
    assert impl.index._unzigzag32(encoded) == value


# --------------------------------------------------------------------------- §2.3 worked examples

EXAMPLE_A = [(10, 1000, True), (9, 10, False), (11, 15, False), (10, 12, False), (10, 1050, True)]
EXAMPLE_A_BLOB = bytes.fromhex("29 d0 0f 02 14 08 0a 02 05 01 64")

EXAMPLE_B = [
    (3000, 45000, True),
    (3003, 12000, False),
    (2997, 11800, False),
    (3000, 12345, False),
    (3000, 46000, True),
    (0, 12100, False),
]
EXAMPLE_B_BLOB = bytes.fromhex("e1 5d 90 bf 05 0c c0 bb 01 16 8f 03 0c c2 08 01 d0 0f de 5d e9 03")

ROUND_TRIP = [
    (10, 30000, True),
    (9, 1000, False),
    (11, 1100, False),
    (18, 31000, True),
    (0, 1000, False),
]
ROUND_TRIP_BLOB = bytes.fromhex("29 e0 d4 03 02 d0 0f 08 c8 01 1d d0 0f 46 c7 01")

ALL_KEY = [(2 * i, 3 * i, True) for i in range(1, 6)]
HALF_KEY = [(2 * i, 3 * i, i % 2 == 1) for i in range(1, 6)]

ENCODER_VECTORS = [
    pytest.param(EXAMPLE_A, EXAMPLE_A_BLOB, id="example-A"),
    pytest.param(EXAMPLE_B, EXAMPLE_B_BLOB, id="example-B"),
    pytest.param(ROUND_TRIP, ROUND_TRIP_BLOB, id="round-trip"),
    pytest.param(ALL_KEY, bytes.fromhex("09 06") * 5, id="all-key"),
    pytest.param(HALF_KEY, bytes.fromhex("09 06 08 0c 09 0c 08 0c 09 0c"), id="half-key"),
]


@pytest.mark.parametrize(("samples", "blob"), ENCODER_VECTORS)
def test_encoder_and_encode_index_produce_the_brief_bytes(impl, samples, blob: bytes) -> None:
    assert encode_with_encoder(impl.index, samples) == blob
    assert encode_batch(impl.index, samples) == blob


@pytest.mark.parametrize(("samples", "blob"), ENCODER_VECTORS)
def test_brief_vectors_decode_back_to_their_samples(impl, samples, blob: bytes) -> None:
    decoded = impl.index.decode_index(blob)
    assert (
        list(
            zip(
                decoded.durations.tolist(),
                decoded.sizes.tolist(),
                decoded.is_key.tolist(),
                strict=True,
            )
        )
        == samples
    )
    assert [
        (s.duration_90k, s.bytes, s.is_key) for s in impl.index.SampleIndexIterator(blob)
    ] == samples


def test_example_a_totals(impl) -> None:
    encoder = impl.index.SampleIndexEncoder()
    for sample in EXAMPLE_A:
        encoder.add_sample(*sample)
    assert (
        encoder.total_duration_90k,
        encoder.video_samples,
        encoder.video_sync_samples,
        encoder.sample_file_bytes,
        encoder.has_trailing_zero,
    ) == (50, 5, 2, 2087, False)
    decoded = impl.index.decode_index(EXAMPLE_A_BLOB)
    assert (
        decoded.total_duration_90k,
        decoded.video_samples,
        decoded.video_sync_samples,
        decoded.sample_file_bytes,
        decoded.has_trailing_zero,
    ) == (50, 5, 2, 2087, False)


def test_example_a_decoding_state_trace(impl) -> None:
    """Brief: (pos, start) = (0,0) (1000,10) (1010,19) (1025,30) (1037,40), then end at 2087/50."""
    trace = [(0, 0), (1000, 10), (1010, 19), (1025, 30), (1037, 40)]
    samples = list(impl.index.SampleIndexIterator(EXAMPLE_A_BLOB))
    assert [(s.pos, s.start_90k) for s in samples] == trace
    assert all(isinstance(s, _index_types.Sample) for s in samples)
    decoded = impl.index.decode_index(EXAMPLE_A_BLOB)
    assert list(zip(decoded.positions.tolist(), decoded.starts.tolist(), strict=True)) == trace
    assert (decoded.sample_file_bytes, decoded.total_duration_90k) == (2087, 50)


def test_example_b_has_a_trailing_zero(impl) -> None:
    encoder = impl.index.SampleIndexEncoder()
    for sample in EXAMPLE_B:
        encoder.add_sample(*sample)
    assert encoder.has_trailing_zero
    decoded = impl.index.decode_index(EXAMPLE_B_BLOB)
    assert decoded.has_trailing_zero
    assert (decoded.video_samples, decoded.video_sync_samples) == (6, 2)


def test_empty_index_has_no_samples_and_zero_totals(impl) -> None:
    assert impl.index.SampleIndexEncoder().video_index == b""
    assert impl.index.encode_index([], [], []) == b""
    decoded = impl.index.decode_index(b"")
    assert decoded.video_samples == decoded.sample_file_bytes == decoded.total_duration_90k == 0
    assert not decoded.has_trailing_zero
    assert decoded.durations.dtype == np.int32 and len(decoded.durations) == 0
    assert list(impl.index.SampleIndexIterator(b"")) == []


def test_records_are_shared_classes(impl) -> None:
    assert impl.index.Sample is _index_types.Sample
    assert impl.index.DecodedIndex is _index_types.DecodedIndex
    assert isinstance(impl.index.decode_index(EXAMPLE_A_BLOB), _index_types.DecodedIndex)


def test_decoded_columns_have_the_documented_dtypes_and_are_read_only(impl) -> None:
    decoded = impl.index.decode_index(EXAMPLE_A_BLOB)
    columns = {
        "durations": np.int32,
        "sizes": np.int32,
        "is_key": np.bool_,
        "positions": np.int64,
        "starts": np.int64,
        "composition_offsets": np.int32,
    }
    for name, dtype in columns.items():
        column = getattr(decoded, name)
        assert column.dtype == dtype, name
        with pytest.raises(ValueError, match="read-only"):
            column[0] = 1


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_decoder_accepts_any_bytes_like_blob(impl, wrap) -> None:
    assert impl.index.decode_index(wrap(EXAMPLE_A_BLOB)).video_samples == 5
    assert len(list(impl.index.SampleIndexIterator(wrap(EXAMPLE_A_BLOB)))) == 5


def test_decoder_refuses_a_non_buffer_with_type_error(impl) -> None:
    with pytest.raises(TypeError):
        impl.index.decode_index("29 d0 0f")
    with pytest.raises(TypeError):
        impl.index.SampleIndexIterator(11)


# --------------------------------------------------------------------------- §2.4 error rules


def _two_samples_overflowing_duration() -> tuple[bytes, str]:
    first = record(2**30 - 1, 1, True)
    blob = first + record(2**30 - 1, 0, True)
    total = (2**30 - 1) + (2**31 - 2)
    return blob, (
        f"total duration {total} overflows int32 after applying delta {2**30 - 1} "
        f"(sample 1 at offset {len(first)})"
    )


def _key_bytes_overflowing_int32() -> tuple[bytes, str]:
    first = record(1, INT32_MAX, True)
    blob = first + record(0, 1, True)  # running key size 2**31: beyond int32
    return blob, (
        f"sample file bytes {INT32_MAX + 2**31} overflow int32 after a sample of {2**31} bytes "
        f"(sample 1 at offset {len(first)})"
    )


def _total_bytes_overflowing_int32() -> tuple[bytes, str]:
    first = record(1, INT32_MAX, True)
    blob = first + record(0, 1, False)
    return blob, (
        f"sample file bytes {INT32_MAX + 1} overflow int32 after a sample of 1 bytes "
        f"(sample 1 at offset {len(first)})"
    )


ERROR_VECTORS = [
    # The brief's era-1 vectors (test_iterator_errors), with our "(sample N at offset R)" suffix.
    ("80", "bad varint 1 at offset 0: truncated (sample 0 at offset 0)"),
    ("00 80", "bad varint 2 at offset 1: truncated (sample 0 at offset 0)"),
    ("00 02 00 00", "zero duration only allowed at end; have 2 bytes left (sample 0 at offset 0)"),
    ("02 02", "negative duration -1 after applying delta -1 (sample 0 at offset 0)"),
    (
        "04 00",
        "non-positive bytes 0 after applying delta 0 to key=false frame at ts 0 "
        "(sample 0 at offset 0)",
    ),
    # HEAD's additions.
    (
        "05 00",
        "non-positive bytes 0 after applying delta 0 to key=true frame at ts 0 "
        "(sample 0 at offset 0)",
    ),
    (
        "00 01",
        "non-positive bytes -1 after applying delta -1 to key=false frame at ts 0 "
        "(sample 0 at offset 0)",
    ),
    # Ours: one per rule, and errors past the first record.
    ("80 80 80 80 80", "bad varint 1 at offset 0: over 32 bits (sample 0 at offset 0)"),
    ("01 80 80 80 80 10", "bad varint 2 at offset 1: over 32 bits (sample 0 at offset 0)"),
    ("29 d0 0f 02", "bad varint 2 at offset 4: truncated (sample 1 at offset 3)"),
    ("29 d0 0f 4e 14", "negative duration -10 after applying delta -20 (sample 1 at offset 3)"),
    (
        "29 d0 0f 4e 14 00 00",
        "negative duration -10 after applying delta -20 (sample 1 at offset 3)",
    ),
    (
        "29 d0 0f 26 14 01 02",
        "zero duration only allowed at end; have 2 bytes left (sample 1 at offset 3)",
    ),
    (
        "29 d0 0f 02 cf 0f",
        "non-positive bytes -1000 after applying delta -1000 to key=false frame at ts 10 "
        "(sample 1 at offset 3)",
    ),
]


@pytest.mark.parametrize(("blob", "message"), ERROR_VECTORS)
def test_corrupt_index_is_rejected_with_offset_and_rule(impl, blob: str, message: str) -> None:
    data = bytes.fromhex(blob)
    with pytest.raises(CorruptIndexError, match=f"^{re.escape(message)}$"):
        impl.index.decode_index(data)
    assert iterate_outcome(impl.index, data)[1] == message


@pytest.mark.parametrize(
    "case",
    [
        _two_samples_overflowing_duration,
        _key_bytes_overflowing_int32,
        _total_bytes_overflowing_int32,
    ],
    ids=["total-duration", "running-key-bytes", "total-bytes"],
)
def test_int32_overflow_is_rejected(impl, case) -> None:
    blob, message = case()
    with pytest.raises(CorruptIndexError, match=f"^{re.escape(message)}$"):
        impl.index.decode_index(blob)
    samples, error = iterate_outcome(impl.index, blob)
    assert (len(samples), error) == (1, message)


def test_int32_limits_themselves_are_accepted(impl) -> None:
    blob = record(2**30 - 1, INT32_MAX - 1, True) + record(0, 1, False)
    decoded = impl.index.decode_index(blob)
    assert decoded.sizes.tolist() == [INT32_MAX - 1, 1]
    assert decoded.sample_file_bytes == INT32_MAX
    assert decoded.total_duration_90k == 2 * (2**30 - 1)
    assert impl.index.encode_index(decoded.durations, decoded.sizes, decoded.is_key) == blob


def test_corrupt_index_error_is_a_value_error(impl) -> None:
    with pytest.raises(ValueError):
        impl.index.decode_index(b"\x80")


def test_iterator_yields_the_good_samples_then_raises_then_stays_exhausted(impl) -> None:
    iterator = impl.index.SampleIndexIterator(bytes.fromhex("29 d0 0f 02 14 02 02 08"))
    assert [next(iterator).bytes for _ in range(3)] == [1000, 10, 11]
    with pytest.raises(CorruptIndexError, match="bad varint 2 at offset 8: truncated"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_finished_iterator_stays_exhausted(impl) -> None:
    iterator = impl.index.SampleIndexIterator(EXAMPLE_A_BLOB)
    assert len(list(iterator)) == 5
    assert list(iterator) == []


# --------------------------------------------------------------------------- encoder input rules

ENCODER_REFUSALS = [
    ([(-1, 10, True)], "duration -1 is negative (sample 0)"),
    ([(10, 0, True)], "size 0 is not positive (sample 0)"),
    ([(10, 10, True), (10, -5, False)], "size -5 is not positive (sample 1)"),
    (
        [(10, 10, True), (0, 10, False), (10, 10, False)],
        "zero duration only allowed at end; sample 1 has duration 0 (sample 2)",
    ),
    ([(2**31, 10, True)], f"total duration {2**31} overflows int32 (sample 0)"),
    (
        [(2**30 - 1, 10, True), (2**30 - 1, 10, True), (2, 10, True)],
        f"total duration {2**31} overflows int32 (sample 2)",
    ),
    (
        [(10, INT32_MAX, True), (10, 1, False)],
        f"sample file bytes {2**31} overflow int32 (sample 1)",
    ),
    (
        [(2**30, 10, True)],
        "duration delta 1073741824 (from 0 to 1073741824) is outside the storable range "
        "[-2**30, 2**30) (sample 0)",
    ),
]
# Beyond int64: only the per-sample encoder sees these as integers (numpy makes them objects).
ENCODER_REFUSALS_BEYOND_INT64 = [
    ([(2**70, 10, True)], f"total duration {2**70} overflows int32 (sample 0)"),
    ([(10, -(2**70), True)], f"size {-(2**70)} is not positive (sample 0)"),
]


@pytest.mark.parametrize(("samples", "message"), ENCODER_REFUSALS + ENCODER_REFUSALS_BEYOND_INT64)
def test_encoder_refuses_bad_samples_and_stays_unchanged(impl, samples, message: str) -> None:
    encoder = impl.index.SampleIndexEncoder()
    for sample in samples[:-1]:
        encoder.add_sample(*sample)
    before = (
        encoder.video_index,
        encoder.video_samples,
        encoder.sample_file_bytes,
        encoder.total_duration_90k,
        encoder.video_sync_samples,
        encoder.has_trailing_zero,
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encoder.add_sample(*samples[-1])
    after = (
        encoder.video_index,
        encoder.video_samples,
        encoder.sample_file_bytes,
        encoder.total_duration_90k,
        encoder.video_sync_samples,
        encoder.has_trailing_zero,
    )
    assert after == before


@pytest.mark.parametrize(("samples", "message"), ENCODER_REFUSALS)
def test_encode_index_refuses_what_the_encoder_refuses(impl, samples, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encode_batch(impl.index, samples)


def test_encoder_takes_numpy_scalars_and_keywords(impl) -> None:
    encoder = impl.index.SampleIndexEncoder()
    encoder.add_sample(np.int32(10), np.int64(1000), np.bool_(True))
    encoder.add_sample(duration_90k=9, bytes=10, is_key=False, composition_offset_90k=np.int16(0))
    assert encoder.video_index == EXAMPLE_A_BLOB[:5]


def test_encoder_refuses_non_integers_with_type_error(impl) -> None:
    encoder = impl.index.SampleIndexEncoder()
    with pytest.raises(TypeError, match="cannot be interpreted as an integer"):
        encoder.add_sample(10.0, 1000, True)
    with pytest.raises(TypeError, match="cannot be interpreted as an integer"):
        encoder.add_sample(10, "1000", True)
    assert encoder.video_samples == 0


def test_encode_index_widens_rather_than_wraps(impl) -> None:
    """An int64 value beyond int32 must be refused, not wrapped into a valid-looking int32."""
    wide = np.array([2**32 + 10], np.int64)
    message = r"^total duration 4294967306 overflows int32 \(sample 0\)$"
    with pytest.raises(ValueError, match=message):
        impl.index.encode_index(wide, np.array([5]), np.array([True]))
    with pytest.raises(ValueError, match=r"does not fit int64"):
        impl.index.encode_index(np.array([2**64 - 1], np.uint64), [5], [True])


@pytest.mark.parametrize(
    ("durations", "sizes", "is_key", "error", "match"),
    [
        ([1, 2], [1], [True, True], ValueError, "same length, got 2, 1 and 2"),
        ([[1]], [1], [True], ValueError, "durations must be one-dimensional"),
        ([1.5], [1], [True], TypeError, "durations must hold integers, got dtype float64"),
        ([1], [1], ["yes"], TypeError, "is_key must hold booleans"),
    ],
)
def test_encode_index_refuses_malformed_columns(
    impl, durations, sizes, is_key, error, match
) -> None:
    with pytest.raises(error, match=match):
        impl.index.encode_index(durations, sizes, is_key)


def test_encode_index_accepts_any_integer_and_bool_like_columns(impl) -> None:
    durations, sizes, keys = zip(*EXAMPLE_A, strict=True)
    for columns in [
        (list(durations), list(sizes), list(keys)),
        (np.array(durations, np.int32), np.array(sizes, np.int32), np.array(keys)),
        (np.array(durations, np.uint16), np.array(sizes, np.int64), np.array(keys, np.uint8)),
        (np.array(durations, np.int64)[::-1][::-1], np.array(sizes, np.int32), tuple(keys)),
    ]:
        assert impl.index.encode_index(*columns) == EXAMPLE_A_BLOB


# --------------------------------------------------------------------------- real camera data


def test_real_camera_index_decodes_to_its_known_totals_and_re_encodes(impl, testdata) -> None:
    blob = (testdata / "video_sample_index.bin").read_bytes()
    assert blob[:9] == bytes.fromhex("b9 5e 90 ce 05 28 f4 fa 01")
    decoded = impl.index.decode_index(blob)
    assert decoded.video_samples == len(decoded.sizes) == 1800
    assert decoded.video_sync_samples == int(decoded.is_key.sum()) == 60
    assert decoded.sample_file_bytes == int(decoded.sizes.sum()) == 30104460
    assert decoded.total_duration_90k == int(decoded.durations.sum()) == 5399985
    assert not decoded.has_trailing_zero
    # Brief §6.3's size ranges (its "durations 2993-3005" does not match the file: 2592-3410).
    keys = decoded.is_key
    assert (decoded.sizes[~keys].min(), decoded.sizes[~keys].max()) == (11870, 17618)
    assert (decoded.sizes[keys].min(), decoded.sizes[keys].max()) == (45215, 46197)
    assert decoded.positions.tolist() == [0, *np.cumsum(decoded.sizes)[:-1].tolist()]
    assert decoded.starts.tolist() == [0, *np.cumsum(decoded.durations)[:-1].tolist()]
    assert impl.index.encode_index(decoded.durations, decoded.sizes, decoded.is_key) == blob
    samples = list(
        zip(
            decoded.durations.tolist(), decoded.sizes.tolist(), decoded.is_key.tolist(), strict=True
        )
    )
    assert encode_with_encoder(impl.index, samples) == blob
    *_, last = impl.index.SampleIndexIterator(blob)
    assert last.pos + last.bytes == 30104460
    assert last.start_90k + last.duration_90k == 5399985


# --------------------------------------------------------------------------- properties

durations_strategy = st.one_of(st.integers(1, 6000), st.integers(1, 2**20))
valid_sample = st.tuples(durations_strategy, st.integers(1, 2**21), st.booleans())


@st.composite
def valid_samples(draw) -> list[tuple[int, int, bool]]:
    """Samples every encoder accepts: positive durations, except maybe a trailing zero."""
    samples = draw(st.lists(valid_sample, max_size=40))
    if samples and draw(st.booleans()):
        duration, size, key = samples[-1]
        samples[-1] = (0, size, key)
    return samples


any_int = st.one_of(
    st.integers(-3, 3000),
    st.sampled_from([0, 1, 2**30 - 1, 2**30, 2**31 - 1, 2**31, -(2**31), 2**40]),
    st.integers(-(2**33), 2**33),
)
any_samples = st.lists(st.tuples(any_int, any_int, st.booleans()), max_size=12)


@given(valid_samples())
def test_encode_then_decode_returns_the_samples_and_totals(impl, samples) -> None:
    blob = encode_with_encoder(impl.index, samples)
    decoded = impl.index.decode_index(blob)
    got = list(
        zip(
            decoded.durations.tolist(), decoded.sizes.tolist(), decoded.is_key.tolist(), strict=True
        )
    )
    assert got == samples
    assert decoded.sample_file_bytes == sum(s[1] for s in samples)
    assert decoded.total_duration_90k == sum(s[0] for s in samples)
    assert decoded.video_sync_samples == sum(s[2] for s in samples)
    assert decoded.has_trailing_zero == (bool(samples) and samples[-1][0] == 0)
    iterated = [(s.duration_90k, s.bytes, s.is_key) for s in impl.index.SampleIndexIterator(blob)]
    assert iterated == samples


@given(any_samples)
def test_encoder_and_encode_index_agree_on_bytes_and_errors(impl, samples) -> None:
    assert encode_outcome(encode_with_encoder, impl.index, samples) == encode_outcome(
        encode_batch, impl.index, samples
    )


@given(st.binary(max_size=40))
def test_iterator_and_decode_index_agree_on_any_blob(impl, blob: bytes) -> None:
    outcome = decode_outcome(impl.index, blob)
    samples, error = iterate_outcome(impl.index, blob)
    if outcome[0] == "error":
        assert error == outcome[1]
    else:
        assert error is None
        assert [s[2] for s in samples] == outcome[1]
        assert [s[3] for s in samples] == outcome[2]
        assert [s[0] for s in samples] == outcome[4]


@given(st.binary(max_size=40))
def test_whatever_decodes_is_consistent_and_re_encodes(impl, blob: bytes) -> None:
    """Any accepted blob obeys the invariants; re-encoding may only shorten overlong varints."""
    try:
        decoded = impl.index.decode_index(blob)
    except CorruptIndexError:
        return
    sizes = decoded.sizes.astype(np.int64)
    durations = decoded.durations.astype(np.int64)
    assert (sizes > 0).all() and (durations >= 0).all()
    assert not (durations[:-1] == 0).any()
    assert decoded.sample_file_bytes == int(sizes.sum()) <= INT32_MAX
    assert decoded.total_duration_90k == int(durations.sum()) <= INT32_MAX
    re_encoded = impl.index.encode_index(
        decoded.durations, decoded.sizes, decoded.is_key, decoded.composition_offsets
    )
    assert len(re_encoded) <= len(blob)
    assert decode_outcome(impl.index, re_encoded) == decode_outcome(impl.index, blob)


# --------------------------------------------------------------------------- version 2 (B-frames)
#
# Composition offsets (pts - dts) per sample, issue 10 §1.  The bytes, from _index_py's docstring:
# 0x0A, varint N, N version-1 records, N zigzag32 offset varints; only when an offset is non-zero.

OffsetSample = tuple[int, int, bool, int]


def version_2_blob(samples: list[OffsetSample]) -> bytes:
    """A version-2 blob built from first principles, independent of the codec."""
    records = b""
    prev_duration = prev_key = prev_nonkey = 0
    for duration, size, is_key, _ in samples:
        prev = prev_key if is_key else prev_nonkey
        records += record(duration - prev_duration, size - prev, is_key)
        prev_duration = duration
        if is_key:
            prev_key = size
        else:
            prev_nonkey = size
    offsets = b"".join(varint(zigzag(offset)) for *_, offset in samples)
    return b"\x0a" + varint(len(samples)) + records + offsets


def encode_with_offsets(index: ModuleType, samples: list[OffsetSample]) -> bytes:
    encoder = index.SampleIndexEncoder()
    for duration, size, is_key, offset in samples:
        encoder.add_sample(duration, size, is_key, offset)
    return encoder.video_index


def encode_batch_with_offsets(index: ModuleType, samples: list[OffsetSample]) -> bytes:
    columns = list(zip(*samples, strict=True)) if samples else [[], [], [], []]
    return index.encode_index(*columns)


#: x264 ``bframes=2`` in decode order, as the GStreamer camera sends it (30 fps): I, P, B, B, then
#: the end of the run (trailing zero).  Shown at 6000, 15000, 9000, 12000 (decode + offset).
BFRAME_GOP: list[OffsetSample] = [
    (3000, 100, True, 6000),
    (3000, 50, False, 12000),
    (3000, 20, False, 3000),
    (0, 20, False, 3000),
]
BFRAME_GOP_BLOB = bytes.fromhex("0a 04 e1 5d c8 01 00 64 00 3b de 5d 00 e0 5d c0 bb 01 f0 2e f0 2e")


def test_bframe_vector_encodes_to_the_documented_bytes(impl) -> None:
    assert version_2_blob(BFRAME_GOP) == BFRAME_GOP_BLOB
    assert encode_with_offsets(impl.index, BFRAME_GOP) == BFRAME_GOP_BLOB
    assert encode_batch_with_offsets(impl.index, BFRAME_GOP) == BFRAME_GOP_BLOB
    # The records are version 1's, byte for byte, between the header and the offsets.
    version_1 = encode_batch(impl.index, [sample[:3] for sample in BFRAME_GOP])
    assert BFRAME_GOP_BLOB[2 : 2 + len(version_1)] == version_1


def test_bframe_vector_decodes_with_its_offsets(impl) -> None:
    decoded = impl.index.decode_index(BFRAME_GOP_BLOB)
    assert decoded.composition_offsets.tolist() == [6000, 12000, 3000, 3000]
    assert decoded.has_composition_offsets
    assert decoded.starts.tolist() == [0, 3000, 6000, 9000]
    assert (decoded.video_samples, decoded.video_sync_samples) == (4, 1)
    assert (decoded.sample_file_bytes, decoded.total_duration_90k) == (190, 9000)
    assert decoded.has_trailing_zero
    shown = (decoded.starts + decoded.composition_offsets).tolist()
    assert shown == [6000, 15000, 9000, 12000]
    samples = list(impl.index.SampleIndexIterator(BFRAME_GOP_BLOB))
    assert [(s.duration_90k, s.bytes, s.is_key, s.composition_offset_90k) for s in samples] == (
        BFRAME_GOP
    )
    assert [s.pos for s in samples] == [0, 100, 150, 170]


@pytest.mark.parametrize(("samples", "blob"), ENCODER_VECTORS)
def test_zero_offsets_keep_the_version_1_bytes(impl, samples, blob: bytes) -> None:
    """Existing recordings (and any stream without B-frames) keep their bytes exactly."""
    with_zeros = [(*sample, 0) for sample in samples]
    assert encode_with_offsets(impl.index, with_zeros) == blob
    assert encode_batch_with_offsets(impl.index, with_zeros) == blob
    decoded = impl.index.decode_index(blob)
    assert decoded.composition_offsets.tolist() == [0] * len(samples)
    assert not decoded.has_composition_offsets
    assert all(s.composition_offset_90k == 0 for s in impl.index.SampleIndexIterator(blob))


def test_encoder_switches_to_version_2_at_the_first_offset(impl) -> None:
    encoder = impl.index.SampleIndexEncoder()
    encoder.add_sample(3000, 100, True)
    encoder.add_sample(3000, 50, False, 0)
    assert encoder.video_index == encode_batch(impl.index, [(3000, 100, True), (3000, 50, False)])
    assert not encoder.has_composition_offsets
    encoder.add_sample(3000, 20, False, -3000)
    assert encoder.has_composition_offsets
    expected = [(3000, 100, True, 0), (3000, 50, False, 0), (3000, 20, False, -3000)]
    assert encoder.video_index == version_2_blob(expected)
    assert (encoder.video_samples, encoder.sample_file_bytes) == (3, 170)


def test_offsets_of_either_sign_up_to_int32_round_trip(impl) -> None:
    samples = [(1, 5, True, INT32_MAX), (1, 5, False, -(2**31)), (1, 5, False, -1), (1, 5, True, 0)]
    blob = encode_batch_with_offsets(impl.index, samples)
    assert blob == version_2_blob(samples)
    assert impl.index.decode_index(blob).composition_offsets.tolist() == [s[3] for s in samples]


@pytest.mark.parametrize("offset", [2**31, -(2**31) - 1, 2**70])
def test_encoder_refuses_an_offset_beyond_int32_and_stays_unchanged(impl, offset: int) -> None:
    message = f"composition offset {offset} does not fit int32 (sample 1)"
    encoder = impl.index.SampleIndexEncoder()
    encoder.add_sample(3000, 100, True, 6000)
    before = (encoder.video_index, encoder.video_samples, encoder.sample_file_bytes)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encoder.add_sample(3000, 10, False, offset)
    assert (encoder.video_index, encoder.video_samples, encoder.sample_file_bytes) == before
    if offset < 2**63:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            impl.index.encode_index([3000, 3000], [100, 10], [True, False], [6000, offset])


def test_encoder_reports_the_first_bad_sample_whatever_its_problem(impl) -> None:
    """An offset problem at sample 1 is reported before a size problem at sample 2."""
    message = "composition offset 2147483648 does not fit int32 (sample 1)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        impl.index.encode_index([1, 1, 1], [1, 1, 0], [True, False, False], [0, 2**31, 0])


def test_encode_index_refuses_an_offsets_column_of_another_length(impl) -> None:
    message = "durations, sizes, is_key and composition_offsets must have the same length"
    with pytest.raises(ValueError, match=f"^{message}, got 2, 2, 2 and 1$"):
        impl.index.encode_index([1, 1], [1, 1], [True, False], [5])
    with pytest.raises(TypeError, match="composition_offsets must hold integers"):
        impl.index.encode_index([1], [1], [True], [0.5])


VERSION_2_ERROR_VECTORS = [
    ("0a", "version 2 index: bad sample count varint at offset 1: truncated"),
    ("0a 80 80 80 80 80", "version 2 index: bad sample count varint at offset 1: over 32 bits"),
    ("0a 00", "version 2 index declares 0 samples (count at offset 1)"),
    (
        "0a 02 09 06 02",
        "version 2 index declares 2 samples but the bytes from offset 2 hold at most 1 records",
    ),
    ("0a 01 09 06", "bad composition offset varint at offset 4: truncated (sample 0)"),
    (
        "0a 01 09 06 80 80 80 80 80",
        "bad composition offset varint at offset 4: over 32 bits (sample 0)",
    ),
    (
        "0a 02 09 06 08 02 02 80",
        "bad composition offset varint at offset 7: truncated (sample 1)",
    ),
    (
        "0a 01 09 06 02 00",
        "version 2 index has 1 bytes after its last composition offset (offset 5)",
    ),
    (
        "0a 01 09 06 00",
        "version 2 index has only zero composition offsets (from offset 4); "
        "such an index is stored as version 1",
    ),
    # Record rules, worded as in version 1, with offsets counted from the blob's start.
    (
        "0a 01 04 00 02",
        "non-positive bytes 0 after applying delta 0 to key=false frame at ts 0 "
        "(sample 0 at offset 2)",
    ),
    (
        "0a 02 00 02 00 02 02 02",
        "zero duration only allowed at end; have 2 bytes left (sample 0 at offset 2)",
    ),
]


@pytest.mark.parametrize(("blob", "message"), VERSION_2_ERROR_VECTORS)
def test_corrupt_version_2_index_is_rejected_with_offset_and_rule(
    impl, blob: str, message: str
) -> None:
    data = bytes.fromhex(blob)
    with pytest.raises(CorruptIndexError, match=f"^{re.escape(message)}$"):
        impl.index.decode_index(data)
    assert iterate_outcome(impl.index, data) == ([], message)


def test_version_2_iterator_yields_the_good_samples_before_a_bad_record(impl) -> None:
    blob = bytes.fromhex("0a 02 09 06 04 00 02 02")
    message = (
        "non-positive bytes 0 after applying delta 0 to key=false frame at ts 2 "
        "(sample 1 at offset 4)"
    )
    samples, error = iterate_outcome(impl.index, blob)
    assert (samples, error) == ([(0, 0, 2, 3, True, 1)], message)
    with pytest.raises(CorruptIndexError, match=f"^{re.escape(message)}$"):
        impl.index.decode_index(blob)


offset_value = st.one_of(
    st.integers(-6000, 12000), st.sampled_from([0, 0, 0, INT32_MAX, -(2**31)])
)


@st.composite
def samples_with_offsets(draw) -> list[OffsetSample]:
    samples = draw(valid_samples())
    return [(*sample, draw(offset_value)) for sample in samples]


@given(samples_with_offsets())
def test_offsets_round_trip_through_both_encoders(impl, samples) -> None:
    blob = encode_with_offsets(impl.index, samples)
    assert encode_batch_with_offsets(impl.index, samples) == blob
    if any(s[3] for s in samples):
        assert blob == version_2_blob(samples)
    else:
        assert blob == encode_batch(impl.index, [s[:3] for s in samples])
    decoded = impl.index.decode_index(blob)
    got = list(
        zip(
            decoded.durations.tolist(),
            decoded.sizes.tolist(),
            decoded.is_key.tolist(),
            decoded.composition_offsets.tolist(),
            strict=True,
        )
    )
    assert got == samples
    iterated = [
        (s.duration_90k, s.bytes, s.is_key, s.composition_offset_90k)
        for s in impl.index.SampleIndexIterator(blob)
    ]
    assert iterated == samples


version_2_like = st.binary(max_size=40).map(lambda tail: b"\x0a" + tail)


@given(version_2_like)
def test_iterator_agrees_on_any_version_2_blob_and_what_decodes_re_encodes(
    impl, blob: bytes
) -> None:
    outcome = decode_outcome(impl.index, blob)
    samples, error = iterate_outcome(impl.index, blob)
    if outcome[0] == "error":
        assert error == outcome[1]
        return
    assert error is None
    assert [s[5] for s in samples] == outcome[6]
    decoded = impl.index.decode_index(blob)
    assert decoded.has_composition_offsets
    re_encoded = impl.index.encode_index(
        decoded.durations, decoded.sizes, decoded.is_key, decoded.composition_offsets
    )
    assert len(re_encoded) <= len(blob)
    assert decode_outcome(impl.index, re_encoded) == decode_outcome(impl.index, blob)


# --------------------------------------------------------------------------- twins compared
#
# Defined only when the compiled core is part of the run (never skipped): with
# MOONFIRE_NO_EXTENSIONS set there is nothing to compare against.

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate"]),
    st.integers(0, 2**16),
    st.integers(0, 255),
)


def mutate(blob: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(blob)
    for kind, where, byte in mutations:
        at = where % (len(data) + 1)
        if kind == "insert":
            data.insert(at, byte)
        elif not data:
            continue
        elif kind == "flip":
            data[at % len(data)] ^= 1 << (byte % 8)
        elif kind == "delete":
            del data[at % len(data)]
        else:
            del data[at:]
    return bytes(data)


if not NO_EXTENSIONS:
    from moonfire_core import _index_c, _index_py

    @pytest.mark.c_extension
    @given(any_samples)
    def test_twins_encode_identically_or_fail_identically(samples) -> None:
        for encode in (encode_with_encoder, encode_batch):
            assert encode_outcome(encode, _index_c, samples) == encode_outcome(
                encode, _index_py, samples
            )

    @pytest.mark.c_extension
    @given(st.binary(max_size=60))
    def test_twins_decode_random_blobs_identically(blob: bytes) -> None:
        assert decode_outcome(_index_c, blob) == decode_outcome(_index_py, blob)
        assert iterate_outcome(_index_c, blob) == iterate_outcome(_index_py, blob)

    @pytest.mark.c_extension
    @given(valid_samples(), st.lists(mutation, min_size=1, max_size=3))
    def test_twins_decode_mutated_valid_blobs_identically(samples, mutations) -> None:
        blob = mutate(
            _index_py.encode_index(*zip(*samples, strict=True)) if samples else b"", mutations
        )
        assert decode_outcome(_index_c, blob) == decode_outcome(_index_py, blob)
        assert iterate_outcome(_index_c, blob) == iterate_outcome(_index_py, blob)

    any_samples_with_offsets = st.lists(
        st.tuples(any_int, any_int, st.booleans(), any_int), max_size=12
    )

    @pytest.mark.c_extension
    @given(any_samples_with_offsets)
    def test_twins_encode_offsets_identically_or_fail_identically(samples) -> None:
        for encode in (encode_with_offsets, encode_batch_with_offsets):
            assert encode_outcome(encode, _index_c, samples) == encode_outcome(
                encode, _index_py, samples
            )

    @pytest.mark.c_extension
    @given(samples_with_offsets(), st.lists(mutation, min_size=1, max_size=3))
    def test_twins_decode_mutated_version_2_blobs_identically(samples, mutations) -> None:
        blob = mutate(encode_batch_with_offsets(_index_py, samples), mutations)
        assert decode_outcome(_index_c, blob) == decode_outcome(_index_py, blob)
        assert iterate_outcome(_index_c, blob) == iterate_outcome(_index_py, blob)

    @pytest.mark.c_extension
    @given(valid_samples())
    def test_each_twin_decodes_what_the_other_encodes(samples) -> None:
        from_c = encode_batch(_index_c, samples)
        from_py = encode_batch(_index_py, samples)
        assert from_c == from_py
        assert decode_outcome(_index_py, from_c) == decode_outcome(_index_c, from_py)
