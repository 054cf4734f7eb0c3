"""Moonfire's ``open`` scheme (brief §5.3): a database that isn't the copy that last opened
its sample file directory is refused before anything is deleted.

Measured before it existed: restoring an older ``db`` over a data directory started without
complaint, and its recovery then unlinked files the old database had reserved that the newer
one had made into recordings; two copies of a database sharing a sample directory on another
disk each deleted the other's files.  Also here: ``moonfire check --repair`` adopting a
restored database, each sample file directory's own open, and the upgrades of the data
directories the schema-2 and schema-3 releases wrote (``tests/data``) to schema 4.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import av
import pytest

from moonfire.db import MAIN, Database, DatabaseVersionError, Open, schema
from moonfire.db.schema import DEFAULT_DIR_NAME
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir
from moonfire.storage.dir_meta import NON_SAMPLE_NAMES, DirectoryMismatchError, DirMeta, read_meta
from moonfire.storage.invariants import check
from tests.support.cli import (
    add_camera,
    lower_budget_to_newest,
    moonfire,
    record_synthetic,
    sample_files,
)
from tests.support.implementations import FIXTURE_V2, TESTDATA

FIXTURE_V3 = TESTDATA / "schema-v3"


def restore(backup: str, data_dir: str) -> None:
    """Put the copy of ``db`` made earlier back, as a user restoring a backup would."""
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(datadir.db_path(data_dir) + suffix)
    shutil.copy2(backup, datadir.db_path(data_dir))


def meta_of(sample_file_dir_path: str) -> DirMeta | None:
    fd = os.open(sample_file_dir_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_meta(fd, sample_file_dir_path)
    finally:
        os.close(fd)


def back_up(data_dir: str, dest: str) -> None:
    assert not os.path.exists(datadir.db_path(data_dir) + "-wal")  # closed: checkpointed
    shutil.copy2(datadir.db_path(data_dir), dest)




def violations(data_dir: str) -> list[str]:
    """What ``moonfire check --hash`` reports, over every sample file directory."""
    with datadir.open_db(data_dir, read_only=True) as db:
        return [str(v) for row in db.list_sample_file_dirs()
                for v in check(db, row, hash_contents=True)]


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
        row = db.sample_file_dir(DEFAULT_DIR_NAME)
        ours = db.last_complete_open(row.id)
    theirs = meta_of(row.path)
    assert ours is not None and theirs is not None and theirs.last_complete_open is not None
    assert theirs.last_complete_open.id > ours.id and theirs.in_progress_open is None
    with pytest.raises(DirectoryMismatchError) as e:
        datadir.open_for_recording(data_dir)
    assert str(ours) in str(e.value) and str(theirs.last_complete_open) in str(e.value)


# ---- (2) check --repair adopts it --------------------------------------------------------


def test_check_repair_adopts_the_restored_database(restored, capsys):
    data_dir, _ = restored
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
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
        assert len(db.list_recordings(db.get_camera("front").main.id)) > 1


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
    with closing(sqlite3.connect(datadir.db_path(data_dir))) as conn, conn:
        (uuid,) = conn.execute("select sample_file_uuid from recording_playback").fetchone()
        conn.execute("insert into reserved_sample_files (uuid, sample_file_dir_id, state)"
                     " select ?, id, 0 from sample_file_dir where name = ?",
                     (uuid, DEFAULT_DIR_NAME))
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
        assert db.sample_file_dir(DEFAULT_DIR_NAME).path == video  # the same one: another disk

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
            assert meta.last_complete_open == db.last_complete_open(sample_file_dir.id)
            opens.append(meta.last_complete_open)
        finally:
            sample_file_dir.close()
            db.close()
    assert [o.id for o in opens] == [2, 3, 4]  # init wrote open 1
    assert len({o.uuid for o in opens}) == 3


def test_each_sample_file_dir_has_its_own_last_complete_open(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    code, _, err = moonfire(capsys, "dir", "add", "disk2", str(tmp_path / "disk2" / "video"),
                            "--data-dir", data_dir)
    assert code == 0, err

    def opens() -> dict[str, Open | None]:
        """Each directory's last complete open, as the database says; asserts that the
        directory's own meta names the same."""
        with datadir.open_db(data_dir, read_only=True) as db:
            found = {}
            for row in db.list_sample_file_dirs():
                found[row.name] = db.last_complete_open(row.id)
                meta = meta_of(row.path)
                assert meta is not None
                assert (meta.last_complete_open, meta.in_progress_open) == (found[row.name], None)
        return found

    added = opens()
    assert set(added) == {DEFAULT_DIR_NAME, "disk2"}
    assert None not in added.values() and added[DEFAULT_DIR_NAME] != added["disk2"]
    for _ in range(2):
        db, sample_file_dir = datadir.open_for_recording(data_dir, "disk2")
        sample_file_dir.close()
        db.close()
    backup = str(tmp_path / "db.backup")
    back_up(data_dir, backup)
    moved = opens()
    assert moved[DEFAULT_DIR_NAME] == added[DEFAULT_DIR_NAME]  # not opened: unchanged
    assert moved["disk2"] is not None and added["disk2"] is not None
    assert moved["disk2"].id > added["disk2"].id

    # A restored database is refused by the directory opened since its backup, only.
    db, sample_file_dir = datadir.open_for_recording(data_dir, "disk2")
    sample_file_dir.close()
    db.close()
    restore(backup, data_dir)
    db, sample_file_dir = datadir.open_for_recording(data_dir, DEFAULT_DIR_NAME)
    sample_file_dir.close()
    db.close()
    with pytest.raises(DirectoryMismatchError, match="last opened by another copy"):
        datadir.open_for_recording(data_dir, "disk2")
    problems = violations(data_dir)
    assert len(problems) == 1 and "disk2" in problems[0], problems


def test_an_old_meta_file_without_opens_reads_as_none(tmp_path):
    sample = FIXTURE_V2 / "sample"
    fd = os.open(sample, os.O_RDONLY | os.O_DIRECTORY)
    try:
        meta = read_meta(fd, str(sample))
    finally:
        os.close(fd)
    assert meta is not None
    assert (meta.last_complete_open, meta.in_progress_open) == (None, None)


# ---- (4) the previous releases' data directories: schema 2 and schema 3 -------------------

#: The releases' data directories (``tests/data/README.md``) and their recordings per camera.
FIXTURES = {2: FIXTURE_V2, 3: FIXTURE_V3}
FIXTURE_RECORDINGS = {2: {"front": 5, "back": 3}, 3: {"front": 6, "back": 4}}


def _fixture_copy(version: int, data_dir: Path) -> str:
    """A copy of a release's data directory: the fixture itself is never opened."""
    shutil.copytree(FIXTURES[version], data_dir)
    return str(data_dir)


def _version(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("select max(id) from version").fetchone()[0])


def _dump(path: str) -> dict[str, list[tuple]]:
    """Every row of every table, and every table's and index's SQL: a database's content."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [n for (n,) in conn.execute(
            "select name from sqlite_master where type = 'table' order by name")]
        dump = {t: conn.execute(f"select * from {t} order by 1").fetchall() for t in tables}
        dump["sqlite_master"] = conn.execute(
            "select type, name, tbl_name, sql from sqlite_master order by type, name").fetchall()
        return dump


def _old_rows(path: str) -> tuple[list[tuple], list[tuple], tuple | None]:
    """What a schema-2 or -3 database says of its cameras, its recordings and its
    directory's last complete open (None before schema 3)."""
    with closing(sqlite3.connect(path)) as conn:
        cameras = conn.execute(
            "select id, short_name, description, username, password, rotate_interval_sec, url,"
            " retain_bytes, next_recording_id from camera order by id").fetchall()
        recordings = conn.execute(
            "select r.composite_id, r.camera_id, r.sample_file_bytes, r.start_time_90k,"
            " r.duration_90k, r.video_samples, p.sample_file_uuid, p.sample_file_sha1"
            " from recording r join recording_playback p using (composite_id) order by 1"
        ).fetchall()
        tables = {n for (n,) in conn.execute("select name from sqlite_master")}
        last_open = None if "open" not in tables else conn.execute(
            "select o.id, o.uuid from sample_file_dir d join open o"
            " on o.id = d.last_complete_open_id").fetchone()
    return cameras, recordings, last_open


@pytest.mark.parametrize("version", [2, 3], ids=["schema-2", "schema-3"])
def test_a_releases_data_directory_upgrades_to_the_current_schema_keeping_everything(
    tmp_path, capsys, version
):
    data_dir = _fixture_copy(version, tmp_path / "restored")
    pristine = datadir.db_path(_fixture_copy(version, tmp_path / "pristine"))
    db_file = datadir.db_path(data_dir)
    with pytest.raises(DatabaseVersionError, match="open it read-write once"):
        datadir.open_db(data_dir, read_only=True)
    assert _version(db_file) == version
    old_cameras, old_recordings, old_open = _old_rows(pristine)
    assert (old_open is None) == (version == 2)

    with datadir.open_db(data_dir) as db:
        (directory,) = db.list_sample_file_dirs()
        assert (directory.name, directory.path) == (
            DEFAULT_DIR_NAME, os.path.join(os.path.abspath(data_dir), datadir.SAMPLE_DIR_NAME))
        cameras = db.list_cameras()
        # Each camera's main stream has the camera's id (so composite ids don't change) and
        # what the camera's row held: URL, budget, next recording id.
        assert [
            (c.id, c.short_name, c.description, c.username, c.password, c.rotate_interval_sec,
             c.main.url, c.main.retain_bytes, c.main.next_recording_id) for c in cameras
        ] == old_cameras
        for c in cameras:
            assert (c.main.id, c.main.type, c.main.record, c.main.max_age_days,
                    c.main.sample_file_dir_id, c.sub) == (
                c.id, MAIN, True, None, directory.id, None)
        assert {c.short_name: len(db.list_recordings(c.main.id)) for c in cameras} == (
            FIXTURE_RECORDINGS[version])
        rows = {r.composite_id: r for c in cameras for r in db.list_recordings(c.main.id)}
        assert sorted(rows) == [r[0] for r in old_recordings]  # composite ids unchanged
        for cid, camera_id, size, start, duration, samples, uuid, sha1 in old_recordings:
            row = rows[cid]
            assert (row.stream_id, row.sample_file_bytes, row.start_time_90k, row.duration_90k,
                    row.video_samples) == (camera_id, size, start, duration, samples)
            playback = db.get_playback(cid)
            assert (playback.sample_file_uuid, playback.sample_file_sha1) == (uuid, sha1)
            assert os.path.getsize(os.path.join(directory.path, _uuid(uuid))) == size
        assert db.list_all_recording_uuids(directory.id) == {r[6]: r[0] for r in old_recordings}
        assert db.list_reserved_sample_files(directory.id) == []
        last_open = db.last_complete_open(directory.id)
        assert (None if last_open is None else (last_open.id, last_open.uuid)) == old_open
    assert _version(db_file) == schema.SCHEMA_VERSION
    with closing(sqlite3.connect(db_file)) as conn:
        assert [v for (v,) in conn.execute("select id from version order by id")] == list(
            range(version, schema.SCHEMA_VERSION + 1))
    # Copied aside before the upgrade: the original, row for row (one backup, of the
    # version found, even for the two steps from schema 2).
    backup = f"{db_file}.v{version}-backup"
    assert sorted(n for n in os.listdir(data_dir) if "backup" in n) == [os.path.basename(backup)]
    assert _dump(backup) == _dump(pristine)

    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert code == 0, out + err
    # The recorder's open of the directory: the open the release's meta names is accepted.
    db, sample_file_dir = datadir.open_for_recording(data_dir)
    sample_file_dir.close()
    db.close()
    assert violations(data_dir) == []
    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert (code, out.startswith("ok")) == (0, True), out + err
    code, out, _ = moonfire(capsys, "recordings", "back", "--data-dir", data_dir)
    assert code == 0 and out

    # Every camera's recordings still export and decode.
    with datadir.open_db(data_dir, read_only=True) as db:
        for camera in db.list_cameras():
            first = db.list_recordings(camera.main.id)[0]
            (part,) = plan_export(db, camera.short_name, first.start_time_90k,
                                  first.end_time_90k)
            clip = tmp_path / f"{camera.short_name}.mp4"
            with open(clip, "wb") as f:
                part.file.write_to(f)
            with av.open(str(clip)) as container:
                assert sum(1 for _ in container.decode(video=0)) == first.video_samples


def test_a_failed_upgrade_leaves_the_database_at_version_2(tmp_path, monkeypatch):
    data_dir = _fixture_copy(2, tmp_path / "restored")
    db_file = datadir.db_path(data_dir)
    meta_before = (Path(data_dir) / "sample" / "meta").read_bytes()
    monkeypatch.setattr(
        schema, "V2_TO_V3", (*schema.V2_TO_V3, "insert into no_such_table values (1)")
    )
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        Database.open(db_file)
    assert _version(db_file) == 2
    with closing(sqlite3.connect(db_file)) as conn:
        assert conn.execute("select count(*) from recording").fetchone() == (8,)
        tables = {n for (n,) in conn.execute("select name from sqlite_master")}
        assert "open" not in tables and "stream" not in tables
        columns = {c[1] for c in conn.execute("pragma table_info(sample_file_dir)")}
        assert "last_complete_open_id" not in columns
    assert _version(db_file + ".v2-backup") == 2
    assert (Path(data_dir) / "sample" / "meta").read_bytes() == meta_before

    monkeypatch.undo()  # the next attempt succeeds, keeping the first backup
    with datadir.open_db(data_dir) as db:
        assert len(db.list_recordings(db.get_camera("front").main.id)) == 5
    assert _version(db_file) == schema.SCHEMA_VERSION
    assert os.path.exists(db_file + ".v2-backup.2")


class _FailingConnection:
    """Passes statements on to ``conn`` until one starts with ``fail_on``: that one raises."""

    def __init__(self, conn: sqlite3.Connection, fail_on: str) -> None:
        self.conn = conn
        self.fail_on = fail_on
        self.executed: list[str] = []

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.strip().startswith(self.fail_on):
            raise sqlite3.OperationalError(f"simulated failure at {sql!r}")
        self.executed.append(sql.strip())
        return self.conn.execute(sql, *args)


@pytest.mark.parametrize("fail_at", ["mid-step", "after-step"])
def test_a_failed_upgrade_leaves_the_schema_3_database_untouched(tmp_path, monkeypatch, fail_at):
    """A failure after the v3 -> v4 step dropped and renamed tables (partway, or all of them
    but before its version row) rolls all of it back: still version 3, every row as it was."""
    data_dir = _fixture_copy(3, tmp_path / "restored")
    pristine = datadir.db_path(_fixture_copy(3, tmp_path / "pristine"))
    db_file = datadir.db_path(data_dir)
    meta_before = (Path(data_dir) / "sample" / "meta").read_bytes()
    real_step = schema._apply_v3_to_v4
    ran: list[str] = []

    def failing_step(conn: sqlite3.Connection) -> None:
        if fail_at == "after-step":
            real_step(conn)
            ran.append("the whole step")
            raise sqlite3.OperationalError("simulated failure after the step")
        proxy = _FailingConnection(conn, "drop table recording")
        try:
            real_step(proxy)  # type: ignore[arg-type]
        finally:
            ran.extend(proxy.executed)

    monkeypatch.setattr(schema, "_apply_v3_to_v4", failing_step)
    with pytest.raises(sqlite3.OperationalError, match="simulated failure"):
        Database.open(db_file)
    # It got far enough to have changed the schema before failing.
    if fail_at == "after-step":
        assert ran == ["the whole step"]
    else:
        assert "drop table camera" in ran and "alter table camera_v4 rename to camera" in ran
    assert _version(db_file) == 3
    assert _dump(db_file) == _dump(pristine)
    assert _dump(db_file + ".v3-backup") == _dump(pristine)
    assert (Path(data_dir) / "sample" / "meta").read_bytes() == meta_before

    monkeypatch.undo()  # the next attempt succeeds, keeping the first backup
    with datadir.open_db(data_dir) as db:
        assert {c.short_name: len(db.list_recordings(c.main.id)) for c in db.list_cameras()} == (
            FIXTURE_RECORDINGS[3])
    assert _version(db_file) == schema.SCHEMA_VERSION
    assert _dump(db_file + ".v3-backup") == _dump(pristine)
    assert os.path.exists(db_file + ".v3-backup.2")
    assert violations(data_dir) == []


def _uuid(raw: bytes) -> str:
    import uuid as uuidlib

    return str(uuidlib.UUID(bytes=raw))
