"""The S3 archive tier (issue 14, part 1): ``moonfire archive``, per-stream archives, and
the background uploader, against a real S3 endpoint (``moto_server``) these tests start.

moto's S3 keeps its state in memory, answers a write-once ``PUT`` (``If-None-Match: *``)
on an existing key with 412 Precondition Failed (and so a write-once
``CompleteMultipartUpload``), and accepts any credentials unless started with
``INITIAL_NO_AUTH_ACTION_COUNT=0`` (the wrong-credentials test starts its own so); a
missing bucket is refused as on AWS.  It is started with ``S3_UPLOAD_PART_MIN_SIZE`` lowered
from S3's 5 MiB, so the multipart test's parts can be a few kB.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from moonfire.db import Database
from moonfire.storage import data_dir as datadir
from moonfire.storage import repair
from moonfire.storage.archive import ArchiveError, ArchiveUploader, check_archive, make_client
from moonfire.storage.crash_points import observe
from moonfire.storage.invariants import CheckSummary, check
from moonfire.web.metrics import _archive_metrics
from tests.support import s3
from tests.support.archived import decoded_frames
from tests.support.cli import TESTSRC_URL, add_camera, moonfire, record_synthetic
from tests.support.net import stop_process
from tests.support.s3 import BUCKET, CREDENTIALS, start_moto

#: Fixtures of ``tests/support/s3.py`` (the module's own ``s3_endpoint`` is below).
credentials = s3.credentials
bucket = s3.bucket

#: The smallest multipart part this module's moto takes (S3's is 5 MiB).
MOTO_MIN_PART_BYTES = 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[tuple[str, subprocess.Popen]]:
    """This module's ``moto_server`` (authentication off; parts down to 1 kB)."""
    proc, endpoint = start_moto(S3_UPLOAD_PART_MIN_SIZE=str(MOTO_MIN_PART_BYTES))
    yield endpoint, proc
    stop_process(proc, timeout=10)


@pytest.fixture
def data_dir(tmp_path, capsys) -> str:
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    add_camera(capsys, path, "front")
    return path


def _add_archive(capsys, data_dir: str, url: str, endpoint: str) -> None:
    code, out, err = moonfire(capsys, "archive", "add", "offsite", "--url", url,
                              "--endpoint", endpoint, "--data-dir", data_dir)
    assert (code, err) == (0, ""), err
    assert "added archive 'offsite'" in out
    code, _out, err = moonfire(capsys, "camera", "edit", "front", "--archive", "offsite",
                               "--data-dir", data_dir)
    assert (code, err) == (0, ""), err


def _drain(db: Database, uploader: ArchiveUploader) -> None:
    while uploader.upload_some():
        pass
    assert db.archive_backlog(uploader.archive.id) == (0, 0)


def test_archive_add_list_remove_and_camera_options(capsys, data_dir) -> None:
    code, _out, err = moonfire(capsys, "archive", "add", "bad", "--url", "http://x/y",
                               "--data-dir", data_dir)
    assert code == 1 and "archive URL must be s3://BUCKET or s3://BUCKET/PREFIX, got " \
        "'http://x/y'" in err
    code, _out, err = moonfire(capsys, "camera", "edit", "front", "--archive", "nowhere",
                               "--data-dir", data_dir)
    assert code == 1 and "no archive 'nowhere'" in err
    _add_archive(capsys, data_dir, "s3://b/site1", "http://127.0.0.1:1")
    code, _out, err = moonfire(capsys, "archive", "add", "offsite", "--url", "s3://b",
                               "--data-dir", data_dir)
    assert code == 1 and "archive 'offsite' already exists" in err
    code, out, _err = moonfire(capsys, "archive", "list", "--json", "--data-dir", data_dir)
    [listed] = json.loads(out)
    assert (listed["name"], listed["url"], listed["endpoint"], listed["streams"]) == (
        "offsite", "s3://b/site1", "http://127.0.0.1:1", ["front/main"])
    code, _out, err = moonfire(capsys, "camera", "edit", "front", "--sub-url", TESTSRC_URL,
                               "--sub-retain", "1MB", "--sub-archive", "offsite",
                               "--sub-archive-days", "30", "--data-dir", data_dir)
    assert code == 0, err
    with datadir.open_db(data_dir, read_only=True) as db:
        camera = db.get_camera("front")
        archive = db.get_archive("offsite")
        assert (camera.main.archive_id, camera.main.archive_days) == (archive.id, None)
        assert (camera.sub.archive_id, camera.sub.archive_days) == (archive.id, 30)
    code, _out, err = moonfire(capsys, "archive", "remove", "offsite", "--data-dir", data_dir)
    assert code == 1
    assert "archive 'offsite' is used by streams front/main, front/sub" in err
    for option in ("--archive", "--sub-archive"):
        assert moonfire(capsys, "camera", "edit", "front", option, "",
                        "--data-dir", data_dir)[0] == 0
    code, out, err = moonfire(capsys, "archive", "remove", "offsite", "--data-dir", data_dir)
    assert (code, err) == (0, ""), err
    assert moonfire(capsys, "archive", "list", "--json", "--data-dir", data_dir)[1] == "[]\n"


def test_every_recording_is_archived_with_its_manifest_write_once(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 8)
    with datadir.open_db(data_dir) as db:
        archive = db.get_archive("offsite")
        stream = db.get_camera("front").main
        rows = db.list_recordings(stream.id)
        assert len(rows) >= 3
        assert db.archive_backlog(archive.id) == (
            len(rows), sum(r.sample_file_bytes for r in rows))
        uploader = ArchiveUploader(db, archive)
        _drain(db, uploader)
        assert (uploader.stats.uploads, uploader.stats.already_there) == (len(rows), 0)
        archived = db.list_archived(archive.id)
        assert [cid for cid, *_ in archived] == [r.composite_id for r in rows]
        client = uploader.client
        camera_uuid = str(uuid.UUID(bytes=db.get_camera("front").uuid))
        for row, (_cid, data_key, manifest_key, sha1) in zip(rows, archived, strict=True):
            playback = db.get_playback(row.composite_id)
            assert data_key == (f"{bucket[len('s3://' + BUCKET) + 1:]}/{camera_uuid}/main/"
                                f"{row.recording_id:010d}.sample")
            data = client.get_object(Bucket=BUCKET, Key=data_key)["Body"].read()
            assert (len(data), hashlib.sha1(data).digest(), sha1) == (
                row.sample_file_bytes, playback.sample_file_sha1, playback.sample_file_sha1)
            manifest = json.loads(client.get_object(Bucket=BUCKET, Key=manifest_key)["Body"]
                                  .read())
            assert manifest["row"]["composite_id"] == row.composite_id
            assert manifest["row"]["duration_90k"] == row.duration_90k
            assert manifest["sample_file_sha1"] == sha1.hex()
            assert manifest["video_index"] == base64.b64encode(playback.video_index).decode()
            assert manifest["video_sample_entry"]["width"] == 1920
        # Write-once: the store refuses a second PUT of a key...
        with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
            client.put_object(Bucket=BUCKET, Key=archived[0][1], Body=b"x", IfNoneMatch="*")
        # ... so a redone upload (a crash before the row was written) finds identical
        # objects and counts them as done, uploading nothing.
        db._conn.execute("delete from recording_archive")
        again = ArchiveUploader(db, archive)
        _drain(db, again)
        assert (again.stats.uploads, again.stats.already_there) == (0, len(rows))
        # A different object under a recording's key is refused, naming the key.
        db._conn.execute("delete from recording_archive where composite_id = ?",
                         (rows[0].composite_id,))
        client.delete_object(Bucket=BUCKET, Key=archived[0][1])
        client.put_object(Bucket=BUCKET, Key=archived[0][1], Body=b"another recorder's")
        with pytest.raises(ArchiveError, match=f"object {archived[0][1]} holds 18 bytes"):
            ArchiveUploader(db, archive).upload_some()
    code, out, _err = moonfire(capsys, "archive", "status", "--data-dir", data_dir)
    assert f"offsite: {len(rows) - 1} recordings archived (0 only there, 0 B), backlog 1 (" \
        in out
    with datadir.open_db(data_dir, read_only=True) as db:
        gauges = {m.name: m.samples[0].value for m in _archive_metrics(db)}
    assert gauges == {
        "moonfire_archive_backlog_recordings": 1,
        "moonfire_archive_backlog_bytes": rows[0].sample_file_bytes,
        "moonfire_archive_recordings": len(rows) - 1, "moonfire_archive_failing": 0,
        "moonfire_archive_only_recordings": 0, "moonfire_archive_only_bytes": 0}


def test_archive_days_deletes_old_objects_and_they_are_not_uploaded_again(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 6)
    with datadir.open_db(data_dir) as db:
        uploader = ArchiveUploader(db, db.get_archive("offsite"))
        _drain(db, uploader)
        [first, *rest] = db.list_archived(uploader.archive.id)
        assert uploader.expire_old() == 0  # no archive_days yet
        db.update_camera("front", archive_days=1)
        db._conn.execute("update recording_archive set archived_time_sec ="
                         " archived_time_sec - 2 * 86400 where composite_id = ?", (first[0],))
        assert uploader.expire_old() == 1
        assert [a[0] for a in db.list_archived(uploader.archive.id)] == [a[0] for a in rest]
        listed = uploader.client.list_objects_v2(Bucket=BUCKET, Prefix=first[1].rsplit("/", 1)[0])
        keys = {o["Key"] for o in listed.get("Contents", [])}
        assert first[1] not in keys and first[2] not in keys and rest[0][1] in keys
        # The synthetic recordings started long ago (tests/support/engine.py's base time):
        # older than archive_days, so not uploaded again.
        assert db.archive_backlog(uploader.archive.id) == (0, 0)
        code, _out, err = moonfire(capsys, "camera", "edit", "front", "--archive-days", "-1",
                                   "--data-dir", data_dir)
        assert code == 1 and "--archive-days must be a positive number of days" in err


def test_check_archive_finds_an_object_corrupted_in_the_store(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 4)
    with datadir.open_db(data_dir) as db:
        uploader = ArchiveUploader(db, db.get_archive("offsite"))
        _drain(db, uploader)
        [(cid, data_key, _manifest, sha1), *_] = db.list_archived(uploader.archive.id)
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert code == 0 and "every archived recording has its objects" in out, out
    client = uploader.client
    data = client.get_object(Bucket=BUCKET, Key=data_key)["Body"].read()
    corrupted = bytes([data[0] ^ 1]) + data[1:]
    client.put_object(Bucket=BUCKET, Key=data_key, Body=corrupted,
                      Metadata={"sha1": sha1.hex()})  # same size and metadata, other bytes
    assert moonfire(capsys, "check", "--archive", "--data-dir", data_dir)[0] == 0
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert code == 1
    assert (f"archive 'offsite': recording front/main/{cid & 0xFFFF_FFFF}: object {data_key}'s "
            f"bytes have SHA-1 {hashlib.sha1(corrupted).hexdigest()}") in out


def test_missing_credentials_and_missing_bucket_are_reported_and_retried(
    capsys, data_dir, bucket, s3_endpoint, monkeypatch
) -> None:
    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, "s3://no-such-bucket/x", endpoint)
    record_synthetic(data_dir, "front", 4)
    with datadir.open_db(data_dir) as db:
        archive = db.get_archive("offsite")
        uploader = ArchiveUploader(db, archive, poll_interval_sec=0.05, max_backoff_sec=0.1)
        uploader.start()
        try:
            _wait_for(lambda: uploader.stats.errors >= 2)  # retried
        finally:
            assert uploader.stop()
        assert "archive 'offsite' (s3://no-such-bucket/x): no bucket 'no-such-bucket'" in (
            db.get_archive("offsite").last_error)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        db._conn.execute("update archive set url = ?", (bucket,))
        uploader = ArchiveUploader(db, db.get_archive("offsite"))
        with pytest.raises(Exception) as caught:
            uploader.upload_some()
        message = uploader._describe(caught.value)
        assert message.endswith("no S3 credentials: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials")
        assert db.archive_backlog(archive.id)[0] > 0
    code, out, _err = moonfire(capsys, "archive", "status", "--data-dir", data_dir)
    assert "last error" in out and "no bucket 'no-such-bucket'" in out


def test_wrong_credentials_are_reported_without_the_secret(
    capsys, data_dir, credentials, monkeypatch
) -> None:
    """A store with authentication on (moto's ``INITIAL_NO_AUTH_ACTION_COUNT=0``) refuses
    keys it doesn't know; the message names the archive and the store's code, not the key."""
    store, endpoint = start_moto(INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        _add_archive(capsys, data_dir, "s3://footage/x", endpoint)
        record_synthetic(data_dir, "front", 4)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-6f1d")
        with datadir.open_db(data_dir) as db:
            uploader = ArchiveUploader(db, db.get_archive("offsite"), poll_interval_sec=0.05,
                                       max_backoff_sec=0.1)
            uploader.start()
            try:
                _wait_for(lambda: uploader.stats.errors >= 1)
            finally:
                assert uploader.stop()
        code, out, _err = moonfire(capsys, "archive", "status", "--data-dir", data_dir)
        assert "archive 'offsite' (s3://footage/x): the store refused the credentials (" in out
        assert "not-the-secret-6f1d" not in out
    finally:
        stop_process(store, timeout=10)


def _wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_store_stopped_for_20_s_never_stalls_recording_and_the_backlog_drains(
    capsys, tmp_path, bucket, s3_endpoint
) -> None:
    """``moonfire run`` records the synthetic camera (1 s recordings, rotated at key frames;
    a budget of about three) into an archive whose store is SIGSTOPped for 20 s, the issue's
    number: recordings keep committing, the budget overruns meanwhile (it deletes nothing the
    archive lacks), and once the store is back the backlog drains and the budget makes the
    archived recordings archived-only: every recording stays in the catalog."""
    endpoint, moto = s3_endpoint
    budget = 60_000  # recordings are ~25 kB
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    add_camera(capsys, data_dir, "front", "--rotate-seconds", "1", "--retain", str(budget))
    _add_archive(capsys, data_dir, bucket, endpoint)
    env = dict(os.environ, **CREDENTIALS)
    run = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--no-listen", "--data-dir", data_dir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    db_path = datadir.db_path(data_dir)

    def counts() -> tuple[int, int, int, int]:
        """(recordings, archived, archived-only, bytes of local files)."""
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            return conn.execute(
                "select count(*), count(a.composite_id), count(a.local_deleted_time_sec),"
                " coalesce(sum(case when a.local_deleted_time_sec is null"
                " then r.sample_file_bytes end), 0) from recording r"
                " left join recording_archive a on a.composite_id = r.composite_id"
            ).fetchone()

    try:
        _wait_for(lambda: counts()[1] >= 1)  # the uploader is at work
        os.kill(moto.pid, signal.SIGSTOP)
        try:
            before = counts()
            time.sleep(20)
            during = counts()
        finally:
            os.kill(moto.pid, signal.SIGCONT)
        # A recording about every 2 s (1 s, then the next key frame), whatever the store
        # does; an uploader in the recording path would have committed none.
        assert during[0] - before[0] >= 7, (before, during)
        assert during[1] <= before[1] + 1  # (one upload may have been answered already)
        # Kept for the archive: over the budget, every recording since the stop still local.
        assert during[3] > budget and during[0] - during[2] >= during[0] - before[0], during
        # The backlog drains; the next saves' budget makes those archived-only.
        resumed = time.monotonic()
        _wait_for(lambda: counts()[1] >= during[0], timeout=30)
        drained_sec = time.monotonic() - resumed
        _wait_for(lambda: counts()[3] <= budget, timeout=15)
    finally:
        out = stop_process(run, timeout=30)
    assert run.returncode == 0, out
    assert f"over its budget of {budget} bytes: it keeps" in out
    with Database.open(db_path) as db:
        archive = db.get_archive("offsite")
        stream = db.get_camera("front").main
        uploader = ArchiveUploader(db, archive)
        _drain(db, uploader)  # what the run left (its last recordings) goes now
        assert uploader.stats.uploads <= 3, "the run's uploader did not catch up"
        rows = db.list_recordings(stream.id)
        assert [r.recording_id for r in rows] == list(range(1, len(rows) + 1))  # none lost
        assert db.archived_count(archive.id) == len(rows)
        local = db.stream_usage(stream.id)[0]
        only = len(db.list_archived_only(stream.id, 0, 0xFFFF_FFFF))
        assert local + only == len(rows) and only >= during[0] - 3
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert code == 0, out
    assert f"or, for the {only} archived-only, its archive objects" in out
    # The whole span exports, most of it from the archive, and every frame decodes (the end
    # one past the last recording's: a run stopped just after a rotation ends with a
    # recording of one frame and no duration, which [start, end) would leave out).
    exported = tmp_path / "all.mp4"
    code, _out, err = moonfire(capsys, "export", "front", "--start", str(rows[0].start_time_90k),
                               "--end", str(rows[-1].end_time_90k + 1), "-o", str(exported),
                               "--data-dir", data_dir)
    assert code == 0, err
    assert decoded_frames(exported.read_bytes()) == sum(r.video_samples for r in rows)
    print(f"{len(rows)} recordings, {local} local files, {only} archived-only; "
          f"{during[0] - before[0]} recorded while the store was stopped, drained "
          f"{drained_sec:.1f} s after it resumed")


class RecordingClient:
    """A boto3 client that notes each upload call: (operation, key, body bytes)."""

    UPLOADS = ("put_object", "create_multipart_upload", "upload_part",
               "complete_multipart_upload")

    def __init__(self, client) -> None:
        self._client = client
        self.calls: list[tuple[str, str, int | None]] = []

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name not in self.UPLOADS:
            return attr

        def call(**kwargs):
            body = kwargs.get("Body")
            self.calls.append((name, kwargs["Key"], None if body is None else len(body)))
            return attr(**kwargs)

        return call


def test_large_files_go_as_multipart_uploads_a_part_at_a_time_and_write_once(
    capsys, data_dir, bucket, s3_endpoint, caplog
) -> None:
    """With a threshold of a few kB (moto takes parts that small here), every sample file
    goes in parts no larger than the part size (never one whole-file PUT), completed
    write-once; a redo finds the objects by HEAD and sends nothing; a file that no longer
    matches its row is aborted after its parts, leaving no object."""
    from botocore.exceptions import ClientError

    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 6)
    with datadir.open_db(data_dir) as db:
        archive = db.get_archive("offsite")
        rows = db.list_recordings(db.get_camera("front").main.id)
        part = max(MOTO_MIN_PART_BYTES, min(r.sample_file_bytes for r in rows) // 3)
        client = RecordingClient(make_client(archive))
        uploader = ArchiveUploader(db, archive, client=client, part_bytes=part)
        _drain(db, uploader)
        assert uploader.stats.multipart_uploads == uploader.stats.uploads == len(rows)
        data_calls = [c for c in client.calls if c[1].endswith(".sample")]
        assert [c for c in data_calls if c[0] == "put_object"] == []
        parts = [size for op, _key, size in data_calls if op == "upload_part"]
        assert len(parts) == uploader.stats.parts >= 3 * len(rows)
        assert max(parts) <= part
        archived = db.list_archived(archive.id)
        for row, (_cid, data_key, _manifest, sha1) in zip(rows, archived, strict=True):
            obj = client.get_object(Bucket=BUCKET, Key=data_key)
            data = obj["Body"].read()
            assert (len(data), hashlib.sha1(data).digest()) == (row.sample_file_bytes, sha1)
            assert obj["Metadata"]["sha1"] == sha1.hex()
        # The store honours If-None-Match on CompleteMultipartUpload: write-once holds.
        key = archived[0][1]
        upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        etag = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1,
                                  Body=b"another recorder's")["ETag"]
        with pytest.raises(ClientError, match="PreconditionFailed"):
            client.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload_id, IfNoneMatch="*",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        # A redo (a kill -9 before the rows) HEADs the complete objects: no part again.
        db._conn.execute("delete from recording_archive")
        client.calls.clear()
        again = ArchiveUploader(db, archive, client=client, part_bytes=part)
        _drain(db, again)
        assert (again.stats.already_there, again.stats.parts) == (len(rows), 0)
        assert [c for c in client.calls if c[1].endswith(".sample")] == []
        # A local file changed (same size) after its row: its parts are read, hashed and
        # sent, the SHA-1 doesn't match, the upload is aborted: nothing stored.
        last, last_key = rows[-1], archived[-1][1]
        db._conn.execute("delete from recording_archive where composite_id = ?",
                         (last.composite_id,))
        client.delete_object(Bucket=BUCKET, Key=last_key)
        path = os.path.join(db.sample_file_dir(db.get_camera("front").main.sample_file_dir_id)
                            .path, str(uuid.UUID(bytes=db.get_playback(last.composite_id)
                                                 .sample_file_uuid)))
        with open(path, "r+b") as f:
            f.seek(last.sample_file_bytes - 1)
            flipped = bytes([f.read(1)[0] ^ 1])
            f.seek(last.sample_file_bytes - 1)
            f.write(flipped)
        refused = ArchiveUploader(db, archive, client=client, part_bytes=part)
        assert refused.upload_some() is True
        assert refused.stats.parts >= 3 and refused.stats.uploads == 0
        assert db.archive_backlog(archive.id)[0] == 1
        assert "not archived (`moonfire check --hash`)" in caplog.text
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=last_key)
        assert listed.get("KeyCount", 0) == 0
        assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=last_key).get(
            "Uploads", []) == []


def _apply_retention(data_dir: str) -> None:
    """Start (and stop) the recorder's storage engine: its recovery enforces the budgets."""
    with datadir.open_db(data_dir, read_only=True) as db:
        dir_id = db.get_camera("front").main.sample_file_dir_id
    db, sample_file_dir = datadir.open_for_recording(data_dir, dir_id)
    try:
        with sample_file_dir.start_syncer() as syncer:
            syncer.flush()
    finally:
        sample_file_dir.close()
        db.close()


def test_archived_only_recordings_are_checked_in_the_archive_and_expire_with_their_objects(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    endpoint, _proc = s3_endpoint
    _add_archive(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 10)
    with datadir.open_db(data_dir) as db:
        stream = db.get_camera("front").main
        rows = db.list_recordings(stream.id)
        archive = db.get_archive("offsite")
        _drain(db, ArchiveUploader(db, archive))
        db.update_camera("front", retain_bytes=rows[-1].sample_file_bytes)  # the newest fits
    _apply_retention(data_dir)
    with datadir.open_db(data_dir) as db:
        assert db.list_recordings(stream.id) == rows  # every row kept...
        only = db.list_archived_only(stream.id, 0, 0xFFFF_FFFF)
        assert sorted(only) == [r.composite_id for r in rows[:-1]]  # ...all but one archived-only
        summary = CheckSummary()
        assert list(check(db, db.sample_file_dir(stream.sample_file_dir_id), True,
                          summary=summary)) == []
        assert len(summary.archived_only) == len(rows) - 1
        # `check --repair` drops rows whose file is gone: not the archived-only ones.
        said: list[str] = []
        report = repair.adopt(db, db.sample_file_dir(stream.sample_file_dir_id), said.append)
        assert (report.dropped_recordings, report.strays, said) == ([], [], [])
        assert db.list_recordings(stream.id) == rows
    n = len(rows) - 1
    code, out, _err = moonfire(capsys, "check", "--data-dir", data_dir)
    assert (code, out) == (0, f"ok: every recording has its file or, for the {n} archived-only, "
                           f"its archive objects (checked with --archive); no stray files; "
                           f"no reservations\n")
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert code == 0 and "every archived recording has its objects" in out, out
    code, out, _err = moonfire(capsys, "archive", "status", "--data-dir", data_dir)
    assert f"offsite: {len(rows)} recordings archived ({n} only there, " in out
    with datadir.open_db(data_dir, read_only=True) as db:
        gauges = {m.name: m.samples[0].value for m in _archive_metrics(db)}
    assert (gauges["moonfire_archive_only_recordings"], gauges["moonfire_archive_only_bytes"]) \
        == (n, sum(r.sample_file_bytes for r in rows[:-1]))
    # A missing object of an archived-only recording is an error naming it and the key.
    client = make_client(archive)
    first_key = only[rows[0].composite_id][1]
    saved = client.get_object(Bucket=BUCKET, Key=first_key)
    client.delete_object(Bucket=BUCKET, Key=first_key)
    code, out, _err = moonfire(capsys, "check", "--archive", "--data-dir", data_dir)
    assert code == 1
    assert (f"archive 'offsite': recording front/main/{rows[0].recording_id}: object "
            f"{first_key} is missing from the store") in out
    client.put_object(Bucket=BUCKET, Key=first_key, Body=saved["Body"].read(),
                      Metadata=saved["Metadata"])
    # The archive can't be removed while it holds the only copy of recordings.
    assert moonfire(capsys, "camera", "edit", "front", "--archive", "", "--data-dir",
                    data_dir)[0] == 0
    code, _out, err = moonfire(capsys, "archive", "remove", "offsite", "--data-dir", data_dir)
    assert code == 1 and f"archive 'offsite' holds the only copy of {n} recordings" in err
    # archive_days: the archived-only rows go with their objects, the local one keeps its
    # row.  Each step survives an interruption (here, an exception at the first crash point
    # after the second recording was claimed: its rows went, its objects not yet): the
    # invariants hold, the next pass does the rest, and the claimed one's objects are left
    # as orphans (a storage cost, never a row without its file or objects).
    assert moonfire(capsys, "camera", "edit", "front", "--archive", "offsite",
                    "--archive-days", "1", "--data-dir", data_dir)[0] == 0
    with datadir.open_db(data_dir) as db:
        db._conn.execute("update recording_archive set archived_time_sec ="
                         " archived_time_sec - 2 * 86400")
        uploader = ArchiveUploader(db, archive)
        reached: list[str] = []

        def interrupt(name: str) -> None:
            reached.append(name)
            if reached == ["archive.after_expire_rows", "archive.after_expire_objects",
                           "archive.after_expire_rows"]:
                raise KeyboardInterrupt(name)

        with observe(interrupt), pytest.raises(KeyboardInterrupt):
            uploader.expire_old()
        assert [r.recording_id for r in db.list_recordings(stream.id)] == [
            r.recording_id for r in rows[2:]]
        assert list(check(db, db.sample_file_dir(stream.sample_file_dir_id), True)) == []
        assert check_archive(db, archive, True) == []
        # The claim took its recording_archive row too: nothing names its objects now.
        assert rows[1].composite_id not in {cid for cid, *_ in db.list_archived(archive.id)}
        assert uploader.expire_old() == len(rows) - 2  # all but the two done or claimed
        assert db.list_recordings(stream.id) == rows[-1:]
        assert db.list_archived(archive.id) == []
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=first_key.rsplit("/", 1)[0])
        assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(
            [only[rows[1].composite_id][1], only[rows[1].composite_id][1][:-len("sample")]
             + "json"])
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert (code, out.startswith("ok: every recording has its file; ")) == (0, True), out


def _archived(db: Database, rows: list, archive_id: int) -> None:
    """Rows standing for uploads done earlier (no store is contacted)."""
    with db.transaction() as tx:
        for row in rows:
            tx.conn.execute(
                "insert into recording_archive (composite_id, archive_id, data_key,"
                " manifest_key, archived_time_sec, sample_file_sha1)"
                " values (?, ?, 'd', 'm', cast(strftime('%s', 'now') as int), ?)",
                (row.composite_id, archive_id, b"\x01" * 20))


def test_removing_a_camera_forgets_what_only_its_archive_holds(data_dir, capsys) -> None:
    """``camera remove`` counts archived-only recordings as the camera's; with
    ``--delete-recordings`` the local files go (those still waiting for the archive too) and
    the archived-only rows are forgotten, their objects left in the bucket."""
    from tests.support.archived import make_archived_only
    from tests.support.cli import sample_files

    record_synthetic(data_dir, "front", seconds=13)
    add_camera(capsys, data_dir, "back")
    record_synthetic(data_dir, "back", seconds=5)
    with datadir.open_db(data_dir) as db:
        db.add_archive("offsite", f"s3://{BUCKET}/site", "http://127.0.0.1:9")
        archive_id = db.update_camera("front", archive="offsite").main.archive_id
        rows = db.list_recordings(db.get_camera("front").main.id)
        assert len(rows) >= 3
        _archived(db, rows[:2], archive_id)  # the first two archived; the rest still waiting
        make_archived_only(db, [rows[0].composite_id])
        with pytest.raises(Exception, match=f"still has {len(rows) - 1} recordings; set"):
            db.delete_camera("front")
        # A camera left with archived-only recordings alone: refused unless asked.
        back = db.list_recordings(db.update_camera("back", archive="offsite").main.id)
        _archived(db, back, archive_id)
        make_archived_only(db, [r.composite_id for r in back])
        with pytest.raises(Exception, match=f"still has {len(back)} recordings that only its "
                           "archive holds; `moonfire camera remove back --delete-recordings`"):
            db.delete_camera("back")
        db.delete_camera("back", forget_archived=True)
    # A tighter budget: the archived recording keeps playing from the archive; those
    # still waiting for it stay.
    code, out, _ = moonfire(capsys, "camera", "edit", "front", "--retain", "1",
                            "--data-dir", data_dir)
    assert code == 0 and "deleted 1 of front/main's oldest recordings" in out
    assert "; 1 of them still play from the archive" in out
    code, _out, err = moonfire(capsys, "camera", "remove", "front", "--data-dir", data_dir)
    assert code == 1 and f"has {len(rows)} recordings" in err and "--delete-recordings" in err
    code, out, _ = moonfire(capsys, "camera", "remove", "front", "--delete-recordings",
                            "--data-dir", data_dir)
    assert code == 0 and f"removed camera 'front' and its {len(rows)} recordings" in out
    assert sample_files(data_dir) == set()
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.list_cameras() == []
    with sqlite3.connect(os.path.join(data_dir, "db")) as raw:
        assert raw.execute("select count(*) from recording_archive").fetchone() == (0,)
        assert raw.execute("select count(*) from recording").fetchone() == (0,)
    assert moonfire(capsys, "check", "--data-dir", data_dir)[0] == 0
