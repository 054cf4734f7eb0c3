"""The ``video_index`` codec (brief §2), pure-Python reference twin of ``_index_c``.

A recording's index is one record per video sample, each two varints (protobuf/LEB128, u32):

* ``varint1 = (zigzag32(duration - previous duration) << 1) | is_key``
* ``varint2 = zigzag32(bytes - previous bytes of the same kind)`` (key and non-key frames keep
  separate predictors, because key frames are several times larger).

All three predictors start at 0.  Nothing absolute is stored: a sample's byte position in its
sample file and its start time are running sums, recomputed by every reader.  Limits and the
exact error messages live in ``_index_rules`` so both twins agree on them.

**Version 2** (issue 10: B-frames) adds a composition offset per sample, ``pts - dts``: samples
are stored in decode order, durations are decode-time deltas, and a frame is shown at its start
plus its offset.  Only a recording with some non-zero offset is written this way; every other
index stays version 1, byte for byte::

    0x0A                      marker (a negative first duration in version 1: never valid there)
    varint N                  the sample count, N >= 1
    N records                 exactly as in version 1 (the rules above, same error messages)
    N varints                 zigzag32(composition offset) of each sample, in order

and nothing after.  At least one offset is non-zero (else the index must be version 1), so each
recording has one encoding.  The offsets are absolute, not deltas: B-frame patterns alternate, so
deltas would be no shorter.  Putting them after the records keeps the records' bytes those of
version 1 and lets the encoder choose the version when the blob is read, not up front.  A reader
checks the header, that 2N varint ends follow it, every offset and the end, then the records.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import CorruptIndexError
from ._index_rules import (
    INT32_MAX,
    VARINT_OVER_32_BITS,
    VARINT_TRUNCATED,
    VERSION_2_MARKER,
    as_blob,
    as_columns,
    bad_offset_varint,
    bad_sample_count,
    bad_varint,
    bytes_after_offsets,
    bytes_overflow,
    duration_overflow,
    negative_duration,
    no_samples_declared,
    non_positive_bytes,
    offsets_all_zero,
    records_too_short,
    sample_problem,
    zero_duration_not_last,
)
from ._index_types import DecodedIndex, Sample

__all__ = [
    "DecodedIndex",
    "Sample",
    "SampleIndexEncoder",
    "SampleIndexIterator",
    "decode_index",
    "encode_index",
]

# --------------------------------------------------------------------------- primitives (§2.1)


def _zigzag32(value: int) -> int:
    """Map an int32 to a u32 so small magnitudes of either sign get short varints."""
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise ValueError(f"zigzag32 input {value} is not an int32")
    return ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF


def _unzigzag32(value: int) -> int:
    """Inverse of ``_zigzag32``: 0, 1, 2, 3, ... -> 0, -1, 1, -2, ..."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"zigzag32 value {value} is not a u32")
    return (value >> 1) ^ -(value & 1)


def _append_varint(out: bytearray, value: int) -> None:
    """Append the u32 ``value`` as 1-5 bytes, least significant 7-bit group first."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _encode_varint(value: int) -> bytes:
    """``value`` (a u32) as a varint; a test seam for the brief's §2.1 vectors."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"varint value {value} is not a u32")
    out = bytearray()
    _append_varint(out, value)
    return bytes(out)


def _varint_at(data: bytes, offset: int) -> tuple[int, int]:
    """Read the varint at ``offset``: ``(value, offset after it)``.

    On error the second item is negative: ``VARINT_TRUNCATED`` when the buffer ends before a byte
    without the continuation bit, ``VARINT_OVER_32_BITS`` when the 5th byte (bits 28-34) has any of
    its top 4 bits set, which would not fit a u32 (and would never stop on a continuation bit).
    """
    value = 0
    shift = 0
    end = len(data)
    while True:
        if offset >= end:
            return 0, VARINT_TRUNCATED
        byte = data[offset]
        offset += 1
        if shift == 28 and byte & 0xF0:
            return 0, VARINT_OVER_32_BITS
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def _decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Like ``_varint_at`` but raises ``CorruptIndexError``; a test seam for §2.1."""
    data = as_blob(data)
    if not 0 <= offset <= len(data):
        raise IndexError(f"offset {offset} is outside the {len(data)}-byte buffer")
    value, after = _varint_at(data, offset)
    if after < 0:
        reason = "truncated" if after == VARINT_TRUNCATED else "over 32 bits"
        raise CorruptIndexError(f"bad varint at offset {offset}: {reason}")
    return value, after


# --------------------------------------------------------------------------- encoder (§2.2)


class SampleIndexEncoder:
    """Builds a ``video_index`` one sample at a time, as the recorder receives them.

    Keeps the totals the recording row stores alongside the blob.  A sample that breaks a rule
    (see ``_index_rules.sample_problem``) raises ``ValueError`` and leaves the encoder unchanged.
    """

    __slots__ = (
        "_index",
        "_offsets",
        "_has_offsets",
        "_prev_duration",
        "_prev_bytes_key",
        "_prev_bytes_nonkey",
        "_sample_file_bytes",
        "_total_duration_90k",
        "_video_samples",
        "_video_sync_samples",
    )

    def __init__(self) -> None:
        self._index = bytearray()
        #: The version-2 offsets column, kept from the first sample so the version can change
        #: at any sample without re-walking the records.
        self._offsets = bytearray()
        self._has_offsets = False
        self._prev_duration = 0
        self._prev_bytes_key = 0
        self._prev_bytes_nonkey = 0
        self._sample_file_bytes = 0
        self._total_duration_90k = 0
        self._video_samples = 0
        self._video_sync_samples = 0

    def add_sample(
        self, duration_90k: int, bytes: int, is_key: bool, composition_offset_90k: int = 0
    ) -> None:
        """Append one sample: its duration (90 kHz units, decode time to the next sample), its
        size in bytes, its key flag and its composition offset (presentation minus decode time;
        0 for streams without B-frames)."""
        duration = operator.index(duration_90k)
        size = operator.index(bytes)
        key = bool(is_key)
        offset = operator.index(composition_offset_90k)
        problem = sample_problem(
            self._video_samples,
            duration,
            size,
            self._prev_duration,
            self._total_duration_90k,
            self._sample_file_bytes,
            offset,
        )
        if problem is not None:
            raise ValueError(problem)
        _append_varint(self._offsets, _zigzag32(offset))
        if offset:
            self._has_offsets = True
        # sample_problem bounded both deltas, so _zigzag32's range check would never fire.
        _append_varint(self._index, (_zigzag32(duration - self._prev_duration) << 1) | key)
        self._prev_duration = duration
        if key:
            _append_varint(self._index, _zigzag32(size - self._prev_bytes_key))
            self._prev_bytes_key = size
            self._video_sync_samples += 1
        else:
            _append_varint(self._index, _zigzag32(size - self._prev_bytes_nonkey))
            self._prev_bytes_nonkey = size
        self._sample_file_bytes += size
        self._total_duration_90k += duration
        self._video_samples += 1

    @property
    def video_index(self) -> bytes:
        """The blob so far (a copy): version 2 once a sample had a non-zero offset."""
        if not self._has_offsets:
            return bytes(self._index)
        header = bytearray([VERSION_2_MARKER])
        _append_varint(header, self._video_samples)
        return bytes(header + self._index + self._offsets)

    @property
    def has_composition_offsets(self) -> bool:
        """Some sample so far has a non-zero composition offset (the blob is version 2)."""
        return self._has_offsets

    @property
    def sample_file_bytes(self) -> int:
        return self._sample_file_bytes

    @property
    def total_duration_90k(self) -> int:
        return self._total_duration_90k

    @property
    def video_samples(self) -> int:
        return self._video_samples

    @property
    def video_sync_samples(self) -> int:
        return self._video_sync_samples

    @property
    def has_trailing_zero(self) -> bool:
        """The last sample has duration 0 (the recording's flags bit 1)."""
        return self._video_samples > 0 and self._prev_duration == 0


def encode_index(
    durations: Any, sizes: Any, is_key: Any, composition_offsets: Any = None
) -> bytes:
    """Encode whole columns at once; same bytes and same errors as ``SampleIndexEncoder``.

    ``composition_offsets`` (one per sample, or ``None`` for all zero) makes a version-2 index
    when any is non-zero.
    """
    duration_column, size_column, key_column, offset_column = as_columns(
        durations, sizes, is_key, composition_offsets
    )
    offsets = [0] * len(duration_column) if offset_column is None else offset_column.tolist()
    encoder = SampleIndexEncoder()
    for duration, size, key, offset in zip(
        duration_column.tolist(), size_column.tolist(), key_column.tolist(), offsets, strict=True
    ):
        encoder.add_sample(duration, size, key, offset)
    return encoder.video_index


# --------------------------------------------------------------------------- decoder (§2.4)


def _version_2_layout(data: bytes) -> tuple[int, int, list[int]]:
    """Check a version-2 blob's header and offsets: ``(records start, records end, offsets)``.

    Everything but the records themselves, in the order the module docstring gives; the records
    are then decoded between the two offsets returned, by the version-1 loop.
    """
    end = len(data)
    declared, offset = _varint_at(data, 1)
    if offset < 0:
        raise bad_sample_count(offset)
    if declared == 0:
        raise no_samples_declared()
    records_start = offset
    # Every varint ends in exactly one byte below 0x80 and a record is two varints.
    wanted = 2 * declared
    found = 0
    while offset < end and found < wanted:
        found += data[offset] < 0x80
        offset += 1
    if found < wanted:
        raise records_too_short(declared, found // 2, records_start)
    records_end = offset
    offsets: list[int] = []
    for sample in range(declared):
        value, after = _varint_at(data, offset)
        if after < 0:
            raise bad_offset_varint(offset, after, sample)
        offsets.append(_unzigzag32(value))
        offset = after
    if offset < end:
        raise bytes_after_offsets(end - offset, offset)
    if not any(offsets):
        raise offsets_all_zero(records_end)
    return records_start, records_end, offsets


def _records(data: bytes) -> Iterator[tuple[int, int, int, int, bool, int]]:
    """Yield ``(pos, start_90k, duration_90k, bytes, is_key, composition offset)`` per record,
    checking every rule.

    The single decoding loop behind both ``SampleIndexIterator`` and ``decode_index``, so they
    accept the same blobs and fail with the same message at the same sample.
    """
    if data[:1] == bytes([VERSION_2_MARKER]):
        offset, end, offsets = _version_2_layout(data)
        for record, composition_offset in zip(
            _records_between(data, offset, end), offsets, strict=True
        ):
            yield (*record, composition_offset)
        return
    for record in _records_between(data, 0, len(data)):
        yield (*record, 0)


def _records_between(
    data: bytes, offset: int, end: int
) -> Iterator[tuple[int, int, int, int, bool]]:
    """The version-1 records in ``data[offset:end]`` (offsets in messages count from 0)."""
    sample = 0
    pos = 0
    start = 0
    duration = 0
    bytes_key = 0
    bytes_nonkey = 0
    while offset < end:
        record = offset
        # Most records are a 1-byte varint1 and a 1-2 byte varint2: read 1-byte varints inline.
        varint1 = data[offset]
        if varint1 < 0x80:
            offset += 1
        else:
            varint1, offset = _varint_at(data, offset)
            if offset < 0:
                raise bad_varint(1, record, offset, sample, record)
        varint2_offset = offset
        varint2 = data[offset] if offset < end else 0x80
        if varint2 < 0x80:
            offset += 1
        else:
            varint2, offset = _varint_at(data, offset)
            if offset < 0:
                raise bad_varint(2, varint2_offset, offset, sample, record)

        duration_delta = (varint1 >> 2) ^ -((varint1 >> 1) & 1)  # _unzigzag32(varint1 >> 1)
        duration += duration_delta
        if duration < 0:
            raise negative_duration(duration, duration_delta, sample, record)
        if start + duration > INT32_MAX:
            raise duration_overflow(start + duration, duration_delta, sample, record)
        if duration == 0 and offset < end:
            raise zero_duration_not_last(end - offset, sample, record)

        is_key = bool(varint1 & 1)
        bytes_delta = (varint2 >> 1) ^ -(varint2 & 1)  # _unzigzag32(varint2)
        if is_key:
            bytes_key += bytes_delta
            size = bytes_key
        else:
            bytes_nonkey += bytes_delta
            size = bytes_nonkey
        if size <= 0:
            raise non_positive_bytes(size, bytes_delta, is_key, start, sample, record)
        if pos + size > INT32_MAX:
            raise bytes_overflow(pos + size, size, sample, record)

        yield pos, start, duration, size, is_key
        pos += size
        start += duration
        sample += 1


class SampleIndexIterator:
    """Iterates a ``video_index`` blob, yielding one ``Sample`` per record.

    Raises ``CorruptIndexError`` when it reaches a bad record (after yielding the good ones before
    it); once it has raised or finished, it stays exhausted.
    """

    __slots__ = ("_records",)

    def __init__(self, blob: Any) -> None:
        self._records = _records(as_blob(blob))

    def __iter__(self) -> SampleIndexIterator:
        return self

    def __next__(self) -> Sample:
        return Sample(*next(self._records))


def _read_only(values: list[Any], dtype: type) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


def decode_index(blob: Any) -> DecodedIndex:
    """Decode a whole blob into columns and totals; ``CorruptIndexError`` if any record is bad."""
    positions: list[int] = []
    starts: list[int] = []
    durations: list[int] = []
    sizes: list[int] = []
    keys: list[bool] = []
    offsets: list[int] = []
    for pos, start, duration, size, is_key, offset in _records(as_blob(blob)):
        positions.append(pos)
        starts.append(start)
        durations.append(duration)
        sizes.append(size)
        keys.append(is_key)
        offsets.append(offset)
    return DecodedIndex(
        durations=_read_only(durations, np.int32),
        sizes=_read_only(sizes, np.int32),
        is_key=_read_only(keys, np.bool_),
        positions=_read_only(positions, np.int64),
        starts=_read_only(starts, np.int64),
        composition_offsets=_read_only(offsets, np.int32),
        sample_file_bytes=positions[-1] + sizes[-1] if sizes else 0,
        total_duration_90k=starts[-1] + durations[-1] if durations else 0,
        video_samples=len(sizes),
        video_sync_samples=sum(keys),
        has_trailing_zero=bool(durations) and durations[-1] == 0,
    )
