"""kill -9 of ``moonfire run`` during uploads, ten times (issue 14): no recording lost, none
archived twice, the invariants hold after each kill.

The data directory starts with a backlog (a dozen short recordings the archive doesn't
have), so each run's uploader is busy from its start; the recorder adds the synthetic
camera's 1 s recordings, with a budget of about two of them, so the budget keeps making
archived recordings archived-only meanwhile.  Each run is killed by ``MOONFIRE_CRASH_AT``
at a random step of an upload (``ARCHIVE_CRASH_POINTS``: after the data object, after the
manifest, after the database row), its first to third time there; one of the ten is at
the budget's commit instead (``save.after_commit``: rows just made archived-only, their
files still there, reserved for deletion), which recovery must finish.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from moonfire.db import Database
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import (
    ArchiveUploader,
    camera_object_key,
    check_archive,
    make_client,
)
from moonfire.storage.crash_points import ARCHIVE_CRASH_POINTS, ENV_VAR
from moonfire.storage.invariants import check
from tests.support import s3
from tests.support.cli import add_camera, moonfire, record_synthetic
from tests.support.net import stop_process
from tests.support.s3 import BUCKET, CREDENTIALS

s3_endpoint = s3.s3_endpoint
credentials = s3.credentials
bucket = s3.bucket

KILLS = 10
BUDGET = 50_000  # the synthetic camera's 1 s recordings are ~25 kB
#: Where the runs are killed: every step of a single-PUT upload...
UPLOAD_POINTS = [p for p in ARCHIVE_CRASH_POINTS if p in (
    "archive.after_data_put", "archive.after_manifest_put", "archive.after_mark")]
#: ...and, for the kill numbered here, the budget's commit (reached at the first save, ~3 s
#: after the start: slower than an upload of the backlog).
SAVE_POINTS = {4: "save.after_commit:1"}


def _start_run(data_dir: str, crash_at: str | None) -> subprocess.Popen:
    env = dict(os.environ, **CREDENTIALS)
    env.pop(ENV_VAR, None)
    if crash_at is not None:
        env[ENV_VAR] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--no-listen", "--data-dir", data_dir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _verify(db: Database, archive_name: str, seen: list[int], hash_objects: bool,
            client) -> list[int]:
    """The invariants a kill must leave (reservations aside: only an orderly shutdown drops
    them all), every recording ever seen still there, each archived once with objects that
    match its row (their size and SHA-1 metadata; with ``hash_objects``, their bytes);
    returns the recording ids now."""
    stream = db.get_camera("front").main
    ids = [r.recording_id for r in db.list_recordings(stream.id)]
    assert ids == list(range(1, len(ids) + 1)), ids  # ids come at commit: none lost
    assert ids[:len(seen)] == seen
    violations = [str(v) for v in check(db, db.sample_file_dir(stream.sample_file_dir_id), True)
                  if v.invariant != 3]
    assert violations == []
    archive = db.get_archive(archive_name)
    archived = db.list_archived(archive.id)
    assert len({key for _cid, key, _m, _sha1 in archived}) == len(archived)
    assert check_archive(db, archive, hash_contents=hash_objects, client=client) == []
    return ids


@pytest.mark.slow
def test_kill_9_during_uploads_loses_nothing_and_archives_nothing_twice(
    capsys, tmp_path, bucket, s3_endpoint
) -> None:
    endpoint, _proc = s3_endpoint
    rng = random.Random(20261202)
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    add_camera(capsys, data_dir, "front", "--rotate-seconds", "1", "--retain", str(BUDGET))
    for argv in (("archive", "add", "offsite", "--url", bucket, "--endpoint", endpoint),
                 ("camera", "edit", "front", "--archive", "offsite")):
        code, _out, err = moonfire(capsys, *argv, "--data-dir", data_dir)
        assert (code, err) == (0, ""), err
    record_synthetic(data_dir, "front", 24)  # the backlog: 12 recordings of 2 s
    db_path = datadir.db_path(data_dir)
    with Database.open(db_path, read_only=True) as db:
        client = make_client(db.get_archive("offsite"))
    seen: list[int] = []
    kills: list[str] = []
    started = time.monotonic()
    verify_sec = 0.0
    while len(kills) < KILLS:
        crash_at = SAVE_POINTS.get(len(kills), f"{rng.choice(UPLOAD_POINTS)}:{rng.randint(1, 3)}")
        run = _start_run(data_dir, crash_at)
        try:
            out, _ = run.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            out = stop_process(run, timeout=30)
            raise AssertionError(f"{crash_at} was not reached in 20 s: {out[-3000:]}") from None
        assert run.returncode == -signal.SIGKILL, f"{crash_at}: {out[-3000:]}"
        kills.append(crash_at)
        t_verify = time.monotonic()
        with Database.open(db_path) as db:
            seen = _verify(db, "offsite", seen, hash_objects=False, client=client)
        verify_sec += time.monotonic() - t_verify
    killing_sec = time.monotonic() - started
    # A last orderly run catches up; then every recording is archived once, the bucket holds
    # exactly the rows' objects (a redone upload found its own, stored before a kill), and
    # the budget made the older ones archived-only.
    run = _start_run(data_dir, None)
    try:
        deadline = time.monotonic() + 20
        while True:
            with Database.open(db_path, read_only=True) as db:
                if db.archive_backlog(db.get_archive("offsite").id)[0] == 0:
                    break
            assert time.monotonic() < deadline, "the backlog never drained"
            time.sleep(0.2)
    finally:
        out = stop_process(run, timeout=30)
    assert run.returncode == 0, out
    with Database.open(db_path) as db:
        archive = db.get_archive("offsite")
        _drain = ArchiveUploader(db, archive)
        while _drain.upload_some():
            pass
        ids = _verify(db, "offsite", seen, hash_objects=True, client=client)
        stream = db.get_camera("front").main
        archived = db.list_archived(archive.id)
        assert [cid & 0xFFFF_FFFF for cid, *_ in archived] == ids
        only = db.list_archived_only(stream.id, 0, 0xFFFF_FFFF)
        assert len(only) >= len(ids) - 4, (len(only), len(ids))
        assert db.list_reserved_sample_files(stream.sample_file_dir_id) == []
        prefix = bucket[len(f"s3://{BUCKET}/"):]
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        stored = sorted(o["Key"] for o in listed.get("Contents", []))
        assert stored == sorted([camera_object_key(archive, db.get_camera("front").uuid)] + [
            k for _cid, data, manifest, _sha1 in archived for k in (data, manifest)])
    code, out, _err = moonfire(capsys, "check", "--hash", "--archive", "--data-dir", data_dir)
    assert code == 0, out
    print(f"{KILLS} kills in {killing_sec:.1f} s ({verify_sec:.1f} s of it checking) at "
          f"{kills}; {len(ids)} recordings, {len(only)} archived-only")
