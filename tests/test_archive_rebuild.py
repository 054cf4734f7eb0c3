"""``moonfire archive rebuild`` and ``moonfire archive follow`` (issue 14): the catalog
recreated from an archive's manifests on a fresh data directory, against a real S3
endpoint (``moto_server``).

The module's "site" is a data directory that recorded one 8 s run of real H.264 (3
recordings) and uploaded it with the real uploader; each test copies the site's objects
to a prefix of its own (the stolen NVR's bucket, as it was), so what one test adds there
(bad manifests, new recordings) no other sees.  The site's camera has a URL and credentials
that must never reach the bucket; its ``camera.json`` names it on the new machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import pytest

from moonfire.db import ArchiveRow
from moonfire.storage import archive as archive_module
from moonfire.storage import data_dir as datadir
from moonfire.storage.archive import ArchiveUploader, camera_object_key, make_client
from tests.support.archived import decoded_frames, record_pattern, serve, upload_all
from tests.support.cli import moonfire
from tests.support.net import free_port, stop_process
from tests.support.s3 import (  # noqa: F401 - fixtures
    BUCKET,
    CREDENTIALS,
    create_bucket,
    module_credentials,
    s3_endpoint,
)
from tests.test_export import pattern  # noqa: F401 - fixture

SITE_PREFIX = "site"
#: The site's camera: its description, and secrets that must stay out of the bucket (the
#: password is in the URL's query string too, as some cameras want it).
SITE_DESCRIPTION = "over the porch"
SITE_SECRETS = ("hunter2", "10.0.0.5", "admin")
SITE_URL = "rtsp://admin:hunter2@10.0.0.5:554/cam/realmonitor?channel=1&user=admin&password=hunter2"


@dataclass
class Site:
    endpoint: str
    client: Any
    camera_uuid: str
    #: The site's rows (as tuples without ids of this database) and its view.mp4 of them.
    rows: list[tuple]
    whole_mp4: bytes
    #: Keys under SITE_PREFIX, sorted.
    keys: list[str]


def _comparable(row) -> tuple:
    """A row's fields that a rebuild must reproduce (not the database's own ids)."""
    return (row.recording_id, row.run_offset, row.flags, row.sample_file_bytes,
            row.start_time_90k, row.duration_90k, row.local_time_delta_90k,
            row.video_samples, row.video_sync_samples)


@pytest.fixture(scope="module")
def site(tmp_path_factory, pattern, s3_endpoint, module_credentials) -> Site:  # noqa: F811
    endpoint, _proc = s3_endpoint
    create_bucket(endpoint)
    data_dir = str(tmp_path_factory.mktemp("site") / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    db.close()
    record_pattern(data_dir, "front", pattern, 8)
    with datadir.open_db(data_dir) as db:
        db.add_archive("offsite", f"s3://{BUCKET}/{SITE_PREFIX}", endpoint)
        db.update_camera("front", archive="offsite", description=SITE_DESCRIPTION,
                         url=SITE_URL, username="admin", password="hunter2")
        upload_all(db, "offsite")
        camera = db.get_camera("front")
        rows = db.list_recordings(camera.main.id)
    camera_uuid = str(uuidlib.UUID(bytes=camera.uuid))
    with serve(data_dir) as served:
        status, _h, whole = served.get(
            f"/api/cameras/{camera_uuid}/main/view.mp4?s=1-{len(rows)}")
        assert status == 200
    client = make_client(ArchiveRow(0, "x", f"s3://{BUCKET}", endpoint, None, None, None))
    keys = sorted(o["Key"] for o in client.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{SITE_PREFIX}/")["Contents"])
    assert len(keys) == 2 * len(rows) + 1  # and camera.json
    return Site(endpoint, client, camera_uuid, [_comparable(r) for r in rows], whole, keys)


def _copy(site: Site, prefix: str, keys: list[str], camera_uuid: str | None = None) -> None:
    """The site's objects ``keys`` under ``prefix`` (another site's, with ``camera_uuid``:
    its keys and manifests name that camera instead)."""
    for key in keys:
        got = site.client.get_object(Bucket=BUCKET, Key=key)
        body = got["Body"].read()
        new_key = prefix + key[len(SITE_PREFIX):]
        if camera_uuid is not None:
            new_key = new_key.replace(site.camera_uuid, camera_uuid)
            if key.endswith(".json"):
                doc = json.loads(body)
                doc["camera_uuid"] = camera_uuid
                if not key.endswith("/camera.json"):
                    doc["data_key"] = new_key[: -len(".json")] + ".sample"
                body = json.dumps(doc).encode()
        site.client.put_object(Bucket=BUCKET, Key=new_key, Body=body, Metadata=got["Metadata"])


def _fresh(capsys, tmp_path, site: Site, name: str, prefix: str) -> str:
    """``moonfire init`` + ``moonfire archive add NAME``: the new machine."""
    data_dir = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", data_dir)[0] == 0
    code, _out, err = moonfire(capsys, "archive", "add", name, "--url",
                               f"s3://{BUCKET}/{prefix}", "--endpoint", site.endpoint,
                               "--data-dir", data_dir)
    assert (code, err) == (0, ""), err
    return data_dir


def test_rebuild_on_a_fresh_data_dir_recreates_the_catalog_and_everything_plays(
    capsys, tmp_path, site, request
) -> None:
    prefix = request.node.name
    _copy(site, prefix, site.keys)
    data_dir = _fresh(capsys, tmp_path, site, "offsite", prefix)
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert (code, err) == (0, ""), err
    assert out == (f"archive 'offsite': {len(site.rows)} recordings added, 0 already "
                   f"cataloged; cameras added: front ({site.camera_uuid})\n")
    with datadir.open_db(data_dir, read_only=True) as db:
        (camera,) = db.list_cameras()
        assert str(uuidlib.UUID(bytes=camera.uuid)) == site.camera_uuid
        # Named and described as at the site (its camera.json), recording nothing.
        assert (camera.short_name, camera.description, camera.rotate_interval_sec) == (
            "front", SITE_DESCRIPTION, 2)
        assert (camera.username, camera.password, camera.main.url) == (None, None, "")
        assert not camera.main.record and camera.sub is None
        rows = db.list_recordings(camera.main.id)
        assert [_comparable(r) for r in rows] == site.rows
        assert db.get_stream(camera.main.id).next_recording_id == len(rows) + 1
        only = db.list_archived_only(camera.main.id, 1, len(rows))
        assert sorted(only) == [r.composite_id for r in rows]
    with serve(data_dir) as served:
        # As the UI asks for them: "@openId", 0 for recordings no open here committed.
        (listed,) = json.loads(served.get(
            f"/api/cameras/{site.camera_uuid}/main/recordings")[2])["recordings"]
        assert (listed["startId"], listed["endId"], listed["openId"]) == (1, len(rows), 0)
        status, _h, body = served.get(
            f"/api/cameras/{site.camera_uuid}/main/view.mp4?s=1-{len(rows)}@0")
    assert status == 200, body
    assert body == site.whole_mp4
    assert decoded_frames(body) == sum(r[7] for r in site.rows)
    # Rerun: nothing new.
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert (code, out, err) == (
        0, f"archive 'offsite': 0 recordings added, {len(rows)} already cataloged\n", "")
    # The site's --archive-days deleted its oldest recording (manifest first): the next
    # full listing forgets it.
    oldest = f"{prefix}/{site.camera_uuid}/main/{1:010d}"
    for suffix in (".json", ".sample"):
        site.client.delete_object(Bucket=BUCKET, Key=oldest + suffix)
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert (code, out, err) == (
        0, f"archive 'offsite': 0 recordings added, {len(rows) - 1} already cataloged, "
        f"1 forgotten (their manifests are gone)\n", "")
    with datadir.open_db(data_dir, read_only=True) as db:
        assert [r.recording_id for r in db.list_recordings(camera.main.id)] == list(
            range(2, len(rows) + 1))
        assert len(db.list_archived(db.get_archive("offsite").id)) == len(rows) - 1


def test_rebuild_names_each_bad_manifest_and_imports_the_rest(
    capsys, tmp_path, site, request
) -> None:
    prefix = request.node.name
    manifests = [k for k in site.keys if k.endswith(".json") and "/main/" in k]
    _copy(site, prefix, site.keys)
    camera_dir = f"{prefix}/{site.camera_uuid}/main"
    good = json.loads(site.client.get_object(Bucket=BUCKET, Key=manifests[0])["Body"].read())
    frames_wrong = json.loads(json.dumps(good))
    frames_wrong["row"]["composite_id"] = (1 << 32) | 101
    frames_wrong["row"]["video_samples"] += 1
    frames_wrong["data_key"] = f"{camera_dir}/0000000101.sample"
    old_format = dict(good, format=99)
    bad = {
        f"{camera_dir}/0000000100.json": (b"{not json", "not JSON ("),
        f"{camera_dir}/0000000101.json": (
            json.dumps(frames_wrong).encode(),
            f"its video_index disagrees with its row: expected "
            f"{good['row']['video_samples'] + 1} frames, found only "
            f"{good['row']['video_samples']}"),
        f"{camera_dir}/0000000102.json": (
            json.dumps(old_format).encode(), "format 99, this moonfire reads format 1"),
    }
    for key, (body, _why) in bad.items():
        site.client.put_object(Bucket=BUCKET, Key=key, Body=body)
    data_dir = _fresh(capsys, tmp_path, site, "offsite", prefix)
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert code == 1
    assert out.startswith(f"archive 'offsite': {len(site.rows)} recordings added, 0 already")
    lines = err.splitlines()
    assert len(lines) == len(bad), err
    for line, (key, (_body, why)) in zip(lines, bad.items(), strict=True):
        assert line.startswith(f"moonfire: archive 'offsite': manifest {key}: {why}"), line
    with datadir.open_db(data_dir, read_only=True) as db:
        rows = db.list_recordings(db.list_cameras()[0].main.id)
        assert [_comparable(r) for r in rows] == site.rows


def test_a_camera_object_that_is_bad_or_missing_leaves_the_fallback_name(
    capsys, tmp_path, site, request
) -> None:
    """Three cameras: one whose camera.json is not JSON, one whose short name is a number,
    one (an older recorder's) without any: each named ``camera-<uuid8>``, every recording
    imported, each bad object named by key and field."""
    prefix = request.node.name
    not_json, wrong_field, missing = site.camera_uuid, str(uuidlib.uuid4()), str(uuidlib.uuid4())
    _copy(site, prefix, site.keys)
    _copy(site, prefix, site.keys, camera_uuid=wrong_field)
    _copy(site, prefix, [k for k in site.keys if not k.endswith("/camera.json")],
          camera_uuid=missing)
    doc = json.loads(site.client.get_object(
        Bucket=BUCKET, Key=f"{SITE_PREFIX}/{site.camera_uuid}/camera.json")["Body"].read())
    bodies = {not_json: b'{"format": 1, "short_name": "fr', wrong_field: json.dumps(
        dict(doc, camera_uuid=wrong_field, short_name=5)).encode()}
    for camera_uuid, body in bodies.items():
        site.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{camera_uuid}/camera.json",
                               Body=body)
    with pytest.raises(json.JSONDecodeError) as parsing:
        json.loads(bodies[not_json])
    data_dir = _fresh(capsys, tmp_path, site, "offsite", prefix)
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert code == 1
    assert out.startswith(f"archive 'offsite': {3 * len(site.rows)} recordings added"), out
    assert sorted(err.splitlines()) == sorted([
        f"moonfire: archive 'offsite': camera object {prefix}/{not_json}/camera.json: not "
        f"JSON ({parsing.value}); camera imported as 'camera-{not_json[:8]}'",
        f"moonfire: archive 'offsite': camera object {prefix}/{wrong_field}/camera.json: "
        f"field 'short_name': camera short name must be a non-empty string, got 5; camera "
        f"imported as 'camera-{wrong_field[:8]}'",
    ]), err
    with datadir.open_db(data_dir, read_only=True) as db:
        cameras = {str(uuidlib.UUID(bytes=c.uuid)): c for c in db.list_cameras()}
        assert {u: c.short_name for u, c in cameras.items()} == {
            u: f"camera-{u[:8]}" for u in (not_json, wrong_field, missing)}
        for camera in cameras.values():
            assert len(db.list_recordings(camera.main.id)) == len(site.rows)


def test_a_name_taken_here_gets_the_archives_name_and_is_reported(
    capsys, tmp_path, site, request
) -> None:
    prefix = request.node.name
    _copy(site, prefix, site.keys)
    data_dir = _fresh(capsys, tmp_path, site, "offsite", prefix)
    with datadir.open_db(data_dir) as db:
        db.add_camera("front")  # the new machine's own camera
    code, out, err = moonfire(capsys, "archive", "rebuild", "offsite", "--data-dir", data_dir)
    assert (code, err) == (0, ""), err
    assert out.endswith(f"; cameras added: front-offsite ({site.camera_uuid}; 'front' is "
                        f"taken here)\n"), out
    with datadir.open_db(data_dir, read_only=True) as db:
        assert db.find_camera_by_uuid(uuidlib.UUID(site.camera_uuid).bytes).description \
            == SITE_DESCRIPTION


def test_the_uploader_keeps_camera_objects_current_without_urls_or_credentials(
    tmp_path, site, monkeypatch, request
) -> None:
    """Written at the start, rewritten within a check interval of a rename (0.1 s here,
    60 s in production), not rewritten while nothing changes; only cameras archived here
    have one, and it holds none of the camera's URL or credentials."""
    monkeypatch.setattr(archive_module, "CAMERA_CHECK_INTERVAL_SEC", 0.1)
    data_dir = str(tmp_path / "data")
    db, sample_file_dir = datadir.init(data_dir)
    sample_file_dir.close()
    with db:
        archive = db.add_archive("offsite", f"s3://{BUCKET}/{request.node.name}", site.endpoint)
        camera = db.add_camera("porch", url=SITE_URL, username="admin", password="hunter2",
                               description="by the door", rotate_interval_sec=60,
                               sub_url=SITE_URL + "&subtype=1", sub_retain_bytes=1 << 30,
                               sub_archive="offsite")
        db.add_camera("garage", url=SITE_URL, retain_bytes=1 << 30)  # not archived
        key = camera_object_key(archive, camera.uuid)

        def stored() -> dict:
            got = site.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            for secret in SITE_SECRETS:
                assert secret.encode() not in got
            return json.loads(got)

        def wait_for(condition) -> None:
            deadline = time.monotonic() + 5
            while not condition():
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.02)

        uploader = ArchiveUploader(db, archive, poll_interval_sec=0.02)
        uploader.start()
        try:
            wait_for(lambda: uploader.stats.camera_objects == 1)
            assert stored() == {
                "format": 1, "camera_uuid": str(uuidlib.UUID(bytes=camera.uuid)),
                "short_name": "porch", "description": "by the door",
                "rotate_interval_sec": 60, "streams": [{"type": "sub"}]}
            time.sleep(0.5)  # five checks
            assert uploader.stats.camera_objects == 1
            db.update_camera("porch", short_name="back porch")
            wait_for(lambda: uploader.stats.camera_objects == 2)
            assert stored()["short_name"] == "back porch"
        finally:
            assert uploader.stop()
        assert uploader.last_error is None
        listed = site.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{request.node.name}/")
        assert [o["Key"] for o in listed["Contents"]] == [key]  # none for the garage
        # A restart writes it again (one PUT per camera), then only on changes.
        restarted = ArchiveUploader(db, archive)
        assert (restarted.describe_cameras(), restarted.describe_cameras()) == (1, 0)


def _api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if condition():
                return
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_follow_serves_every_named_archive_and_picks_up_new_manifests(
    capsys, tmp_path, site, request
) -> None:
    """Two sites under two prefixes of the bucket; ``follow`` polls every 0.3 s: a
    recording the first site uploads afterwards shows in the API and plays."""
    first, second = f"{request.node.name}-1", f"{request.node.name}-2"
    other_uuid = str(uuidlib.uuid4())
    held_back = site.keys[-2:]  # the last recording's manifest and data
    _copy(site, first, site.keys[:-2])
    _copy(site, second, site.keys, camera_uuid=other_uuid)
    data_dir = _fresh(capsys, tmp_path, site, "site1", first)
    code, _out, err = moonfire(capsys, "archive", "add", "site2", "--url",
                               f"s3://{BUCKET}/{second}", "--endpoint", site.endpoint,
                               "--data-dir", data_dir)
    assert code == 0, err
    port = free_port()
    follow = subprocess.Popen(
        [sys.executable, "-m", "moonfire", "archive", "follow", "site1", "site2",
         "--listen", f"127.0.0.1:{port}", "--poll-seconds", "0.3", "--data-dir", data_dir],
        env=dict(os.environ, **CREDENTIALS), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    recorded = len(site.rows)

    def recording_ids(camera_uuid: str) -> list[int]:
        listed = _api(port, f"/api/cameras/{camera_uuid}/main/recordings")["recordings"]
        return sorted(i for r in listed for i in range(r["startId"],
                                                        r.get("endId", r["startId"]) + 1))

    try:
        _wait_for(lambda: _api(port, "/api/")["cameras"], follow)
        cameras = {c["uuid"]: c for c in _api(port, "/api/")["cameras"]}
        assert set(cameras) == {site.camera_uuid, other_uuid}
        # Both sites call their camera "front": the second one's gets its archive's name.
        assert (cameras[site.camera_uuid]["shortName"],
                cameras[other_uuid]["shortName"]) == ("front", "front-site2")
        assert recording_ids(other_uuid) == list(range(1, recorded + 1))
        assert recording_ids(site.camera_uuid) == list(range(1, recorded))
        _copy(site, first, held_back)  # the first site uploads its newest recording
        started = time.monotonic()
        _wait_for(lambda: recording_ids(site.camera_uuid) == list(range(1, recorded + 1)),
                  follow, timeout=10)
        picked_up_sec = time.monotonic() - started
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/cameras/{site.camera_uuid}/main/view.mp4"
                f"?s={recorded}", timeout=10) as r:
            assert decoded_frames(r.read()) == site.rows[-1][7]
    finally:
        out = stop_process(follow, timeout=20)
    assert follow.returncode == 0, out
    assert "following 'site1', 'site2' (new manifests every 0.3 s)" in out, out
    assert f"cameras added: front-site2 ({other_uuid}; 'front' is taken here)" in out, out
    assert picked_up_sec < 5, picked_up_sec
