"""Recreating the catalog from an archive's manifests: ``moonfire archive rebuild`` and
``moonfire archive follow``.

Every recording the uploader (``moonfire.storage.archive``) stores has a JSON manifest at
``PREFIX/CAMERA-UUID/TYPE/RECORDING-ID.json``: its row, ``video_index``, sample entry and
SHA-1.  That is all a database needs to play it, so a new machine (the stolen-NVR case), or
a moonfire that records nothing and shows several sites' footage, can rebuild the catalog
from the bucket alone: each manifest becomes an archived-only recording (schema 7: a
``recording`` row whose ``recording_archive`` row has ``local_deleted_time_sec`` set), its
camera (the uuid from the key) and stream created as needed.  The cameras record nothing:
the archive holds no camera URL and no credentials.

**Cameras' names.**  A camera new to the database is named from its ``camera.json``
(``PREFIX/CAMERA-UUID/camera.json``, written by the uploader: short name, description,
rotate interval, stream types; one GET per camera added); without one (a recorder older
than it) ``camera-`` and the uuid's first 8 digits.  A name another camera has here
(another site's "front door") gets the archive's name as a suffix, then the uuid's, and
the summary says so.  A bad ``camera.json`` is reported naming its key and what is wrong,
and the camera is imported under the fallback name.  A camera already here keeps its
name: renames at the site, or here (``camera edit --rename``), are not undone.

**Listing.**  A *full* sync lists every key under the prefix (1000 keys, i.e. 500
recordings, per LIST request), adds the manifests the database doesn't have and forgets
archived-only rows whose manifest is gone (the recorder's ``--archive-days`` deleted it).
An *incremental* sync lists only what is new: one LIST with ``Delimiter=/`` for the camera
uuids, then per camera and stream type one LIST starting after the newest manifest the
database has (``StartAfter``: keys sort by recording id, zero-padded), i.e. 1 + 2 x cameras
requests when nothing changed.  ``follow`` polls incrementally and does a full sync every
``FULL_SYNC_INTERVAL_SEC`` (a manifest uploaded out of order, below the newest, is found
then).  Manifests are fetched ``FETCH_THREADS`` at a time (a GET each); docs/archive-scale.md
has the costs at scale.

**Bad manifests** (not JSON, another format, fields missing or inconsistent with the key or
with the index) are reported one line each, naming the key; the rest are still imported.
Rerunning adds only what is new: a manifest key already in ``recording_archive`` is skipped.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import dataclasses
import json
import logging
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from moonfire.db import (
    STREAM_TYPES,
    ArchiveRow,
    Database,
    DuplicateCameraError,
    RecordingRow,
    composite_id,
    format_uuid,
)
from moonfire.db.camera_settings import validate_camera_settings
from moonfire.db.rows import index_mismatches
from moonfire.errors import MoonfireError
from moonfire.storage.archive import (
    CAMERA_OBJECT_FORMAT,
    MANIFEST_FORMAT,
    camera_object_key,
    describe_client_error,
    make_client,
)
from moonfire_core import CorruptIndexError, decode_index

log = logging.getLogger(__name__)

#: Manifests fetched at once (each one GET; the client is thread-safe).
FETCH_THREADS = 8
#: ``archive follow``'s default interval between incremental syncs.
POLL_INTERVAL_SEC = 30.0
#: ``archive follow`` lists everything this often: for manifests stored out of order, and
#: to forget recordings ``--archive-days`` deleted (a year of 16 cameras is 16,800 LISTs).
FULL_SYNC_INTERVAL_SEC = 86400.0
#: New recordings added to the database per transaction.
BATCH = 500

_MANIFEST_RE = re.compile(
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"
    r"(?P<type>main|sub)/(?P<id>[0-9]{10})\.json"
)
_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(RecordingRow))


class BadManifestError(MoonfireError):
    """A manifest that can't be cataloged; the message names its key."""


class BadCameraObjectError(MoonfireError):
    """A ``camera.json`` that can't be used; the message names its key and the field."""


@dataclass
class SyncReport:
    """What one sync did, for the command's summary and the tests."""

    added: int = 0
    #: Manifests the database already had.
    known: int = 0
    #: Archived-only recordings whose manifest is gone from the archive.
    forgotten: int = 0
    #: ``short_name (uuid)`` of each camera added (``; 'NAME' is taken here`` when its
    #: own name was another camera's).
    cameras_added: list[str] = field(default_factory=list)
    #: One line per bad manifest or camera object, naming its key.
    errors: list[str] = field(default_factory=list)
    #: LIST and GET requests made.
    list_requests: int = 0
    get_requests: int = 0


@dataclass(frozen=True, slots=True)
class _Manifest:
    key: str
    camera_uuid: bytes
    stream_type: str
    camera_short_name: str | None
    row: RecordingRow
    video_index: bytes
    data_key: str
    sha1: bytes
    entry: tuple[int, int, bytes]


@dataclass(frozen=True, slots=True)
class CameraDescription:
    """A parsed ``camera.json`` (``moonfire.storage.archive.camera_object``)."""

    short_name: str
    description: str
    rotate_interval_sec: int
    stream_types: tuple[str, ...]


class ArchiveCatalog:
    """Brings ``db``'s catalog up to date with one archive's manifests (one thread at a
    time; ``sync`` blocks on the store)."""

    def __init__(self, db: Database, archive: ArchiveRow, client: Any = None) -> None:
        self.db = db
        self.archive = archive
        self.client = client if client is not None else make_client(archive)
        #: (camera uuid, stream type) -> this database's stream id.
        self._streams: dict[tuple[bytes, str], int] = {}

    @property
    def _base(self) -> str:
        return f"{self.archive.prefix}/" if self.archive.prefix else ""

    def sync(self, full: bool = True) -> SyncReport:
        """Adds the manifests the database lacks (all of them listed when ``full``, else
        only those after each stream's newest; see the module docstring).  Raises
        (botocore) if the store can't be listed; a bad manifest is only reported."""
        report = SyncReport()
        # An incremental listing starts after each stream's newest cataloged recording, so
        # what it lists is new by construction: the whole catalog's keys (13 s and 250 MiB
        # at 500 k recordings) are read only for the full listing, which also forgets.
        known = self.db.list_archived_manifest_keys(self.archive.id) if full else {}
        listed = list(self._list_all(report) if full else self._list_new(report))
        new = [key for key in listed if key not in known]
        report.known = len(listed) - len(new)
        for start in range(0, len(new), BATCH):
            self._add(new[start:start + BATCH], report)
        if full:
            present = set(listed)
            for key, (cid, only) in known.items():
                if only and key not in present and self.db.delete_archived_only_rows(cid):
                    self.db.forget_archived(cid)
                    report.forgotten += 1
        return report

    # ---- listing ----------------------------------------------------------------------

    def _pages(self, report: SyncReport, **params: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            extra: dict[str, str] = {} if token is None else {"ContinuationToken": token}
            report.list_requests += 1
            page = self.client.list_objects_v2(Bucket=self.archive.bucket, **params, **extra)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def _manifest_keys(self, page: dict[str, Any]) -> Iterator[str]:
        base = self._base
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.startswith(base) and _MANIFEST_RE.fullmatch(key[len(base):]):
                yield key

    def _list_all(self, report: SyncReport) -> Iterator[str]:
        for page in self._pages(report, Prefix=self._base):
            yield from self._manifest_keys(page)

    def _list_new(self, report: SyncReport) -> Iterator[str]:
        latest_by_stream = self.db.latest_archived_ids(self.archive.id)
        latest: dict[str, int] = {}  # "uuid/type/" -> newest recording id cataloged
        for stream_id, recording_id in latest_by_stream.items():
            stream = self.db.get_stream(stream_id)
            camera = self.db.get_camera(stream.camera_id)
            latest[f"{format_uuid(camera.uuid)}/{stream.type}/"] = recording_id
        for page in self._pages(report, Prefix=self._base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                camera_prefix = common["Prefix"]
                for stream_type in STREAM_TYPES:
                    prefix = f"{camera_prefix}{stream_type}/"
                    newest = latest.get(prefix[len(self._base):])
                    after = {} if newest is None else {
                        "StartAfter": f"{prefix}{newest:010d}.json"}
                    for listed in self._pages(report, Prefix=prefix, **after):
                        yield from self._manifest_keys(listed)

    # ---- adding -----------------------------------------------------------------------

    def _add(self, keys: Sequence[str], report: SyncReport) -> None:
        with concurrent.futures.ThreadPoolExecutor(FETCH_THREADS) as pool:
            fetched = list(pool.map(self._fetch, keys))
        report.get_requests += len(keys)
        batch = []
        for manifest in fetched:
            try:
                if isinstance(manifest, BadManifestError):
                    raise manifest
                batch.append(self._to_catalog(manifest, report))
            except BadManifestError as e:
                log.warning("archive %r: %s", self.archive.name, e)
                report.errors.append(str(e))
        report.added += self.db.add_archived_only_recordings(self.archive.id, batch)

    def _fetch(self, key: str) -> _Manifest | BadManifestError:
        """The manifest at ``key``, parsed and checked (a bad one is returned, not raised,
        so one bad manifest doesn't stop the others); store errors other than a missing
        object propagate."""
        text = self._get_object(key)
        if isinstance(text, Exception):
            # Listed, then deleted (``--archive-days``) before it was read: not an error.
            return BadManifestError(f"manifest {key} went away while being read "
                                    f"({describe_client_error(self.archive, text)})")
        try:
            return parse_manifest(key, key[len(self._base):], text)
        except BadManifestError as e:
            return e

    def _get_object(self, key: str) -> bytes | Exception:
        """The object's bytes, or the store's error if there is no such object; other
        store errors propagate."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            body = self.client.get_object(Bucket=self.archive.bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            return e

    def _to_catalog(self, manifest: _Manifest,
                    report: SyncReport) -> tuple[RecordingRow, bytes, str, str, bytes]:
        """The database's form of ``manifest``: its row under this database's stream and
        sample entry ids, with its camera and stream added as needed."""
        stream_id = self._stream_id(manifest, report)
        width, height, data = manifest.entry
        try:
            entry_id = self.db.insert_video_sample_entry(width, height, data)
        except MoonfireError as e:
            raise BadManifestError(f"manifest {manifest.key}: its video sample entry: {e}") \
                from None
        row = dataclasses.replace(
            manifest.row, composite_id=composite_id(stream_id, manifest.row.recording_id),
            stream_id=stream_id, video_sample_entry_id=entry_id, open_id=None)
        return row, manifest.video_index, manifest.data_key, manifest.key, manifest.sha1

    def _stream_id(self, manifest: _Manifest, report: SyncReport) -> int:
        where = (manifest.camera_uuid, manifest.stream_type)
        if where not in self._streams:
            camera = self.db.find_camera_by_uuid(manifest.camera_uuid)
            if camera is None:
                stream = self._add_camera(manifest, report)
            else:
                stream = self.db.add_cataloged_stream(
                    manifest.camera_uuid, camera.short_name, manifest.stream_type)
            self._streams[where] = stream.id
        return self._streams[where]

    def _add_camera(self, manifest: _Manifest, report: SyncReport) -> Any:
        """The manifest's stream, its camera added as its ``camera.json`` describes it (see
        the module docstring), with the other streams that lists."""
        text_uuid = format_uuid(manifest.camera_uuid)
        fallback = f"camera-{text_uuid[:8]}"
        described, problem = self._read_camera_object(manifest.camera_uuid, report)
        # Older manifests carried the name; none of this recorder's do.
        name = described.short_name if described else manifest.camera_short_name or fallback
        stream = None
        for candidate in (name, f"{name}-{self.archive.name}", f"{name}-{text_uuid[:8]}",
                          text_uuid):
            try:
                stream = self.db.add_cataloged_stream(
                    manifest.camera_uuid, candidate, manifest.stream_type)
                break
            except DuplicateCameraError:
                continue
        assert stream is not None, "a camera named by its uuid has that uuid"
        camera = self.db.get_camera(stream.camera_id)
        if described is not None:
            self.db.update_camera(camera.id, description=described.description,
                                  rotate_interval_sec=described.rotate_interval_sec)
            for stream_type in described.stream_types:
                self.db.add_cataloged_stream(manifest.camera_uuid, camera.short_name,
                                             stream_type)
        taken = f"; {name!r} is taken here" if camera.short_name != name else ""
        report.cameras_added.append(f"{camera.short_name} ({text_uuid}{taken})")
        if problem is not None:
            message = f"{problem}; camera imported as {camera.short_name!r}"
            log.warning("archive %r: %s", self.archive.name, message)
            report.errors.append(message)
        return stream

    def _read_camera_object(self, camera_uuid: bytes, report: SyncReport
                            ) -> tuple[CameraDescription | None, str | None]:
        """(the camera's ``camera.json``, None) if it is there and good; (None, None) if
        there is none; (None, what is wrong) if it is bad.  Store errors other than a
        missing object propagate, as a manifest's do."""
        key = camera_object_key(self.archive, camera_uuid)
        report.get_requests += 1
        text = self._get_object(key)
        if isinstance(text, Exception):
            return None, None
        try:
            return parse_camera_object(key, camera_uuid, text), None
        except BadCameraObjectError as e:
            return None, str(e)


def parse_camera_object(key: str, camera_uuid: bytes, text: bytes) -> CameraDescription:
    """Checks the ``camera.json`` at ``key`` (of the camera ``camera_uuid``):
    ``BadCameraObjectError`` naming the key and the first field wrong."""
    def bad(problem: str) -> BadCameraObjectError:
        return BadCameraObjectError(f"camera object {key}: {problem}")

    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if doc.get("format") != CAMERA_OBJECT_FORMAT:
        raise bad(f"format {doc.get('format')!r}, this moonfire reads format "
                  f"{CAMERA_OBJECT_FORMAT}")
    for name in ("camera_uuid", "short_name", "description", "rotate_interval_sec",
                 "streams"):
        if name not in doc:
            raise bad(f"field {name!r} is missing")
    if doc["camera_uuid"] != format_uuid(camera_uuid):
        raise bad(f"field 'camera_uuid' is {doc['camera_uuid']!r}, its key "
                  f"{format_uuid(camera_uuid)}")
    for name in ("short_name", "description", "rotate_interval_sec"):
        try:
            validate_camera_settings({name: doc[name]})
        except MoonfireError as e:
            raise bad(f"field {name!r}: {e}") from None
    streams = doc["streams"]
    if not (isinstance(streams, list) and all(
            isinstance(s, dict) and s.get("type") in STREAM_TYPES for s in streams)):
        raise bad(f"field 'streams' is {streams!r}, not a list of {{\"type\": "
                  f"{' or '.join(map(repr, STREAM_TYPES))}}}")
    return CameraDescription(doc["short_name"], doc["description"],
                             doc["rotate_interval_sec"],
                             tuple(dict.fromkeys(s["type"] for s in streams)))


def parse_manifest(key: str, relative_key: str, text: bytes) -> _Manifest:
    """Checks a manifest (``relative_key`` is ``key`` without the archive's prefix):
    ``BadManifestError`` naming the key and the first thing wrong."""
    def bad(problem: str) -> BadManifestError:
        return BadManifestError(f"manifest {key}: {problem}")

    match = _MANIFEST_RE.fullmatch(relative_key)
    if match is None:
        raise bad("its key is not CAMERA-UUID/TYPE/RECORDING-ID.json")
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if doc.get("format") != MANIFEST_FORMAT:
        raise bad(f"format {doc.get('format')!r}, this moonfire reads format {MANIFEST_FORMAT}")
    try:
        camera_uuid = uuidlib.UUID(str(doc["camera_uuid"]))
        if str(camera_uuid) != match["uuid"] or doc["stream_type"] != match["type"]:
            raise bad(f"it names camera {doc['camera_uuid']} stream {doc['stream_type']!r}, "
                      f"its key {match['uuid']} {match['type']!r}")
        values = doc["row"]
        if not isinstance(values, dict):
            raise bad("its row is not an object")
        fields: dict[str, int | None] = {}
        for name in _ROW_FIELDS:
            value = values.get(name)
            if name == "open_id" and value is None:
                fields[name] = None
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad(f"row field {name} is {value!r}, not an integer")
            fields[name] = value
        row = RecordingRow(**fields)  # type: ignore[arg-type]
        if row.recording_id != int(match["id"]):
            raise bad(f"its row is recording {row.recording_id}, its key {int(match['id'])}")
        # The data object is beside the manifest.  The manifest's own data key may name
        # another prefix (the objects were copied or replicated there): only the part
        # after the prefix must agree.
        data_key = key[: -len(".json")] + ".sample"
        relative_data_key = relative_key[: -len(".json")] + ".sample"
        if not (isinstance(doc["data_key"], str)
                and doc["data_key"].endswith(relative_data_key)):
            raise bad(f"its data key {doc['data_key']!r} is not {relative_data_key!r}")
        sha1 = bytes.fromhex(doc["sample_file_sha1"])
        if len(sha1) != 20:
            raise bad(f"sample_file_sha1 {doc['sample_file_sha1']!r} is not 20 bytes")
        video_index = base64.b64decode(doc["video_index"], validate=True)
        entry = doc["video_sample_entry"]
        if not isinstance(entry, dict):
            raise bad("it has no video_sample_entry")
        entry_data = base64.b64decode(entry["data"], validate=True)
        width, height = entry["width"], entry["height"]
        if not isinstance(width, int) or not isinstance(height, int):
            raise bad(f"video_sample_entry is {width!r}x{height!r}")
    except KeyError as e:
        raise bad(f"field {e.args[0]!r} is missing") from None
    except (ValueError, TypeError, binascii.Error) as e:
        if isinstance(e, BadManifestError):
            raise
        raise bad(f"a field is malformed ({e})") from None
    try:
        problems = index_mismatches(row, decode_index(video_index))
    except CorruptIndexError as e:
        raise bad(f"its video_index is corrupt ({e})") from None
    if problems:
        raise bad(f"its video_index disagrees with its row: {problems[0]}")
    short_name = doc.get("camera_short_name")
    if not (isinstance(short_name, str) and short_name.strip() == short_name != ""):
        short_name = None
    return _Manifest(
        key, camera_uuid.bytes, match["type"], short_name, row, video_index, data_key, sha1,
        (width, height, entry_data))


class ArchiveFollower:
    """``moonfire archive follow``'s background thread: every ``poll_interval_sec`` an
    incremental sync of each archive, a full one every ``FULL_SYNC_INTERVAL_SEC``; a
    failure is logged and retried at the next poll."""

    def __init__(self, catalogs: Sequence[ArchiveCatalog],
                 poll_interval_sec: float = POLL_INTERVAL_SEC,
                 full_sync_interval_sec: float = FULL_SYNC_INTERVAL_SEC) -> None:
        self.catalogs = list(catalogs)
        self.poll_interval_sec = poll_interval_sec
        self.full_sync_interval_sec = full_sync_interval_sec
        self.polls = 0
        self.list_requests = 0
        self.added = 0
        self._last_full = {id(c): time.monotonic() for c in self.catalogs}
        self._failing: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def poll_once(self) -> None:
        for catalog in self.catalogs:
            if self._stop.is_set():
                return
            now = time.monotonic()
            full = now - self._last_full[id(catalog)] >= self.full_sync_interval_sec
            try:
                report = catalog.sync(full=full)
            except Exception as e:  # noqa: BLE001 - retried at the next poll
                message: str = (str(e) if isinstance(e, MoonfireError)
                                else describe_client_error(catalog.archive, e))
                if self._failing.get(id(catalog)) != message:
                    log.warning("following %s; retrying in %g s", message,
                                self.poll_interval_sec)
                self._failing[id(catalog)] = message
                continue
            if self._failing.pop(id(catalog), None) is not None:
                log.info("archive %r: following again", catalog.archive.name)
            if full:
                self._last_full[id(catalog)] = now
            self.list_requests += report.list_requests
            self.added += report.added
            if report.added or report.forgotten:
                log.info("archive %r: %d new recordings, %d forgotten", catalog.archive.name,
                         report.added, report.forgotten)
        self.polls += 1

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_sec):
            self.poll_once()
