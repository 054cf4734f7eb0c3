"""Compiled twin of ``_annexb_py``: Annex B → AVC length-prefixed conversion.

``_annexb_py`` is the spec (splitting rules, errors, messages); this module does the same work
with one C scan over the caller's buffer: ``memchr`` finds each ``01`` byte, a start code is a
``01`` preceded by two zeros, and the zero run before it is trimmed off the previous NAL unit.
The output ``bytes`` is allocated once at its worst-case size and shrunk at the end.  Every
call is short and allocates Python objects, so the GIL is kept throughout.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, _PyBytes_Resize
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from moonfire_core._includes.buffers cimport get_view
from libc.string cimport memchr, memcpy

__all__ = ["annex_b_to_avc", "is_annex_b", "split_annex_b"]

cdef Py_ssize_t _MAX_AVC_NAL_LENGTH = 0xFFFFFFFF


cdef inline Py_ssize_t _leading_start_code_end(const unsigned char* data, Py_ssize_t n) noexcept:
    """Offset just past the start code at offset 0, or -1 if the data does not begin with one."""
    cdef Py_ssize_t zeros = 0
    while zeros < n and data[zeros] == 0:
        zeros += 1
    if zeros >= 2 and zeros < n and data[zeros] == 1:
        return zeros + 1
    return -1


cdef inline Py_ssize_t _next_start_code(
    const unsigned char* data, Py_ssize_t n, Py_ssize_t nal_start, Py_ssize_t* after
) noexcept:
    """Where the NAL unit beginning at ``nal_start`` ends.

    Returns the offset of the first zero of the next start code (its zero run never reaches
    back past ``nal_start``) and stores the offset just past that start code's ``01`` in
    ``*after``.  With no further start code the NAL unit runs to the end: both are ``n``.
    ``data[nal_start - 1]`` is always the ``01`` of the previous start code, so a ``01`` at
    ``nal_start`` or ``nal_start + 1`` cannot have two zeros before it; the search starts after.
    """
    cdef Py_ssize_t pos = nal_start + 2
    cdef const unsigned char* one
    cdef Py_ssize_t i, zero_run_start
    while pos < n:
        one = <const unsigned char*>memchr(data + pos, 1, <size_t>(n - pos))
        if one == NULL:
            break
        i = one - data
        if data[i - 1] == 0 and data[i - 2] == 0:
            zero_run_start = i - 2
            while zero_run_start > nal_start and data[zero_run_start - 1] == 0:
                zero_run_start -= 1
            after[0] = i + 1
            return zero_run_start
        pos = i + 1
    after[0] = n
    return n


cdef object _missing_start_code(const unsigned char* data, Py_ssize_t n):
    """Same error and message as ``_annexb_py._missing_start_code``."""
    if n == 0:
        return ValueError("Annex B data is empty: expected a start code at offset 0")
    head = PyBytes_FromStringAndSize(<const char*>data, min(n, 4))
    return ValueError(
        f"Annex B data does not begin with a start code: offset 0 holds {head.hex(' ')}"
    )


def is_annex_b(data) -> bool:
    """True when ``data`` starts with a 3- or 4-byte start code (``00 00 01``/``00 00 00 01``)."""
    cdef Py_buffer view
    cdef const unsigned char* d
    get_view(data, &view)
    try:
        d = <const unsigned char*>view.buf
        if view.len >= 3 and d[0] == 0 and d[1] == 0:
            return d[2] == 1 or (view.len >= 4 and d[2] == 0 and d[3] == 1)
        return False
    finally:
        PyBuffer_Release(&view)


def split_annex_b(data) -> list:
    """The NAL units of an Annex B byte stream, in order, without start codes."""
    cdef Py_buffer view
    cdef const unsigned char* d
    cdef Py_ssize_t n, nal_start, nal_end, after
    cdef list nals = []
    get_view(data, &view)
    try:
        d = <const unsigned char*>view.buf
        n = view.len
        nal_start = _leading_start_code_end(d, n)
        if nal_start < 0:
            raise _missing_start_code(d, n)
        while nal_start < n:
            nal_end = _next_start_code(d, n, nal_start, &after)
            if nal_end > nal_start:
                nals.append(PyBytes_FromStringAndSize(<const char*>d + nal_start, nal_end - nal_start))
            nal_start = after
        return nals
    finally:
        PyBuffer_Release(&view)


def annex_b_to_avc(data) -> bytes:
    """Rewrite an Annex B access unit as 4-byte big-endian length + NAL, for each NAL unit."""
    cdef Py_buffer view
    cdef const unsigned char* d
    cdef unsigned char* out
    cdef Py_ssize_t n, nal_start, nal_end, after, length, capacity, written = 0
    cdef PyObject* result_ptr
    get_view(data, &view)
    try:
        d = <const unsigned char*>view.buf
        n = view.len
        nal_start = _leading_start_code_end(d, n)
        if nal_start < 0:
            raise _missing_start_code(d, n)
        # Each NAL unit swaps a start code of 3 or more bytes for a 4-byte length, and needs at
        # least one byte of its own, so k units take at least 4k input bytes and the output is
        # at most n + k <= n + n / 4 bytes.
        capacity = n + n // 4 + 4
        result = PyBytes_FromStringAndSize(NULL, capacity)
        out = <unsigned char*>PyBytes_AS_STRING(result)
        while nal_start < n:
            nal_end = _next_start_code(d, n, nal_start, &after)
            length = nal_end - nal_start
            if length > 0:
                if length > _MAX_AVC_NAL_LENGTH:
                    raise ValueError(
                        f"NAL unit of {length} bytes does not fit a 4-byte AVC length prefix"
                    )
                out[written] = <unsigned char>(length >> 24)
                out[written + 1] = <unsigned char>(length >> 16)
                out[written + 2] = <unsigned char>(length >> 8)
                out[written + 3] = <unsigned char>length
                memcpy(out + written + 4, d + nal_start, <size_t>length)
                written += 4 + length
            nal_start = after
    finally:
        PyBuffer_Release(&view)
    if written == capacity:
        return result
    # _PyBytes_Resize needs the sole reference (it may move the object): give it ours through a
    # raw pointer, and take the resized object back.  On failure it frees the object and raises.
    result_ptr = <PyObject*>result
    Py_INCREF(result)
    result = None
    _PyBytes_Resize(&result_ptr, written)
    result = <object>result_ptr
    Py_DECREF(result)
    return result
