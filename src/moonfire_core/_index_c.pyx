"""The ``video_index`` codec (brief §2), compiled twin of ``_index_py``.

``_index_py`` is the readable specification; this module matches it name for name and message for
message.  The work happens on raw ``const unsigned char*`` buffers and C integers: the encoder
appends varints to a growable ``PyMem`` buffer, and the batch paths (``encode_index``,
``decode_index``) run one C loop with no Python object per sample.  Python is touched only to
build the result and, on the cold error paths, to word the message through ``_index_rules``.

Version 2 (composition offsets, see ``_index_py``): the encoder keeps the offsets column in a
second buffer from the first sample and joins header, records and offsets when the blob is read;
the decoder checks the header and offsets first (``_version_2_layout``), then runs the very same
record loop over the records' byte range.

Arithmetic is done in ``int64_t`` throughout: every value the format can carry (a u32 varint,
an int32 total plus an int32 delta) fits without overflow, so the int32 limits are plain
comparisons.  The GIL is kept: an index is a few KiB and decoding it takes microseconds.
"""

cimport cython
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, _PyBytes_Resize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject_IsTrue
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from operator import index as _as_int

import numpy as np

from ._errors import CorruptIndexError
from ._index_rules import (
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

cnp.import_array()

cdef extern from "Python.h":
    # PyBytes_FromStringAndSize returning the raw pointer ``_PyBytes_Resize`` needs.
    PyObject* _new_bytes "PyBytes_FromStringAndSize"(const char* data, Py_ssize_t size) except NULL

__all__ = [
    "DecodedIndex",
    "Sample",
    "SampleIndexEncoder",
    "SampleIndexIterator",
    "decode_index",
    "encode_index",
]

cdef enum:
    _INT32_MAX = 2147483647
    _VERSION_2_MARKER = 0x0A  # see _index_rules.VERSION_2_MARKER
    _MAX_VARINT_BYTES = 5
    _DURATION_DELTA_LIMIT = 1073741824  # 2**30, see _index_rules
    # Two varints of at most 5 bytes each.
    _MAX_RECORD_BYTES = 10
    _INITIAL_CAPACITY = 256
    # Status codes of _read_varint; equal to _index_rules.VARINT_TRUNCATED / VARINT_OVER_32_BITS.
    _VARINT_TRUNCATED = -1
    _VARINT_OVER_32_BITS = -2


# --------------------------------------------------------------------------- primitives (§2.1)

cdef inline uint32_t _zigzag(int64_t value) noexcept nogil:
    # ``value`` is an int32; unsigned arithmetic avoids C's undefined signed shifts.
    cdef uint32_t bits = <uint32_t>value
    return (bits << 1) ^ (<uint32_t>0 - (bits >> 31))


cdef inline int64_t _unzigzag(uint32_t value) noexcept nogil:
    return <int64_t>(value >> 1) ^ -<int64_t>(value & 1)


cdef inline unsigned char* _put_varint(unsigned char* out, uint32_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <unsigned char>(value | 0x80)
        out += 1
        value >>= 7
    out[0] = <unsigned char>value
    return out + 1


cdef Py_ssize_t _read_varint(
    const unsigned char* data, Py_ssize_t end, Py_ssize_t offset, uint32_t* value
) noexcept nogil:
    """General varint loop (see ``_index_py._varint_at``): new offset or a negative status.

    Deliberately not ``inline``: it is the rare path, and keeping it out of ``_step`` keeps
    ``_step`` small enough for the compiler to inline into the decode loop.
    """
    cdef uint32_t result = 0
    cdef uint32_t byte
    cdef int shift = 0
    while True:
        if offset >= end:
            return _VARINT_TRUNCATED
        byte = data[offset]
        offset += 1
        if shift == 28 and (byte & 0xF0):
            return _VARINT_OVER_32_BITS
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            value[0] = result
            return offset
        shift += 7


# Test seams with the twin's names, for the brief's §2.1 vectors.

def _zigzag32(value) -> int:
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise ValueError(f"zigzag32 input {value} is not an int32")
    return _zigzag(value)


def _unzigzag32(value) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"zigzag32 value {value} is not a u32")
    return _unzigzag(value)


def _encode_varint(value) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"varint value {value} is not a u32")
    cdef unsigned char out[5]
    cdef unsigned char* end = _put_varint(out, value)
    return PyBytes_FromStringAndSize(<char*>out, end - out)


def _decode_varint(data, Py_ssize_t offset=0) -> tuple:
    cdef bytes blob = as_blob(data)
    if not 0 <= offset <= len(blob):
        raise IndexError(f"offset {offset} is outside the {len(blob)}-byte buffer")
    cdef uint32_t value = 0
    cdef Py_ssize_t after = _read_varint(<const unsigned char*>blob, len(blob), offset, &value)
    if after < 0:
        reason = "truncated" if after == _VARINT_TRUNCATED else "over 32 bits"
        raise CorruptIndexError(f"bad varint at offset {offset}: {reason}")
    return value, after


# --------------------------------------------------------------------------- encoder (§2.2)

cdef struct _EncoderState:
    int64_t prev_duration
    int64_t prev_bytes_key
    int64_t prev_bytes_nonkey
    int64_t total_duration
    int64_t total_bytes
    int64_t samples
    int64_t sync_samples


cdef inline bint _sample_ok(
    const _EncoderState* state, int64_t duration, int64_t size, int64_t offset
) noexcept:
    """The accept set of ``_index_rules.sample_problem``, in C (``and`` short-circuits, so the
    subtraction runs only on values already bounded by int32)."""
    return (
        duration >= 0
        and size > 0
        and not (state.samples > 0 and state.prev_duration == 0)
        and duration <= _INT32_MAX - state.total_duration
        and size <= _INT32_MAX - state.total_bytes
        and -_DURATION_DELTA_LIMIT <= duration - state.prev_duration < _DURATION_DELTA_LIMIT
        and -_INT32_MAX - 1 <= offset <= _INT32_MAX
    )


cdef inline unsigned char* _append_sample(
    _EncoderState* state, unsigned char* out, int64_t duration, int64_t size, bint is_key
) noexcept:
    """Write one record (room for ``_MAX_RECORD_BYTES`` assumed) and update the totals."""
    out = _put_varint(out, (_zigzag(duration - state.prev_duration) << 1) | is_key)
    state.prev_duration = duration
    if is_key:
        out = _put_varint(out, _zigzag(size - state.prev_bytes_key))
        state.prev_bytes_key = size
        state.sync_samples += 1
    else:
        out = _put_varint(out, _zigzag(size - state.prev_bytes_nonkey))
        state.prev_bytes_nonkey = size
    state.total_duration += duration
    state.total_bytes += size
    state.samples += 1
    return out


cdef object _refusal(const _EncoderState* state, duration, size, offset):
    """The ``ValueError`` for a sample ``_sample_ok`` refused, worded by ``_index_rules``."""
    problem = sample_problem(
        state.samples,
        _as_int(duration),
        _as_int(size),
        state.prev_duration,
        state.total_duration,
        state.total_bytes,
        _as_int(offset),
    )
    if problem is None:  # the C check and the rules disagree: a bug, never silently accept
        return AssertionError(f"sample ({duration}, {size}, {offset}) refused without a rule")
    return ValueError(problem)


cdef bytes _version_2_blob(
    int64_t samples,
    const unsigned char* records,
    Py_ssize_t records_length,
    const unsigned char* offsets,
    Py_ssize_t offsets_length,
):
    """Marker, sample count, records, offsets: a version-2 blob (see ``_index_py``)."""
    cdef unsigned char header[1 + _MAX_VARINT_BYTES]
    header[0] = _VERSION_2_MARKER
    cdef Py_ssize_t header_length = _put_varint(header + 1, <uint32_t>samples) - header
    cdef bytes blob = PyBytes_FromStringAndSize(
        NULL, header_length + records_length + offsets_length
    )
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(blob)
    memcpy(out, header, header_length)
    memcpy(out + header_length, records, records_length)
    memcpy(out + header_length + records_length, offsets, offsets_length)
    return blob


@cython.final
cdef class SampleIndexEncoder:
    """Builds a ``video_index`` one sample at a time (see ``_index_py.SampleIndexEncoder``).

    ``add_sample`` is the recorder's per-packet hot path: two integer conversions, a C range
    check and two varints appended to a buffer that doubles when full.
    """

    cdef unsigned char* _buffer
    cdef Py_ssize_t _length
    cdef Py_ssize_t _capacity
    # The version-2 offsets column, kept from the first sample (see _index_py).
    cdef unsigned char* _offsets
    cdef Py_ssize_t _offsets_length
    cdef Py_ssize_t _offsets_capacity
    cdef bint _has_offsets
    cdef _EncoderState _state

    def __cinit__(self):
        self._buffer = <unsigned char*>PyMem_Malloc(_INITIAL_CAPACITY)
        self._offsets = <unsigned char*>PyMem_Malloc(_INITIAL_CAPACITY)
        if self._buffer == NULL or self._offsets == NULL:
            raise MemoryError()
        self._capacity = _INITIAL_CAPACITY
        self._offsets_capacity = _INITIAL_CAPACITY

    def __dealloc__(self):
        PyMem_Free(self._buffer)
        PyMem_Free(self._offsets)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2
        cdef unsigned char* buffer = <unsigned char*>PyMem_Realloc(self._buffer, capacity)
        if buffer == NULL:
            raise MemoryError()
        self._buffer = buffer
        self._capacity = capacity
        return 0

    cdef int _grow_offsets(self) except -1:
        cdef Py_ssize_t capacity = self._offsets_capacity * 2
        cdef unsigned char* buffer = <unsigned char*>PyMem_Realloc(self._offsets, capacity)
        if buffer == NULL:
            raise MemoryError()
        self._offsets = buffer
        self._offsets_capacity = capacity
        return 0

    def add_sample(self, duration_90k, bytes, is_key, composition_offset_90k=0) -> None:
        """Append one sample: its duration (90 kHz units, decode time to the next sample), its
        size in bytes, its key flag and its composition offset (presentation minus decode time;
        0 for streams without B-frames)."""
        cdef int duration_overflowed, size_overflowed, offset_overflowed
        # Same conversion order as the twin: index(duration), index(bytes), bool(is_key), index(offset).
        cdef int64_t duration = PyLong_AsLongLongAndOverflow(duration_90k, &duration_overflowed)
        cdef int64_t size = PyLong_AsLongLongAndOverflow(bytes, &size_overflowed)
        cdef bint key = PyObject_IsTrue(is_key)
        cdef int64_t offset = PyLong_AsLongLongAndOverflow(
            composition_offset_90k, &offset_overflowed
        )
        if (
            duration_overflowed or size_overflowed or offset_overflowed
            or not _sample_ok(&self._state, duration, size, offset)
        ):
            raise _refusal(&self._state, duration_90k, bytes, composition_offset_90k)
        if self._capacity - self._length < _MAX_RECORD_BYTES:
            self._grow()
        if self._offsets_capacity - self._offsets_length < _MAX_VARINT_BYTES:
            self._grow_offsets()
        cdef unsigned char* end = _append_sample(
            &self._state, self._buffer + self._length, duration, size, key
        )
        self._length = end - self._buffer
        end = _put_varint(self._offsets + self._offsets_length, _zigzag(offset))
        self._offsets_length = end - self._offsets
        if offset != 0:
            self._has_offsets = True

    @property
    def video_index(self) -> bytes:
        """The blob so far (a copy): version 2 once a sample had a non-zero offset."""
        if not self._has_offsets:
            return PyBytes_FromStringAndSize(<char*>self._buffer, self._length)
        return _version_2_blob(
            self._state.samples, self._buffer, self._length, self._offsets, self._offsets_length
        )

    @property
    def has_composition_offsets(self) -> bool:
        """Some sample so far has a non-zero composition offset (the blob is version 2)."""
        return self._has_offsets

    @property
    def sample_file_bytes(self) -> int:
        return self._state.total_bytes

    @property
    def total_duration_90k(self) -> int:
        return self._state.total_duration

    @property
    def video_samples(self) -> int:
        return self._state.samples

    @property
    def video_sync_samples(self) -> int:
        return self._state.sync_samples

    @property
    def has_trailing_zero(self) -> bool:
        """The last sample has duration 0 (the recording's flags bit 1)."""
        return self._state.samples > 0 and self._state.prev_duration == 0


ctypedef fused _column_t:
    # as_columns passes int32 columns through untouched and widens the rest to int64.
    int32_t
    int64_t


cdef bytes _encode_columns(
    const _column_t* duration_at,
    const _column_t* size_at,
    const uint8_t* key_at,
    const int64_t* offset_at,
    Py_ssize_t count,
):
    """The blob of ``count`` samples; ``offset_at`` is NULL when every offset is 0."""
    cdef _EncoderState state
    memset(&state, 0, sizeof(state))
    cdef int64_t offset = 0
    # Allocate the worst case so the loop never checks for room, then shrink the bytes object in
    # place (as CPython's own encoders do): one allocation, no copy, and only the pages actually
    # written are ever touched.
    cdef PyObject* result = _new_bytes(NULL, count * _MAX_RECORD_BYTES)
    cdef unsigned char* start = <unsigned char*>PyBytes_AS_STRING(<object>result)
    cdef unsigned char* out = start
    cdef Py_ssize_t i
    try:
        if offset_at == NULL:  # version 1: the loop without the offset check
            for i in range(count):
                if not _sample_ok(&state, duration_at[i], size_at[i], 0):
                    raise _refusal(&state, duration_at[i], size_at[i], 0)
                out = _append_sample(&state, out, duration_at[i], size_at[i], key_at[i] != 0)
        else:
            for i in range(count):
                offset = offset_at[i]
                if not _sample_ok(&state, duration_at[i], size_at[i], offset):
                    raise _refusal(&state, duration_at[i], size_at[i], offset)
                out = _append_sample(&state, out, duration_at[i], size_at[i], key_at[i] != 0)
    except BaseException:
        Py_XDECREF(result)
        raise
    _PyBytes_Resize(&result, out - start)  # on failure it frees ``result`` and raises
    encoded = <bytes>result  # a new reference; drop the one _new_bytes gave us
    Py_XDECREF(result)
    if offset_at == NULL:
        return encoded
    return _with_offsets(encoded, offset_at, count)


cdef bytes _with_offsets(bytes records, const int64_t* offset_at, Py_ssize_t count):
    """``records`` as version 2 with the (already checked) offsets, if any is non-zero."""
    cdef Py_ssize_t i
    cdef bint any_offset = False
    for i in range(count):
        if offset_at[i] != 0:
            any_offset = True
            break
    if not any_offset:
        return records
    cdef unsigned char* offsets = <unsigned char*>PyMem_Malloc(count * _MAX_VARINT_BYTES + 1)
    if offsets == NULL:
        raise MemoryError()
    cdef unsigned char* out = offsets
    try:
        for i in range(count):
            out = _put_varint(out, _zigzag(offset_at[i]))
        return _version_2_blob(
            count, <const unsigned char*>PyBytes_AS_STRING(records), len(records),
            offsets, out - offsets,
        )
    finally:
        PyMem_Free(offsets)


def encode_index(durations, sizes, is_key, composition_offsets=None) -> bytes:
    """Encode whole columns at once; same bytes and same errors as ``SampleIndexEncoder``.

    ``composition_offsets`` (one per sample, or ``None`` for all zero) makes a version-2 index
    when any is non-zero.
    """
    duration_column, size_column, key_column, offset_column = as_columns(
        durations, sizes, is_key, composition_offsets
    )
    cdef Py_ssize_t count = len(duration_column)
    cdef const uint8_t* key_at = <const uint8_t*>cnp.PyArray_DATA(key_column)
    cdef const int64_t* offset_at = NULL
    if offset_column is not None and count > 0:
        offset_at = <const int64_t*>cnp.PyArray_DATA(offset_column)
    if duration_column.dtype == size_column.dtype == np.int32:
        return _encode_columns(
            <const int32_t*>cnp.PyArray_DATA(duration_column),
            <const int32_t*>cnp.PyArray_DATA(size_column),
            key_at,
            offset_at,
            count,
        )
    # Mixed widths: widen both (bound to names so the arrays outlive the pointers into them).
    cdef cnp.ndarray durations64 = duration_column.astype(np.int64, copy=False)
    cdef cnp.ndarray sizes64 = size_column.astype(np.int64, copy=False)
    return _encode_columns(
        <const int64_t*>cnp.PyArray_DATA(durations64),
        <const int64_t*>cnp.PyArray_DATA(sizes64),
        key_at,
        offset_at,
        count,
    )


# --------------------------------------------------------------------------- decoder (§2.4)

cdef enum _Step:
    # What _step found.  Negative values name the rule the record broke; the cold _raise_corrupt
    # turns them into the twin's CorruptIndexError, so the hot loop has no Python in it.
    _SAMPLE = 1
    _END = 0
    _BAD_VARINT_1 = -1
    _BAD_VARINT_2 = -2
    _NEGATIVE_DURATION = -3
    _DURATION_OVERFLOW = -4
    _ZERO_DURATION_NOT_LAST = -5
    _NON_POSITIVE_BYTES = -6
    _BYTES_OVERFLOW = -7


cdef struct _Cursor:
    # The brief's iterator state; "current sample" fields are invalid until the first step.
    const unsigned char* data
    Py_ssize_t end
    Py_ssize_t offset        # of the next record
    int64_t sample           # 0-based number of the current sample
    int64_t pos
    int64_t start_90k
    int64_t duration_90k
    int64_t size
    int64_t bytes_key
    int64_t bytes_nonkey
    bint is_key
    int64_t sync_samples     # key frames so far, including the current sample
    # Context of the last step, read only to word an error.
    Py_ssize_t record        # offset of the current record
    Py_ssize_t varint_offset
    Py_ssize_t varint_status
    int64_t delta


cdef inline int _open_cursor(_Cursor* cursor, bytes blob) except -1:
    memset(cursor, 0, sizeof(_Cursor))
    cursor.data = <const unsigned char*>blob
    cursor.end = len(blob)
    cursor.sample = -1
    return 0


cdef inline _Step _step(_Cursor* c) noexcept nogil:
    """Advance to the next sample (see ``_index_py._records``: same rules, same order).

    At ``_END``, ``pos`` and ``start_90k`` hold the totals.
    """
    cdef Py_ssize_t offset
    cdef uint32_t varint1, varint2
    c.pos += c.size
    c.start_90k += c.duration_90k
    c.record = c.offset
    if c.record >= c.end:
        return _END
    c.sample += 1
    # 1- and 2-byte varints (nearly all of a real index) inline; the rest through the loop.
    c.varint_offset = c.record
    offset = c.record
    varint1 = c.data[offset]
    if varint1 < 0x80:
        offset += 1
    elif offset + 1 < c.end and c.data[offset + 1] < 0x80:
        varint1 = (varint1 & 0x7F) | (<uint32_t>c.data[offset + 1] << 7)
        offset += 2
    else:
        offset = _read_varint(c.data, c.end, offset, &varint1)
        if offset < 0:
            c.varint_status = offset
            return _BAD_VARINT_1
    c.varint_offset = offset
    varint2 = c.data[offset] if offset < c.end else 0x80
    if varint2 < 0x80:
        offset += 1
    elif offset + 1 < c.end and c.data[offset + 1] < 0x80:
        varint2 = (varint2 & 0x7F) | (<uint32_t>c.data[offset + 1] << 7)
        offset += 2
    else:
        offset = _read_varint(c.data, c.end, offset, &varint2)
        if offset < 0:
            c.varint_status = offset
            return _BAD_VARINT_2
    c.offset = offset

    c.delta = _unzigzag(varint1 >> 1)
    c.duration_90k += c.delta
    if c.duration_90k < 0:
        return _NEGATIVE_DURATION
    if c.start_90k + c.duration_90k > _INT32_MAX:
        return _DURATION_OVERFLOW
    if c.duration_90k == 0 and offset < c.end:
        return _ZERO_DURATION_NOT_LAST

    c.is_key = varint1 & 1
    c.sync_samples += c.is_key
    c.delta = _unzigzag(varint2)
    if c.is_key:
        c.bytes_key += c.delta
        c.size = c.bytes_key
    else:
        c.bytes_nonkey += c.delta
        c.size = c.bytes_nonkey
    if c.size <= 0:
        return _NON_POSITIVE_BYTES
    if c.pos + c.size > _INT32_MAX:
        return _BYTES_OVERFLOW
    return _SAMPLE


cdef struct _Columns:
    int32_t* durations
    int32_t* sizes
    uint8_t* is_key
    int64_t* positions
    int64_t* starts


cdef enum _LayoutStatus:
    # What the version-2 checks found (see _index_py._version_2_layout, same order).
    _LAYOUT_OK = 0
    _BAD_SAMPLE_COUNT = -1
    _NO_SAMPLES = -2
    _RECORDS_TOO_SHORT = -3
    _BAD_OFFSET_VARINT = -4
    _BYTES_AFTER_OFFSETS = -5
    _OFFSETS_ALL_ZERO = -6


cdef struct _Layout:
    Py_ssize_t records_start
    Py_ssize_t records_end
    int64_t samples          # declared
    # Context of a failed check, read only to word the error.
    Py_ssize_t error_offset
    Py_ssize_t varint_status
    int64_t error_sample
    int64_t room


cdef _LayoutStatus _version_2_extent(
    const unsigned char* data, Py_ssize_t end, _Layout* layout
) noexcept nogil:
    """Header and records' extent of a version-2 blob (``data[0]`` is the marker)."""
    cdef uint32_t declared = 0
    cdef Py_ssize_t offset = _read_varint(data, end, 1, &declared)
    if offset < 0:
        layout.varint_status = offset
        return _BAD_SAMPLE_COUNT
    if declared == 0:
        return _NO_SAMPLES
    layout.samples = declared
    layout.records_start = offset
    # Every varint ends in exactly one byte below 0x80 and a record is two varints.
    cdef int64_t wanted = 2 * <int64_t>declared
    cdef int64_t found = 0
    while offset < end and found < wanted:
        found += data[offset] < 0x80
        offset += 1
    if found < wanted:
        layout.room = found // 2
        return _RECORDS_TOO_SHORT
    layout.records_end = offset
    return _LAYOUT_OK


cdef _LayoutStatus _version_2_offsets(
    const unsigned char* data, Py_ssize_t end, _Layout* layout, int32_t* out
) noexcept nogil:
    """Read the ``layout.samples`` offsets after the records into ``out``; check the rest."""
    cdef Py_ssize_t offset = layout.records_end
    cdef Py_ssize_t after
    cdef uint32_t value = 0
    cdef bint any_offset = False
    cdef int64_t i
    for i in range(layout.samples):
        after = _read_varint(data, end, offset, &value)
        if after < 0:
            layout.error_offset = offset
            layout.varint_status = after
            layout.error_sample = i
            return _BAD_OFFSET_VARINT
        out[i] = <int32_t>_unzigzag(value)
        any_offset = any_offset or value != 0
        offset = after
    if offset < end:
        layout.error_offset = offset
        return _BYTES_AFTER_OFFSETS
    if not any_offset:
        return _OFFSETS_ALL_ZERO
    return _LAYOUT_OK


cdef int _raise_layout(_Layout layout, _LayoutStatus status, Py_ssize_t end) except -1:
    """Raise the twin's ``CorruptIndexError`` for a failed version-2 check."""
    if status == _BAD_SAMPLE_COUNT:
        raise bad_sample_count(layout.varint_status)
    if status == _NO_SAMPLES:
        raise no_samples_declared()
    if status == _RECORDS_TOO_SHORT:
        raise records_too_short(layout.samples, layout.room, layout.records_start)
    if status == _BAD_OFFSET_VARINT:
        raise bad_offset_varint(layout.error_offset, layout.varint_status, layout.error_sample)
    if status == _BYTES_AFTER_OFFSETS:
        raise bytes_after_offsets(end - layout.error_offset, layout.error_offset)
    if status == _OFFSETS_ALL_ZERO:
        raise offsets_all_zero(layout.records_end)
    raise AssertionError(f"unknown layout status {status}")


cdef Py_ssize_t _decode_samples(
    _Cursor* cursor, _Columns* out, Py_ssize_t limit, _Step* status
) noexcept nogil:
    """Step up to ``limit`` times, storing each sample in ``out`` (unless NULL); the count.

    ``status`` gets the last step's result (``_SAMPLE`` when ``limit`` stopped the loop).  This is
    the only caller of ``_step`` (the iterator comes here with ``limit`` 1), so the compiler
    inlines ``_step`` into this loop; the cursor is copied into a local that never escapes.
    """
    cdef _Cursor c = cursor[0]
    cdef Py_ssize_t n = 0
    cdef _Step step = _SAMPLE
    while n < limit:
        step = _step(&c)
        if step != _SAMPLE:
            break
        if out != NULL:
            out.durations[n] = <int32_t>c.duration_90k
            out.sizes[n] = <int32_t>c.size
            out.is_key[n] = c.is_key
            out.positions[n] = c.pos
            out.starts[n] = c.start_90k
        n += 1
    cursor[0] = c
    status[0] = step
    return n


cdef int _raise_corrupt(_Cursor c, _Step rule) except -1:
    """Raise the twin's ``CorruptIndexError`` for the record ``_step`` refused with ``rule``.

    Takes the cursor by value so the hot loops' cursor never escapes (and stays in registers).
    """
    if rule == _BAD_VARINT_1 or rule == _BAD_VARINT_2:
        which = 1 if rule == _BAD_VARINT_1 else 2
        raise bad_varint(which, c.varint_offset, c.varint_status, c.sample, c.record)
    if rule == _NEGATIVE_DURATION:
        raise negative_duration(c.duration_90k, c.delta, c.sample, c.record)
    if rule == _DURATION_OVERFLOW:
        raise duration_overflow(c.start_90k + c.duration_90k, c.delta, c.sample, c.record)
    if rule == _ZERO_DURATION_NOT_LAST:
        raise zero_duration_not_last(c.end - c.offset, c.sample, c.record)
    if rule == _NON_POSITIVE_BYTES:
        raise non_positive_bytes(c.size, c.delta, c.is_key, c.start_90k, c.sample, c.record)
    if rule == _BYTES_OVERFLOW:
        raise bytes_overflow(c.pos + c.size, c.size, c.sample, c.record)
    raise AssertionError(f"unknown decoder status {rule}")


@cython.final
cdef class SampleIndexIterator:
    """Iterates a ``video_index`` blob, yielding one ``Sample`` per record.

    Raises ``CorruptIndexError`` when it reaches a bad record (after yielding the good ones before
    it); once it has raised or finished, it stays exhausted.
    """

    cdef bytes _blob  # keeps the buffer the cursor points into alive
    cdef _Cursor _cursor
    cdef bint _exhausted
    cdef bint _started
    cdef int32_t* _offsets  # version 2: the offsets column, checked at the first step

    def __init__(self, blob):
        self._blob = as_blob(blob)
        _open_cursor(&self._cursor, self._blob)
        self._exhausted = False
        self._started = False
        PyMem_Free(self._offsets)  # a second __init__ starts over
        self._offsets = NULL

    def __dealloc__(self):
        PyMem_Free(self._offsets)

    def __iter__(self):
        return self

    cdef int _start(self) except -1:
        """Version 2: check the header and offsets (before any sample, as ``decode_index``)."""
        self._started = True
        cdef _Cursor* c = &self._cursor
        if c.end == 0 or c.data[0] != _VERSION_2_MARKER:
            return 0
        cdef _Layout layout
        memset(&layout, 0, sizeof(layout))
        cdef _LayoutStatus status = _version_2_extent(c.data, c.end, &layout)
        if status == _LAYOUT_OK:
            self._offsets = <int32_t*>PyMem_Malloc(layout.samples * sizeof(int32_t))
            if self._offsets == NULL:
                raise MemoryError()
            status = _version_2_offsets(c.data, c.end, &layout, self._offsets)
        if status != _LAYOUT_OK:
            _raise_layout(layout, status, c.end)
        c.offset = layout.records_start
        c.end = layout.records_end
        return 0

    def __next__(self):
        if self._blob is None or self._exhausted:
            raise StopIteration
        if not self._started:
            try:
                self._start()
            except BaseException:
                self._exhausted = True
                raise
        cdef _Step status
        _decode_samples(&self._cursor, NULL, 1, &status)
        if status != _SAMPLE:
            self._exhausted = True
            if status == _END:
                raise StopIteration
            _raise_corrupt(self._cursor, status)
        cdef _Cursor* c = &self._cursor
        cdef int32_t offset = 0 if self._offsets == NULL else self._offsets[c.sample]
        return Sample(c.pos, c.start_90k, c.duration_90k, c.size, c.is_key, offset)


cdef inline Py_ssize_t _count_terminators(const unsigned char* data, Py_ssize_t end) noexcept nogil:
    """How many bytes are below 0x80 (end a varint); 8 bytes per step, SWAR-style.

    ``(~word & 0x80...) >> 7`` leaves 1 in each byte that ended a varint; multiplying by 0x01...
    sums the eight bytes into the top one.
    """
    cdef uint64_t word
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= end:
        memcpy(&word, data + i, 8)
        word = (~word & <uint64_t>0x8080808080808080ULL) >> 7
        count += <Py_ssize_t>((word * <uint64_t>0x0101010101010101ULL) >> 56)
        i += 8
    while i < end:
        count += data[i] < 0x80
        i += 1
    return count


cdef cnp.ndarray _read_only_view(
    cnp.ndarray block, Py_ssize_t offset, Py_ssize_t length, int type_number
):
    """A read-only column of ``length`` items at byte ``offset`` of ``block``; keeps it alive."""
    cdef cnp.npy_intp dims = length
    cdef cnp.ndarray view = cnp.PyArray_SimpleNewFromData(
        1, &dims, type_number, <char*>cnp.PyArray_DATA(block) + offset
    )
    cnp.set_array_base(view, block)
    cnp.PyArray_CLEARFLAGS(view, cnp.NPY_ARRAY_WRITEABLE)
    return view


def decode_index(blob) -> DecodedIndex:
    """Decode a whole blob into columns and totals; ``CorruptIndexError`` if any record is bad."""
    cdef bytes data = as_blob(blob)
    cdef _Cursor c
    _open_cursor(&c, data)
    cdef _Layout layout
    cdef _LayoutStatus layout_status = _LAYOUT_OK
    cdef bint version_2 = c.end > 0 and c.data[0] == _VERSION_2_MARKER
    cdef Py_ssize_t capacity
    if version_2:
        memset(&layout, 0, sizeof(layout))
        layout_status = _version_2_extent(c.data, c.end, &layout)
        if layout_status != _LAYOUT_OK:
            _raise_layout(layout, layout_status, c.end)
        capacity = layout.samples  # at most half the blob's length: the extent checked it
    else:
        # Every varint ends in exactly one byte below 0x80 and a record is two varints, so this
        # is the exact sample count of a valid blob and an upper bound for any prefix the loop
        # accepts.
        capacity = _count_terminators(c.data, c.end) // 2
    # One allocation holds all six columns (29 bytes a sample), widest first so each stays
    # aligned: one malloc instead of six, and a block the allocator reuses warm between calls
    # instead of returning to the kernel and faulting back in page by page.
    cdef cnp.npy_intp block_bytes = capacity * 29
    cdef cnp.ndarray block = cnp.PyArray_EMPTY(1, &block_bytes, cnp.NPY_UINT8, 0)
    cdef char* base = <char*>cnp.PyArray_DATA(block)
    cdef _Columns out
    out.positions = <int64_t*>base
    out.starts = <int64_t*>(base + 8 * capacity)
    out.durations = <int32_t*>(base + 16 * capacity)
    out.sizes = <int32_t*>(base + 20 * capacity)
    cdef int32_t* offsets = <int32_t*>(base + 24 * capacity)
    out.is_key = <uint8_t*>(base + 28 * capacity)
    if version_2:
        layout_status = _version_2_offsets(c.data, c.end, &layout, offsets)
        if layout_status != _LAYOUT_OK:
            _raise_layout(layout, layout_status, c.end)
        c.offset = layout.records_start
        c.end = layout.records_end
    else:
        memset(offsets, 0, 4 * capacity)
    cdef _Step status
    cdef Py_ssize_t n = _decode_samples(&c, &out, capacity, &status)
    if status == _SAMPLE:
        # Stopped by the capacity: the next step must be the end (or a bad record).
        if _decode_samples(&c, NULL, 1, &status) != 0:  # impossible by the argument above
            raise AssertionError(f"decoded more than {capacity} samples from {c.end} bytes")
    if status != _END:
        _raise_corrupt(c, status)
    if n != capacity:  # likewise impossible once the whole blob decoded
        raise AssertionError(f"decoded {n} samples, expected {capacity}")
    return DecodedIndex(
        durations=_read_only_view(block, 16 * n, n, cnp.NPY_INT32),
        sizes=_read_only_view(block, 20 * n, n, cnp.NPY_INT32),
        is_key=_read_only_view(block, 28 * n, n, cnp.NPY_BOOL),
        positions=_read_only_view(block, 0, n, cnp.NPY_INT64),
        starts=_read_only_view(block, 8 * n, n, cnp.NPY_INT64),
        composition_offsets=_read_only_view(block, 24 * n, n, cnp.NPY_INT32),
        sample_file_bytes=c.pos,
        total_duration_90k=c.start_90k,
        video_samples=n,
        video_sync_samples=c.sync_samples,
        has_trailing_zero=n > 0 and c.duration_90k == 0,
    )
