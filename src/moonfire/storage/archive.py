"""The archive uploader: copies committed recordings to S3-compatible object storage.

One ``ArchiveUploader`` thread per archive (table ``archive``), started by the recording
daemon next to the syncers and never called by them: the recording path (streamer ->
syncer -> database) does not know it exists, so a store that is down, slow or refusing
credentials cannot stop or slow recording.  The backlog is the database itself: every
recording of a stream whose ``archive_id`` names the archive and that has no
``recording_archive`` row.  The uploader takes it oldest first, and for each recording:

1. reads the local sample file, checking its size and SHA-1 against the row's;
2. stores two write-once objects (``If-None-Match: *``): the sample data, and a small JSON
   manifest (the row, the ``video_index``, the sample entry, the SHA-1) from which a new
   machine could rebuild the catalog.  A file above ``multipart_threshold_bytes`` goes as
   a multipart upload, read and sent a part at a time (memory is bounded by one part) and
   completed write-once only if the SHA-1 of all it read matches the row's;
3. checks both with a ``HEAD`` (size and the SHA-1 kept in the object's metadata);
4. only then inserts the ``recording_archive`` row.

A crash between 2 and 4 redoes the upload; the store then refuses the write-once ``PUT``
(412 Precondition Failed), and an object already there with the same size and SHA-1
counts as done, a different one is an error naming the key.  Failures are retried with
exponential backoff (``INITIAL_BACKOFF_SEC`` to ``MAX_BACKOFF_SEC``) and the latest one
is kept in ``archive.last_error`` for ``moonfire archive status``.  When idle, every
``EXPIRY_INTERVAL_SEC`` it expires recordings archived longer ago than their stream's
``archive_days`` (recordings already older than that are not uploaded): one transaction
claims each (re-checking ``archive_days``; an archived-only one loses its rows, every one its
``recording_archive`` row), then its objects go, so a kill -9 at any step leaves no row
without its file or objects, at worst orphan objects (``crash_points.ARCHIVE_CRASH_POINTS``
are the steps).

Beside the write-once recordings, each camera archived here has one overwritable object,
``PREFIX/CAMERA-UUID/camera.json`` (``camera_object``): what the camera is *now* (short
name, description, rotate interval, the types of its streams archived here), so ``archive
rebuild`` names cameras as their owner knew them.  It is not in the manifests: those are
write-once, and a rename would make a redone upload differ from the stored manifest (read as
another recorder).  It holds no URL and no credentials.  The uploader PUTs it for every such
camera when it starts, before a camera's first upload, and whenever the camera's row
changes (``CAMERA_CHECK_INTERVAL_SEC``: the check reads the database, no request).

The client is boto3 (docs/design.md, "Archive"): it reads credentials from the S3
ecosystem's standard environment variables and credentials file, so moonfire stores
none and logs none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from moonfire.db import ArchiveRow, Camera, Database, Playback, RecordingRow, format_uuid
from moonfire.db.database import BacklogCursor
from moonfire.errors import MoonfireError
from moonfire.sizes import parse_size
from moonfire.storage.crash_points import crash_point

log = logging.getLogger(__name__)

#: Recordings fetched from the backlog per query.
BACKLOG_BATCH = 16
#: How often an idle uploader looks for newly committed recordings.
POLL_INTERVAL_SEC = 1.0
INITIAL_BACKOFF_SEC = 0.5
MAX_BACKOFF_SEC = 30.0
#: Bounds on one request, so a stopped store costs a retry, not a hung thread.
CONNECT_TIMEOUT_SEC = 3.0
READ_TIMEOUT_SEC = 5.0
#: The object metadata key holding the hex SHA-1 of the object's bytes.
SHA1_METADATA = "sha1"
MANIFEST_FORMAT = 1
#: How often an idle uploader deletes objects older than their stream's ``archive_days``.
EXPIRY_INTERVAL_SEC = 600.0
#: Sample files larger than this go as multipart uploads, in parts of ``PART_BYTES``.  8 MiB
#: is boto3's own ``multipart_threshold`` and ``multipart_chunksize``, above S3's 5 MiB
#: minimum part: one uploader holds at most one part in memory, where a whole 5-minute
#: recording (tens of MB) was read before.  ``MOONFIRE_ARCHIVE_PART_SIZE`` (e.g. ``16MiB``)
#: sets both for ``moonfire run``.
PART_BYTES = 8 * 1024 * 1024
MULTIPART_THRESHOLD_BYTES = PART_BYTES
#: S3 refuses smaller parts (but the last); the environment variable may not go below.
MIN_PART_BYTES = 5 * 1024 * 1024
PART_SIZE_ENV_VAR = "MOONFIRE_ARCHIVE_PART_SIZE"
#: ``PREFIX/CAMERA-UUID/camera.json``: the camera's description (``camera_object``).
CAMERA_OBJECT_NAME = "camera.json"
CAMERA_OBJECT_FORMAT = 1
#: How often the uploader compares its cameras' rows with the camera objects it last wrote
#: (a database read; a PUT only for a camera that changed, or failed to be written).
CAMERA_CHECK_INTERVAL_SEC = 60.0


class ArchiveError(MoonfireError):
    """An upload failed for a reason worth telling the person (names the archive)."""


@dataclass
class UploaderStats:
    """This process's counts, for ``/metrics`` and the tests."""

    uploads: int = 0
    uploaded_bytes: int = 0
    #: Recordings found already stored (identical objects), counted as done.
    already_there: int = 0
    errors: int = 0
    #: Recordings whose objects ``archive_days`` deleted.
    expired: int = 0
    #: Data objects sent as multipart uploads, and their parts.
    multipart_uploads: int = 0
    parts: int = 0
    #: ``camera.json`` objects written (PUTs).
    camera_objects: int = 0


def part_bytes_from_environment() -> int:
    """``MOONFIRE_ARCHIVE_PART_SIZE`` (a size such as ``16MiB``), else ``PART_BYTES``."""
    text = os.environ.get(PART_SIZE_ENV_VAR)
    if not text:
        return PART_BYTES
    size = parse_size(text)
    if size < MIN_PART_BYTES:
        raise ArchiveError(f"{PART_SIZE_ENV_VAR}={text!r}: S3 parts are at least 5 MiB")
    return size


def make_client(archive: ArchiveRow) -> Any:
    """A boto3 S3 client for ``archive``: credentials from the environment or the
    credentials file only (boto3's default chain), short timeouts, no retries of its own
    (the uploader retries with backoff)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SEC,
        read_timeout=READ_TIMEOUT_SEC,
        # ``max_attempts`` counts retries (1 = two attempts, ~11 s against a silent store);
        # ``total_max_attempts`` counts every attempt: one, and the uploader backs off.
        retries={"total_max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=archive.endpoint, region_name=archive.region or "us-east-1",
        config=config,
    )


def object_keys(archive: ArchiveRow, camera_uuid: bytes, stream_type: str,
                recording_id: int) -> tuple[str, str]:
    """(data key, manifest key): ``PREFIX/CAMERA-UUID/main/0000000042.sample`` and
    ``.json``.  The camera's uuid (not its name, which may change) keeps several
    recorders' and cameras' objects apart under one prefix."""
    base = f"{format_uuid(camera_uuid)}/{stream_type}/{recording_id:010d}"
    if archive.prefix:
        base = f"{archive.prefix}/{base}"
    return f"{base}.sample", f"{base}.json"


def camera_object_key(archive: ArchiveRow, camera_uuid: bytes) -> str:
    """``PREFIX/CAMERA-UUID/camera.json``: beside the camera's ``main/`` and ``sub/``."""
    key = f"{format_uuid(camera_uuid)}/{CAMERA_OBJECT_NAME}"
    return f"{archive.prefix}/{key}" if archive.prefix else key


def camera_object(camera: Camera, archive_id: int) -> bytes:
    """The JSON of ``camera.json``: the camera's names and rotate interval (one per camera
    in the schema) and the types of its streams archived to ``archive_id``.  Never the
    username, the password nor the URL: credentials also hide in URLs' query strings
    (``?user=admin&password=...``), so no stripping of the userinfo would be safe, and even
    a clean URL maps the site's network for everyone who can read the bucket; a rebuilt
    site records nothing, and to record again its owner gives the URL (`camera edit`)."""
    doc = {
        "format": CAMERA_OBJECT_FORMAT,
        "camera_uuid": format_uuid(camera.uuid),
        "short_name": camera.short_name,
        "description": camera.description,
        "rotate_interval_sec": camera.rotate_interval_sec,
        "streams": [{"type": s.type} for s in camera.streams if s.archive_id == archive_id],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def describe_client_error(archive: ArchiveRow, e: BaseException) -> str:
    """A one-line message naming the archive and what the store said (never credentials:
    boto3's messages name the access key id at most, not the secret)."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        ClientError,
        NoCredentialsError,
    )

    where = f"archive {archive.name!r} ({archive.url})"
    if isinstance(e, NoCredentialsError):
        return (f"{where}: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials")
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        code = error.get("Code", "?")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return (f"{where}: the store refused the credentials ({code}): "
                    f"{error.get('Message', '')}")
        if code in ("NoSuchBucket", "404"):
            return f"{where}: no bucket {archive.bucket!r} ({code})"
        return f"{where}: {code}: {error.get('Message', e)}"
    return f"{where}: {e}"


class ArchiveUploader:
    """The background thread uploading one archive's backlog (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        archive: ArchiveRow,
        *,
        client: Any = None,
        poll_interval_sec: float = POLL_INTERVAL_SEC,
        max_backoff_sec: float = MAX_BACKOFF_SEC,
        part_bytes: int = PART_BYTES,
        multipart_threshold_bytes: int | None = None,
    ) -> None:
        self.db = db
        self.archive = archive
        self.client = client if client is not None else make_client(archive)
        self.poll_interval_sec = poll_interval_sec
        self.max_backoff_sec = max_backoff_sec
        self.part_bytes = part_bytes
        self.multipart_threshold_bytes = (
            part_bytes if multipart_threshold_bytes is None else multipart_threshold_bytes)
        self.stats = UploaderStats()
        #: The latest failure's message, None after a success.
        self.last_error: str | None = archive.last_error
        #: Recordings whose local file doesn't match its row: not uploaded, not retried.
        self._refused: set[int] = set()
        #: Where each stream's backlog scan resumes (``Database.list_archive_backlog``).
        self._backlog = BacklogCursor()
        #: Stream id -> (camera uuid, stream type), for object keys.
        self._stream_names: dict[int, tuple[bytes, str]] = {}
        #: Camera uuid -> the ``camera.json`` this process last stored; None: its PUT failed.
        self._camera_objects: dict[bytes, bytes | None] = {}
        self._next_camera_check = -CAMERA_CHECK_INTERVAL_SEC
        self._last_expiry = -EXPIRY_INTERVAL_SEC
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"archive-{archive.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = CONNECT_TIMEOUT_SEC + READ_TIMEOUT_SEC + 1) -> bool:
        """Ask the thread to stop and wait; False if a request outlived ``timeout``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        initial = backoff = min(INITIAL_BACKOFF_SEC, self.max_backoff_sec)
        while not self._stop.is_set():
            self._describe_cameras_now_and_then()
            try:
                done_any = self.upload_some()
            except Exception as e:  # noqa: BLE001 - every failure is retried, none kills it
                self.stats.errors += 1
                message = self._describe(e)
                if message != self.last_error:
                    log.warning("%s; retrying in %.1f s (and backing off)", message, backoff)
                self._set_error(message)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_sec)
                continue
            backoff = initial
            if not done_any:
                self._expire_now_and_then()
                self._stop.wait(self.poll_interval_sec)

    def _expire_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_expiry < EXPIRY_INTERVAL_SEC:
            return
        self._last_expiry = now
        self._backlog.reset()  # a full rescan too, as rarely (BacklogCursor says why)
        try:
            self.expire_old()
        except Exception as e:  # noqa: BLE001 - retried at the next interval
            self.stats.errors += 1
            self._set_error(self._describe(e))

    def _describe_cameras_now_and_then(self) -> None:
        """``describe_cameras`` every ``CAMERA_CHECK_INTERVAL_SEC`` (the first time at once):
        a failure is logged and recorded, retried at the next check, and never holds up
        the recordings' uploads."""
        now = time.monotonic()
        if now < self._next_camera_check:
            return
        self._next_camera_check = now + CAMERA_CHECK_INTERVAL_SEC
        try:
            self.describe_cameras()
        except Exception as e:  # noqa: BLE001 - retried at the next check
            self.stats.errors += 1
            message = f"{self._describe(e)} (writing camera objects)"
            if message != self.last_error:
                log.warning("%s; retrying in %g s", message, CAMERA_CHECK_INTERVAL_SEC)
            self._set_error(message)

    def describe_cameras(self) -> int:
        """Stores ``camera.json`` for each camera with a stream archived here whose row
        differs from what this process last stored (every one, after a start); returns
        how many it stored.  Raises on the first failure."""
        stored = 0
        for camera in self.db.list_cameras():
            if any(s.archive_id == self.archive.id for s in camera.streams):
                stored += self._store_camera_object(camera)
        return stored

    def _store_camera_object(self, camera: Camera) -> bool:
        """PUTs ``camera``'s object (overwriting: it describes the camera now) unless this
        process already stored the same bytes; True if it did."""
        body = camera_object(camera, self.archive.id)
        if self._camera_objects.get(camera.uuid) == body:
            return False
        self._camera_objects[camera.uuid] = None
        self.client.put_object(
            Bucket=self.archive.bucket, Key=camera_object_key(self.archive, camera.uuid),
            Body=body, ContentType="application/json")
        self._camera_objects[camera.uuid] = body
        self.stats.camera_objects += 1
        return True

    def _describe_before_first_upload(self, stream_id: int, camera_uuid: bytes) -> None:
        """A camera's object goes before its first recording (a camera given this archive
        while running would otherwise wait for the next check), tried once: a failure is
        left to the periodic check rather than failing the recording's upload."""
        if camera_uuid in self._camera_objects:
            return
        camera = self.db.get_camera(self.db.get_stream(stream_id).camera_id)
        try:
            self._store_camera_object(camera)
        except Exception as e:  # noqa: BLE001 - retried by the periodic check
            log.warning("%s (writing camera %r's object; retried within %g s)",
                        self._describe(e), camera.short_name, CAMERA_CHECK_INTERVAL_SEC)

    def expire_old(self) -> int:
        """Expires every recording archived longer ago than its stream's ``archive_days``;
        returns how many.  Each is first claimed in one transaction
        (``Database.claim_expired_archived``: the condition re-checked with the current
        ``archive_days``, an archived-only recording's rows and every expired one's
        ``recording_archive`` row deleted), and only then are its objects deleted (the
        manifest first: a manifest never names a missing data object).  The list is made
        at the start of the pass, and ``camera edit --archive-days`` or a clock step may
        change the answer before a recording's turn: the claim is what decides, and once
        it is committed local retention no longer sees an archive copy, so it can't make
        the recording archived-only while its objects go.  A kill -9 after a claim leaves
        orphan objects (a storage cost), never a row without its file or objects."""
        expired = 0
        for cid, _data_key, _manifest_key in self.db.list_expired_archived(self.archive.id):
            if self._stop.is_set():
                break
            keys = self.db.claim_expired_archived(cid)
            if keys is None:
                continue  # no longer expiring: archive_days changed since the list
            crash_point("archive.after_expire_rows")
            data_key, manifest_key = keys
            self.client.delete_object(Bucket=self.archive.bucket, Key=manifest_key)
            self.client.delete_object(Bucket=self.archive.bucket, Key=data_key)
            crash_point("archive.after_expire_objects")
            self.stats.expired += 1
            expired += 1
        return expired

    def upload_some(self) -> bool:
        """Uploads one batch of the backlog, oldest first; False when it was empty.
        Raises on the first failure (the caller backs off)."""
        batch = self.db.list_archive_backlog(self.archive.id, BACKLOG_BATCH,
                                             exclude=self._refused, cursor=self._backlog)
        for row, playback, dir_id in batch:
            if self._stop.is_set():
                break
            self.upload_one(row, playback, dir_id)
            standing = self._refused_error()
            if self.last_error != standing:
                if standing is None:
                    log.info("archive %r: uploads succeed again", self.archive.name)
                self._set_error(standing)
        return bool(batch)

    def _refused_error(self) -> str | None:
        """What ``archive status`` and ``/metrics`` show while uploads succeed but some
        recordings were refused (else those would wait, unarchived, with no error)."""
        if not self._refused:
            return None
        return (f"archive {self.archive.name!r}: {len(self._refused)} recordings refused: "
                "local file doesn't match its row (`moonfire check --hash`)")

    def upload_one(self, row: RecordingRow, playback: Playback, dir_id: int) -> None:
        """Store, check and mark one recording (see the module docstring)."""
        path = os.path.join(self.db.sample_file_dir(dir_id).path,
                            format_uuid(playback.sample_file_uuid))
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after a possibly long upload
        except FileNotFoundError:
            try:
                self.db.get_recording(row.composite_id)
            except LookupError:  # the free-space floor deleted it since the batch was listed
                log.warning("%s was deleted locally before it could be archived to %r",
                            _recording_label(self.db, row.composite_id), self.archive.name)
                return
            self._refuse(row, path, "is missing")
            return
        with f:
            camera_uuid, stream_type = self._stream_name(row.stream_id)
            self._describe_before_first_upload(row.stream_id, camera_uuid)
            data_key, manifest_key = object_keys(
                self.archive, camera_uuid, stream_type, row.recording_id)
            fresh = self._store_data(f, path, data_key, row, playback)
        if fresh is None:
            return
        crash_point("archive.after_data_put")
        manifest = self._manifest(row, playback, camera_uuid, stream_type, data_key)
        sha1 = playback.sample_file_sha1
        fresh &= self._put_once(manifest_key, manifest, hashlib.sha1(manifest).digest())
        crash_point("archive.after_manifest_put")
        if not self.db.mark_archived(row.composite_id, self.archive.id, data_key,
                                     manifest_key, sha1):
            log.info("%s was deleted locally while being archived to %r; its objects %s stay "
                     "(`moonfire archive rebuild` catalogs them)",
                     _recording_label(self.db, row.composite_id), self.archive.name, data_key)
            return
        crash_point("archive.after_mark")
        if fresh:
            self.stats.uploads += 1
            self.stats.uploaded_bytes += row.sample_file_bytes
        else:
            self.stats.already_there += 1
        log.debug("archived %s as %s", _recording_label(self.db, row.composite_id), data_key)

    # ---- one recording's steps --------------------------------------------------------

    def _store_data(self, f: Any, path: str, key: str, row: RecordingRow,
                    playback: Playback) -> bool | None:
        """Stores the sample file ``f`` at ``key`` write-once and checks it: True if this
        call stored it, False if an identical object was there, None if the file doesn't
        match its row (refused, logged once: nothing is stored)."""
        size = os.fstat(f.fileno()).st_size
        if size != row.sample_file_bytes:
            self._refuse(row, path, f"has {size} bytes")
            return None
        sha1 = playback.sample_file_sha1
        if size > self.multipart_threshold_bytes:
            return self._put_multipart_once(f, path, key, row, sha1)
        data = f.read()
        actual = hashlib.sha1(data).digest()
        if len(data) != size or actual != sha1:
            self._refuse(row, path, f"has {len(data)} bytes with SHA-1 {actual.hex()}")
            return None
        return self._put_once(key, data, sha1)

    def _refuse(self, row: RecordingRow, path: str, what: str) -> None:
        log.error("%s: local file %s %s, its row says %d bytes with SHA-1 %s; not archived "
                  "(`moonfire check --hash`)", _recording_label(self.db, row.composite_id),
                  path, what, row.sample_file_bytes,
                  self.db.get_playback(row.composite_id).sample_file_sha1.hex())
        self._refused.add(row.composite_id)

    def _put_multipart_once(self, f: Any, path: str, key: str, row: RecordingRow,
                            sha1: bytes) -> bool | None:
        """``_store_data`` for a large file: a multipart upload, one part in memory at a
        time, completed with ``If-None-Match: *`` only once every byte read has the row's
        SHA-1 (otherwise aborted, so nothing is stored).  A ``HEAD`` first skips the upload
        when a redo (after a kill -9) finds the object already complete; a kill mid-upload
        leaves an incomplete upload, aborted here at the redo (a bucket lifecycle rule
        ``AbortIncompleteMultipartUpload`` catches those of a recorder that never returns)."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        bucket = self.archive.bucket
        if self._exists(key):
            self._check(key, row.sample_file_bytes, sha1)
            return False
        self._abort_incomplete(key)
        upload_id = self.client.create_multipart_upload(
            Bucket=bucket, Key=key, Metadata={SHA1_METADATA: sha1.hex()})["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            h = hashlib.sha1()
            read = 0
            while True:
                chunk = f.read(self.part_bytes)
                if not chunk:
                    break
                h.update(chunk)
                read += len(chunk)
                number = len(parts) + 1
                etag = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                               PartNumber=number, Body=chunk)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                self.stats.parts += 1
                del chunk  # before the next part is read: one part in memory, not two
                crash_point("archive.after_part")
            actual = h.digest()
            if read != row.sample_file_bytes or actual != sha1:
                self._refuse(row, path, f"has {read} bytes with SHA-1 {actual.hex()}")
                self._abort(key, upload_id)
                return None
            try:
                self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                    MultipartUpload={"Parts": parts})
                fresh = True
            except ClientError as e:
                if not _precondition_failed(e):
                    raise
                self._abort(key, upload_id)
                fresh = False
        except BaseException:
            self._abort(key, upload_id)
            raise
        self.stats.multipart_uploads += 1
        self._check(key, row.sample_file_bytes, sha1)
        return fresh

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            self.client.head_object(Bucket=self.archive.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _abort_incomplete(self, key: str) -> None:
        """Aborts the multipart uploads of ``key`` a killed process left behind."""
        listed = self.client.list_multipart_uploads(Bucket=self.archive.bucket, Prefix=key)
        for upload in listed.get("Uploads", []):
            if upload.get("Key") == key:
                self._abort(key, upload["UploadId"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.archive.bucket, Key=key,
                                               UploadId=upload_id)
        except Exception:  # noqa: BLE001 - an incomplete upload only costs storage
            log.debug("could not abort the multipart upload of %s", key, exc_info=True)

    def _stream_name(self, stream_id: int) -> tuple[bytes, str]:
        if stream_id not in self._stream_names:
            stream = self.db.get_stream(stream_id)
            camera = self.db.get_camera(stream.camera_id)
            self._stream_names[stream_id] = (camera.uuid, stream.type)
        return self._stream_names[stream_id]

    def _manifest(self, row: RecordingRow, playback: Playback, camera_uuid: bytes,
                  stream_type: str, data_key: str) -> bytes:
        """The JSON that makes the data object self-describing: everything the catalog
        holds about the recording (no wall-clock time, so a redone upload is identical)."""
        entry = self.db.get_video_sample_entry(row.video_sample_entry_id) \
            if row.video_sample_entry_id is not None else None
        doc = {
            "format": MANIFEST_FORMAT,
            "camera_uuid": format_uuid(camera_uuid),
            "stream_type": stream_type,
            "data_key": data_key,
            "sample_file_sha1": playback.sample_file_sha1.hex(),
            "row": {name: getattr(row, name) for name in RecordingRow.__slots__},
            "video_index": base64.b64encode(playback.video_index).decode(),
            "video_sample_entry": None if entry is None else {
                "width": entry.width, "height": entry.height,
                "data": base64.b64encode(entry.data).decode(),
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def _put_once(self, key: str, body: bytes, sha1: bytes) -> bool:
        """Stores ``body`` at ``key`` write-once and checks it; True if this call stored it,
        False if an identical object was already there.  Raises ``ArchiveError`` for a
        different object under the key."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            self.client.put_object(
                Bucket=self.archive.bucket, Key=key, Body=body, IfNoneMatch="*",
                Metadata={SHA1_METADATA: sha1.hex()},
            )
            fresh = True
        except ClientError as e:
            if not _precondition_failed(e):
                raise
            fresh = False
        self._check(key, len(body), sha1)
        return fresh

    def _check(self, key: str, size: int, sha1: bytes) -> None:
        head = self.client.head_object(Bucket=self.archive.bucket, Key=key)
        stored_size = head.get("ContentLength")
        stored_sha1 = head.get("Metadata", {}).get(SHA1_METADATA)
        if stored_size != size or stored_sha1 != sha1.hex():
            raise ArchiveError(
                f"archive {self.archive.name!r}: object {key} holds {stored_size} bytes with "
                f"SHA-1 {stored_sha1}, expected {size} bytes with SHA-1 {sha1.hex()}; "
                f"another recorder may be writing under the same prefix"
            )

    # ---- errors -----------------------------------------------------------------------

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, ArchiveError):
            return str(e)
        return describe_client_error(self.archive, e)

    def _set_error(self, message: str | None) -> None:
        self.last_error = message
        try:
            self.db.set_archive_error(self.archive.id, message)
        except Exception:  # noqa: BLE001 - the database is closing; the log has it
            log.debug("could not record archive %r's error", self.archive.name, exc_info=True)


def _precondition_failed(e: Any) -> bool:
    """The store's answer to a write-once request for a key that exists (412)."""
    code = e.response.get("Error", {}).get("Code")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "PreconditionFailed" or status == 412


def check_archive(db: Database, archive: ArchiveRow, hash_contents: bool,
                  client: Any = None) -> list[str]:
    """What is wrong with ``archive``'s objects, one line each (``moonfire check --archive``):
    each archived recording's data object must exist with the recorded size and SHA-1
    (metadata; with ``hash_contents``, its bytes too, read a part at a time) and its
    manifest must exist.  For an archived-only recording these objects are its only copy
    (the invariants' "or its archive objects" clause).  Recordings past their stream's
    ``archive_days`` are being expired (objects first), so not checked.  Raises (botocore)
    if the store can't be reached at all."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    client = client if client is not None else make_client(archive)
    try:
        client.head_bucket(Bucket=archive.bucket)  # else every object would read as missing
    except ClientError as e:
        return [describe_client_error(archive, e)]
    problems: list[str] = []
    expiring = {cid for cid, _data, _manifest in db.list_expired_archived(archive.id)}
    for cid, data_key, manifest_key, sha1 in db.list_archived(archive.id):
        if cid in expiring:
            continue
        name = _recording_label(db, cid)
        try:
            expected_size: int | None = db.get_recording(cid).sample_file_bytes
        except LookupError:
            expected_size = None  # deleted locally: only the object's own record remains
        heads: dict[str, Any] = {}
        for key in (data_key, manifest_key):
            try:
                heads[key] = client.head_object(Bucket=archive.bucket, Key=key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    problems.append(f"archive {archive.name!r}: {name}: "
                                    f"{describe_client_error(archive, e)} (object {key})")
                else:
                    problems.append(f"archive {archive.name!r}: {name}: object {key} is "
                                    f"missing from the store")
        if len(heads) < 2:
            continue
        head = heads[data_key]
        size, stored_sha1 = head.get("ContentLength"), head.get("Metadata", {}).get(SHA1_METADATA)
        if (expected_size is not None and size != expected_size) or stored_sha1 != sha1.hex():
            problems.append(f"archive {archive.name!r}: {name}: object {data_key} has {size} "
                            f"bytes with SHA-1 {stored_sha1}, the database says "
                            f"{expected_size} bytes with SHA-1 {sha1.hex()}")
            continue
        if hash_contents:
            body = client.get_object(Bucket=archive.bucket, Key=data_key)["Body"]
            h = hashlib.sha1()
            while chunk := body.read(PART_BYTES):
                h.update(chunk)
            actual = h.digest()
            if actual != sha1:
                problems.append(f"archive {archive.name!r}: {name}: object {data_key}'s bytes "
                                f"have SHA-1 {actual.hex()}, expected {sha1.hex()} (corrupted "
                                f"in the store)")
    return problems


def _recording_label(db: Database, cid: int) -> str:
    """``recording front/main/42``, as ``moonfire check`` names recordings."""
    return f"recording {db.stream_name(cid >> 32)}/{cid & 0xFFFF_FFFF}"


def start_uploaders(db: Database, stream_archive_ids: set[int]) -> list[ArchiveUploader]:
    """One started uploader per archive some recorded stream uses."""
    uploaders = []
    part_bytes = part_bytes_from_environment()
    for archive_id in sorted(stream_archive_ids):
        uploader = ArchiveUploader(db, db.get_archive(archive_id), part_bytes=part_bytes)
        uploader.start()
        uploaders.append(uploader)
    return uploaders
