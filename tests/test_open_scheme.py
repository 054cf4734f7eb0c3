"""Moonfire's ``open`` scheme (brief §5.3): a database that isn't the copy that last opened
its sample file directory is refused before anything is deleted.

Measured before it existed: restoring an older ``db`` over a data directory started without
complaint, and its recovery then unlinked files the old database had reserved that the newer
one had made into recordings; two copies of a database sharing a sample directory on another
disk each deleted the other's files.  Also here: ``moonfire check --repair`` adopting a
restored database, and the upgrade of the previous release's schema-2 database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import av
import pytest

from moonfire.db import Database, schema
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import NON_SAMPLE_NAMES, DirectoryMismatchError, read_meta
from moonfire.storage.invariants import check
from moonfire.time import Time, format_time
from tests.support.cli import (
    add_camera,
    lower_budget_to_newest,
    moonfire,
    record_synthetic,
    sample_files,
)
from tests.support.implementations import FIXTURE_V2


def restore(backup: str, data_dir: str) -> None:
    """Put the copy of ``db`` made earlier back, as a user restoring a backup would."""
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(datadir.db_path(data_dir) + suffix)
    shutil.copy2(backup, datadir.db_path(data_dir))


def back_up(data_dir: str, dest: str) -> None:
    assert not os.path.exists(datadir.db_path(data_dir) + "-wal")  # closed: checkpointed
    shutil.copy2(datadir.db_path(data_dir), dest)




def violations(data_dir: str) -> list[str]:
    with datadir.open_db(data_dir, read_only=True) as db:
        return [str(v) for v in check(db, db.sample_file_dir().path, hash_contents=True)]


@pytest.fixture
def restored(tmp_path, capsys) -> tuple[str, str]:
    """A data directory that recorded more (and deleted some) after its ``db`` was backed up,
    with that backup restored over it.  Returns (data dir, backup path)."""
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=8)  # at least three recordings
    backup = str(tmp_path / "db.backup")
    back_up(data_dir, backup)
    lower_budget_to_newest(capsys, data_dir)  # deletes two the backup names
    code, _, err = moonfire(capsys, "camera", "edit", "front", "--retain", "1GiB",
                            "--data-dir", data_dir)
    assert code == 0, err
    record_synthetic(data_dir, "front", seconds=6)  # some the backup doesn't know
    restore(backup, data_dir)
    return data_dir, backup


# ---- (1) a restored older database is refused, nothing deleted ---------------------------


def test_a_restored_older_database_is_refused_and_nothing_is_deleted(restored, capsys):
    data_dir, _ = restored
    before = sample_files(data_dir)
    assert len(before) >= 2

    code, out, err = moonfire(capsys, "run", "--for", "2", "--data-dir", data_dir)
    assert code == 1
    assert err.startswith("moonfire: ") and err.count("\n") == 1, err
    for fragment in ("last opened by another copy of this database", "nothing was deleted",
                     "moonfire check --repair", "the database's last complete open is open "):
        assert fragment in err, err
    assert sample_files(data_dir) == before

    with pytest.raises(DirectoryMismatchError, match="restored"):
        datadir.open_for_recording(data_dir)
    # A command that deletes (a lowered budget) is refused the same way.
    code, _, err = moonfire(capsys, "camera", "edit", "front", "--retain", "1",
                            "--data-dir", data_dir)
    assert code == 1 and "nothing was deleted" in err
    assert sample_files(data_dir) == before

    # Plain check reports the mismatch too (besides the missing files and the strays).
    code, out, _ = moonfire(capsys, "check", "--data-dir", data_dir)
    assert code == 1
    assert "last opened by another copy of this database" in out
    assert sample_files(data_dir) == before


def test_the_open_check_names_both_opens(restored):
    data_dir, _ = restored
    with datadir.open_db(data_dir) as db:
        ours = db.last_complete_open()
        fd = os.open(db.sample_file_dir().path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            theirs = read_meta(fd, db.sample_file_dir().path)
        finally:
            os.close(fd)
    assert ours is not None and theirs is not None and theirs.last_complete_open is not None
    assert theirs.last_complete_open.id > ours.id and theirs.in_progress_open is None
    with pytest.raises(DirectoryMismatchError) as e:
        datadir.open_for_recording(data_dir)
    assert str(ours) in str(e.value) and str(theirs.last_complete_open) in str(e.value)


# ---- (2) check --repair adopts it --------------------------------------------------------


def test_check_repair_adopts_the_restored_database(restored, capsys):
    data_dir, _ = restored
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("front").id)
        named = {db.get_playback(r.composite_id).sample_file_uuid for r in rows}
    before = sample_files(data_dir)
    named_names = {_uuid(u) for u in named}
    strays = before - named_names
    gone = named_names - before
    assert len(rows) >= 3 and len(gone) == len(rows) - 1 and strays

    code, out, err = moonfire(capsys, "check", "--repair", "--data-dir", data_dir)
    assert code == 0, err
    lines = out.splitlines()
    dropped = [line for line in lines if line.startswith("dropped recording front/")]
    assert len(dropped) == len(gone) and all("is missing" in line for line in dropped)
    assert {line.split()[-3] for line in dropped} == gone
    listed = [line for line in lines if line.startswith("stray file ")]
    assert sorted(line.split()[2] for line in listed) == sorted(strays)
    assert all("left alone" in line for line in listed)
    assert (f"{len(gone)} recording(s) dropped, {len(strays)} stray file(s) left alone"
            in lines[-1])
    assert sample_files(data_dir) == before  # nothing deleted

    # The strays are all check still reports; moved aside (as the user would), check is ok.
    problems = violations(data_dir)
    assert sorted(problems) == sorted(
        f"[invariant 2] sample file {n} is not used by any recording or reservation; left alone"
        for n in strays
    )
    sample_dir = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    aside = os.path.join(os.path.dirname(data_dir), "strays")
    os.mkdir(aside)
    for n in strays:
        os.rename(os.path.join(sample_dir, n), os.path.join(aside, n))
    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert code == 0, out + err

    # Recording works again, and keeps check ok.
    record_synthetic(data_dir, "front", seconds=4)
    assert violations(data_dir) == []
    with datadir.open_db(data_dir, read_only=True) as db:
        assert len(db.list_recordings(db.get_camera("front").id)) > 1


def test_check_repair_refuses_while_a_recorder_holds_the_directory(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    try:
        code, _, err = moonfire(capsys, "check", "--repair", "--data-dir", data_dir)
    finally:
        sample_file_dir.close()
        db.close()
    assert code == 1 and "stop it before repairing" in err


def test_repair_drops_a_reservation_naming_a_recordings_file(tmp_path, capsys):
    """Recovery unlinks every reservation's file: one a recording names must go first."""
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    add_camera(capsys, data_dir, "front")
    record_synthetic(data_dir, "front", seconds=4)
    with sqlite3.connect(datadir.db_path(data_dir)) as conn:
        (uuid,) = conn.execute("select sample_file_uuid from recording_playback").fetchone()
        conn.execute("insert into reserved_sample_files (uuid, state) values (?, 0)", (uuid,))
    before = sample_files(data_dir)
    code, out, err = moonfire(capsys, "check", "--repair", "--data-dir", data_dir)
    assert code == 0, err
    assert f"dropped reservation {_uuid(uuid)} (state writing): a recording names its file" in out
    record_synthetic(data_dir, "front", seconds=2)  # its recovery unlinks nothing named
    assert before <= sample_files(data_dir)
    assert violations(data_dir) == []


# ---- (3) two copies sharing a sample directory on another disk ---------------------------


@pytest.mark.parametrize("who_opens_first", ["original", "copy"])
def test_copies_sharing_a_sample_dir_on_another_disk_refuse_each_other(
    tmp_path, capsys, who_opens_first
):
    video = str(tmp_path / "disk2" / "video")
    original = str(tmp_path / "original")
    assert moonfire(capsys, "init", "--data-dir", original, "--sample-dir", video)[0] == 0
    add_camera(capsys, original, "front")
    record_synthetic(original, "front", seconds=4)
    copy = str(tmp_path / "copy")
    os.mkdir(copy)
    back_up(original, datadir.db_path(copy))
    with datadir.open_db(copy, read_only=True) as db:
        assert db.sample_file_dir().path == video  # the same directory: another disk

    first, second = (original, copy) if who_opens_first == "original" else (copy, original)
    record_synthetic(first, "front", seconds=4)
    files = set(os.listdir(video)) - NON_SAMPLE_NAMES
    with pytest.raises(DirectoryMismatchError, match="nothing was deleted"):
        datadir.open_for_recording(second)
    code, _, err = moonfire(capsys, "camera", "edit", "front", "--retain", "1",
                            "--data-dir", second)
    assert code == 1 and "last opened by another copy" in err
    code, _, err = moonfire(capsys, "camera", "remove", "front", "--delete-recordings",
                            "--data-dir", second)
    assert code == 1 and "last opened by another copy" in err
    assert set(os.listdir(video)) - NON_SAMPLE_NAMES == files
    # The one that opened last goes on working.
    record_synthetic(first, "front", seconds=2)
    assert violations(first) == []


# ---- the dance itself --------------------------------------------------------------------


def test_each_read_write_open_moves_the_meta_and_the_database_together(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    opens = []
    for _ in range(3):
        db, sample_file_dir = datadir.open_for_recording(data_dir)
        try:
            meta = read_meta(sample_file_dir.directory.fileno(), sample_file_dir.path)
            assert meta is not None and meta.in_progress_open is None
            assert meta.last_complete_open == db.last_complete_open()
            opens.append(meta.last_complete_open)
        finally:
            sample_file_dir.close()
            db.close()
    assert [o.id for o in opens] == [2, 3, 4]  # init wrote open 1
    assert len({o.uuid for o in opens}) == 3


def test_an_old_meta_file_without_opens_reads_as_none(tmp_path):
    sample = FIXTURE_V2 / "sample"
    fd = os.open(sample, os.O_RDONLY | os.O_DIRECTORY)
    try:
        meta = read_meta(fd, str(sample))
    finally:
        os.close(fd)
    assert meta is not None
    assert (meta.last_complete_open, meta.in_progress_open) == (None, None)


# ---- (4) the previous release's schema-2 database ----------------------------------------


def _v2_copy(tmp_path: Path) -> str:
    data_dir = str(tmp_path / "restored")
    shutil.copytree(FIXTURE_V2, data_dir)
    return data_dir


def _version(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("select max(id) from version").fetchone()[0])


def test_the_schema_2_fixture_upgrades_to_3_and_keeps_everything(tmp_path, capsys):
    data_dir = _v2_copy(tmp_path)
    db_file = datadir.db_path(data_dir)
    with pytest.raises(Exception, match="open it read-write once"):
        datadir.open_db(data_dir, read_only=True)
    assert _version(db_file) == 2

    with datadir.open_db(data_dir) as db:
        counts = {c.short_name: len(db.list_recordings(c.id)) for c in db.list_cameras()}
        assert db.last_complete_open() is None
    assert counts == {"front": 5, "back": 3}
    assert _version(db_file) == schema.SCHEMA_VERSION == 3
    assert _version(db_file + ".v2-backup") == 2  # copied aside before the upgrade
    with sqlite3.connect(db_file + ".v2-backup") as conn:
        assert conn.execute("select count(*) from recording").fetchone() == (8,)

    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert code == 0, out + err
    # The first read-write open of the directory: the meta gains its first open.
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    sample_file_dir.close()
    db.close()
    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert code == 0, out + err
    code, out, _ = moonfire(capsys, "recordings", "back", "--data-dir", data_dir)
    assert code == 0

    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("back").id)
    clip = str(tmp_path / "back.mp4")
    code, _, err = moonfire(
        capsys, "export", "back", "--start", format_time(Time(rows[0].start_time_90k)),
        "--end", format_time(Time(rows[0].start_time_90k + rows[0].duration_90k)),
        "-o", clip, "--data-dir", data_dir,
    )
    assert code == 0, err
    with av.open(clip) as container:
        assert sum(1 for _ in container.decode(video=0)) == rows[0].video_samples


def test_a_failed_upgrade_leaves_the_database_at_version_2(tmp_path, monkeypatch):
    data_dir = _v2_copy(tmp_path)
    db_file = datadir.db_path(data_dir)
    meta_before = (Path(data_dir) / "sample" / "meta").read_bytes()
    monkeypatch.setattr(
        schema, "V2_TO_V3", (*schema.V2_TO_V3, "insert into no_such_table values (1)")
    )
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        Database.open(db_file)
    assert _version(db_file) == 2
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("select count(*) from recording").fetchone() == (8,)
        tables = {n for (n,) in conn.execute("select name from sqlite_master")}
        assert "open" not in tables
        columns = {c[1] for c in conn.execute("pragma table_info(sample_file_dir)")}
        assert "last_complete_open_id" not in columns
    assert _version(db_file + ".v2-backup") == 2
    assert (Path(data_dir) / "sample" / "meta").read_bytes() == meta_before

    monkeypatch.undo()  # the next attempt succeeds, keeping the first backup
    with datadir.open_db(data_dir) as db:
        assert len(db.list_recordings(db.get_camera("front").id)) == 5
    assert _version(db_file) == 3
    assert os.path.exists(db_file + ".v2-backup.2")


def _uuid(raw: bytes) -> str:
    import uuid as uuidlib

    return str(uuidlib.UUID(bytes=raw))
