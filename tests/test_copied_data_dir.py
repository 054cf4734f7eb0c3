"""A copied, moved or restored data directory works on its own files, never on the original's.

Tried as a user would: ``cp -a`` of a data directory, then lowering a camera's budget on the
copy.  With the sample directory stored by absolute path this deleted the *original's*
recordings.  It is now stored relative to the data directory, and a database written by the
release that stored absolute paths (``tests/data/schema-v2``) adopts the sample directory of
its own data directory when that is the one its ``meta`` names.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import av
import pytest

from moonfire.db.schema import DEFAULT_DIR_NAME
from moonfire.storage import data_dir as datadir
from moonfire.time import Time, format_time
from tests.support.cli import (
    add_camera,
    assert_storage_consistent,
    lower_budget_to_newest,
    moonfire,
    record_synthetic,
    sample_files,
)
from tests.support.implementations import FIXTURE_V2


def stored_path(data_dir: str) -> str:
    """The first sample file directory's path as the database stores it."""
    with closing(sqlite3.connect(os.path.join(data_dir, datadir.DB_NAME))) as conn:
        return conn.execute("select path from sample_file_dir order by id limit 1").fetchone()[0]


def store_absolute_path(data_dir: str) -> None:
    """Make the database look as the schema-2 release wrote it: an absolute path."""
    absolute = os.path.abspath(os.path.join(data_dir, datadir.SAMPLE_DIR_NAME))
    with closing(sqlite3.connect(os.path.join(data_dir, datadir.DB_NAME))) as conn, conn:
        conn.execute("update sample_file_dir set path = ? where name = ?",
                     (absolute, DEFAULT_DIR_NAME))


def recorded(tmp_path: Path, capsys, seconds: int = 9) -> str:
    original = str(tmp_path / "original")
    assert moonfire(capsys, "init", "--data-dir", original)[0] == 0
    add_camera(capsys, original, "front")
    record_synthetic(original, "front", seconds=seconds)
    return original




def test_init_stores_the_sample_dir_relative_to_the_data_dir(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    assert stored_path(data_dir) == datadir.SAMPLE_DIR_NAME
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.sample_file_dir(DEFAULT_DIR_NAME).path == os.path.join(
            os.path.abspath(data_dir), "sample")


def test_a_sample_dir_on_another_disk_stays_absolute(tmp_path, capsys):
    elsewhere = str(tmp_path / "disk2" / "video")
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir, "--sample-dir", elsewhere)[0] == 0
    assert stored_path(data_dir) == elsewhere


@pytest.mark.parametrize(
    "stored_as", ["relative", "absolute"], ids=["this-release", "schema-2-release"]
)
def test_budget_lowered_on_a_copy_deletes_only_the_copys_files(
    tmp_path, capsys, caplog, stored_as
):
    original = recorded(tmp_path, capsys)
    if stored_as == "absolute":
        store_absolute_path(original)  # as the previous release wrote it
    before = sample_files(original)
    assert len(before) > 2
    copy = str(tmp_path / "copy")
    shutil.copytree(original, copy, symlinks=True)

    lower_budget_to_newest(capsys, copy)

    assert sample_files(original) == before
    assert_storage_consistent(original)
    assert len(sample_files(copy)) == 1
    assert_storage_consistent(copy)
    assert stored_path(copy) == datadir.SAMPLE_DIR_NAME  # adopted, and stored relative
    copied = any("was copied or moved" in r.getMessage() for r in caplog.records)
    assert copied == (stored_as == "absolute")


def test_an_absolute_path_inside_the_data_dir_becomes_relative_on_a_read_write_open(
    tmp_path, capsys
):
    data_dir = recorded(tmp_path, capsys, seconds=3)
    store_absolute_path(data_dir)
    with datadir.open_db(data_dir, read_only=True):
        pass
    assert os.path.isabs(stored_path(data_dir))  # a read-only open changes nothing
    datadir.open_db(data_dir).close()
    assert stored_path(data_dir) == datadir.SAMPLE_DIR_NAME


def test_a_foreign_sample_dir_beside_the_database_is_not_adopted(tmp_path, capsys):
    """A stale ``sample`` of another database next to ours: the stored path stays."""
    elsewhere = str(tmp_path / "disk2" / "video")
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir, "--sample-dir", elsewhere)[0] == 0
    other = str(tmp_path / "other")
    assert moonfire(capsys, "init", "--data-dir", other)[0] == 0
    shutil.copytree(os.path.join(other, "sample"), os.path.join(data_dir, "sample"))
    with datadir.open_db(data_dir) as db:
        assert db.sample_file_dir(DEFAULT_DIR_NAME).path == elsewhere
    assert stored_path(data_dir) == elsewhere


def test_the_schema_2_fixture_copied_elsewhere_checks_lists_and_exports(tmp_path, capsys):
    """What the previous release wrote, moved to a new place: every recording still plays."""
    data_dir = str(tmp_path / "restored")
    shutil.copytree(FIXTURE_V2, data_dir)
    assert not os.path.exists(stored_path(data_dir))  # the path the fixture was made at
    code, _, err = moonfire(capsys, "check", "--data-dir", data_dir)
    assert code == 1 and "open it read-write once" in err  # read-only: no upgrade
    datadir.open_db(data_dir).close()  # upgrades to schema 4, stores the path it adopted
    assert stored_path(data_dir) == datadir.SAMPLE_DIR_NAME

    code, out, err = moonfire(capsys, "check", "--hash", "--data-dir", data_dir)
    assert code == 0, err
    assert out.startswith("ok")
    code, out, _ = moonfire(capsys, "recordings", "front", "--json", "--data-dir", data_dir)
    assert code == 0
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.get_camera("front").main.id)
    assert len(rows) == 5

    clip = str(tmp_path / "front.mp4")
    code, _, err = moonfire(
        capsys, "export", "front", "--start", _cli_time(rows[0].start_time_90k),
        "--end", _cli_time(rows[1].start_time_90k + rows[1].duration_90k),
        "-o", clip, "--data-dir", data_dir,
    )
    assert code == 0, err
    with av.open(clip) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == rows[0].video_samples + rows[1].video_samples


def _cli_time(time_90k: int) -> str:
    return format_time(Time(time_90k))


def test_a_copy_into_a_parent_of_the_original_uses_its_own_files(tmp_path, capsys):
    """Original at ``nvr/data``, copied to ``nvr``: the stored ``nvr/data/sample`` lies inside
    the copy's data directory, yet it is the original's."""
    nvr = tmp_path / "nvr"
    nvr.mkdir()
    original = recorded(nvr, capsys)
    store_absolute_path(original)
    before = sample_files(original)
    for name in ("db", "sample"):
        src = os.path.join(original, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, nvr / name)
    copy = str(nvr)

    lower_budget_to_newest(capsys, copy)

    assert sample_files(original) == before
    assert_storage_consistent(original)
    assert len(sample_files(copy)) == 1
    assert stored_path(copy) == datadir.SAMPLE_DIR_NAME


def test_two_live_copies_of_the_sample_dir_are_refused_naming_both(tmp_path, capsys):
    """The sample dir copied to another disk and the path changed, the old copy left behind:
    moonfire can't tell which is stale, so it refuses and deletes nothing."""
    data_dir = recorded(tmp_path, capsys)
    local = os.path.join(data_dir, datadir.SAMPLE_DIR_NAME)
    moved = str(tmp_path / "bigdisk" / "video")
    shutil.copytree(local, moved)
    with closing(sqlite3.connect(os.path.join(data_dir, datadir.DB_NAME))) as conn, conn:
        conn.execute("update sample_file_dir set path = ? where name = ?",
                     (moved, DEFAULT_DIR_NAME))
    before_local, before_moved = set(os.listdir(local)), set(os.listdir(moved))

    code, _out, err = moonfire(capsys, "camera", "edit", "front", "--retain", "1",
                               "--data-dir", data_dir)

    assert code == 1
    assert moved in err and local in err and "refusing to choose" in err
    assert set(os.listdir(local)) == before_local
    assert set(os.listdir(moved)) == before_moved
