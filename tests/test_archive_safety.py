"""The archive review's findings (issue 14), each a regression test that failed before its fix:
expiry racing local retention, ``check --repair`` of a restored database, an upload whose
row went meanwhile, credentials in an endpoint, refused files blocking the backlog, an
archive given while running, botocore's own retries, and the backlog scan's cost.

The store is ``moto_server`` (``tests/support/s3.py``), the recordings the synthetic camera's
(``tests.support.cli.record_synthetic``, 2 s each).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from moonfire.db import ArchiveRow, Database, format_uuid
from moonfire.db import database as database_module
from moonfire.db.database import BacklogCursor
from moonfire.ingest.daemon import Daemon, start_new_uploaders
from moonfire.storage import archive as archive_module
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import ArchiveUploader, check_archive, make_client
from moonfire.storage.crash_points import observe
from moonfire.storage.invariants import check
from tests.support import s3
from tests.support.cli import add_camera, moonfire, record_synthetic
from tests.support.s3 import BUCKET

s3_endpoint = s3.s3_endpoint
credentials = s3.credentials
bucket = s3.bucket


@pytest.fixture
def data_dir(tmp_path, capsys) -> str:
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    add_camera(capsys, path, "front")
    return path


def _archive_front(capsys, data_dir: str, url: str, endpoint: str) -> None:
    for argv in (("archive", "add", "offsite", "--url", url, "--endpoint", endpoint),
                 ("camera", "edit", "front", "--archive", "offsite")):
        code, _out, err = moonfire(capsys, *argv, "--data-dir", data_dir)
        assert (code, err) == (0, ""), err


def _upload_all(db: Database) -> ArchiveUploader:
    uploader = ArchiveUploader(db, db.get_archive("offsite"))
    while uploader.upload_some():
        pass
    assert db.archive_backlog(uploader.archive.id) == (0, 0)
    return uploader


def _sample_path(db: Database, cid: int) -> str:
    stream = db.get_stream(cid >> 32)
    return os.path.join(db.sample_file_dir(stream.sample_file_dir_id).path,
                        format_uuid(db.get_playback(cid).sample_file_uuid))


def _no_row_without_file_or_objects(db: Database, archive_name: str) -> None:
    stream = db.get_camera("front").main
    assert [str(v) for v in check(db, db.sample_file_dir(stream.sample_file_dir_id), True)
            if v.invariant != 3] == []
    assert check_archive(db, db.get_archive(archive_name), hash_contents=False) == []


def test_expiry_racing_a_shorter_budget_and_a_longer_archive_days_loses_nothing(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    """Finding 1: between two recordings of one expiry pass, the owner keeps the archive
    forever (``--archive-days 0``) and almost nothing locally; the syncer rotates.  Each
    recording is claimed (the condition re-checked) before its objects go, so none ends up
    with neither its file nor its objects."""
    endpoint, _proc = s3_endpoint
    _archive_front(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 8)
    db, sample_file_dir = datadir.open_for_recording(data_dir, 1)
    with db, sample_file_dir:
        uploader = _upload_all(db)
        rows = db.list_recordings(db.get_camera("front").main.id)
        assert len(rows) >= 3
        db.update_camera("front", archive_days=1)
        with db.transaction() as tx:
            tx.conn.execute("update recording_archive set archived_time_sec ="
                            " archived_time_sec - 2 * 86400")
        changed: list[str] = []

        def meanwhile(name: str) -> None:
            if name == "archive.after_expire_rows" and not changed:
                changed.append(name)
                db.update_camera("front", archive_days=None, retain_bytes=1)
                sample_file_dir.start_syncer().close()  # its start rotates to the budget

        with observe(meanwhile):
            assert uploader.expire_old() == 1  # the others no longer expire
        assert changed
        # The first, claimed, has no archive copy left for retention to keep: it waits,
        # local, to be archived again (archive_days is now forever); the others are
        # archived-only, their objects intact.
        assert db.list_recordings(rows[0].stream_id) == rows
        only = db.list_archived_only(rows[0].stream_id, 0, 0xFFFF_FFFF)
        assert sorted(only) == [r.composite_id for r in rows[1:]]
        assert os.path.exists(_sample_path(db, rows[0].composite_id))
        assert db.archive_backlog(uploader.archive.id) == (1, rows[0].sample_file_bytes)
        _no_row_without_file_or_objects(db, "offsite")


def test_repair_of_a_restored_database_keeps_what_the_archive_holds(
    capsys, tmp_path, data_dir, bucket, s3_endpoint
) -> None:
    """Finding 2: the database is restored from a backup older than local retention's
    deletions; ``check --repair`` makes the archived rows whose file went archived-only
    instead of dropping them (and a rebuild doesn't count an orphan row as known)."""
    endpoint, _proc = s3_endpoint
    _archive_front(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 8)
    with datadir.open_db(data_dir) as db:
        _upload_all(db)
        rows = db.list_recordings(db.get_camera("front").main.id)
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in os.listdir(data_dir):
        if os.path.isfile(os.path.join(data_dir, name)):
            shutil.copy2(os.path.join(data_dir, name), backup / name)
    code, out, _err = moonfire(capsys, "camera", "edit", "front", "--retain", "1",
                               "--data-dir", data_dir)
    assert code == 0 and f"{len(rows)} of them still play from the archive" in out, out
    for name in os.listdir(data_dir):
        if os.path.isfile(os.path.join(data_dir, name)):
            os.unlink(os.path.join(data_dir, name))
    for name in os.listdir(backup):
        shutil.copy2(backup / name, os.path.join(data_dir, name))
    code, out, _err = moonfire(capsys, "check", "--repair", "--data-dir", data_dir)
    assert code == 0, out
    kept = [line for line in out.splitlines() if "kept as archived-only, it plays from "
            "archive 'offsite'" in line]
    assert len(kept) == len(rows), out
    assert f"{len(rows)} kept as archived-only" in out
    with datadir.open_db(data_dir) as db:
        stream = db.get_camera("front").main
        assert db.list_recordings(stream.id) == rows
        assert sorted(db.list_archived_only(stream.id, 0, 0xFFFF_FFFF)) == [
            r.composite_id for r in rows]
        _no_row_without_file_or_objects(db, "offsite")
        # A recording_archive row whose recording is gone is not "known" to a rebuild.
        archive = db.get_archive("offsite")
        with db.transaction() as tx:
            tx.conn.execute("delete from recording_playback where composite_id = ?",
                            (rows[0].composite_id,))
            tx.conn.execute("delete from recording where composite_id = ?",
                            (rows[0].composite_id,))
        known = {cid for cid, _only in db.list_archived_manifest_keys(archive.id).values()}
        assert known == {r.composite_id for r in rows[1:]}


def test_an_upload_whose_row_went_meanwhile_records_no_orphan(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    """Finding 3: the free-space floor deletes a recording while it is being uploaded;
    ``mark_archived`` then inserts nothing (a row there would be an orphan)."""
    endpoint, _proc = s3_endpoint
    _archive_front(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 4)
    with datadir.open_db(data_dir) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
        uploader = ArchiveUploader(db, db.get_archive("offsite"))
        gone = rows[0]

        def delete_it(name: str) -> None:
            if name == "archive.after_manifest_put" and db.list_recordings(gone.stream_id)[0] \
                    == gone:
                with db.transaction() as tx:
                    tx.mark_sample_files_deleted(tx.delete_recordings([gone]))

        with observe(delete_it):
            while uploader.upload_some():
                pass
        archived = [cid for cid, *_ in db.list_archived(uploader.archive.id)]
        assert archived == [r.composite_id for r in rows[1:]]
        assert uploader.stats.uploads == len(rows) - 1
        assert uploader.last_error is None


def test_an_endpoint_with_credentials_is_refused_without_echoing_them(
    capsys, data_dir
) -> None:
    """Finding 4."""
    for option, value in (("--endpoint", "http://AKIAEXAMPLE:wJalr-s3cr3t@127.0.0.1:9"),
                          ("--url", "s3://AKIAEXAMPLE:wJalr-s3cr3t@footage/x")):
        argv = ["archive", "add", "offsite", "--url", "s3://footage/x", option, value]
        code, out, err = moonfire(capsys, *argv, "--data-dir", data_dir)
        assert code == 1, out
        assert "AWS_ACCESS_KEY_ID" in err and "~/.aws/credentials" in err, err
        assert "s3cr3t" not in err + out and "AKIAEXAMPLE" not in err + out
    assert moonfire(capsys, "archive", "list", "--json", "--data-dir", data_dir)[1] == "[]\n"


def test_refused_files_neither_block_the_backlog_nor_go_unreported(
    capsys, monkeypatch, data_dir, bucket, s3_endpoint
) -> None:
    """Finding 5: as many refused (bit-rotten) files as a backlog batch, oldest: the newer
    recordings are uploaded all the same, and ``archive status`` says what was refused."""
    endpoint, _proc = s3_endpoint
    monkeypatch.setattr(archive_module, "BACKLOG_BATCH", 2)
    _archive_front(capsys, data_dir, bucket, endpoint)
    record_synthetic(data_dir, "front", 10)
    with datadir.open_db(data_dir) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
        assert len(rows) >= 4
        for row in rows[:2]:
            with open(_sample_path(db, row.composite_id), "r+b") as f:
                f.seek(100)
                byte = f.read(1)
                f.seek(100)
                f.write(bytes([byte[0] ^ 0xFF]))
        uploader = ArchiveUploader(db, db.get_archive("offsite"))
        while uploader.upload_some():
            pass
        archived = [cid for cid, *_ in db.list_archived(uploader.archive.id)]
        assert archived == [r.composite_id for r in rows[2:]]
        assert db.archive_backlog(uploader.archive.id)[0] == 2
        expected = ("archive 'offsite': 2 recordings refused: local file doesn't match its "
                    "row (`moonfire check --hash`)")
        assert uploader.last_error == expected
    code, out, _err = moonfire(capsys, "archive", "status", "--data-dir", data_dir)
    assert expected in out, out


def test_an_archive_given_while_running_gets_its_uploader(
    capsys, data_dir, bucket, s3_endpoint
) -> None:
    """Finding 5, second part: ``camera edit --archive`` while ``moonfire run`` runs."""
    endpoint, _proc = s3_endpoint
    record_synthetic(data_dir, "front", 4)
    with datadir.open_db(data_dir) as db:
        daemon = Daemon(db, threading.Event(), data_dir=data_dir)
        stream = db.get_camera("front").main
        daemon.streamers = [SimpleNamespace(stream=stream, live_only=False)]  # type: ignore[list-item]
        assert start_new_uploaders(daemon) == []  # no archive yet
        db.add_archive("offsite", bucket, endpoint)
        db.update_camera("front", archive="offsite")
        assert start_new_uploaders(daemon) == ["offsite"]
        assert start_new_uploaders(daemon) == []  # once
        try:
            deadline = time.monotonic() + 10
            while db.archive_backlog(db.get_archive("offsite").id)[0]:
                assert time.monotonic() < deadline, "the new uploader uploaded nothing"
                time.sleep(0.1)
        finally:
            assert all(u.stop() for u in daemon.uploaders)


def test_the_client_makes_one_attempt_per_request(monkeypatch, credentials) -> None:
    """Finding 6: botocore's ``max_attempts`` counts retries, so a silent store cost two
    read timeouts per request; the uploader's backoff is the only retry."""
    monkeypatch.setattr(archive_module, "READ_TIMEOUT_SEC", 0.5)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(server.accept()[0])  # never answers
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    row = ArchiveRow(1, "offsite", f"s3://{BUCKET}/x",
                     f"http://127.0.0.1:{server.getsockname()[1]}", None, None, None)
    client = make_client(row)
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="Read timeout"):
            client.head_object(Bucket=BUCKET, Key="k")
        assert time.monotonic() - started < 1.5
        assert len(accepted) == 1
    finally:
        server.close()
        for c in accepted:
            c.close()


def test_the_backlog_scan_resumes_where_it_found_work(
    monkeypatch, data_dir
) -> None:
    """Finding 7: ``list_archive_backlog`` scans each stream from its cursor, a few ids per
    statement, instead of sorting every recording at each poll; what it returns is what the
    full query returned, and a reset or a changed ``archive_days`` finds older ones again."""
    monkeypatch.setattr(database_module, "BACKLOG_SCAN_IDS", 2)
    record_synthetic(data_dir, "front", 14)
    with datadir.open_db(data_dir) as db:
        db.add_archive("offsite", f"s3://{BUCKET}/x", "http://127.0.0.1:9")
        archive_id = db.update_camera("front", archive="offsite").main.archive_id
        assert archive_id is not None
        rows = db.list_recordings(db.get_camera("front").main.id)
        assert len(rows) >= 6
        cids = [r.composite_id for r in rows]

        def mark(cid: int) -> None:
            assert db.mark_archived(cid, archive_id, f"d{cid}", f"m{cid}", b"\x01" * 20)

        def backlog(cursor: BacklogCursor, limit: int = 3) -> list[int]:
            return [r.composite_id for r, _p, _d in db.list_archive_backlog(
                archive_id, limit, exclude={cids[3]}, cursor=cursor)]

        cursor = BacklogCursor()
        for cid in cids[:3]:
            mark(cid)
        assert backlog(cursor) == cids[4:7]  # past three archived and one excluded
        assert cursor.positions[rows[0].stream_id] == cids[4]
        for cid in cids[4:]:
            mark(cid)
        assert backlog(cursor) == []
        assert cursor.positions[rows[0].stream_id] == cids[-1] + 1
        assert db.mark_archived(cids[-1] + 1, archive_id, "d", "m", b"\x01" * 20) is False
        # A copy gone below the cursor (an expiry, then a longer archive_days): found again
        # after a reset, or at once when archive_days changes.
        db.forget_archived(cids[0])
        assert backlog(cursor) == []
        cursor.reset()
        assert backlog(cursor) == [cids[0]]
        db.forget_archived(cids[1])
        db.update_camera("front", archive_days=36_500)
        assert backlog(cursor) == cids[:2]
        assert backlog(BacklogCursor(), limit=16) == cids[:2]
