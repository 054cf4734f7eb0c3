"""Recordings that only an archive holds, for the archive playback and rebuild tests.

Real H.264 (``tests.test_export``'s 2 s test pattern, looped) is recorded through
``StreamRecorder`` with 2 s rotation, uploaded by the real ``ArchiveUploader`` to a
``moto_server``, and then made archived-only the way local retention makes them (schema 7):
the local sample file unlinked and ``recording_archive.local_deleted_time_sec`` set.
The served data directory uses the application ``moonfire run`` serves, on a loopback port.
"""

from __future__ import annotations

import http.client
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av

from moonfire.codec.h264 import sample_entry_from_extradata
from moonfire.db import Database
from moonfire.ingest.recorder import StreamRecorder
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import ArchiveUploader
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.web.app import build_app
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.server import WebServer
from tests.test_export import FRAME_90K, Source, looped

#: Wall-clock start of the recorded runs: on an even second, so 2 s rotation cuts evenly.
RUN_START_90K = 1_780_000_000 * 90_000


def record_pattern(data_dir: str, camera: str, pattern: Source, seconds: int,
                   start_90k: int = RUN_START_90K) -> None:
    """``seconds`` of the looped pattern as one run of the camera's main stream (added if
    it doesn't exist), rotated every 2 s."""
    db, sample_file_dir = datadir.open_for_recording(data_dir, 1)
    with db, sample_file_dir, sample_file_dir.start_syncer() as syncer:
        try:
            stream_id = db.get_camera(camera).main.id
        except LookupError:
            stream_id = db.add_camera(camera, retain_bytes=10**10, rotate_interval_sec=2).main.id
        entry = sample_entry_from_extradata(pattern.extradata)
        entry_id = db.insert_video_sample_entry(entry.width, entry.height, entry.data)
        recorder = StreamRecorder(syncer, stream_id, f"{camera}/main", 2)
        for p in looped(pattern, seconds):
            recorder.write(p.data, start_90k + p.pts_90k + FRAME_90K, p.pts_90k, p.is_key,
                           entry_id)
        recorder.end_run()
        syncer.flush()


def upload_all(db: Database, archive_name: str) -> ArchiveUploader:
    """Uploads the archive's whole backlog with the real uploader."""
    uploader = ArchiveUploader(db, db.get_archive(archive_name))
    while uploader.upload_some():
        pass
    assert db.archive_backlog(uploader.archive.id) == (0, 0)
    return uploader


def make_archived_only(db: Database, composite_ids: list[int]) -> None:
    """What local retention does to an archived recording: unlinks its sample file and sets
    ``local_deleted_time_sec``."""
    for cid in composite_ids:
        playback = db.get_playback(cid)
        stream = db.get_stream(cid >> 32)
        path = os.path.join(db.sample_file_dir(stream.sample_file_dir_id).path,
                            uuid_name(playback.sample_file_uuid))
        os.unlink(path)
        with db.transaction() as tx:
            cursor = tx.conn.execute(
                "update recording_archive set local_deleted_time_sec ="
                " cast(strftime('%s', 'now') as int) where composite_id = ?", (cid,))
            assert cursor.rowcount == 1, f"recording {cid} is not archived"


@dataclass
class Served:
    server: WebServer

    def get(self, path: str, headers: dict[str, str] | None = None,
            ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()


@contextmanager
def serve(data_dir: str) -> Iterator[Served]:
    """The data directory's API and UI (``build_app``, as ``moonfire run`` serves them) on
    a loopback port, with a new ``View`` (so nothing is cached from another server)."""
    ctx = WebContext.open(data_dir)
    server = WebServer(lambda: build_app(ctx, Auth(ctx.db)), "127.0.0.1", 0)
    server.start()
    try:
        yield Served(server)
    finally:
        server.stop()
        ctx.close()


def decoded_frames(data: bytes) -> int:
    """Every frame FFmpeg decodes from a ``.mp4``."""
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))
