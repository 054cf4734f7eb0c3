"""The archive uploader: copies committed recordings to S3-compatible object storage.

One ``ArchiveUploader`` thread per archive (table ``archive``), started by the recording
daemon next to the syncers and never called by them: the recording path (streamer ->
syncer -> database) does not know it exists, so a store that is down, slow or refusing
credentials cannot stop or slow recording.  The backlog is the database itself: every
recording of a stream whose ``archive_id`` names the archive and that has no
``recording_archive`` row.  The uploader takes it oldest first, and for each recording:

1. reads the local sample file and checks its SHA-1 against the row's;
2. stores two write-once objects (``If-None-Match: *``): the sample data, and a small JSON
   manifest (the row, the ``video_index``, the sample entry, the SHA-1) from which a new
   machine could rebuild the catalog;
3. checks both with a ``HEAD`` (size and the SHA-1 kept in the object's metadata);
4. only then inserts the ``recording_archive`` row.

A crash between 2 and 4 redoes the upload; the store then refuses the write-once ``PUT``
(412 Precondition Failed), and an object already there with the same size and SHA-1
counts as done, a different one is an error naming the key.  Failures are retried with
exponential backoff (``INITIAL_BACKOFF_SEC`` to ``MAX_BACKOFF_SEC``) and the latest one
is kept in ``archive.last_error`` for ``moonfire archive status``.  When idle, every
``EXPIRY_INTERVAL_SEC`` it deletes the objects of recordings archived longer ago than
their stream's ``archive_days`` (recordings already older than that are not uploaded).

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

from moonfire.db import ArchiveRow, Database, Playback, RecordingRow, format_uuid
from moonfire.errors import MoonfireError

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


def make_client(archive: ArchiveRow) -> Any:
    """A boto3 S3 client for ``archive``: credentials from the environment or the
    credentials file only (boto3's default chain), short timeouts, no retries of its own
    (the uploader retries with backoff)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SEC,
        read_timeout=READ_TIMEOUT_SEC,
        retries={"max_attempts": 1, "mode": "standard"},
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
    ) -> None:
        self.db = db
        self.archive = archive
        self.client = client if client is not None else make_client(archive)
        self.poll_interval_sec = poll_interval_sec
        self.max_backoff_sec = max_backoff_sec
        self.stats = UploaderStats()
        #: The latest failure's message, None after a success.
        self.last_error: str | None = archive.last_error
        #: Recordings whose local file doesn't match its row: not uploaded, not retried.
        self._refused: set[int] = set()
        #: Stream id -> (camera uuid, stream type), for object keys.
        self._stream_names: dict[int, tuple[bytes, str]] = {}
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
        try:
            self.expire_old()
        except Exception as e:  # noqa: BLE001 - retried at the next interval
            self.stats.errors += 1
            self._set_error(self._describe(e))

    def expire_old(self) -> int:
        """Deletes the objects (then the row) of every recording archived longer ago than
        its stream's ``archive_days``; returns how many recordings went."""
        expired = self.db.list_expired_archived(self.archive.id)
        for cid, data_key, manifest_key in expired:
            if self._stop.is_set():
                break
            # The manifest first: a manifest never names a missing data object.
            self.client.delete_object(Bucket=self.archive.bucket, Key=manifest_key)
            self.client.delete_object(Bucket=self.archive.bucket, Key=data_key)
            self.db.forget_archived(cid)
            self.stats.expired += 1
        return len(expired)

    def upload_some(self) -> bool:
        """Uploads one batch of the backlog, oldest first; False when it was empty.
        Raises on the first failure (the caller backs off)."""
        batch = [
            item for item in self.db.list_archive_backlog(self.archive.id, BACKLOG_BATCH)
            if item[0].composite_id not in self._refused
        ]
        for row, playback, dir_id in batch:
            if self._stop.is_set():
                break
            self.upload_one(row, playback, dir_id)
            if self.last_error is not None:
                log.info("archive %r: uploads succeed again", self.archive.name)
                self._set_error(None)
        return bool(batch)

    def upload_one(self, row: RecordingRow, playback: Playback, dir_id: int) -> None:
        """Store, check and mark one recording (see the module docstring)."""
        data = self._read_local(row, playback, dir_id)
        if data is None:
            return
        camera_uuid, stream_type = self._stream_name(row.stream_id)
        data_key, manifest_key = object_keys(
            self.archive, camera_uuid, stream_type, row.recording_id)
        manifest = self._manifest(row, playback, camera_uuid, stream_type, data_key)
        sha1 = playback.sample_file_sha1
        fresh = self._put_once(data_key, data, sha1)
        fresh &= self._put_once(manifest_key, manifest, hashlib.sha1(manifest).digest())
        self.db.mark_archived(row.composite_id, self.archive.id, data_key, manifest_key, sha1)
        if fresh:
            self.stats.uploads += 1
            self.stats.uploaded_bytes += len(data)
        else:
            self.stats.already_there += 1
        log.debug("archived %s as %s", _name(row), data_key)

    # ---- one recording's steps --------------------------------------------------------

    def _read_local(self, row: RecordingRow, playback: Playback, dir_id: int) -> bytes | None:
        """The sample file's bytes, checked; None if it was deleted meanwhile (the budget
        deleted the recording) or doesn't match its row (refused, logged once)."""
        path = os.path.join(self.db.sample_file_dir(dir_id).path,
                            format_uuid(playback.sample_file_uuid))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            log.warning("%s was deleted locally before it could be archived to %r",
                        _name(row), self.archive.name)
            self._refused.add(row.composite_id)
            return None
        actual = hashlib.sha1(data).digest()
        if len(data) != row.sample_file_bytes or actual != playback.sample_file_sha1:
            log.error("%s: local file %s has %d bytes with SHA-1 %s, its row says %d bytes "
                      "with SHA-1 %s; not archived (`moonfire check --hash`)", _name(row), path,
                      len(data), actual.hex(), row.sample_file_bytes,
                      playback.sample_file_sha1.hex())
            self._refused.add(row.composite_id)
            return None
        return data

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
            code = e.response.get("Error", {}).get("Code")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code != "PreconditionFailed" and status != 412:
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


def _name(row: RecordingRow) -> str:
    return f"recording {row.stream_id}/{row.recording_id}"


def check_archive(db: Database, archive: ArchiveRow, hash_contents: bool,
                  client: Any = None) -> list[str]:
    """What is wrong with ``archive``'s objects, one line each (``moonfire check --archive``):
    each archived recording's data object must exist with the recorded size and SHA-1
    (metadata; with ``hash_contents``, its bytes too) and its manifest must exist.
    Raises (botocore) if the store can't be reached at all."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    client = client if client is not None else make_client(archive)
    problems: list[str] = []
    for cid, data_key, manifest_key, sha1 in db.list_archived(archive.id):
        name = f"recording {cid >> 32}/{cid & 0xFFFF_FFFF}"
        try:
            expected_size: int | None = db.get_recording(cid).sample_file_bytes
        except LookupError:
            expected_size = None  # deleted locally: only the object's own record remains
        try:
            head = client.head_object(Bucket=archive.bucket, Key=data_key)
            client.head_object(Bucket=archive.bucket, Key=manifest_key)
        except ClientError as e:
            problems.append(f"archive {archive.name!r}: {name}: "
                            f"{describe_client_error(archive, e)} ({data_key} or its manifest)")
            continue
        size, stored_sha1 = head.get("ContentLength"), head.get("Metadata", {}).get(SHA1_METADATA)
        if (expected_size is not None and size != expected_size) or stored_sha1 != sha1.hex():
            problems.append(f"archive {archive.name!r}: {name}: object {data_key} has {size} "
                            f"bytes with SHA-1 {stored_sha1}, the database says "
                            f"{expected_size} bytes with SHA-1 {sha1.hex()}")
            continue
        if hash_contents:
            data = client.get_object(Bucket=archive.bucket, Key=data_key)["Body"].read()
            actual = hashlib.sha1(data).digest()
            if actual != sha1:
                problems.append(f"archive {archive.name!r}: {name}: object {data_key}'s bytes "
                                f"have SHA-1 {actual.hex()}, expected {sha1.hex()} (corrupted "
                                f"in the store)")
    return problems


def start_uploaders(db: Database, stream_archive_ids: set[int]) -> list[ArchiveUploader]:
    """One started uploader per archive some recorded stream uses."""
    uploaders = []
    for archive_id in sorted(stream_archive_ids):
        uploader = ArchiveUploader(db, db.get_archive(archive_id))
        uploader.start()
        uploaders.append(uploader)
    return uploaders
