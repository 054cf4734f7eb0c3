# The one way the compiled core takes a bytes-like argument: a simple (contiguous) buffer, with
# the same errors and messages as ``moonfire_core._bytes_like.byte_view`` (the twins' rule).
from cpython.buffer cimport PyBUF_SIMPLE, PyObject_CheckBuffer, PyObject_GetBuffer


cdef inline int get_view(object data, Py_buffer* view) except -1:
    if not PyObject_CheckBuffer(data):
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'")
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except BufferError:
        raise BufferError(
            f"a contiguous buffer is required, not a strided '{type(data).__name__}'"
        ) from None
    return 0
