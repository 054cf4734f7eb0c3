"""``moonfire export`` end to end: real storage engine, real files, PyAV (FFmpeg) as the client.

Recordings are made the way the daemon makes them: real H.264 (the camera clip of
``testdata/clip.mp4``, and a test pattern encoded here with libx264) is written through
``Syncer.create_writer`` or ``StreamRecorder`` into a data directory on disk.  The export is
then demuxed and decoded by FFmpeg and compared with the source packets and with the index.
"""

from __future__ import annotations

import errno
import io
import os
import random
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from moonfire.cli.main import main
from moonfire.codec.h264 import sample_entry_from_extradata
from moonfire.ingest.recorder import StreamRecorder
from moonfire.playback import file_copy
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.time import format_time
from moonfire_core import decode_index

FRAME_90K = 3000  # 30 fps
GOP_FRAMES = 30
LOOP_FRAMES = 2 * GOP_FRAMES  # the encoded pattern: 2 s, repeated
#: One second before a wall-clock minute: with 60 s rotation the 3-minute run then has three
#: recordings (the first lasts until the second boundary), so two rotations fall inside it.
RUN_START_90K = (1_780_000_000 // 60 * 60 + 59) * 90_000
RUN_SECONDS = 180
GAP_RUN_START_90K = RUN_START_90K + 3600 * 90_000  # an hour later, on another camera
GAP_RUN_SECONDS = 10
GAP_SECONDS = 5


@dataclass(frozen=True)
class Packet:
    pts_90k: int
    is_key: bool
    data: bytes


@dataclass(frozen=True)
class Source:
    extradata: bytes
    packets: list[Packet]


def demux(container_bytes: bytes) -> Source:
    """Length-prefixed samples (pts in 90 kHz, exact) and the avcC extradata of an .mp4."""
    with av.open(io.BytesIO(container_bytes)) as container:
        stream = container.streams.video[0]
        to_90k = stream.time_base * 90_000
        packets = []
        for p in container.demux(stream):
            if p.size:
                pts = p.pts * to_90k
                assert pts.denominator == 1, f"pts {p.pts} is not a whole 90 kHz tick"
                packets.append(Packet(int(pts), p.is_keyframe, bytes(p)))
        return Source(bytes(stream.codec_context.extradata), packets)


def decoded_frame_count(container_bytes: bytes) -> int:
    with av.open(io.BytesIO(container_bytes)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def clip(testdata) -> Source:
    return demux((testdata / "clip.mp4").read_bytes())


@pytest.fixture(scope="module")
def pattern() -> Source:
    """2 s of a moving test pattern, 320x240 30 fps, a key frame every 30 frames, no B-frames.

    Every GOP starts with an IDR picture, so repeating the 2 s loop is a valid stream.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream(
            "libx264",
            rate=30,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "g": str(GOP_FRAMES),
                "keyint_min": str(GOP_FRAMES),
                "sc_threshold": "0",
            },
        )
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(LOOP_FRAMES):
            picture = np.zeros((240, 320, 3), np.uint8)
            picture[:, (i * 5) % 300 : (i * 5) % 300 + 20] = 255
            picture[..., 1] = i * 4
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    source = demux(buffer.getvalue())
    assert [p.pts_90k for p in source.packets] == [i * FRAME_90K for i in range(LOOP_FRAMES)]
    assert [p.is_key for p in source.packets] == [i % GOP_FRAMES == 0 for i in range(LOOP_FRAMES)]
    return source


def looped(source: Source, seconds: int) -> list[Packet]:
    period = LOOP_FRAMES * FRAME_90K
    return [
        Packet(n * period + p.pts_90k, p.is_key, p.data)
        for n in range(seconds * 30 // LOOP_FRAMES)
        for p in source.packets
    ]


def add_camera(db, name: str, source: Source) -> tuple[int, int]:
    """A camera for ``source``: (its main stream's id, the sample entry id)."""
    camera = db.add_camera(name, retain_bytes=10**10, rotate_interval_sec=60)
    entry = sample_entry_from_extradata(source.extradata)
    return camera.main.id, db.insert_video_sample_entry(entry.width, entry.height, entry.data)


def record_run(sample_file_dir, syncer, stream_id, entry_id, packets, base_90k) -> None:
    """A run through ``StreamRecorder`` (rotation every 60 s); each packet arrives as it ends."""
    recorder = StreamRecorder(syncer, stream_id, rotate_interval_sec=60)
    for p in packets:
        recorder.write(p.data, base_90k + p.pts_90k + FRAME_90K, p.pts_90k, p.is_key, entry_id)
    recorder.end_run()


def record_clip(sample_file_dir, syncer, stream_id, entry_id, clip: Source, base_90k: int) -> None:
    """One recording through the Writer itself: local time = base + pts."""
    writer = syncer.create_writer(None, stream_id, entry_id)
    first = clip.packets[0].pts_90k
    for p in clip.packets:
        writer.write(p.data, base_90k + p.pts_90k - first, p.pts_90k, p.is_key)
    writer.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory, clip, pattern) -> str:
    """A data dir: camera ``clip`` (one recording of clip.mp4), ``loop`` (one 3-minute run),
    ``gappy`` (two 10 s runs, 5 s apart)."""
    data_dir = str(tmp_path_factory.mktemp("export") / "data")
    db, sample_file_dir = datadir.init(data_dir)
    with db, sample_file_dir, sample_file_dir.start_syncer() as syncer:
        stream_id, entry_id = add_camera(db, "clip", clip)
        record_clip(sample_file_dir, syncer, stream_id, entry_id, clip, RUN_START_90K)
        stream_id, entry_id = add_camera(db, "loop", pattern)
        packets = looped(pattern, RUN_SECONDS)
        record_run(sample_file_dir, syncer, stream_id, entry_id, packets, RUN_START_90K)
        stream_id, entry_id = add_camera(db, "gappy", pattern)
        packets = looped(pattern, GAP_RUN_SECONDS)
        record_run(sample_file_dir, syncer, stream_id, entry_id, packets, GAP_RUN_START_90K)
        second_start = GAP_RUN_START_90K + (GAP_RUN_SECONDS + GAP_SECONDS) * 90_000
        record_run(sample_file_dir, syncer, stream_id, entry_id, packets, second_start)
        syncer.flush()
    return data_dir


def recordings(data_dir: str, camera: str):
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera(camera).main.id)
        return [(row, db.get_playback(row.composite_id)) for row in rows]


def export(
    capsys, data_dir: str, camera: str, start, end, output: Path | str, *options: str
) -> tuple[int, str, str]:
    times = ["--start", str(start), "--end", str(end)]
    code = main(["export", "--data-dir", data_dir, camera, *times, "-o", str(output), *options])
    out, err = capsys.readouterr()
    return code, out, err


def index_frames(rows_and_playbacks) -> list[tuple[int, bool, int]]:
    """(pts relative to the first recording's start, key, size) of every frame, from the index."""
    base = rows_and_playbacks[0][0].start_time_90k
    frames = []
    for row, playback in rows_and_playbacks:
        decoded = decode_index(playback.video_index)
        for start, key, size in zip(decoded.starts, decoded.is_key, decoded.sizes, strict=True):
            frames.append((row.start_time_90k - base + int(start), bool(key), int(size)))
    return frames


def test_clip_written_through_the_writer_exports_every_sample_byte_for_byte(
    library, clip, capsys, tmp_path
):
    ((row, _),) = recordings(library, "clip")
    output = tmp_path / "clip.mp4"
    code, out, err = export(
        capsys, library, "clip", format_time(row.start_time_90k), row.end_time_90k, output
    )
    assert (code, err) == (0, "")
    assert f"wrote {output}" in out and f"{len(clip.packets)} frames" in out
    exported = demux(output.read_bytes())
    first = clip.packets[0].pts_90k
    assert [(p.pts_90k, p.is_key) for p in exported.packets] == [
        (p.pts_90k - first, p.is_key) for p in clip.packets
    ]
    for n, (got, want) in enumerate(zip(exported.packets, clip.packets, strict=True)):
        assert got.data == want.data, f"sample {n} differs"
    assert exported.extradata == clip.extradata
    assert decoded_frame_count(output.read_bytes()) == len(clip.packets)


def test_three_minute_run_exports_every_frame_across_rotations(library, pattern, capsys, tmp_path):
    rows = recordings(library, "loop")
    assert len(rows) == 3, "the run should rotate twice"
    for (a, _), (b, _) in zip(rows, rows[1:], strict=False):
        assert b.start_time_90k == a.end_time_90k and b.run_offset == a.run_offset + 1
    output = tmp_path / "loop.mp4"
    code, _, err = export(
        capsys, library, "loop", rows[0][0].start_time_90k, rows[-1][0].end_time_90k, output
    )
    assert (code, err) == (0, "")
    data = output.read_bytes()
    exported = [(p.pts_90k, p.is_key, len(p.data)) for p in demux(data).packets]
    assert exported == index_frames(rows)
    source = looped(pattern, RUN_SECONDS)
    # No frame lost or duplicated at the rotation boundaries: the source, frame for frame.
    assert exported == [(p.pts_90k, p.is_key, len(p.data)) for p in source]
    assert decoded_frame_count(data) == len(source)


def test_range_starting_mid_gop_keeps_the_gop_prefix_behind_an_edit_list(library, capsys, tmp_path):
    rows = recordings(library, "loop")
    boundary = rows[1][0].start_time_90k  # a rotation: the range spans two recordings
    start = boundary - 45 * FRAME_90K  # half-way through the GOP before the last one
    end = boundary + 20 * FRAME_90K
    output = tmp_path / "mid.mp4"
    code, _, err = export(capsys, library, "loop", start, end, output)
    assert (code, err) == (0, "")
    data = output.read_bytes()
    assert b"elst" in data[: data.index(b"mdat")]
    run_start = rows[0][0].start_time_90k
    key_before = boundary - 60 * FRAME_90K - run_start  # relative to the run's start
    wanted = [f for f in index_frames(rows) if key_before <= f[0] < end - run_start]
    # FFmpeg applies the edit: times count from the requested start, the prefix is negative.
    shift = start - run_start
    packets = [(p.pts_90k + shift, p.is_key, len(p.data)) for p in demux(data).packets]
    assert packets == wanted, "every frame from the preceding key frame to the end"
    assert demux(data).packets[0].pts_90k == key_before - shift < 0
    assert decoded_frame_count(data) == (end - start) // FRAME_90K


def test_runs_separated_by_a_gap_go_to_numbered_files(library, capsys, tmp_path):
    rows = recordings(library, "gappy")
    assert len(rows) == 2 and rows[1][0].start_time_90k - rows[0][0].end_time_90k > 0
    output = tmp_path / "gappy.mp4"
    code, out, err = export(
        capsys,
        library,
        "gappy",
        format_time(rows[0][0].start_time_90k - 90_000),
        format_time(rows[1][0].end_time_90k + 90_000),
        output,
    )
    assert (code, err) == (0, "")
    second = tmp_path / "gappy-2.mp4"
    assert sorted(os.listdir(tmp_path)) == ["gappy-2.mp4", "gappy.mp4"]
    assert f"wrote {output}" in out and f"wrote {second}" in out
    for path, run in zip([output, second], [rows[:1], rows[1:]], strict=True):
        data = path.read_bytes()
        assert [(p.pts_90k, p.is_key, len(p.data)) for p in demux(data).packets] == index_frames(
            run
        )
        assert decoded_frame_count(data) == GAP_RUN_SECONDS * 30


def gappy_range(library: str, both_runs: bool) -> tuple[str, str]:
    """A range over the ``gappy`` camera's first run, or over both (two stretches)."""
    rows = recordings(library, "gappy")
    last = rows[1] if both_runs else rows[0]
    return format_time(rows[0][0].start_time_90k), format_time(last[0].end_time_90k)


def test_directory_in_the_way_of_a_later_part_is_refused_before_any_rename(
    library, capsys, tmp_path
):
    output = tmp_path / "gappy.mp4"
    output.write_bytes(b"an earlier export")
    (tmp_path / "gappy-2.mp4").mkdir()
    code, out, err = export(capsys, library, "gappy", *gappy_range(library, True), output)
    assert code == 1 and out == ""
    assert f"{tmp_path / 'gappy-2.mp4'} is a directory" in err
    assert output.read_bytes() == b"an earlier export"
    assert sorted(os.listdir(tmp_path)) == ["gappy-2.mp4", "gappy.mp4"]


def test_parts_of_an_earlier_longer_export_are_removed(library, capsys, tmp_path):
    output = tmp_path / "gappy.mp4"
    assert export(capsys, library, "gappy", *gappy_range(library, True), output)[0] == 0
    for name in ("gappy-3.mp4", "gappy-03.mp4", "gappy-x.mp4", "gappy-4.mov"):
        (tmp_path / name).write_bytes(b"not ours")
    (tmp_path / "gappy-5.mp4").mkdir()  # not a regular file: left alone
    code, out, err = export(capsys, library, "gappy", *gappy_range(library, False), output)
    assert code == 1 and out == ""
    assert f"{output} exists; give --force to replace it" in err
    output.unlink()
    code, out, err = export(capsys, library, "gappy", *gappy_range(library, False), output)
    assert code == 1 and out == "", "stale parts are deleted only with --force"
    assert f"{tmp_path / 'gappy-2.mp4'} looks like a part of an earlier export" in err
    code, out, err = export(
        capsys, library, "gappy", *gappy_range(library, False), output, "--force"
    )
    assert (code, err) == (0, "")
    assert f"removed {tmp_path / 'gappy-2.mp4'}" in out
    assert f"removed {tmp_path / 'gappy-3.mp4'}" in out
    assert sorted(os.listdir(tmp_path)) == [
        "gappy-03.mp4", "gappy-4.mov", "gappy-5.mp4", "gappy-x.mp4", "gappy.mp4",
    ]
    assert decoded_frame_count(output.read_bytes()) == GAP_RUN_SECONDS * 30


@pytest.mark.parametrize(
    ("camera", "start", "end", "fragment"),
    [
        ("loop", RUN_START_90K - 10 * 90_000, RUN_START_90K - 90_000, "has no recordings between"),
        ("nosuch", RUN_START_90K, RUN_START_90K + 90_000, "no camera 'nosuch'"),
        ("loop", RUN_START_90K + 90_000, RUN_START_90K + 90_000, "is not before end"),
        ("loop", RUN_START_90K + 90_000, RUN_START_90K, "is not before end"),
    ],
    ids=["no-recordings", "unknown-camera", "empty-range", "reversed-range"],
)
def test_bad_requests_exit_1_with_a_message_and_no_file(
    library, capsys, tmp_path, camera, start, end, fragment
):
    code, out, err = export(capsys, library, camera, start, end, tmp_path / "out.mp4")
    assert code == 1 and out == ""
    assert err.startswith("moonfire: ") and fragment in err and "internal error" not in err
    assert os.listdir(tmp_path) == []


@pytest.fixture
def clip_data_dir(tmp_path, clip) -> str:
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)
    with db, sample_file_dir, sample_file_dir.start_syncer() as syncer:
        stream_id, entry_id = add_camera(db, "clip", clip)
        record_clip(sample_file_dir, syncer, stream_id, entry_id, clip, RUN_START_90K)
        syncer.flush()
    return data_dir


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [(os.unlink, "is missing"), (lambda path: os.truncate(path, 1000), "is 1000 bytes")],
    ids=["missing", "truncated"],
)
def test_damaged_sample_file_is_named_and_nothing_is_written(
    clip_data_dir, capsys, tmp_path, damage, fragment
):
    ((row, playback),) = recordings(clip_data_dir, "clip")
    sample_file_dir_path = os.path.join(clip_data_dir, datadir.SAMPLE_DIR_NAME)
    path = os.path.join(sample_file_dir_path, uuid_name(playback.sample_file_uuid))
    damage(path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = export(
        capsys, clip_data_dir, "clip", row.start_time_90k, row.end_time_90k, out_dir / "x.mp4"
    )
    assert code == 1 and out == ""
    assert path in err and f"recording {row.stream_id}/{row.recording_id}" in err
    assert fragment in err
    assert os.listdir(out_dir) == []


def test_failure_while_writing_removes_the_partial_file(
    clip_data_dir, capsys, tmp_path, monkeypatch
):
    """A sample file shrinking after the up-front check fails the write; no output is left."""
    ((row, playback),) = recordings(clip_data_dir, "clip")
    path = os.path.join(
        clip_data_dir, datadir.SAMPLE_DIR_NAME, uuid_name(playback.sample_file_uuid)
    )

    def plan_then_truncate(*args):
        parts = plan_export(*args)
        os.truncate(path, 1000)
        return parts

    monkeypatch.setattr("moonfire.cli.export.plan_export", plan_then_truncate)
    code, _, err = export(
        capsys, clip_data_dir, "clip", row.start_time_90k, row.end_time_90k, tmp_path / "x.mp4"
    )
    assert code == 1 and "too short" in err
    assert [name for name in os.listdir(tmp_path) if name != "data"] == []


def random_ranges(size: int, count: int, seed: int) -> Iterator[tuple[int, int]]:
    rng = random.Random(seed)
    for _ in range(count):
        offset = rng.randrange(size)
        yield offset, rng.choice([1, 7, 4096, rng.randrange(1, size - offset + 100)])


def test_virtual_file_read_of_random_ranges_equals_the_written_file(library, capsys, tmp_path):
    rows = recordings(library, "loop")
    start = rows[0][0].start_time_90k + 100_000  # mid-GOP, and spanning both rotations
    end = rows[-1][0].end_time_90k - 100_000
    output = tmp_path / "ranges.mp4"
    assert export(capsys, library, "loop", start, end, output)[0] == 0
    written = output.read_bytes()
    with datadir.open_db(library, read_only=True) as db:
        (part,) = plan_export(db, "loop", start, end)
        assert part.file.size == len(written)
        edges = [0, part.file.media_data_offset - 1, part.file.size - 1]
        for offset, length in [(e, 64) for e in edges] + list(
            random_ranges(len(written), 300, seed=4)
        ):
            assert part.file.read(offset, length) == written[offset : offset + length], (
                offset,
                length,
            )
    assert part.duration_90k == end - start


# ---- -o: what the export may write to ---------------------------------------------------


def clip_range(data_dir: str) -> tuple[int, int]:
    ((row, _),) = recordings(data_dir, "clip")
    return row.start_time_90k, row.end_time_90k


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_symlink(path: Path) -> None:
    target = path.parent / "target.mp4"
    target.write_bytes(b"the link's target")
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (make_fifo, "is not a regular file (a device, FIFO or socket)"),
        (make_symlink, "is a symbolic link; the export won't replace it"),
        (Path.mkdir, "is a directory"),
    ],
    ids=["fifo", "symlink", "directory"],
)
def test_a_destination_that_is_not_a_regular_file_is_refused_even_with_force(
    clip_data_dir, capsys, tmp_path, make, fragment
):
    target = tmp_path / "out.mp4"
    make(target)
    before = os.lstat(target)
    code, out, err = export(capsys, clip_data_dir, "clip", *clip_range(clip_data_dir), target,
                            "--force")
    assert code == 1 and out == "" and f"{target} {fragment}" in err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), "node replaced"
    if target.is_symlink():
        assert target.read_bytes() == b"the link's target"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_a_device_node_is_refused_and_left_alone(clip_data_dir, capsys):
    """``-o /dev/full`` once replaced the device with a regular file (the rename)."""
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    code, out, err = export(capsys, clip_data_dir, "clip", *clip_range(clip_data_dir),
                            "/dev/full", "--force")
    assert code == 1 and out == ""
    assert "/dev/full is not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_an_existing_file_is_replaced_only_with_force(clip_data_dir, capsys, tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"yesterday's export")
    code, out, err = export(capsys, clip_data_dir, "clip", *clip_range(clip_data_dir), target)
    assert code == 1 and out == ""
    assert f"{target} exists; give --force to replace it" in err
    assert target.read_bytes() == b"yesterday's export"
    code, out, err = export(capsys, clip_data_dir, "clip", *clip_range(clip_data_dir), target,
                            "--force")
    assert code == 0 and f"wrote {target}" in out
    assert decoded_frame_count(target.read_bytes()) == clip_range_frames(clip_data_dir)


def clip_range_frames(data_dir: str) -> int:
    ((row, _),) = recordings(data_dir, "clip")
    return row.video_samples


def test_dash_writes_the_mp4_to_standard_output(clip_data_dir, capsysbinary, tmp_path):
    start, end = clip_range(clip_data_dir)
    to_file = tmp_path / "file.mp4"
    assert main(["export", "--data-dir", clip_data_dir, "clip", "--start", str(start),
                 "--end", str(end), "-o", str(to_file)]) == 0
    capsysbinary.readouterr()
    assert main(["export", "--data-dir", clip_data_dir, "clip", "--start", str(start),
                 "--end", str(end), "-o", "-"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == to_file.read_bytes(), "stdout carries exactly the .mp4"
    assert b"wrote standard output" in err
    assert sorted(os.listdir(tmp_path)) == ["data", "file.mp4"]


def test_dash_refuses_a_range_with_several_stretches(library, capsys, tmp_path):
    code, out, err = export(capsys, library, "gappy", *gappy_range(library, True), "-")
    assert code == 1 and out == ""
    assert "spans 2 stretches separated by gaps" in err and "(-o -) takes only one" in err


# --- the sample data goes file to file in the kernel (moonfire.playback.file_copy) -----------


def refuse(error: int):
    def refused(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    return refused


@pytest.mark.parametrize(
    ("refused", "method"),
    [
        ((), file_copy.COPY_FILE_RANGE),
        (("copy_file_range",), file_copy.SENDFILE),  # e.g. across file systems (EXDEV)
        (("copy_file_range", "sendfile"), file_copy.READ_WRITE),
    ],
    ids=["copy_file_range", "sendfile", "pread+write"],
)
def test_kernel_copy_gives_the_bytes_of_the_virtual_file(
    library, tmp_path, monkeypatch, refused, method
):
    """Every way down gives the bytes ``VirtualFile.read`` gives (the old path), mid-GOP start
    and rotations included; each refusal is taken once, not once per span."""
    rows = recordings(library, "loop")
    start, end = rows[0][0].start_time_90k + 100_000, rows[-1][0].end_time_90k - 100_000
    calls = []
    for name in refused:
        error = errno.EXDEV if name == "copy_file_range" else errno.EINVAL

        def refused_call(*args, error=error, name=name):
            calls.append(name)
            raise OSError(error, os.strerror(error))

        monkeypatch.setattr(os, name, refused_call)
    # Writeback started every 4 KiB (not 32 MiB), so these small files exercise it too.
    monkeypatch.setattr(file_copy, "WRITEBACK_BYTES", 4096)
    advised: list[tuple[int, int]] = []
    fadvise = os.posix_fadvise

    def recording_fadvise(fd, offset, length, advice):
        advised.append((offset, length))
        fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", recording_fadvise)
    with datadir.open_db(library, read_only=True) as db:
        (part,) = plan_export(db, "loop", start, end)
        expected = io.BytesIO()
        part.file.write_to(expected)
        progress: list[int] = []
        with open(tmp_path / "out.mp4", "wb") as out:
            assert file_copy.copy_to_fd(part.file, out.fileno(), progress.append) == method
    assert (tmp_path / "out.mp4").read_bytes() == expected.getvalue()
    assert sum(progress) == part.file.size and len(rows) == 3
    assert sorted(calls) == sorted(refused), "a refusal is remembered for the later spans"
    assert advised[0][0] == 0 and len(advised) >= 3 and sum(n for _, n in advised) <= part.file.size
    assert all(a + n == b for (a, n), (b, _) in zip(advised, advised[1:], strict=False))


@pytest.mark.parametrize("refused", [(), ("copy_file_range",), ("copy_file_range", "sendfile")])
def test_sample_file_shrunk_after_planning_is_named_by_every_way(
    clip_data_dir, tmp_path, monkeypatch, refused
):
    ((row, playback),) = recordings(clip_data_dir, "clip")
    sample_file_dir_path = os.path.join(clip_data_dir, datadir.SAMPLE_DIR_NAME)
    path = os.path.join(sample_file_dir_path, uuid_name(playback.sample_file_uuid))
    for name in refused:
        monkeypatch.setattr(os, name, refuse(errno.EINVAL))
    with datadir.open_db(clip_data_dir, read_only=True) as db:
        (part,) = plan_export(db, "clip", row.start_time_90k, row.end_time_90k)
        os.truncate(path, 1000)
        with open(tmp_path / "out.mp4", "wb") as out, pytest.raises(
            file_copy.SampleFileTooShort
        ) as caught:
            file_copy.copy_to_fd(part.file, out.fileno())
    message = str(caught.value)
    assert f"recording {row.stream_id}/{row.recording_id}" in message
    assert f"ended {row.sample_file_bytes - 1000} bytes early" in message


def test_other_copy_errors_are_not_taken_for_a_refusal(clip_data_dir, tmp_path, monkeypatch):
    """A failing disk (EIO) fails the export rather than being retried another way."""
    ((row, _),) = recordings(clip_data_dir, "clip")
    monkeypatch.setattr(os, "copy_file_range", refuse(errno.EIO))
    with datadir.open_db(clip_data_dir, read_only=True) as db:
        (part,) = plan_export(db, "clip", row.start_time_90k, row.end_time_90k)
        with open(tmp_path / "out.mp4", "wb") as out, pytest.raises(OSError) as caught:
            file_copy.copy_to_fd(part.file, out.fileno())
    assert caught.value.errno == errno.EIO


@pytest.mark.parametrize("kind", ["appended file", "pipe"])
def test_dash_to_a_real_descriptor_gives_the_file_export(
    clip_data_dir, capsys, tmp_path, monkeypatch, kind
):
    """``-o -`` with standard output a descriptor (not a capture): a file opened for appending
    (``>>``, which copy_file_range refuses) or a pipe, read by another thread as it fills."""
    start, end = clip_range(clip_data_dir)
    assert export(capsys, clip_data_dir, "clip", start, end, tmp_path / "file.mp4")[0] == 0
    expected = (tmp_path / "file.mp4").read_bytes()
    received = bytearray()
    if kind == "pipe":
        read_end, write_end = os.pipe()
        stdout = open(write_end, "w")  # noqa: SIM115 - closed below

        def drain() -> None:
            with open(read_end, "rb") as pipe:
                received.extend(pipe.read())

        reader = threading.Thread(target=drain)
        reader.start()
    else:
        (tmp_path / "appended.mp4").write_bytes(b"head")
        stdout = open(tmp_path / "appended.mp4", "a")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        code = main(["export", "--data-dir", clip_data_dir, "clip", "--start", str(start),
                     "--end", str(end), "-o", "-"])
    finally:
        stdout.close()
    assert code == 0
    if kind == "pipe":
        reader.join(10)
        assert bytes(received) == expected
    else:
        assert (tmp_path / "appended.mp4").read_bytes() == b"head" + expected
