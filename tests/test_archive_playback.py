"""Playback of recordings only the archive holds (issue 14): ``view.mp4``, ``view.m4s``,
Range requests, the recordings list and ``moonfire export`` read them with GETs from a
real S3 endpoint (``moto_server``), byte for byte what the local files gave; an archive
that can't be reached is a 503 naming it while local recordings keep playing; an object
corrupted in the store fails the export naming the recording, leaving no output.

The module's data directory holds one 8 s run of real H.264 (3 recordings),
uploaded by the real uploader; recordings 2-3 are then made archived-only the way local
retention makes them (``tests.support.archived``), recording 1 keeps its local file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import uuid as uuidlib
from dataclasses import dataclass

import pytest

from moonfire.cli.main import main
from moonfire.db import ArchiveRow
from moonfire.storage import archive_reader
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import make_client
from tests.support.archived import (
    decoded_frames,
    make_archived_only,
    record_pattern,
    serve,
    upload_all,
)
from tests.support.net import stop_process
from tests.support.s3 import (  # noqa: F401 - s3_endpoint is a fixture
    BUCKET,
    CREDENTIALS,
    create_bucket,
    module_credentials,
    s3_endpoint,
    start_moto,
)
from tests.test_export import demux, pattern  # noqa: F401 - fixture

SECONDS = 8
#: 2 s rotation at key frames: the run's recordings.
RECORDINGS = 3


@dataclass
class Library:
    data_dir: str
    camera_uuid: str
    stream_id: int
    #: Composite ids, oldest first; all but the first are archived-only.
    cids: list[int]
    frames: int
    #: ``view.mp4?s=1-3`` and ``view.m4s?s=3`` as served while every local file existed.
    whole_mp4: bytes
    m4s: bytes
    #: ``moonfire export`` of the whole run then.
    export_mp4: bytes
    start_90k: int
    end_90k: int
    endpoint: str


def _export(data_dir: str, start: int, end: int, output: str) -> tuple[int, str]:
    """``moonfire export`` of camera front's ``[start, end)``: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["export", "--data-dir", data_dir, "front", "--start", str(start),
                     "--end", str(end), "-o", output])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def library(tmp_path_factory, pattern, s3_endpoint, module_credentials) -> Library:  # noqa: F811
    endpoint, _proc = s3_endpoint
    create_bucket(endpoint)
    root = tmp_path_factory.mktemp("archive-playback")
    data_dir = str(root / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    db.close()
    record_pattern(data_dir, "front", pattern, SECONDS)
    with datadir.open_db(data_dir) as db:
        db.add_archive("offsite", f"s3://{BUCKET}/playback", endpoint)
        db.update_camera("front", archive="offsite")
        camera = db.get_camera("front")
        rows = db.list_recordings(camera.main.id)
        assert len(rows) == RECORDINGS
        upload_all(db, "offsite")
    start, end = rows[0].start_time_90k, rows[-1].end_time_90k
    camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    base = f"/api/cameras/{camera_uuid}/main"
    with serve(data_dir) as served:
        status, _h, whole = served.get(f"{base}/view.mp4?s=1-{RECORDINGS}")
        assert status == 200
        status, _h, m4s = served.get(f"{base}/view.m4s?s=3")
        assert status == 200
    output = str(root / "local.mp4")
    assert _export(data_dir, start, end, output) == (0, "")
    with open(output, "rb") as f:
        export_mp4 = f.read()
    with datadir.open_db(data_dir) as db:
        make_archived_only(db, [r.composite_id for r in rows[1:]])
    return Library(data_dir, camera_uuid, camera.main.id, [r.composite_id for r in rows],
                   sum(r.video_samples for r in rows), whole, m4s, export_mp4, start, end,
                   endpoint)


def _base(library: Library) -> str:
    return f"/api/cameras/{library.camera_uuid}/main"


def test_view_mp4_over_archived_recordings_is_the_local_file_byte_for_byte(library) -> None:
    for cid in library.cids[1:]:
        assert not _local_file_exists(library, cid)
    with serve(library.data_dir) as served:
        status, headers, body = served.get(f"{_base(library)}/view.mp4?s=1-{RECORDINGS}")
        assert status == 200, body
        assert body == library.whole_mp4
        assert headers["Content-Type"].startswith("video/mp4")
        assert decoded_frames(body) == library.frames
        status, _headers, m4s = served.get(f"{_base(library)}/view.m4s?s=3")
        assert (status, m4s) == (200, library.m4s)
        # The recordings list and the day index show them like any other.
        status, _headers, listed = served.get(
            f"{_base(library)}/recordings?startTime90k={library.start_90k}"
            f"&endTime90k={library.end_90k}&split90k=1")
        assert status == 200
        ids = [(r["startId"], r.get("endId", r["startId"])) for r in json.loads(listed)[
            "recordings"]]
        assert sorted(i for first, last in ids for i in range(first, last + 1)) == list(
            range(1, RECORDINGS + 1))
        # The stream's totals cover every recording listed; fsBytes only what the disk holds.
        status, _headers, top = served.get(f"/api/cameras/{library.camera_uuid}/")
        assert status == 200
        stream = json.loads(top)["streams"]["main"]
        with datadir.open_db(library.data_dir, read_only=True) as db:
            rows = db.list_recordings(library.stream_id)
        assert (stream["totalSampleFileBytes"], stream["totalDuration90k"]) == (
            sum(r.sample_file_bytes for r in rows), sum(r.duration_90k for r in rows))
        local_bytes = rows[0].sample_file_bytes
        assert local_bytes <= stream["fsBytes"] < local_bytes + 4096


def _local_file_exists(library: Library, cid: int) -> bool:
    with datadir.open_db(library.data_dir, read_only=True) as db:
        playback = db.get_playback(cid)
        path = db.sample_file_dir(1).path
    return os.path.exists(os.path.join(path, str(uuidlib.UUID(bytes=playback.sample_file_uuid))))


def test_range_requests_over_archived_bytes_and_the_read_ahead(library, monkeypatch) -> None:
    whole = library.whole_mp4
    size = len(whole)
    mdat = whole.index(b"mdat")
    ranges = [
        (mdat + 1000, mdat + 5000),  # inside recording 1 (local)
        (size - 70_000, size - 1),  # the end: archived
        (mdat + 100, size - 100),  # local into archived, most of the file
        (size // 2, size // 2),  # one byte
    ]
    with serve(library.data_dir) as served:
        for first, last in ranges:
            status, headers, body = served.get(
                f"{_base(library)}/view.mp4?s=1-{RECORDINGS}",
                {"Range": f"bytes={first}-{last}"})
            assert status == 206, body
            assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert body == whole[first:last + 1]
        status, _headers, body = served.get(f"{_base(library)}/view.mp4?s=3",
                                            {"Range": "bytes=100-"})
        assert status == 206 and body
    # A player's sequential reads: 1 KiB reads of an archived recording cost one GET per
    # fetch (a block and the read-ahead), not one each.  Blocks scaled down from 1 MiB to
    # 4 KiB, so that a 2 s recording spans many.
    monkeypatch.setattr(archive_reader, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(archive_reader, "FETCH_BYTES", 8192)
    reader = archive_reader.ArchiveReader(_archive_row(library))
    with datadir.open_db(library.data_dir, read_only=True) as db:
        size = db.get_recording(library.cids[1]).sample_file_bytes
        found = archive_reader.ArchiveReaders().archived_files(
            db, library.stream_id, 2, 2, {library.cids[1]: size})[library.cids[1]]
    file = archive_reader.ArchivedSampleFile(reader, found.recording, found.data_key, size,
                                             found.sha1)
    data = b"".join(file.read(at, min(1024, size - at)) for at in range(0, size, 1024))
    assert hashlib.sha1(data).digest() == file.sha1
    assert size > 16 * 1024
    assert reader.requests == -(-size // 8192) < -(-size // 1024)
    assert found.recording == "front/main/2"
    # Read through in order, an object whose bytes aren't the catalog's fails at its last
    # read, naming it, although no single GET held all of it (a 30 MB recording's 15 don't);
    # its cached blocks go.  Read from the middle (a seek), nothing can be checked.
    wrong = archive_reader.ArchivedSampleFile(
        archive_reader.ArchiveReader(_archive_row(library)), found.recording, found.data_key,
        size, b"\x01" * 20)
    failed_at, message = None, ""
    for at in range(0, size, 1024):
        try:
            wrong.read(at, min(1024, size - at))
        except archive_reader.ArchiveReadError as e:
            failed_at, message = at, str(e)
            break
    assert failed_at == (size - 1) // 8192 * 8192  # the read whose GET reaches the end
    assert message == (f"recording front/main/2: object {found.data_key} in archive 'offsite' "
                       f"(s3://{BUCKET}/playback) has SHA-1 {file.sha1.hex()}, the catalog says "
                       f"{'01' * 20} (corrupted in the store)")
    assert wrong.reader._cached_bytes == 0
    seeking = archive_reader.ArchivedSampleFile(
        archive_reader.ArchiveReader(_archive_row(library)), found.recording, found.data_key,
        size, b"\x01" * 20)
    assert seeking.read(size // 2, size - size // 2) == data[size // 2:]


def _archive_row(library: Library) -> ArchiveRow:
    with datadir.open_db(library.data_dir, read_only=True) as db:
        return db.get_archive("offsite")


def test_an_archive_that_cant_be_reached_is_a_503_naming_it_and_local_ones_play(
    library, tmp_path
) -> None:
    """The archive's store is another ``moto_server`` holding copies of the objects: served
    from it, then killed (-9): archived recordings answer 503 naming the archive, the local
    one still 200, and so does ``export`` fail, writing nothing."""
    store, endpoint = start_moto()
    try:
        create_bucket(endpoint)
        source = make_client(_archive_row(library))
        moved = make_client(ArchiveRow(0, "x", f"s3://{BUCKET}", endpoint, None, None, None))
        listed = source.list_objects_v2(Bucket=BUCKET, Prefix="playback/")["Contents"]
        for item in listed:
            body = source.get_object(Bucket=BUCKET, Key=item["Key"])
            moved.put_object(Bucket=BUCKET, Key=item["Key"], Body=body["Body"].read(),
                             Metadata=body["Metadata"])
        _set_endpoint(library, endpoint)
        with serve(library.data_dir) as served:
            status, _h, body = served.get(f"{_base(library)}/view.mp4?s=2")
            assert status == 200 and decoded_frames(body) > 0
        os.kill(store.pid, signal.SIGKILL)
        store.wait()
        with serve(library.data_dir) as served:
            status, headers, body = served.get(f"{_base(library)}/view.mp4?s=2-3")
            assert status == 503, body
            assert headers["Content-Type"].startswith("text/plain")
            assert (f"archive 'offsite' (s3://{BUCKET}/playback) can't be reached").encode() \
                in body
            status, _h, body = served.get(f"{_base(library)}/view.mp4?s=1")
            assert status == 200 and decoded_frames(body) > 0
            # Several ranges, the first local and the second archived: still a 503 up front.
            size, mdat = len(library.whole_mp4), library.whole_mp4.index(b"mdat")
            status, _h, body = served.get(
                f"{_base(library)}/view.mp4?s=1-{RECORDINGS}",
                {"Range": f"bytes={mdat + 100}-{mdat + 200},{size - 1000}-{size - 1}"})
            assert status == 503 and b"can't be reached" in body, body
        output = tmp_path / "out.mp4"
        code, err = _export(library.data_dir, library.start_90k, library.end_90k, str(output))
        assert code == 1
        assert ("recording front/main/2 is only in the archive, and: archive "
                "'offsite'") in err, err
        assert "can't be reached" in err
        assert os.listdir(tmp_path) == []
    finally:
        _set_endpoint(library, library.endpoint)
        stop_process(store, timeout=10)


def _set_endpoint(library: Library, endpoint: str) -> None:
    with datadir.open_db(library.data_dir) as db, db.transaction() as tx:
        tx.conn.execute("update archive set endpoint = ?", (endpoint,))


def test_export_reads_archived_objects_whole_and_a_corrupted_one_is_named(
    library, tmp_path
) -> None:
    output = tmp_path / "archived.mp4"
    code, err = _export(library.data_dir, library.start_90k, library.end_90k, str(output))
    assert (code, err) == (0, "")
    data = output.read_bytes()
    assert data == library.export_mp4
    assert len(demux(data).packets) == library.frames == decoded_frames(data)
    # Same size, same metadata, one bit different: only the bytes' SHA-1 can tell.
    with datadir.open_db(library.data_dir, read_only=True) as db:
        _cid, data_key, _m, sha1 = db.list_archived(db.get_archive("offsite").id)[2]
    client = make_client(_archive_row(library))
    original = client.get_object(Bucket=BUCKET, Key=data_key)["Body"].read()
    corrupted = original[:1000] + bytes([original[1000] ^ 1]) + original[1001:]
    client.put_object(Bucket=BUCKET, Key=data_key, Body=corrupted, Metadata={"sha1": sha1.hex()})
    try:
        output.unlink()
        code, err = _export(library.data_dir, library.start_90k, library.end_90k, str(output))
        assert code == 1
        assert (f"recording front/main/3: object {data_key} in archive 'offsite' "
                f"(s3://{BUCKET}/playback) has SHA-1 {hashlib.sha1(corrupted).hexdigest()}, "
                f"the catalog says {sha1.hex()} (corrupted in the store)") in err, err
        assert os.listdir(tmp_path) == []  # no output, no temporary left behind
    finally:
        client.put_object(Bucket=BUCKET, Key=data_key, Body=original,
                          Metadata={"sha1": sha1.hex()})
