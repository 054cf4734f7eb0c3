"""The per-recording Writer (brief §4.1 "Writer (era 1)", §3.2, §3.4, §7 items 4–5, 13–15).

Each test runs against both twins through ``impl`` with real files under ``tmp_path`` and a
fake sink that records what ``close`` hands over.  The hypothesis test checks every available
twin against one straightforward model, so the twins also agree with each other.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire_core import _clock_py, _fault_hook, _index_py
from moonfire_core._errors import RecordingAbandonedError
from moonfire_core.records import FLAG_TRAILING_ZERO, PreviousWriter, RecordingToSave
from tests.support.implementations import IMPLEMENTATIONS, Implementation

T0 = 128_700_576_000_000  # 2015-04-26 00:00:00 UTC in 90 kHz units (brief §6.1)
FRAME = 3000  # 30 fps


class FakeSink:
    """Records ``save``/``abandon`` calls; checks the fd is still open and closes it."""

    def __init__(self) -> None:
        self.saved: list[RecordingToSave] = []
        self.size_at_save: list[int] = []
        self.abandoned: list[tuple[bytes, int | None, BaseException | None]] = []

    def save(self, recording: RecordingToSave) -> None:
        self.size_at_save.append(os.fstat(recording.fd).st_size)
        os.close(recording.fd)
        self.saved.append(recording)

    def abandon(self, sample_file_uuid: bytes, fd: int | None, error: BaseException | None) -> None:
        if fd is not None:
            os.fstat(fd)  # still open
            os.close(fd)
        self.abandoned.append((sample_file_uuid, fd, error))

    @property
    def only_saved(self) -> RecordingToSave:
        assert not self.abandoned
        assert len(self.saved) == 1
        return self.saved[0]


def new_writer(
    impl: Implementation,
    directory: Path,
    sink: FakeSink,
    prev: PreviousWriter | None = None,
    buffer_bytes: int = 1 << 16,
) -> Any:
    sample_file_uuid = uuid.uuid4().bytes
    path = directory / str(uuid.UUID(bytes=sample_file_uuid))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return impl.writer.Writer(
        sink, fd, str(path), sample_file_uuid, 7, 3, prev, buffer_bytes=buffer_bytes
    )


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def hook_ops() -> Iterator[list[str]]:
    """Record the op of every hooked syscall; removed after the test."""
    ops: list[str] = []
    _fault_hook.set_fault_hook(lambda op, path: ops.append(op))
    yield ops
    _fault_hook.set_fault_hook(None)


@pytest.fixture
def no_hook_after() -> Iterator[None]:
    yield
    _fault_hook.set_fault_hook(None)


def fail_on(op_to_fail: str, after: int = 0):
    """A hook that lets ``after`` ``op_to_fail`` calls through, then fails each with EIO."""
    seen = [0]

    def hook(op: str, path: str) -> None:
        if op == op_to_fail:
            seen[0] += 1
            if seen[0] > after:
                raise OSError(errno.EIO, "Input/output error (injected)", path)

    return hook


# ---------------------------------------------------------------- basic write/close (§6.2)


def test_two_packets_make_six_bytes_two_samples_and_a_trailing_zero(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 1, 1, True)
    assert writer.video_samples == 0  # the index runs one sample behind
    writer.write(b"bar", 2, 2, False)
    assert writer.video_samples == 1
    prev = writer.close()
    rec = sink.only_saved
    assert writer.closed
    assert Path(writer.path).read_bytes() == b"foobar"
    assert sink.size_at_save == [6]
    assert rec.sample_file_uuid == writer.sample_file_uuid
    assert (rec.stream_id, rec.video_sample_entry_id, rec.run_offset) == (7, 3, 0)
    assert (rec.sample_file_bytes, rec.video_samples, rec.video_sync_samples) == (6, 2, 1)
    assert rec.sample_file_sha1 == hashlib.sha1(b"foobar").digest()
    assert rec.flags == FLAG_TRAILING_ZERO
    assert rec.duration_90k == 1
    assert rec.video_index == impl.index.encode_index([1, 0], [3, 3], [True, False])
    # local start = min(1 - 1, 2 - (1 + 0)) = 0
    assert (rec.start_time_90k, rec.local_time_delta_90k) == (0, 0)
    assert prev == PreviousWriter(end_time_90k=1, local_time_delta_90k=0, run_offset=0)


def test_next_pts_gives_the_exact_last_duration_and_no_flag(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 10, 1, True)
    writer.write(b"bar", 20, 2, False)
    prev = writer.close(next_pts=10)
    rec = sink.only_saved
    assert rec.flags == 0
    assert rec.duration_90k == 9
    assert rec.video_index == impl.index.encode_index([1, 8], [3, 3], [True, False])
    assert prev.end_time_90k == rec.start_time_90k + 9


def test_packets_may_be_any_bytes_like_object(impl, tmp_path, sink) -> None:
    packets = [b"ab", bytearray(b"cd"), memoryview(b"xxefxx")[2:4], np.frombuffer(b"gh", np.uint8)]
    with new_writer(impl, tmp_path, sink) as writer:
        for i, packet in enumerate(packets):
            writer.write(packet, i, i, i == 0)
    assert Path(writer.path).read_bytes() == b"abcdefgh"
    assert sink.only_saved.sample_file_sha1 == hashlib.sha1(b"abcdefgh").digest()


def test_non_monotonic_pts_is_refused_naming_the_file_and_the_writer_stays_usable(
    impl, tmp_path, sink
) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 0, 5, True)
    for bad_pts in (5, 4):
        with pytest.raises(ValueError) as info:
            writer.write(b"bar", 0, bad_pts, False)
        assert str(info.value) == (
            f"{writer.path}: pts not monotonically increasing; got 5 then {bad_pts}"
        )
    with pytest.raises(ValueError, match="pts not monotonically increasing; got 5 then 5"):
        writer.close(next_pts=5)
    assert not writer.closed
    writer.write(b"baz", 0, 6, False)
    writer.close(next_pts=8)
    rec = sink.only_saved
    assert Path(writer.path).read_bytes() == b"foobaz"
    assert rec.video_index == impl.index.encode_index([1, 2], [3, 3], [True, False])


def test_a_pts_jump_beyond_the_index_range_is_refused(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 0, 0, True)
    with pytest.raises(ValueError, match=f"{writer.path}: pts jumps from 0 to 2147483648"):
        writer.write(b"bar", 0, 2**31, False)
    writer.close()
    assert sink.only_saved.video_samples == 1


# ---------------------------------------------------------------- B-frames (issue 10 §1)

#: x264 ``bframes=2`` in decode order: (pts, dts, is_key) of I P B B P B B at 30 fps, as the
#: GStreamer camera sends them over RTSP.
BFRAME_PACKETS = [
    (90000, 84000, True),
    (99000, 87000, False),
    (93000, 90000, False),
    (96000, 93000, False),
    (108000, 96000, False),
    (102000, 99000, False),
    (105000, 102000, False),
]


def test_b_frames_are_indexed_in_decode_order_with_composition_offsets(
    impl, tmp_path, sink
) -> None:
    writer = new_writer(impl, tmp_path, sink)
    for number, (pts, dts, key) in enumerate(BFRAME_PACKETS):
        writer.write(b"frame%d" % number, T0 + number * FRAME, pts, key, dts)
    writer.close(next_pts=105000)  # the next recording's first decode time
    rec = sink.only_saved
    decoded = _index_py.decode_index(rec.video_index)
    assert decoded.durations.tolist() == [FRAME] * 7
    assert decoded.composition_offsets.tolist() == [pts - dts for pts, dts, _ in BFRAME_PACKETS]
    shown = (decoded.starts + decoded.composition_offsets + 84000).tolist()
    assert shown == [pts for pts, _, _ in BFRAME_PACKETS]
    assert rec.video_index[0] == 0x0A  # version 2
    assert (rec.duration_90k, rec.flags, rec.video_sync_samples) == (7 * FRAME, 0, 1)


def test_decode_times_decide_the_order_and_their_name_is_in_the_message(
    impl, tmp_path, sink
) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"i", T0, 9000, True, 3000)
    writer.write(b"b", T0 + FRAME, 3000, False, 6000)  # pts goes back: fine, dts goes on
    with pytest.raises(ValueError, match=r"dts not monotonically increasing; got 6000 then 6000$"):
        writer.write(b"x", T0 + 2 * FRAME, 12000, False, 6000)
    writer.write(b"p", T0 + 2 * FRAME, 12000, False, 9000)
    writer.close()
    decoded = _index_py.decode_index(sink.only_saved.video_index)
    assert decoded.composition_offsets.tolist() == [6000, -3000, 3000]
    assert decoded.durations.tolist() == [3000, 3000, 0]


def test_a_stream_without_dts_keeps_version_1_bytes(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"aaa", T0, 0, True, 0)  # dts = pts everywhere: no offsets, no version 2
    writer.write(b"bbb", T0 + FRAME, FRAME, False)
    writer.close(next_pts=2 * FRAME)
    rec = sink.only_saved
    assert rec.video_index == impl.index.encode_index([FRAME, FRAME], [3, 3], [True, False])


def test_snapshot_carries_the_composition_offsets(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    for number, (pts, dts, key) in enumerate(BFRAME_PACKETS[:4]):
        writer.write(b"f", T0 + number * FRAME, pts, key, dts)
    snapshot = writer.snapshot()
    assert snapshot is not None
    decoded = _index_py.decode_index(snapshot.video_index)
    assert decoded.composition_offsets.tolist() == [6000, 12000, 3000]  # the 4th is unflushed
    writer.close()


def test_an_empty_packet_is_refused(impl, tmp_path, sink) -> None:
    with new_writer(impl, tmp_path, sink) as writer:
        with pytest.raises(ValueError, match=f"empty packet for {writer.path} at pts 3"):
            writer.write(b"", 0, 3, True)
        writer.write(b"x", 0, 3, True)
    assert sink.only_saved.video_samples == 1


def test_closing_twice_and_writing_after_close_are_refused(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 0, 0, True)
    writer.close()
    with pytest.raises(ValueError, match="already closed"):
        writer.close()
    with pytest.raises(ValueError, match=f"writer for {writer.path} is closed"):
        writer.write(b"bar", 0, 1, False)
    assert len(sink.saved) == 1


def test_a_writer_without_samples_is_abandoned_not_saved(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    with pytest.raises(RecordingAbandonedError, match=f"recording {writer.path} abandoned"):
        writer.close()
    assert sink.saved == []
    assert [(u, e) for u, _, e in sink.abandoned] == [(writer.sample_file_uuid, None)]
    with pytest.raises(ValueError, match="already closed"):
        writer.close()


# ---------------------------------------------------------------- time model (§3.2–§3.4)


def test_local_start_is_the_min_over_samples_so_buffering_does_not_delay_it(
    impl, tmp_path, sink
) -> None:
    # The first three frames arrive together, 2 frames late; later ones arrive as they end.
    arrivals = [T0 + 3 * FRAME] * 3 + [T0 + 4 * FRAME, T0 + 5 * FRAME]
    writer = new_writer(impl, tmp_path, sink)
    for i, local_time in enumerate(arrivals):
        writer.write(b"frame", local_time, 180_000 + i * FRAME, i == 0)
    prev = writer.close(next_pts=180_000 + 5 * FRAME)
    rec = sink.only_saved
    assert rec.start_time_90k == T0
    assert rec.duration_90k == 5 * FRAME
    assert rec.local_time_delta_90k == 0
    assert prev.end_time_90k == T0 + 5 * FRAME


def test_recordings_of_a_run_abut_exactly_and_count_run_offsets(impl, tmp_path, sink) -> None:
    prev = None
    pts = 0
    for recording in range(3):
        writer = new_writer(impl, tmp_path, sink, prev)
        for _ in range(10):
            # The NVR clock runs 1 unit per frame slower than the camera's pts.
            writer.write(b"frame", T0 + pts - pts // FRAME, pts, recording == 0)
            pts += FRAME
        prev = writer.close(next_pts=pts if recording < 2 else None)
        assert prev.run_offset == recording
    first, second, third = sink.saved
    assert [r.run_offset for r in sink.saved] == [0, 1, 2]
    assert second.start_time_90k == first.start_time_90k + first.duration_90k
    assert third.start_time_90k == second.start_time_90k + second.duration_90k
    assert prev.end_time_90k == third.start_time_90k + third.duration_90k
    assert [r.flags for r in sink.saved] == [0, 0, FLAG_TRAILING_ZERO]
    assert first.local_time_delta_90k == 0  # the first of a run starts at its local start
    assert second.local_time_delta_90k < 0  # the NVR clock fell behind the chained timeline


def test_clock_adjuster_cancels_the_previous_delta_at_500_ppm(impl, tmp_path, sink) -> None:
    prev = PreviousWriter(end_time_90k=T0, local_time_delta_90k=-1_000_000, run_offset=4)
    writer = new_writer(impl, tmp_path, sink, prev)
    for i in range(1800):
        writer.write(b"f", T0 + i * FRAME, i * FRAME, i % 30 == 0)
    writer.close(next_pts=1800 * FRAME)
    rec = sink.only_saved
    durations = [s.duration_90k for s in impl.index.SampleIndexIterator(rec.video_index)]
    assert set(durations) <= {2998, 2999, 3000}
    assert 5_400_000 - 2700 <= rec.duration_90k <= 5_400_000 - 2699
    assert (rec.start_time_90k, rec.run_offset) == (T0, 5)


# ---------------------------------------------------------------- buffering and syscalls


def test_buffer_is_flushed_before_close_hands_over_the_fd(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    data = bytes(range(256)) * 2
    for i in range(300):
        writer.write(data, i, i, i == 0)
    writer.close()
    rec = sink.only_saved
    assert sink.size_at_save == [rec.sample_file_bytes] == [300 * 512]
    assert Path(writer.path).read_bytes() == data * 300


def test_small_packets_take_fewer_write_syscalls_than_packets(
    impl, tmp_path, sink, hook_ops
) -> None:
    writer = new_writer(impl, tmp_path, sink)
    for i in range(1000):
        writer.write(b"p" * 512, i, i, i == 0)
    writer.close()
    writes = hook_ops.count("write")
    assert writes <= 1000 * 512 // (1 << 16) + 1  # one per full buffer, plus the rest at close
    assert Path(writer.path).stat().st_size == 512_000


def test_packets_of_at_least_a_buffer_are_written_directly(impl, tmp_path, sink, hook_ops) -> None:
    writer = new_writer(impl, tmp_path, sink, buffer_bytes=1024)
    packets = [b"a" * 100, b"B" * 1024, b"c" * 100, b"D" * 5000]
    for i, packet in enumerate(packets):
        writer.write(packet, i, i, i == 0)
    # "a" flushed before "B"; "B" direct; "c" flushed before "D"; "D" direct.
    assert hook_ops.count("write") == 4
    writer.close()
    assert hook_ops.count("write") == 4  # nothing left in the buffer
    assert Path(writer.path).read_bytes() == b"".join(packets)


# ---------------------------------------------------------------- failures (era 1)


def test_a_failed_direct_write_drops_the_packet_and_the_writer_stays_usable(
    impl, tmp_path, sink, no_hook_after
) -> None:
    writer = new_writer(impl, tmp_path, sink, buffer_bytes=16)
    writer.write(b"k" * 20, 0, 0, True)
    _fault_hook.set_fault_hook(fail_on("write"))
    with pytest.raises(OSError) as info:
        writer.write(b"x" * 20, 1, 10, False)
    _fault_hook.set_fault_hook(None)
    assert (info.value.errno, info.value.filename) == (errno.EIO, writer.path)
    writer.write(b"y" * 20, 2, 30, False)
    writer.close(next_pts=40)
    rec = sink.only_saved
    assert Path(writer.path).read_bytes() == b"k" * 20 + b"y" * 20
    assert rec.sample_file_sha1 == hashlib.sha1(b"k" * 20 + b"y" * 20).digest()
    # The first sample's duration runs up to the dropped packet's pts, as in era 1.
    assert rec.video_index == impl.index.encode_index([10, 10], [20, 20], [True, False])


def test_a_failed_buffer_flush_corrupts_the_writer_and_close_abandons(
    impl, tmp_path, sink, no_hook_after
) -> None:
    writer = new_writer(impl, tmp_path, sink, buffer_bytes=64)
    writer.write(b"k" * 40, 0, 0, True)
    _fault_hook.set_fault_hook(fail_on("write"))
    with pytest.raises(OSError) as info:
        writer.write(b"x" * 40, 1, 1, False)  # must flush the buffered, now indexed, sample
    _fault_hook.set_fault_hook(None)
    assert info.value.errno == errno.EIO
    with pytest.raises(ValueError, match=f"writer for {writer.path} is corrupt"):
        writer.write(b"y", 2, 2, False)
    with pytest.raises(RecordingAbandonedError, match=f"recording {writer.path} abandoned") as ab:
        writer.close()
    assert ab.value.__cause__ is info.value
    assert sink.saved == []
    assert [(u, e) for u, _, e in sink.abandoned] == [(writer.sample_file_uuid, info.value)]


def test_a_failed_flush_at_close_abandons(impl, tmp_path, sink, no_hook_after) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 0, 0, True)
    _fault_hook.set_fault_hook(fail_on("write"))
    with pytest.raises(RecordingAbandonedError, match="Input/output error"):
        writer.close()
    assert sink.saved == []
    assert len(sink.abandoned) == 1
    assert isinstance(sink.abandoned[0][2], OSError)


PARTIAL_WRITE_SCRIPT = r"""
import errno, hashlib, json, os, resource, signal, sys
from moonfire_core import _fault_hook
from moonfire_core._writer_{kind} import Writer

class Sink:
    saved, abandoned = [], []
    def save(self, rec):
        self.saved.append(rec); os.close(rec.fd)
    def abandon(self, u, fd, error):
        self.abandoned.append(repr(error)); os.close(fd)

path, fail_truncate = sys.argv[1], sys.argv[2] == "1"
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # make EFBIG an error, not a signal death
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, resource.RLIM_INFINITY))
if fail_truncate:
    def hook(op, p):
        if op == "truncate":
            raise OSError(errno.EIO, "Input/output error (injected)", p)
    _fault_hook.set_fault_hook(hook)
sink = Sink()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
w = Writer(sink, fd, path, b"u" * 16, 1, 1, None, buffer_bytes=1024)
out = {{}}
w.write(b"A" * 4000, 0, 0, True)
try:
    w.write(b"B" * 8000, 1, 10, False)      # 6000 bytes fit under the limit, then EFBIG
except OSError as e:
    out["error"] = [e.errno, e.filename]
out["size_after_error"] = os.path.getsize(path)
try:
    w.write(b"C" * 100, 2, 20, False)
    out["later_write"] = "ok"
except ValueError as e:
    out["later_write"] = str(e)
try:
    w.close(next_pts=30)
except Exception as e:
    out["close"] = type(e).__name__
if sink.saved:
    rec = sink.saved[0]
    out["saved"] = [rec.sample_file_bytes, rec.video_samples, rec.sample_file_sha1.hex()]
out["abandoned"] = sink.abandoned
out["final_size"] = os.path.getsize(path)
print(json.dumps(out))
"""


def run_partial_write(impl: Implementation, path: Path, fail_truncate: bool) -> dict[str, Any]:
    script = PARTIAL_WRITE_SCRIPT.format(kind="c" if impl.kind == "c" else "py")
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), "1" if fail_truncate else "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_partial_write_is_truncated_away_and_the_writer_stays_usable(impl, tmp_path) -> None:
    path = tmp_path / "rec"
    out = run_partial_write(impl, path, fail_truncate=False)
    assert out["error"] == [errno.EFBIG, str(path)]
    assert out["size_after_error"] == 4000  # B's 6000 partial bytes were truncated away
    assert out["later_write"] == "ok"
    assert out["saved"] == [4100, 2, hashlib.sha1(b"A" * 4000 + b"C" * 100).hexdigest()]
    assert out["abandoned"] == []
    assert out["final_size"] == 4100


def test_a_failed_truncate_after_a_partial_write_corrupts_the_writer(impl, tmp_path) -> None:
    path = tmp_path / "rec"
    out = run_partial_write(impl, path, fail_truncate=True)
    assert out["error"] == [errno.EFBIG, str(path)]
    assert out["size_after_error"] == 10_000
    assert "is corrupt" in out["later_write"]
    assert out["close"] == "RecordingAbandonedError"
    assert "saved" not in out
    assert len(out["abandoned"]) == 1 and "injected" in out["abandoned"][0]


# ---------------------------------------------------------------- lifetime


def test_dropping_a_writer_closes_it_with_a_trailing_zero(impl, tmp_path, sink) -> None:
    writer = new_writer(impl, tmp_path, sink)
    writer.write(b"foo", 0, 0, True)
    writer.write(b"bar", 0, 5, False)
    path = writer.path
    del writer
    gc.collect()
    rec = sink.only_saved
    assert rec.flags == FLAG_TRAILING_ZERO
    assert Path(path).read_bytes() == b"foobar"


def test_dropping_an_empty_writer_abandons_it_silently(impl, tmp_path, sink, monkeypatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    writer = new_writer(impl, tmp_path, sink)
    del writer
    gc.collect()
    assert unraisable == []
    assert len(sink.abandoned) == 1 and sink.saved == []


def test_context_manager_closes_with_a_trailing_zero(impl, tmp_path, sink) -> None:
    with new_writer(impl, tmp_path, sink) as writer:
        writer.write(b"foo", 0, 0, True)
    assert writer.closed
    assert sink.only_saved.flags == FLAG_TRAILING_ZERO


def test_context_manager_reports_abandonment_unless_another_error_is_in_flight(
    impl, tmp_path, sink
) -> None:
    with pytest.raises(RecordingAbandonedError, match="no samples"):
        with new_writer(impl, tmp_path, sink):
            pass
    with pytest.raises(KeyError, match="in flight"):
        with new_writer(impl, tmp_path, sink):
            raise KeyError("in flight")
    assert len(sink.abandoned) == 2 and sink.saved == []


def test_bad_constructor_arguments_are_refused(impl, tmp_path, sink) -> None:
    with pytest.raises(ValueError, match="sample_file_uuid must be 16 bytes, got 3"):
        impl.writer.Writer(sink, -1, str(tmp_path / "x"), b"abc", 1, 1)
    with pytest.raises(ValueError, match="buffer_bytes must be positive, got 0"):
        impl.writer.Writer(sink, -1, str(tmp_path / "x"), b"u" * 16, 1, 1, None, 0)
    gc.collect()
    assert sink.saved == [] and sink.abandoned == []


# ---------------------------------------------------------------- every twin == the model

packet_streams = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=300),  # packet
        st.integers(1, 10_000),  # pts step to the next packet
        st.integers(0, 20_000),  # arrival delay (buffering, jitter)
        st.booleans(),  # key
    ),
    min_size=1,
    max_size=40,
)


def model(
    packets: list[tuple[bytes, int, int, bool]],
    prev: PreviousWriter | None,
    end_with_next_pts: bool,
) -> tuple[dict[str, Any], bytes]:
    """What a correct writer saves, computed the obvious way."""
    adjuster = _clock_py.ClockAdjuster(None if prev is None else prev.local_time_delta_90k)
    durations = [adjuster.adjust(step) for _, step, _, _ in packets[:-1]]
    durations.append(adjuster.adjust(packets[-1][1] if end_with_next_pts else 0))
    total, local_start, pts = 0, None, 0
    for (_, step, delay, _), duration in zip(packets, durations, strict=True):
        total += duration
        arrival = T0 + pts + delay
        local_start = arrival - total if local_start is None else min(local_start, arrival - total)
        pts += step
    start = local_start if prev is None else prev.end_time_90k
    data = b"".join(p for p, _, _, _ in packets)
    return {
        "stream_id": 7,
        "run_offset": 0 if prev is None else prev.run_offset + 1,
        "flags": 0 if durations[-1] else FLAG_TRAILING_ZERO,
        "sample_file_bytes": len(data),
        "start_time_90k": start,
        "duration_90k": total,
        "local_time_delta_90k": local_start - start,
        "video_samples": len(packets),
        "video_sync_samples": sum(k for _, _, _, k in packets),
        "video_sample_entry_id": 3,
        "video_index": _index_py.encode_index(
            durations, [len(p) for p, _, _, _ in packets], [k for _, _, _, k in packets]
        ),
        "sample_file_sha1": hashlib.sha1(data).digest(),
    }, data


@given(
    packets=packet_streams,
    prev_delta=st.none() | st.integers(-5000, 5000),
    end_with_next_pts=st.booleans(),
    buffer_bytes=st.sampled_from([1, 64, 500, 1 << 16]),
)
def test_every_twin_saves_what_the_model_says(
    packets: list[tuple[bytes, int, int, bool]],
    prev_delta: int | None,
    end_with_next_pts: bool,
    buffer_bytes: int,
) -> None:
    prev = None if prev_delta is None else PreviousWriter(T0 + 12_345, prev_delta, 2)
    expected, expected_data = model(packets, prev, end_with_next_pts)
    for kind in IMPLEMENTATIONS:
        sink = FakeSink()
        with tempfile.TemporaryDirectory() as directory:
            writer = new_writer(Implementation(kind), Path(directory), sink, prev, buffer_bytes)
            pts = 0
            for packet, step, delay, key in packets:
                writer.write(packet, T0 + pts + delay, pts, key)
                pts += step
            returned = writer.close(next_pts=pts if end_with_next_pts else None)
            assert Path(writer.path).read_bytes() == expected_data, kind
        saved = dataclasses.asdict(sink.only_saved)
        del saved["fd"], saved["sample_file_uuid"]
        assert saved == expected, kind
        assert returned == PreviousWriter(
            expected["start_time_90k"] + expected["duration_90k"],
            expected["local_time_delta_90k"],
            expected["run_offset"],
        )
