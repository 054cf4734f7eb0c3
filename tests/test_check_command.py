"""``moonfire check``: what it reports, and that it won't run under a live recorder."""

from __future__ import annotations

import os

from moonfire.cli import main as cli
from moonfire.storage import data_dir as datadir
from moonfire.storage.sample_file_dir import uuid_name


def test_check_refuses_while_a_recorder_holds_the_directory(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)  # holds the exclusive lock, like `moonfire run`
    try:
        assert cli.main(["check", "--data-dir", data_dir]) == 1
        assert "in use by a running moonfire; stop it before checking" in capsys.readouterr().err
    finally:
        sample_file_dir.close()
        db.close()
    assert cli.main(["check", "--data-dir", data_dir]) == 0


def test_check_reports_each_broken_invariant_and_deletes_nothing(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)
    with db.transaction() as tx:
        reserved = tx.reserve_sample_file(sample_file_dir.id)
    stray = os.path.join(sample_file_dir.path, "00000000-0000-4000-8000-000000000000")
    open(stray, "wb").write(b"not ours")
    sample_file_dir.close()
    db.close()
    assert cli.main(["check", "--data-dir", data_dir]) == 1
    out = capsys.readouterr().out
    assert "[invariant 2] sample file 00000000-0000-4000-8000-000000000000 is not used" in out
    assert f"[invariant 3] reservation for {uuid_name(reserved)} (state writing)" in out
    assert os.path.exists(stray)


def test_check_covers_every_sample_file_dir(tmp_path, capsys):
    """A recorder holding the second directory is refused like one holding the first, and a
    stray or reservation there is reported."""
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    db.close()
    disk2 = datadir.add_dir(data_dir, "disk2", str(tmp_path / "disk2"))
    db, sample_file_dir = datadir.open_for_recording(data_dir, "disk2")
    try:
        assert cli.main(["check", "--data-dir", data_dir]) == 1
        err = capsys.readouterr().err
        assert f"sample file directory {disk2.path} is in use by a running moonfire" in err
        with db.transaction() as tx:
            reserved = tx.reserve_sample_file(sample_file_dir.id)
    finally:
        sample_file_dir.close()
        db.close()
    stray = os.path.join(disk2.path, "00000000-0000-4000-8000-000000000000")
    with open(stray, "wb") as f:
        f.write(b"not ours")
    assert cli.main(["check", "--data-dir", data_dir]) == 1
    out = capsys.readouterr().out
    assert "[invariant 2] sample file 00000000-0000-4000-8000-000000000000 is not used" in out
    assert f"[invariant 3] reservation for {uuid_name(reserved)} (state writing)" in out
    assert "2 problem(s) found" in out  # nothing in the first directory
    assert os.path.exists(stray)
