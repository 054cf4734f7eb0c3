# Compiled twin of _writer_py.py (the readable reference, with the full failure model): the
# per-packet writer of one recording.  State lives in C fields; packets are read through the
# buffer protocol and copied once, into the user-space write buffer (or not at all when a
# packet of at least a buffer's worth is written directly).  The GIL is released around each
# pwrite/ftruncate; errno is read into a local at once and EINTR is retried after running
# signal handlers, as os.pwrite does (PEP 475).  The ClockAdjuster is cimported (its .pxd) so
# the per-frame correction is a C call; the index encoder is used through its Python API.
#
# Not thread-safe: one thread at a time per writer, like the twin.  (Memory safety does not
# depend on it: every buffer access is bounds-checked with the GIL held.)

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from posix.types cimport off_t
from posix.unistd cimport ftruncate, pwrite

from moonfire_core._clock_c cimport ClockAdjuster

import hashlib
import os

from moonfire_core import _args, _fault_hook
from moonfire_core._errors import RecordingAbandonedError
from moonfire_core._index_c import SampleIndexEncoder
from moonfire_core.records import (
    FLAG_TRAILING_ZERO,
    PreviousWriter,
    RecordingToSave,
    WriterSnapshot,
)

#: Longest sample duration: the ``video_index`` and ``ClockAdjuster`` work in i32.
MAX_DURATION_90K = 2**31 - 1
#: Largest ``|pts - dts|`` (the ``video_index`` stores it as an int32).
MAX_COMPOSITION_OFFSET_90K = 2**31 - 1
# Below this magnitude a difference of two int64s can't overflow.
cdef int64_t _SAFE_DIFFERENCE = 1 << 62

cdef object _hook = None


def _set_hook(hook):
    global _hook
    _hook = hook


_fault_hook.subscribe(_set_hook)


cdef inline int64_t _int64(object value, str name, str path) except? -1:
    """``value`` as int64: an exact in-range ``int`` in C, anything else via ``_args``."""
    if type(value) is int:
        try:
            return value
        except OverflowError:
            pass
    return _args.int64(value, name, path)


@cython.final
cdef class Writer:
    """Writes the samples of one recording to an open sample file and indexes them.

    See ``_writer_py.Writer`` for the parameters and the failure model.
    """

    cdef object _sink
    cdef int _fd
    cdef str _path
    cdef bytes _uuid
    cdef object _stream_id
    cdef object _video_sample_entry_id
    cdef bint _has_prev_end
    cdef int64_t _prev_end
    cdef int64_t _run_offset
    cdef ClockAdjuster _adjuster
    cdef object _index
    cdef object _add_sample    # bound _index.add_sample
    cdef object _hasher
    cdef object _hash_update   # bound _hasher.update
    cdef bint _has_local_start  # False = +infinity until the first sample is indexed
    cdef int64_t _local_start
    cdef int64_t _total_duration
    # The unflushed sample: written (or buffered) and hashed, not yet indexed.
    cdef bint _has_unflushed
    cdef bint _unflushed_is_key
    cdef int64_t _unflushed_local_time
    cdef int64_t _unflushed_dts     # its decode time (its pts when the stream gives no dts)
    cdef int64_t _unflushed_offset  # pts - dts
    cdef str _time_name             # what the decode times were called, for messages
    cdef Py_ssize_t _unflushed_bytes
    cdef char* _buffer
    cdef Py_ssize_t _buffered
    cdef Py_ssize_t _buffer_bytes
    cdef int64_t _file_bytes   # bytes that reached the file (= the pwrite offset)
    cdef object _error         # set when the writer is corrupt
    cdef bint _closed

    def __cinit__(self):
        self._closed = True  # until fully constructed, so __del__ leaves a half-built one alone
        self._fd = -1
        self._time_name = "pts"

    def __init__(
        self,
        sink,
        fd,
        path,
        sample_file_uuid,
        stream_id,
        video_sample_entry_id,
        prev=None,
        buffer_bytes=1 << 16,
    ):
        path, fd, stream_id, video_sample_entry_id, buffer_bytes = _args.writer_init(
            sink, fd, path, sample_file_uuid, stream_id, video_sample_entry_id, prev, buffer_bytes
        )
        self._buffer = <char*>PyMem_Malloc(buffer_bytes)
        if self._buffer == NULL:
            raise MemoryError()
        self._buffer_bytes = buffer_bytes
        self._sink = sink
        self._fd = fd
        self._path = path
        self._uuid = bytes(sample_file_uuid)
        self._stream_id = stream_id
        self._video_sample_entry_id = video_sample_entry_id
        self._has_prev_end = prev is not None
        if prev is not None:
            self._prev_end = prev.end_time_90k
            self._run_offset = prev.run_offset + 1
        self._adjuster = ClockAdjuster(None if prev is None else prev.local_time_delta_90k)
        self._index = SampleIndexEncoder()
        self._add_sample = self._index.add_sample
        self._hasher = hashlib.sha1()
        self._hash_update = self._hasher.update
        self._closed = False

    def __dealloc__(self):
        PyMem_Free(self._buffer)

    @property
    def sample_file_uuid(self):
        return self._uuid

    @property
    def path(self):
        return self._path

    @property
    def video_samples(self):
        """Samples indexed so far (the unflushed one is not counted yet)."""
        return self._index.video_samples

    @property
    def closed(self):
        return self._closed

    def write(self, packet, local_time_90k, pts_90k, is_key, dts_90k=None):
        """Append one sample: index the previous one, then buffer or write this one."""
        cdef Py_buffer view
        cdef int64_t local_time, pts, dts
        cdef int64_t offset = 0
        cdef bint key
        cdef str time_name = "pts"
        if self._closed:
            raise ValueError(f"writer for {self._path} is closed")
        if self._error is not None:
            raise ValueError(
                f"writer for {self._path} is corrupt after an earlier write error; "
                "close it to abandon the recording"
            ) from self._error
        local_time = _int64(local_time_90k, "local_time_90k", self._path)
        if local_time < 0:
            _args.non_negative_int64(local_time, "local_time_90k", self._path)
        pts = _int64(pts_90k, "pts_90k", self._path)
        if is_key is True:
            key = True
        elif is_key is False:
            key = False
        else:
            key = _args.boolean(is_key, "is_key", self._path)
        if dts_90k is None:
            dts = pts
        else:
            dts = _int64(dts_90k, "dts_90k", self._path)
            time_name = "dts"
            if -_SAFE_DIFFERENCE < pts < _SAFE_DIFFERENCE and -_SAFE_DIFFERENCE < dts < _SAFE_DIFFERENCE:
                offset = pts - dts
                if not -MAX_COMPOSITION_OFFSET_90K - 1 <= offset <= MAX_COMPOSITION_OFFSET_90K:
                    raise self._offset_error(pts, dts)
            else:  # the exact difference, in Python ints
                wide_offset = <object>pts - <object>dts
                if not -MAX_COMPOSITION_OFFSET_90K - 1 <= wide_offset <= MAX_COMPOSITION_OFFSET_90K:
                    raise self._offset_error(pts, dts)
                offset = wide_offset
        try:
            PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE)
        except Exception:  # TypeError, BufferError; NumPy raises ValueError
            packet = _args.byte_view(packet, self._path)  # raises the twin's error, or copes
            PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE)
        try:
            if view.len == 0:
                raise ValueError(f"empty packet for {self._path} at pts {pts}")
            if self._has_unflushed:
                self._index_unflushed(self._duration_until(dts, time_name))
            self._append(<const char*>view.buf, view.len)
            self._hash_update(packet)
            self._unflushed_bytes = view.len
        finally:
            PyBuffer_Release(&view)
        self._has_unflushed = True
        self._unflushed_local_time = local_time
        self._unflushed_dts = dts
        self._unflushed_offset = offset
        self._time_name = time_name
        self._unflushed_is_key = key

    def close(self, next_pts=None):
        """Index the last sample, flush, and hand the file to the sink.

        :returns: what the next writer of this run needs (``PreviousWriter``).
        :raises RecordingAbandonedError: the writer was corrupt or had no samples.
        """
        cdef int64_t last_duration = 0
        cdef int64_t pts
        if self._closed:
            raise ValueError(f"writer for {self._path} is already closed")
        if next_pts is not None:
            pts = _int64(next_pts, "next_pts", self._path)
            if self._has_unflushed:
                last_duration = self._duration_until(pts, self._time_name)
        self._closed = True
        if self._error is None and self._has_unflushed:
            # The fd must still go to the sink exactly once; see the twin.
            try:
                self._index_unflushed(last_duration)
                self._flush()
            except (OSError, ValueError) as e:
                self._error = e
        if self._error is not None:
            self._sink.abandon(self._uuid, self._fd, self._error)
            raise RecordingAbandonedError(
                f"recording {self._path} abandoned: a write failed and the file is corrupt "
                f"({self._error})"
            ) from self._error
        index = self._index
        if index.video_samples == 0:
            self._sink.abandon(self._uuid, self._fd, None)
            raise RecordingAbandonedError(f"recording {self._path} abandoned: no samples written")
        # Python ints: local start minus a previous end can leave 64 bits.
        start = self._prev_end if self._has_prev_end else self._local_start
        duration = index.total_duration_90k
        local_time_delta = self._local_start - start
        self._sink.save(
            RecordingToSave(
                stream_id=self._stream_id,
                sample_file_uuid=self._uuid,
                fd=self._fd,
                run_offset=self._run_offset,
                flags=FLAG_TRAILING_ZERO if index.has_trailing_zero else 0,
                sample_file_bytes=index.sample_file_bytes,
                start_time_90k=start,
                duration_90k=duration,
                local_time_delta_90k=local_time_delta,
                video_samples=index.video_samples,
                video_sync_samples=index.video_sync_samples,
                video_sample_entry_id=self._video_sample_entry_id,
                video_index=bytes(index.video_index),
                sample_file_sha1=self._hasher.digest(),
            )
        )
        return PreviousWriter(start + duration, local_time_delta, self._run_offset)

    cdef object _offset_error(self, int64_t pts, int64_t dts):
        return ValueError(
            f"{self._path}: pts {pts} is {<object>pts - <object>dts} from dts {dts}; "
            f"a composition offset must fit int32"
        )

    cdef int64_t _duration_until(self, int64_t dts_90k, str name) except? -1:
        """The unflushed sample's duration if the next sample is decoded at ``dts_90k``."""
        # Unsigned: the difference of two int64s can exceed int64 (the twin prints it whole).
        cdef uint64_t duration = <uint64_t>dts_90k - <uint64_t>self._unflushed_dts
        if dts_90k <= self._unflushed_dts:
            raise ValueError(
                f"{self._path}: {name} not monotonically increasing; "
                f"got {self._unflushed_dts} then {dts_90k}"
            )
        if duration > MAX_DURATION_90K:
            raise ValueError(
                f"{self._path}: {name} jumps from {self._unflushed_dts} to {dts_90k}; "
                f"a sample duration of {duration} exceeds {MAX_DURATION_90K}"
            )
        return <int64_t>duration

    cdef int _index_unflushed(self, int64_t duration) except -1:
        """Add the unflushed sample to the index; fold its arrival into the local start."""
        duration = self._adjuster.adjust_c(duration)
        try:
            self._add_sample(
                duration, self._unflushed_bytes, self._unflushed_is_key, self._unflushed_offset
            )
        except ValueError as e:
            raise ValueError(f"{self._path}: cannot index sample: {e}") from e
        self._total_duration += duration
        cdef int64_t candidate = self._unflushed_local_time - self._total_duration
        if not self._has_local_start or candidate < self._local_start:
            self._local_start = candidate
            self._has_local_start = True
        self._has_unflushed = False
        return 0

    cdef int _append(self, const char* data, Py_ssize_t size) except -1:
        """Buffer ``data``, or write it directly if it is at least a buffer's worth."""
        if self._buffered + size < self._buffer_bytes:
            memcpy(self._buffer + self._buffered, data, size)
            self._buffered += size
            return 0
        try:
            self._flush()
        except OSError as e:
            self._error = e  # every buffered byte belongs to an indexed sample: they are lost
            raise
        if size >= self._buffer_bytes:
            self._write_direct(data, size)
        else:
            memcpy(self._buffer, data, size)
            self._buffered = size
        return 0

    cdef int _flush(self) except -1:
        if self._buffered:
            self._write_all(self._buffer, self._buffered)
            self._buffered = 0
        return 0

    cdef int _write_direct(self, const char* data, Py_ssize_t size) except -1:
        """Write a large packet straight to the file; on failure undo its partial bytes."""
        try:
            self._write_all(data, size)
        except OSError:
            indexed_bytes = self._index.sample_file_bytes
            if self._file_bytes != indexed_bytes:
                try:
                    self._truncate(indexed_bytes)
                except OSError as truncate_error:
                    self._error = truncate_error  # the packet's partial bytes stay: corrupt
            raise
        return 0

    cdef int _truncate(self, int64_t size) except -1:
        cdef int ret, err
        if _hook is not None:
            _hook("truncate", self._path)
        while True:
            with nogil:
                ret = ftruncate(self._fd, <off_t>size)
                err = errno if ret < 0 else 0
            if ret == 0:
                break
            if err != EINTR:
                raise OSError(err, os.strerror(err), self._path)
            PyErr_CheckSignals()
        self._file_bytes = size
        return 0

    cdef int _write_all(self, const char* data, Py_ssize_t size) except -1:
        """``pwrite`` all of ``data`` at the writer's offset, looping on partial writes."""
        cdef Py_ssize_t written
        cdef int err
        while size > 0:
            if _hook is not None:
                _hook("write", self._path)  # an OSError it raises propagates unchanged
            while True:
                with nogil:
                    written = pwrite(self._fd, data, <size_t>size, <off_t>self._file_bytes)
                    err = errno if written < 0 else 0
                if written >= 0:
                    break
                if err != EINTR:
                    raise OSError(err, os.strerror(err), self._path)
                PyErr_CheckSignals()
            self._file_bytes += written
            data += written
            size -= written
        return 0

    def snapshot(self):
        """The recording so far, for serving it while it grows; None before a sample is indexed.

        Not thread-safe, like ``write``; see the twin.
        """
        if self._closed or self._error is not None or not self._has_local_start:
            return None
        index = self._index
        # Python ints, as in close: a local start minus a previous end can leave 64 bits.
        start = self._prev_end if self._has_prev_end else self._local_start
        return WriterSnapshot(
            stream_id=self._stream_id,
            sample_file_uuid=self._uuid,
            run_offset=self._run_offset,
            start_time_90k=start,
            duration_90k=index.total_duration_90k,
            local_time_delta_90k=self._local_start - start,
            video_samples=index.video_samples,
            video_sync_samples=index.video_sync_samples,
            sample_file_bytes=index.sample_file_bytes,
            file_bytes=self._file_bytes,
            video_sample_entry_id=self._video_sample_entry_id,
            video_index=bytes(index.video_index),
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._closed:
            return
        if exc_type is None:
            self.close(None)
            return
        try:
            self.close(None)
        except RecordingAbandonedError:
            pass  # the exception in flight says more

    def __del__(self):
        if self._closed:
            return
        try:
            self.close(None)
        except RecordingAbandonedError:
            pass
