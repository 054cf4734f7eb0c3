"""Odd calls to ``Writer`` and ``SampleDirectory``: both twins behave the same.

One table of odd calls (wrong types, floats and bools where integers are expected, values
outside 64 bits, ``Path``/``str``/``bytes`` paths, NUL in names, non-contiguous or non-bytes
buffers, empty packets, calls after close...).  Each row says what a careful API does; every
twin (``impl``) must do exactly that, and the compiled twin must also match the pure-Python
twin's exception type and full message (or result, and what reached the sink) exactly.
"""

from __future__ import annotations

import array
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from moonfire_core._errors import RecordingAbandonedError
from moonfire_core.records import PreviousWriter
from tests.support.implementations import Implementation

UUID = b"u" * 16
T0 = 128_700_576_000_000
I64_MAX = 2**63 - 1


class Sink:
    """Records what reached it (the fd is closed, not kept: fd numbers may differ)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def save(self, recording: Any) -> None:
        os.close(recording.fd)
        self.events.append(("save", recording.start_time_90k, recording.duration_90k,
                            recording.stream_id, recording.sample_file_bytes))

    def abandon(self, sample_file_uuid: bytes, fd: int | None, error: BaseException | None) -> None:
        if fd is not None:
            os.close(fd)
        self.events.append(("abandon", None if error is None else type(error).__name__))


@dataclass
class Env:
    impl: Implementation
    root: Path
    sink: Sink

    def writer(self, **overrides: Any) -> Any:
        path = self.root / "rec"
        args: dict[str, Any] = {
            "sink": self.sink,
            "fd": None,
            "path": str(path),
            "sample_file_uuid": UUID,
            "stream_id": 7,
            "video_sample_entry_id": 3,
            "prev": None,
            "buffer_bytes": 1 << 16,
        }
        args.update(overrides)
        if args["fd"] is None:
            args["fd"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                return self.impl.writer.Writer(**args)
            except BaseException:
                os.close(args["fd"])
                raise
        return self.impl.writer.Writer(**args)

    def started(self, **overrides: Any) -> Any:
        """A writer holding one sample (pts 0) and so able to save."""
        w = self.writer(**overrides)
        w.write(b"key", T0, 0, True)
        return w

    def sampledir(self, *args: Any, **kwargs: Any) -> Any:
        return self.impl.sampledir.SampleDirectory(*args, **kwargs)

    def opened(self, lock: str = "exclusive") -> Any:
        return self.sampledir(str(self.root), lock=lock)

    def closed(self) -> Any:
        d = self.opened()
        d.close()
        return d


@dataclass(frozen=True)
class Ok:
    value: Any = None


@dataclass(frozen=True)
class Raises:
    type: type[BaseException]
    message: str  # a substring of the message; "<dir>" stands for the test directory


def write_then(env: Env, packet: Any, local: Any = T0, pts: Any = 0, key: Any = True) -> Any:
    w = env.writer()
    w.write(packet, local, pts, key)
    return w.close(None).end_time_90k


def two_writes(env: Env, pts1: Any, pts2: Any, local: Any = T0) -> Any:
    w = env.writer()
    w.write(b"a", T0, pts1, True)
    w.write(b"b", local, pts2, False)
    return w.close(None).end_time_90k


def dts_writes(env: Env, *times: tuple[Any, Any]) -> Any:
    """Writes one packet per ``(pts, dts)``; the saved recording's duration."""
    w = env.writer()
    for number, (pts, dts) in enumerate(times):
        w.write(b"f", T0 + 3000 * number, pts, number == 0, dts)
    w.close(None)
    return env.sink.events[-1][2]


def close_twice(env: Env, next_pts: Any) -> Any:
    """A bad ``next_pts`` leaves the writer open with nothing sent; a plain close then saves."""
    w = env.started()
    try:
        w.close(next_pts)
    except Exception as e:
        first = (type(e).__name__, w.closed, list(env.sink.events))
    else:
        return "closed"
    return first, w.close(None)


def close_after_dts(env: Env, next_pts: Any) -> Any:
    w = env.writer()
    w.write(b"key", T0, 3000, True, 7)
    return w.close(next_pts)


def after_close(env: Env, call: Callable[[Any], Any]) -> Any:
    w = env.started()
    w.close(None)
    return call(w)


def dir_file(env: Env, name: str = "f", data: bytes = b"abc") -> None:
    (env.root / name).write_bytes(data)


def open_size(env: Env, lock: str) -> Any:
    dir_file(env)
    with env.opened(lock) as d:
        fd = d.open_file("f")
        os.close(fd)
        return d.lock, d.file_size("f"), sorted(d.list_names())


def with_fd(env: Env, call: Callable[[int], Any]) -> Any:
    fd = os.open(env.root / "f", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        return call(fd)
    finally:
        os.close(fd)


def two_locks(env: Env, first: str, second: str) -> Any:
    with env.opened(first):
        with env.opened(second) as d:
            return d.lock


def closed_bad_fd(env: Env, call: Callable[[int], Any]) -> Any:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return call(fd)


NAME_METHODS = ["create_file", "open_file", "unlink", "file_size"]

CASES: list[tuple[str, Callable[[Env], Any], Ok | Raises]] = [
    # --- Writer(...) ---
    ("writer-path-Path", lambda e: e.writer(path=e.root / "rec").path, Ok("<dir>/rec")),
    ("writer-path-bytes", lambda e: e.writer(path=b"/x/rec"),
     Raises(TypeError, "path must be str, not bytes")),
    ("writer-path-None", lambda e: e.writer(path=None), Raises(TypeError, "not NoneType")),
    ("writer-fd-float", lambda e: e.writer(fd=3.0),
     Raises(TypeError, "fd must be an integer, not float")),
    ("writer-fd-bool", lambda e: e.writer(fd=True), Raises(TypeError, "not bool")),
    ("writer-fd-str", lambda e: e.writer(fd="3"), Raises(TypeError, "not str")),
    ("writer-fd-negative", lambda e: e.writer(fd=-1),
     Raises(ValueError, "fd must not be negative, got -1, for <dir>/rec")),
    ("writer-fd-2**31", lambda e: e.writer(fd=2**31), Raises(OverflowError, "out of range")),
    ("writer-fd-2**64", lambda e: e.writer(fd=2**64), Raises(OverflowError, "out of range")),
    ("writer-uuid-str", lambda e: e.writer(sample_file_uuid="u" * 16),
     Raises(TypeError, "sample_file_uuid must be bytes, not str")),
    ("writer-uuid-bytearray", lambda e: e.writer(sample_file_uuid=bytearray(16)),
     Raises(TypeError, "not bytearray")),
    ("writer-uuid-None", lambda e: e.writer(sample_file_uuid=None),
     Raises(TypeError, "not NoneType")),
    ("writer-uuid-short", lambda e: e.writer(sample_file_uuid=b"abc"),
     Raises(ValueError, "sample_file_uuid must be 16 bytes, got 3")),
    ("writer-stream-float", lambda e: e.writer(stream_id=7.0),
     Raises(TypeError, "stream_id must be an integer, not float")),
    ("writer-stream-bool", lambda e: e.writer(stream_id=True), Raises(TypeError, "not bool")),
    ("writer-stream-None", lambda e: e.writer(stream_id=None), Raises(TypeError, "NoneType")),
    ("writer-stream-2**63", lambda e: e.writer(stream_id=2**63),
     Raises(OverflowError, "stream_id 9223372036854775808 does not fit in 64 bits")),
    ("writer-stream-numpy", lambda e: e.started(stream_id=np.int64(7)).close(None)
     and e.sink.events, Ok([("save", T0, 0, 7, 3)])),
    ("writer-entry-str", lambda e: e.writer(video_sample_entry_id="3"),
     Raises(TypeError, "video_sample_entry_id must be an integer, not str")),
    ("writer-prev-dict", lambda e: e.writer(prev={}),
     Raises(TypeError, "prev must be a PreviousWriter or None, not dict")),
    ("writer-prev-end-2**64", lambda e: e.writer(prev=PreviousWriter(2**64, 0, 0)),
     Raises(OverflowError, "prev.end_time_90k")),
    ("writer-prev-end-negative", lambda e: e.writer(prev=PreviousWriter(-1, 0, 0)),
     Raises(ValueError, "prev.end_time_90k must not be negative")),
    ("writer-prev-delta-float", lambda e: e.writer(prev=PreviousWriter(T0, 0.5, 0)),  # type: ignore[arg-type]
     Raises(TypeError, "prev.local_time_delta_90k must be an integer, not float")),
    ("writer-prev-offset-negative", lambda e: e.writer(prev=PreviousWriter(T0, 0, -1)),
     Raises(ValueError, "prev.run_offset must not be negative")),
    ("writer-prev-offset-max", lambda e: e.writer(prev=PreviousWriter(T0, 0, I64_MAX)),
     Raises(OverflowError, "has no successor")),
    ("writer-prev-end-max", lambda e: e.started(prev=PreviousWriter(I64_MAX, 0, 0)).close(7),
     Ok(PreviousWriter(I64_MAX + 7, T0 - 7 - I64_MAX, 1))),
    ("writer-buffer-0", lambda e: e.writer(buffer_bytes=0),
     Raises(ValueError, "buffer_bytes must be positive, got 0")),
    ("writer-buffer-negative", lambda e: e.writer(buffer_bytes=-5),
     Raises(ValueError, "buffer_bytes must be positive, got -5")),
    ("writer-buffer-float", lambda e: e.writer(buffer_bytes=64.0),
     Raises(TypeError, "buffer_bytes must be an integer, not float")),
    ("writer-buffer-bool", lambda e: e.writer(buffer_bytes=True), Raises(TypeError, "not bool")),
    ("writer-buffer-huge", lambda e: e.writer(buffer_bytes=2**40),
     Raises(ValueError, "buffer_bytes must be at most 1073741824")),
    ("writer-buffer-2**64", lambda e: e.writer(buffer_bytes=2**64),
     Raises(OverflowError, "buffer_bytes")),
    ("writer-sink-None", lambda e: e.writer(sink=None),
     Raises(TypeError, "sink must have save() and abandon() methods, not NoneType")),
    ("writer-sink-no-abandon", lambda e: e.writer(sink=type("S", (), {"save": print})()),
     Raises(TypeError, "sink must have save() and abandon() methods, not S")),
    # --- Writer.write(packet, local_time_90k, pts_90k, is_key) ---
    ("write-str", lambda e: write_then(e, "abc"),
     Raises(TypeError, "packet must be a bytes-like object, not str, for <dir>/rec")),
    ("write-None", lambda e: write_then(e, None), Raises(TypeError, "not NoneType")),
    ("write-int", lambda e: write_then(e, 5), Raises(TypeError, "not int")),
    ("write-list", lambda e: write_then(e, [1, 2]), Raises(TypeError, "not list")),
    ("write-noncontiguous", lambda e: write_then(e, memoryview(b"abcdef")[::2]),
     Raises(BufferError, "packet for <dir>/rec is not a C-contiguous buffer")),
    ("write-noncontiguous-numpy",
     lambda e: write_then(e, np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::2]),
     Raises(BufferError, "not a C-contiguous buffer")),
    ("write-empty", lambda e: write_then(e, b""),
     Raises(ValueError, "empty packet for <dir>/rec at pts 0")),
    ("write-empty-memoryview", lambda e: write_then(e, memoryview(b"abc")[3:]),
     Raises(ValueError, "empty packet")),
    ("write-bytearray", lambda e: write_then(e, bytearray(b"abc")) and e.sink.events,
     Ok([("save", T0, 0, 7, 3)])),
    ("write-memoryview", lambda e: write_then(e, memoryview(b"abcdef")[1:4]) and e.sink.events,
     Ok([("save", T0, 0, 7, 3)])),
    ("write-array-i", lambda e: write_then(e, array.array("i", [1, 2])) and e.sink.events,
     Ok([("save", T0, 0, 7, 8)])),
    ("write-numpy-2d", lambda e: write_then(e, np.zeros((2, 3), np.uint8)) and e.sink.events,
     Ok([("save", T0, 0, 7, 6)])),
    ("write-struct-format", lambda e: write_then(e, np.zeros(2, dtype=[("a", "<i4")]))
     and e.sink.events, Ok([("save", T0, 0, 7, 8)])),
    ("write-pts-float", lambda e: write_then(e, b"a", pts=1.5),
     Raises(TypeError, "pts_90k must be an integer, not float, for <dir>/rec")),
    ("write-pts-bool", lambda e: write_then(e, b"a", pts=True), Raises(TypeError, "not bool")),
    ("write-pts-None", lambda e: write_then(e, b"a", pts=None), Raises(TypeError, "NoneType")),
    ("write-pts-str", lambda e: write_then(e, b"a", pts="1"), Raises(TypeError, "not str")),
    ("write-pts-2**63", lambda e: write_then(e, b"a", pts=2**63),
     Raises(OverflowError, "pts_90k 9223372036854775808 does not fit in 64 bits")),
    ("write-pts-2**64", lambda e: write_then(e, b"a", pts=2**64),
     Raises(OverflowError, "pts_90k 18446744073709551616 does not fit")),
    ("write-pts--2**63-1", lambda e: write_then(e, b"a", pts=-(2**63) - 1),
     Raises(OverflowError, "does not fit in 64 bits")),
    ("write-pts-min", lambda e: write_then(e, b"a", pts=-(2**63)), Ok(T0)),
    ("write-pts-numpy", lambda e: two_writes(e, np.int64(5), np.int32(9)), Ok(T0)),
    ("write-pts-equal", lambda e: two_writes(e, 5, 5),
     Raises(ValueError, "<dir>/rec: pts not monotonically increasing; got 5 then 5")),
    ("write-pts-backwards", lambda e: two_writes(e, 5, -5),
     Raises(ValueError, "got 5 then -5")),
    ("write-pts-full-range-jump", lambda e: two_writes(e, -(2**63), I64_MAX),
     Raises(ValueError, "a sample duration of 18446744073709551615 exceeds 2147483647")),
    ("write-local-negative", lambda e: write_then(e, b"a", local=-1),
     Raises(ValueError, "local_time_90k must not be negative, got -1")),
    ("write-local-float", lambda e: write_then(e, b"a", local=1.0),
     Raises(TypeError, "local_time_90k must be an integer, not float")),
    ("write-local-2**63", lambda e: write_then(e, b"a", local=2**63),
     Raises(OverflowError, "local_time_90k")),
    ("write-local-max", lambda e: two_writes(e, 0, 3000, local=I64_MAX), Ok(T0)),
    ("write-key-int", lambda e: write_then(e, b"a", key=1),
     Raises(TypeError, "is_key must be a bool, not int")),
    ("write-key-None", lambda e: write_then(e, b"a", key=None), Raises(TypeError, "NoneType")),
    ("write-key-numpy", lambda e: write_then(e, b"a", key=np.bool_(True)),
     Raises(TypeError, "is_key must be a bool")),
    ("write-keywords", lambda e: e.writer().write(packet=b"a", local_time_90k=T0, pts_90k=0,
                                                 is_key=True), Ok(None)),
    ("write-after-close", lambda e: after_close(e, lambda w: w.write(b"a", T0, 1, True)),
     Raises(ValueError, "writer for <dir>/rec is closed")),
    ("write-bad-type-after-close", lambda e: after_close(e, lambda w: w.write(None, 1.5, 1, 1)),
     Raises(ValueError, "is closed")),
    # --- Writer.write(..., dts_90k): decode times (B-frames) ---
    ("write-dts-float", lambda e: dts_writes(e, (0, 0.5)),
     Raises(TypeError, "dts_90k must be an integer, not float, for <dir>/rec")),
    ("write-dts-bool", lambda e: dts_writes(e, (0, False)), Raises(TypeError, "not bool")),
    ("write-dts-2**63", lambda e: dts_writes(e, (0, 2**63)),
     Raises(OverflowError, "dts_90k 9223372036854775808 does not fit in 64 bits")),
    ("write-dts-numpy", lambda e: dts_writes(e, (np.int64(6000), np.int32(0)), (3000, 3000)),
     Ok(3000)),
    ("write-dts-reordered", lambda e: dts_writes(e, (6000, 0), (15000, 3000), (9000, 6000)),
     Ok(6000)),
    ("write-dts-equal", lambda e: dts_writes(e, (6000, 5), (3000, 5)),
     Raises(ValueError, "<dir>/rec: dts not monotonically increasing; got 5 then 5")),
    ("write-dts-offset-2**31", lambda e: dts_writes(e, (2**31, 0)),
     Raises(ValueError, "<dir>/rec: pts 2147483648 is 2147483648 from dts 0; a composition "
            "offset must fit int32")),
    ("write-dts-offset-min", lambda e: dts_writes(e, (-(2**31), 0), (3000, 3000)), Ok(3000)),
    ("write-dts-offset-full-range", lambda e: dts_writes(e, (I64_MAX, -(2**63))),
     Raises(ValueError, "is 18446744073709551615 from dts -9223372036854775808")),
    ("write-dts-jump", lambda e: dts_writes(e, (0, 0), (2**40, 2**40)),
     Raises(ValueError, "<dir>/rec: dts jumps from 0 to 1099511627776")),
    ("write-dts-then-close-equal", lambda e: close_after_dts(e, 7),
     Raises(ValueError, "<dir>/rec: dts not monotonically increasing; got 7 then 7")),
    # --- Writer.close(next_pts) ---
    ("close-next-float", lambda e: close_twice(e, 1.5),
     Ok((("TypeError", False, []), PreviousWriter(T0, 0, 0)))),
    ("close-next-bool", lambda e: close_twice(e, True),
     Ok((("TypeError", False, []), PreviousWriter(T0, 0, 0)))),
    ("close-next-str", lambda e: close_twice(e, "5"),
     Ok((("TypeError", False, []), PreviousWriter(T0, 0, 0)))),
    ("close-next-2**64", lambda e: close_twice(e, 2**64),
     Ok((("OverflowError", False, []), PreviousWriter(T0, 0, 0)))),
    ("close-next-equal", lambda e: close_twice(e, 0),
     Ok((("ValueError", False, []), PreviousWriter(T0, 0, 0)))),
    ("close-next-float-message", lambda e: e.started().close(1.5),
     Raises(TypeError, "next_pts must be an integer, not float, for <dir>/rec")),
    ("close-next-numpy", lambda e: e.started().close(np.int64(3000)),
     Ok(PreviousWriter(T0, 0, 0))),
    ("close-empty-next-float", lambda e: e.writer().close(1.5),
     Raises(TypeError, "next_pts must be an integer")),
    ("close-empty", lambda e: e.writer().close(None),
     Raises(RecordingAbandonedError, "recording <dir>/rec abandoned: no samples written")),
    ("close-twice", lambda e: after_close(e, lambda w: w.close(None)),
     Raises(ValueError, "writer for <dir>/rec is already closed")),
    ("close-twice-bad-arg", lambda e: after_close(e, lambda w: w.close(1.5)),
     Raises(ValueError, "already closed")),
    ("close-properties", lambda e: after_close(
        e, lambda w: (w.closed, w.path, w.sample_file_uuid, w.video_samples)),
     Ok((True, "<dir>/rec", UUID, 1))),
    ("close-context", lambda e: e.started().__exit__(None, None, None) or e.sink.events,
     Ok([("save", T0, 0, 7, 3)])),
    # --- SampleDirectory(path, lock) ---
    ("dir-Path", lambda e: e.sampledir(e.root).path, Ok("<dir>")),
    ("dir-str", lambda e: e.sampledir(str(e.root)).path, Ok("<dir>")),
    ("dir-bytes", lambda e: e.sampledir(os.fsencode(e.root)),
     Raises(TypeError, "sample file directory path must be str, not bytes")),
    ("dir-int", lambda e: e.sampledir(3), Raises(TypeError, "must be str, not int")),
    ("dir-None", lambda e: e.sampledir(None), Raises(TypeError, "must be str, not NoneType")),
    ("dir-nul", lambda e: e.sampledir(str(e.root) + "\0x"),
     Raises(ValueError, "sample file directory path has an embedded null byte")),
    ("dir-empty", lambda e: e.sampledir(""), Raises(FileNotFoundError, "No such file")),
    ("dir-missing", lambda e: e.sampledir(e.root / "missing"),
     Raises(FileNotFoundError, "<dir>/missing")),
    ("dir-not-a-dir", lambda e: dir_file(e) or e.sampledir(e.root / "f"),
     Raises(NotADirectoryError, "Not a directory")),
    ("dir-lock-bogus", lambda e: e.sampledir(e.root, lock="read"),
     Raises(ValueError, "lock must be one of exclusive, shared, none; got 'read'")),
    ("dir-lock-None", lambda e: e.sampledir(e.root, lock=None),
     Raises(TypeError, "lock must be str, not NoneType")),
    ("dir-lock-bool", lambda e: e.sampledir(e.root, lock=True), Raises(TypeError, "not bool")),
    ("dir-exclusive-twice", lambda e: two_locks(e, "exclusive", "exclusive"),
     Raises(BlockingIOError, "sample file directory <dir> is in use by another process")),
    ("dir-shared-under-exclusive", lambda e: two_locks(e, "exclusive", "shared"),
     Raises(BlockingIOError, "is in use by another process")),
    ("dir-exclusive-under-shared", lambda e: two_locks(e, "shared", "exclusive"),
     Raises(BlockingIOError, "is in use by another process")),
    ("dir-shared-twice", lambda e: two_locks(e, "shared", "shared"), Ok("shared")),
    ("dir-none-under-exclusive", lambda e: two_locks(e, "exclusive", "none"), Ok("none")),
    ("dir-shared-reads", lambda e: open_size(e, "shared"), Ok(("shared", 3, ["f"]))),
    ("dir-none-reads", lambda e: open_size(e, "none"), Ok(("none", 3, ["f"]))),
    ("dir-shared-create", lambda e: e.opened("shared").create_file("x"),
     Raises(ValueError, "sample file directory <dir> is open read-only (lock 'shared')")),
    ("dir-none-unlink", lambda e: dir_file(e) or e.opened("none").unlink("f"),
     Raises(ValueError, "is open read-only (lock 'none')")),
    ("dir-shared-sync", lambda e: e.opened("shared").sync(), Ok(None)),
    ("dir-create-existing", lambda e: dir_file(e) or e.opened().create_file("f"),
     Raises(FileExistsError, "<dir>/f")),
    ("dir-open-missing", lambda e: e.opened().open_file("x"),
     Raises(FileNotFoundError, "<dir>/x")),
    ("dir-size-missing", lambda e: e.opened().file_size("x"),
     Raises(FileNotFoundError, "<dir>/x")),
    ("dir-unlink-missing", lambda e: e.opened().unlink("x"), Ok(False)),
    ("dir-unlink", lambda e: dir_file(e) or e.opened().unlink("f"), Ok(True)),
    ("dir-size-empty-file", lambda e: dir_file(e, data=b"") or e.opened().file_size("f"), Ok(0)),
    ("dir-size-directory", lambda e: (e.root / "d").mkdir() or e.opened().file_size("d") >= 0,
     Ok(True)),
    ("dir-create-unicode", lambda e: os.close(e.opened().create_file("é")) or
     sorted(os.listdir(e.root)), Ok(["é"])),
    ("dir-create-surrogate", lambda e: os.close(e.opened().create_file("a\udcff")) or
     sorted(os.listdir(e.root)), Ok(["a\udcff"])),
    ("dir-after-close-close", lambda e: e.closed().close(), Ok(None)),
    ("dir-after-close-repr", lambda e: repr(e.closed()), Ok("<SampleDirectory '<dir>' closed>")),
    ("dir-after-close-path", lambda e: (e.closed().path, e.closed().lock),
     Ok(("<dir>", "exclusive"))),
    ("dir-after-close-fileno", lambda e: e.closed().fileno(),
     Raises(ValueError, "sample file directory <dir> is closed")),
    ("dir-after-close-sync", lambda e: e.closed().sync(), Raises(ValueError, "is closed")),
    ("dir-after-close-list", lambda e: e.closed().list_names(), Raises(ValueError, "is closed")),
    ("dir-after-close-bad-name", lambda e: e.closed().create_file(b"x"),
     Raises(ValueError, "is closed")),
    ("dir-context", lambda e: e.opened().__enter__().lock, Ok("exclusive")),
    # --- module functions: fsync(fd, name), fdatasync(fd, name), close_fd(fd) ---
    ("fsync-Path", lambda e: with_fd(e, lambda fd: e.impl.sampledir.fsync(fd, e.root / "f")),
     Ok(None)),
    ("fsync-bytes-name", lambda e: with_fd(e, lambda fd: e.impl.sampledir.fsync(fd, b"f")),
     Raises(TypeError, "name must be str, not bytes")),
    ("fsync-None-name", lambda e: with_fd(e, lambda fd: e.impl.sampledir.fsync(fd, None)),
     Raises(TypeError, "name must be str, not NoneType")),
    ("fsync-nul-name", lambda e: with_fd(e, lambda fd: e.impl.sampledir.fsync(fd, "a\0b")),
     Raises(ValueError, "name has an embedded null byte")),
    ("fsync-fd-float", lambda e: e.impl.sampledir.fsync(3.0, "f"),
     Raises(TypeError, "fd must be an integer, not float, for f")),
    ("fsync-fd-bool", lambda e: e.impl.sampledir.fsync(True, "f"), Raises(TypeError, "not bool")),
    ("fsync-fd-2**31", lambda e: e.impl.sampledir.fsync(2**31, "f"),
     Raises(OverflowError, "fd 2147483648 is out of range, for f")),
    ("fsync-fd-negative", lambda e: e.impl.sampledir.fsync(-1, "f"),
     Raises(ValueError, "fd must not be negative, got -1, for f")),
    ("fsync-fd-numpy", lambda e: with_fd(e, lambda fd: e.impl.sampledir.fsync(np.int32(fd), "f")),
     Ok(None)),
    ("fdatasync-fd-str", lambda e: e.impl.sampledir.fdatasync("3", "f"),
     Raises(TypeError, "fd must be an integer, not str")),
    ("fdatasync-closed-fd", lambda e: closed_bad_fd(e, lambda fd: e.impl.sampledir.fdatasync(
        fd, "f")), Raises(OSError, "Bad file descriptor")),
    ("close_fd-None", lambda e: e.impl.sampledir.close_fd(None),
     Raises(TypeError, "fd must be an integer, not NoneType, for close_fd")),
    ("close_fd-float", lambda e: e.impl.sampledir.close_fd(1.0), Raises(TypeError, "float")),
    ("close_fd-2**64", lambda e: e.impl.sampledir.close_fd(2**64),
     Raises(OverflowError, "out of range")),
    ("close_fd-negative", lambda e: e.impl.sampledir.close_fd(-1),
     Raises(ValueError, "fd must not be negative, got -1, for close_fd")),
]

for method in NAME_METHODS:
    CASES += [
        (f"dir-{method}-bytes", lambda e, m=method: getattr(e.opened(), m)(b"x"),
         Raises(TypeError, "sample file name must be str, not bytes, in <dir>")),
        (f"dir-{method}-Path", lambda e, m=method: getattr(e.opened(), m)(Path("x")),
         Raises(TypeError, "sample file name must be str, not PosixPath")),
        (f"dir-{method}-None", lambda e, m=method: getattr(e.opened(), m)(None),
         Raises(TypeError, "not NoneType")),
        (f"dir-{method}-int", lambda e, m=method: getattr(e.opened(), m)(5),
         Raises(TypeError, "not int")),
        (f"dir-{method}-nul", lambda e, m=method: getattr(e.opened(), m)("a\0b"),
         Raises(ValueError, "invalid sample file name 'a\\x00b' in <dir>")),
        (f"dir-{method}-slash", lambda e, m=method: getattr(e.opened(), m)("a/b"),
         Raises(ValueError, "invalid sample file name 'a/b'")),
        (f"dir-{method}-empty", lambda e, m=method: getattr(e.opened(), m)(""),
         Raises(ValueError, "invalid sample file name ''")),
        (f"dir-{method}-dotdot", lambda e, m=method: getattr(e.opened(), m)(".."),
         Raises(ValueError, "invalid sample file name '..'")),
        (f"dir-{method}-after-close", lambda e, m=method: getattr(e.closed(), m)("x"),
         Raises(ValueError, "sample file directory <dir> is closed")),
    ]


def outcome(impl: Implementation, call: Callable[[Env], Any], root: Path) -> tuple[Any, ...]:
    """What ``call`` did: (exception type, message) or ("ok", result), and the sink's events."""
    root.mkdir()
    env = Env(impl, root, Sink())

    def norm(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(str(root), "<dir>")
        if isinstance(value, tuple | list):
            return type(value)(norm(v) for v in value)
        return value

    try:
        result = call(env)
    except Exception as e:  # noqa: BLE001 - the exception is the result being compared
        return type(e), norm(str(e)), env.sink.events
    return "ok", norm(result), env.sink.events


@pytest.mark.parametrize(("call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_twins_agree_on_odd_input(
    impl: Implementation, tmp_path: Path, call: Callable[[Env], Any], expected: Ok | Raises
) -> None:
    got = outcome(impl, call, tmp_path / impl.kind)
    if isinstance(expected, Raises):
        assert got[0] is expected.type, got
        assert expected.message in got[1], got
    else:
        assert got[:2] == ("ok", expected.value), got
    if impl.kind != "py":
        reference = outcome(Implementation("py"), call, tmp_path / "py")
        assert got == reference


def test_case_ids_are_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
