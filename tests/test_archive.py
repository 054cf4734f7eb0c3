"""The S3 archive tier (issue 14, part 1): ``moonfire archive``, per-stream archives, and
the background uploader, against a real S3 endpoint (``moto_server``) these tests start.

moto's S3 keeps its state in memory, answers a write-once ``PUT`` (``If-None-Match: *``)
on an existing key with 412 Precondition Failed, and accepts any credentials unless started
with ``INITIAL_NO_AUTH_ACTION_COUNT=0`` (the wrong-credentials test starts its own so); a
missing bucket is refused as on AWS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from moonfire.db import ArchiveRow, Database
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import ArchiveError, ArchiveUploader, make_client
from moonfire.web.metrics import _archive_metrics
from tests.support.cli import TESTSRC_URL, add_camera, moonfire, record_synthetic
from tests.support.net import free_port, stop_process

BUCKET = "footage"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
}


def _start_moto(**env: str) -> tuple[subprocess.Popen, str]:
    """``moto_server`` on a free loopback port, answering; missing moto fails (it is in
    the test extras), it never skips."""
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server is missing: pip install 'moto[server]' (the test extras)")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            env=dict(os.environ, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            assert proc.poll() is None, "moto_server exited"
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                return proc, endpoint
            except urllib.error.HTTPError:
                return proc, endpoint  # it answers (with authentication on, 403)
            except OSError:
                assert time.monotonic() < deadline, "moto_server never answered"
                time.sleep(0.1)
    except BaseException:
        stop_process(proc, timeout=10)
        raise


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[tuple[str, subprocess.Popen]]:
    """The shared ``moto_server`` (authentication off) for this module's tests."""
    proc, endpoint = _start_moto()
    yield endpoint, proc
    stop_process(proc, timeout=10)


@pytest.fixture
def credentials(monkeypatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)


@pytest.fixture
def bucket(s3_endpoint, credentials, request) -> str:
    """A fresh prefix of the bucket for each test: ``s3://footage/<test name>``."""
    endpoint, _proc = s3_endpoint
    client = make_client(ArchiveRow(0, "x", f"s3://{BUCKET}", endpoint, None, None, None))
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return f"s3://{BUCKET}/{request.node.name}"


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
    assert f"offsite: {len(rows) - 1} recordings archived, backlog 1 (" in out
    with datadir.open_db(data_dir, read_only=True) as db:
        gauges = {m.name: m.samples[0].value for m in _archive_metrics(db)}
    assert gauges == {
        "moonfire_archive_backlog_recordings": 1,
        "moonfire_archive_backlog_bytes": rows[0].sample_file_bytes,
        "moonfire_archive_recordings": len(rows) - 1, "moonfire_archive_failing": 0}


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
    assert (f"archive 'offsite': recording {cid >> 32}/{cid & 0xFFFF_FFFF}: object {data_key}'s "
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
    store, endpoint = _start_moto(INITIAL_NO_AUTH_ACTION_COUNT="0")
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


def test_stopped_store_never_stalls_recording_and_the_backlog_drains(
    capsys, tmp_path, bucket, s3_endpoint
) -> None:
    """``moonfire run`` records the synthetic camera (1 s recordings, rotated at key frames)
    into an archive whose store is SIGSTOPped for 6 s: recordings keep committing meanwhile,
    and afterwards every one is uploaded."""
    endpoint, moto = s3_endpoint
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    add_camera(capsys, data_dir, "front", "--rotate-seconds", "1")
    _add_archive(capsys, data_dir, bucket, endpoint)
    env = dict(os.environ, **CREDENTIALS)
    run = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--no-listen", "--data-dir", data_dir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    db_path = datadir.db_path(data_dir)

    def counts() -> tuple[int, int]:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            return (conn.execute("select count(*) from recording").fetchone()[0],
                    conn.execute("select count(*) from recording_archive").fetchone()[0])

    try:
        _wait_for(lambda: counts()[1] >= 2)
        os.kill(moto.pid, signal.SIGSTOP)
        try:
            before = counts()[0]
            time.sleep(6)
            during = counts()[0]
        finally:
            os.kill(moto.pid, signal.SIGCONT)
        # A recording about every 2 s (1 s, then the next key frame), whatever the store
        # does; an uploader in the recording path would have committed none.
        assert during - before >= 2, (before, during)
        time.sleep(1)
    finally:
        out = stop_process(run, timeout=30)
    assert run.returncode == 0, out
    with Database.open(db_path) as db:
        archive = db.get_archive("offsite")
        uploader = ArchiveUploader(db, archive)
        _drain(db, uploader)  # what the run left (its last recording) goes now
        assert uploader.stats.uploads <= 3, "the run's uploader did not catch up"
        assert db.archived_count(archive.id) == len(db.list_recordings(
            db.get_camera("front").main.id))
