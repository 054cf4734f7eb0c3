"""Pure-Python twin of ``_writer_c``: the per-packet writer of one recording (brief §4.1, §3.2).

This is the readable reference for the compiled twin, which keeps the same state in C fields.

The index runs one sample behind the data: a sample's duration is only known when the next
decode time arrives, so the newest packet waits as the *unflushed* sample.  Samples come in
decode order; a stream with B-frames passes each one's decode time (``dts_90k``) beside its
presentation time, durations are decode-time deltas and ``pts - dts`` goes to the index as the
sample's composition offset (a version-2 ``video_index``).  Without a dts, decode time = pts.

Bytes go through a user-space buffer (fewer ``write`` syscalls than packets) and are written
with ``pwrite`` at the writer's own offset, so truncating after a failed write can never leave
the file offset past the end of the file.

Failure model (era 1): if a write fails after every byte of the already-indexed samples
reached the file, the file is truncated back to ``index.sample_file_bytes``, the failed packet
is dropped and the writer stays usable.  If indexed bytes were lost (a failed buffer flush) or
the truncate fails, the writer is *corrupt*: further writes raise and ``close`` abandons the
file.  ``close`` hands the still-open fd to ``sink.save`` (the syncer fsyncs and closes it) or
to ``sink.abandon`` (the syncer unlinks and closes it); it never does both.
"""

import errno
import hashlib
import os
from typing import Any, Protocol

from . import _args, _fault_hook
from ._clock_py import ClockAdjuster
from ._errors import RecordingAbandonedError
from ._index_py import SampleIndexEncoder
from .records import FLAG_TRAILING_ZERO, PreviousWriter, RecordingToSave, WriterSnapshot

#: Longest sample duration: the ``video_index`` and ``ClockAdjuster`` work in i32.
MAX_DURATION_90K = 2**31 - 1
#: Largest ``|pts - dts|`` (the ``video_index`` stores it as an int32).
MAX_COMPOSITION_OFFSET_90K = 2**31 - 1

_hook: _fault_hook.FaultHook | None = None


def _set_hook(hook: _fault_hook.FaultHook | None) -> None:
    global _hook
    _hook = hook


_fault_hook.subscribe(_set_hook)


class _RecordingSink(Protocol):
    """Where a closed writer sends its file (the syncer; see docs/design.md)."""

    def save(self, recording: RecordingToSave) -> None: ...

    def abandon(
        self, sample_file_uuid: bytes, fd: int | None, error: BaseException | None
    ) -> None: ...


def _os_error(err: OSError, path: str) -> OSError:
    code = err.errno if err.errno is not None else errno.EIO
    return OSError(code, os.strerror(code), path)


class Writer:
    """Writes the samples of one recording to an open sample file and indexes them.

    :param sink: receives the result of ``close`` (``save`` or ``abandon``).
    :param fd: the freshly created (empty) sample file, open for writing; owned by the
        writer until ``close`` hands it to the sink.
    :param path: the file's full path, for error messages and the fault hook.
    :param prev: what the previous writer of the same run returned, or ``None`` for the
        first recording of a run.
    :param buffer_bytes: size of the user-space write buffer.
    """

    def __init__(
        self,
        sink: _RecordingSink,
        fd: int,
        path: "str | os.PathLike[str]",
        sample_file_uuid: bytes,
        stream_id: int,
        video_sample_entry_id: int,
        prev: PreviousWriter | None = None,
        buffer_bytes: int = 1 << 16,
    ) -> None:
        self._closed = True  # until fully constructed, so __del__ leaves a half-built one alone
        checked = _args.writer_init(
            sink, fd, path, sample_file_uuid, stream_id, video_sample_entry_id, prev, buffer_bytes
        )
        path, fd, stream_id, video_sample_entry_id, buffer_bytes = checked
        self._sink = sink
        self._fd = fd
        self._path = path
        self._uuid = bytes(sample_file_uuid)
        self._stream_id = stream_id
        self._video_sample_entry_id = video_sample_entry_id
        self._prev_end: int | None = None if prev is None else prev.end_time_90k
        self._run_offset = 0 if prev is None else prev.run_offset + 1
        self._adjuster = ClockAdjuster(None if prev is None else prev.local_time_delta_90k)
        self._index = SampleIndexEncoder()
        self._hasher = hashlib.sha1()
        self._local_start: int | None = None  # None = +infinity until the first sample
        self._total_duration = 0
        # The unflushed sample: written (or buffered) and hashed, not yet indexed.
        self._has_unflushed = False
        self._unflushed_local_time = 0
        self._unflushed_dts = 0  # its decode time (its pts when the stream gives no dts)
        self._unflushed_offset = 0  # pts - dts
        self._time_name = "pts"  # what the decode times were called, for messages
        self._unflushed_bytes = 0
        self._unflushed_is_key = False
        self._buffer = bytearray()
        self._buffer_bytes = buffer_bytes
        self._file_bytes = 0  # bytes that reached the file (= the pwrite offset)
        self._error: BaseException | None = None  # set when the writer is corrupt
        self._closed = False

    @property
    def sample_file_uuid(self) -> bytes:
        return self._uuid

    @property
    def path(self) -> str:
        return self._path

    @property
    def video_samples(self) -> int:
        """Samples indexed so far (the unflushed one is not counted yet)."""
        return self._index.video_samples

    @property
    def closed(self) -> bool:
        return self._closed

    def write(
        self,
        packet: Any,
        local_time_90k: int,
        pts_90k: int,
        is_key: bool,
        dts_90k: int | None = None,
    ) -> None:
        """Append one sample: index the previous one, then buffer or write this one.

        :param packet: the sample's bytes (any C-contiguous bytes-like object).
        :param local_time_90k: when it was received, on the local (monotonic-derived) clock;
            a non-negative 64-bit integer.
        :param pts_90k: its presentation time, a 64-bit integer; without ``dts_90k`` it must
            increase from packet to packet.
        :param is_key: a ``bool``.
        :param dts_90k: its decode time (B-frame streams), a 64-bit integer that must increase
            from packet to packet, with ``pts_90k - dts_90k`` within int32; ``None``: the pts.
        :raises TypeError: an argument of the wrong type (nothing is written).
        :raises BufferError: ``packet`` is not C-contiguous.
        :raises OverflowError: an integer outside 64 bits.
        :raises ValueError: closed or corrupt writer, empty packet, negative local time, decode
            time not increasing or jumping too far, pts too far from dts.
        :raises OSError: the write failed (see the failure model above).
        """
        if self._closed:
            raise ValueError(f"writer for {self._path} is closed")
        if self._error is not None:
            raise ValueError(
                f"writer for {self._path} is corrupt after an earlier write error; "
                "close it to abandon the recording"
            ) from self._error
        path = self._path
        local_time_90k = _args.non_negative_int64(local_time_90k, "local_time_90k", path)
        pts_90k = _args.int64(pts_90k, "pts_90k", path)
        is_key = _args.boolean(is_key, "is_key", path)
        if dts_90k is None:
            dts, time_name = pts_90k, "pts"
        else:
            dts, time_name = _args.int64(dts_90k, "dts_90k", path), "dts"
        offset = pts_90k - dts
        if not -MAX_COMPOSITION_OFFSET_90K - 1 <= offset <= MAX_COMPOSITION_OFFSET_90K:
            raise ValueError(
                f"{path}: pts {pts_90k} is {offset} from dts {dts}; "
                f"a composition offset must fit int32"
            )
        data = _args.byte_view(packet, path)
        size = len(data)
        if size == 0:
            raise ValueError(f"empty packet for {self._path} at pts {pts_90k}")
        if self._has_unflushed:
            self._index_unflushed(self._duration_until(dts, time_name))
        self._append(data)
        self._hasher.update(data)
        self._has_unflushed = True
        self._unflushed_local_time = local_time_90k
        self._unflushed_dts = dts
        self._unflushed_offset = offset
        self._time_name = time_name
        self._unflushed_bytes = size
        self._unflushed_is_key = is_key

    def close(self, next_pts: int | None = None) -> PreviousWriter:
        """Index the last sample, flush, and hand the file to the sink.

        :param next_pts: the decode time (its dts, or its pts without one) of the next
            recording's first sample (exact last duration); ``None`` when the run ends, which
            records a trailing zero.
        :returns: what the next writer of this run needs.
        :raises TypeError, OverflowError, ValueError: a bad ``next_pts`` (not an integer, or not
            after the last pts); the writer stays open and nothing went to the sink.
        :raises RecordingAbandonedError: the writer was corrupt, the final flush failed or it
            had no samples; the file went to ``sink.abandon``.
        """
        if self._closed:
            raise ValueError(f"writer for {self._path} is already closed")
        last_duration = 0
        if next_pts is not None:
            next_pts = _args.int64(next_pts, "next_pts", self._path)
            if self._has_unflushed:
                last_duration = self._duration_until(next_pts, self._time_name)
        self._closed = True
        if self._error is None and self._has_unflushed:
            # The fd must still go to the sink exactly once.  Only a failed write (OSError) or
            # a last sample the index cannot hold (ValueError) abandons the recording; the
            # arguments were checked above, so anything else is a bug and propagates.
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
        assert self._local_start is not None
        start = self._local_start if self._prev_end is None else self._prev_end
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

    def _duration_until(self, dts_90k: int, name: str) -> int:
        """The unflushed sample's duration if the next sample is decoded at ``dts_90k``
        (``name``: what the caller's times are, ``pts`` or ``dts``, for the messages)."""
        duration = dts_90k - self._unflushed_dts
        if duration <= 0:
            raise ValueError(
                f"{self._path}: {name} not monotonically increasing; "
                f"got {self._unflushed_dts} then {dts_90k}"
            )
        if duration > MAX_DURATION_90K:
            raise ValueError(
                f"{self._path}: {name} jumps from {self._unflushed_dts} to {dts_90k}; "
                f"a sample duration of {duration} exceeds {MAX_DURATION_90K}"
            )
        return duration

    def _index_unflushed(self, duration: int) -> None:
        """Add the unflushed sample to the index; fold its arrival into the local start."""
        duration = self._adjuster.adjust(duration)
        try:
            self._index.add_sample(
                duration, self._unflushed_bytes, self._unflushed_is_key, self._unflushed_offset
            )
        except ValueError as e:
            raise ValueError(f"{self._path}: cannot index sample: {e}") from e
        self._total_duration += duration
        candidate = self._unflushed_local_time - self._total_duration
        if self._local_start is None or candidate < self._local_start:
            self._local_start = candidate
        self._has_unflushed = False

    def _append(self, data: memoryview) -> None:
        """Buffer ``data``, or write it directly if it is at least a buffer's worth.

        Raises ``OSError`` when the data could not be written; then either the writer is
        corrupt (``self._error``) or the file is back at ``index.sample_file_bytes``.
        """
        if len(self._buffer) + len(data) < self._buffer_bytes:
            self._buffer += data
            return
        try:
            self._flush()
        except OSError as e:
            self._error = e  # every buffered byte belongs to an indexed sample: they are lost
            raise
        if len(data) >= self._buffer_bytes:
            self._write_direct(data)
        else:
            self._buffer += data

    def _flush(self) -> None:
        if self._buffer:
            self._write_all(self._buffer)
            self._buffer.clear()

    def _write_direct(self, data: memoryview) -> None:
        """Write a large packet straight to the file; on failure undo its partial bytes."""
        try:
            self._write_all(data)
        except OSError:
            indexed_bytes = self._index.sample_file_bytes
            if self._file_bytes != indexed_bytes:
                try:
                    self._truncate(indexed_bytes)
                except OSError as truncate_error:
                    self._error = truncate_error  # the packet's partial bytes stay: corrupt
            raise

    def _truncate(self, size: int) -> None:
        if _hook is not None:
            _hook("truncate", self._path)
        try:
            os.ftruncate(self._fd, size)
        except OSError as e:
            raise _os_error(e, self._path) from None
        self._file_bytes = size

    def _write_all(self, data: Any) -> None:
        """``pwrite`` all of ``data`` at the writer's offset, looping on partial writes."""
        view = memoryview(data)
        while view:
            if _hook is not None:
                _hook("write", self._path)  # an OSError it raises propagates unchanged
            try:
                written = os.pwrite(self._fd, view, self._file_bytes)
            except OSError as e:
                raise _os_error(e, self._path) from None
            self._file_bytes += written
            view = view[written:]

    def snapshot(self) -> WriterSnapshot | None:
        """The recording so far, for serving it while it grows; None before a sample is indexed.

        Not thread-safe, like ``write``: call it from the thread that writes (the
        recorder publishes the result for other threads).  It does no I/O and never
        changes the writer; a closed or corrupt writer has no snapshot.
        """
        if self._closed or self._error is not None or self._local_start is None:
            return None
        index = self._index
        start = self._local_start if self._prev_end is None else self._prev_end
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

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close(None)
            return
        try:
            self.close(None)
        except RecordingAbandonedError:
            pass  # the exception in flight says more

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            self.close(None)
        except RecordingAbandonedError:
            pass
