"""A data directory of a day's recordings at realistic sizes, for the playback benchmarks.

``N`` one-minute recordings of one run (1440 = 24 hours), each with the real camera index
``tests/data/video_sample_index.bin`` (1800 samples of a 1080p30 ~4 Mbit/s stream, 60 key
frames, 30,104,460 bytes).  The sample files are ``N`` hard links to one 30 MB file unless
``distinct_files`` (then real copies: a 24-hour day would be 43 GB, so throughput benchmarks
use fewer recordings; the per-byte cost doesn't depend on the count).
"""

from __future__ import annotations

import os
import shutil
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moonfire.db import RecordingRow, VideoSampleEntry
from moonfire.db.rows import format_uuid
from moonfire.storage import data_dir as datadir
from moonfire_core import decode_index

START_90K = 1_780_000_000 * 90_000
CAMERA = "front"


@dataclass(frozen=True)
class DayLibrary:
    data_dir: str
    camera_uuid: str
    stream_id: int
    rows: list[RecordingRow]
    index_blob: bytes
    entries: dict[int, VideoSampleEntry]
    sample_file_paths: list[str]

    @property
    def start_90k(self) -> int:
        return self.rows[0].start_time_90k

    @property
    def end_90k(self) -> int:
        return self.rows[-1].end_time_90k


def sample_data(sizes: np.ndarray, is_key: np.ndarray) -> bytes:
    """Random bytes framed as the camera's samples: each one NAL unit of its size with a
    4-byte length and an IDR (key) or non-IDR slice header, so that a peer reading the
    exported ``.mp4`` (ffmpeg) can split it, as it would a real camera's."""
    data = bytearray(np.random.default_rng(1).integers(0, 256, int(sizes.sum()), dtype=np.uint8))
    position = 0
    for size, key in zip(sizes.tolist(), is_key.tolist(), strict=True):
        data[position:position + 5] = (size - 4).to_bytes(4, "big") + (b"\x65" if key else b"\x41")
        position += size
    return bytes(data)


def make_day_library(
    testdata: Path, parent: Path, recordings: int, *, distinct_files: bool = False
) -> DayLibrary:
    blob = (testdata / "video_sample_index.bin").read_bytes()
    decoded = decode_index(blob)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    data_dir = str(parent / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    camera = db.add_camera(CAMERA, url="testsrc://", retain_bytes=1 << 50)
    entry_id = db.insert_video_sample_entry(1920, 1080, avc1)
    sample_dir = db.sample_file_dir(camera.main.sample_file_dir_id).path
    shared = os.path.join(sample_dir, "shared")
    with open(shared, "wb") as f:
        f.write(sample_data(decoded.sizes, decoded.is_key))
    stream_id = camera.main.id
    paths = []
    with db.transaction() as tx:
        for i in range(recordings):
            uuid = uuidlib.uuid4().bytes
            path = os.path.join(sample_dir, format_uuid(uuid))
            if distinct_files:
                shutil.copyfile(shared, path)
            else:
                os.link(shared, path)
            paths.append(path)
            cid = stream_id << 32 | (i + 1)
            tx.conn.execute(
                "insert into recording values (?, ?, ?, 0, ?, ?, ?, 0, ?, ?, ?, null)",
                (cid, stream_id, i, decoded.sample_file_bytes,
                 START_90K + i * decoded.total_duration_90k, decoded.total_duration_90k,
                 decoded.video_samples, decoded.video_sync_samples, entry_id),
            )
            tx.conn.execute(
                "insert into recording_playback values (?, ?, zeroblob(20), ?)", (cid, uuid, blob)
            )
        tx.conn.execute(
            "update stream set next_recording_id = ? where id = ?", (recordings + 1, stream_id)
        )
    os.unlink(shared)
    camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    rows = db.list_recordings(stream_id)
    entries = {entry_id: db.get_video_sample_entry(entry_id)}
    db.close()
    return DayLibrary(data_dir, camera_uuid, stream_id, rows, blob, entries, paths)
