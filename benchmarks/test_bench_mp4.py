"""Virtual ``.mp4`` of a 24-hour, 30 fps export: building the ``moov``, and serving a 1 MiB range.

Targets (brief §4.2 workload): ``moov`` < 150 ms; a 1 MiB range < 5 ms.

Shape: 1440 one-minute recordings in one run, each with the real camera index
``testdata/video_sample_index.bin`` (1800 samples, 60 key frames, 30,104,460 bytes), so 2.59 M
samples and a ~31 MB ``moov``.  Every row refers to the *same* 30 MB sample file (written once,
then in the page cache): 1440 distinct files would be 43 GB, and the reader's cost does not
depend on which file a byte range lands in.

``test_build_moov`` times what an HTTP request for the file's start costs: building the segments
and the ``VirtualFile`` from rows, then reading every byte up to the first sample.  The index
decoder is the only twinned code in that path, so it is parametrized over ``impl`` (the Python
twin is far off the target: it decodes 2.6 M samples one by one).  Baselines in the same run:
``ndarray.tobytes`` of as many table bytes (the copy any implementation must make), and
``os.pread`` of 1 MiB from the same file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import moonfire.playback.segment
from benchmarks.sizes import TINY, size
from moonfire.db import RecordingRow, VideoSampleEntry, composite_id
from moonfire.playback.mp4 import build_mp4
from moonfire.playback.segment import Segment

RECORDINGS = size("MOONFIRE_BENCH_DAY_RECORDINGS", 1440, 60)
START_90K = 1_780_000_000 * 90_000
MIB = 1 << 20


@pytest.fixture(scope="module")
def export(testdata, tmp_path_factory):
    """Rows, index blob, sample entry and the opener of the shared sample file."""
    from moonfire_core import decode_index

    blob = (testdata / "video_sample_index.bin").read_bytes()
    decoded = decode_index(blob)
    rows = [
        RecordingRow(
            composite_id=composite_id(1, i + 1),
            stream_id=1,
            run_offset=i,
            flags=0,
            sample_file_bytes=decoded.sample_file_bytes,
            start_time_90k=START_90K + i * decoded.total_duration_90k,
            duration_90k=decoded.total_duration_90k,
            local_time_delta_90k=0,
            video_samples=decoded.video_samples,
            video_sync_samples=decoded.video_sync_samples,
            video_sample_entry_id=1,
        )
        for i in range(RECORDINGS)
    ]
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    entries = {1: VideoSampleEntry(id=1, sha1=bytes(20), width=1920, height=1080, data=avc1)}
    path = tmp_path_factory.mktemp("bench_mp4") / "shared-sample-file"
    rng = np.random.default_rng(1)
    path.write_bytes(rng.integers(0, 256, decoded.sample_file_bytes, dtype=np.uint8).tobytes())

    def open_sample_file(row: RecordingRow) -> int:
        return os.open(path, os.O_RDONLY)

    return rows, blob, entries, open_sample_file, path


def build(export):
    rows, blob, entries, open_sample_file, _ = export
    segments = [Segment(row, blob, (0, row.duration_90k)) for row in rows]
    return build_mp4(segments, entries, open_sample_file)


def test_build_moov(benchmark, impl, export, monkeypatch):
    monkeypatch.setattr(moonfire.playback.segment, "decode_index", impl.index.decode_index)

    def build_and_read_header() -> int:
        vf = build(export)
        return len(vf.read(0, vf.media_data_offset))

    rounds = 1 if TINY or impl.kind != "c" else 5
    header_bytes = benchmark.pedantic(build_and_read_header, rounds=rounds, iterations=1)
    assert header_bytes > 12 * RECORDINGS * 1800


def test_build_moov_baseline_tobytes(benchmark, export):
    """Copying the same number of big-endian table bytes, nothing else."""
    header_bytes = build(export).media_data_offset
    table = np.arange(header_bytes // 4, dtype=np.uint32)
    assert len(benchmark(table.astype(">u4").tobytes)) == header_bytes // 4 * 4


@pytest.fixture(scope="module")
def day_file(export):
    vf = build(export)
    vf.read(vf.size // 2, MIB)  # warm: the range's tables and file pages
    return vf


def test_read_1mib_from_the_middle(benchmark, day_file):
    offset = day_file.size // 2
    assert len(benchmark(day_file.read, offset, MIB)) == MIB


def test_read_1mib_baseline_pread(benchmark, export):
    path = export[4]
    fd = os.open(path, os.O_RDONLY)
    try:
        assert len(benchmark(os.pread, fd, MIB, 10 * MIB)) == MIB
    finally:
        os.close(fd)
