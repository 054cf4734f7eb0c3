"""Immutable records returned by ``Database`` (one per table row kind).

Each record lists the SQL columns it is built from, in field order, so a query
can select ``...COLUMNS`` and build the record with ``Record(*row)``.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moonfire_core.records import FLAG_TRAILING_ZERO

from .errors import UnknownStreamError

if TYPE_CHECKING:
    from moonfire_core import DecodedIndex

#: The low 32 bits of a composite id are the per-stream recording id.
RECORDING_ID_MASK = 0xFFFF_FFFF


def composite_id(stream_id: int, recording_id: int) -> int:
    """``stream_id << 32 | recording_id``: the primary key of ``recording`` (brief §1.2)."""
    return stream_id << 32 | recording_id


def format_uuid(raw: bytes) -> str:
    """The canonical text form of a 16-byte uuid, as used for sample file names.

    Used in error messages, so a value of the wrong length is shown in hex instead.
    """
    raw = bytes(raw)
    if len(raw) != 16:
        return f"<{len(raw)} bytes: {raw.hex()}>"
    return str(uuidlib.UUID(bytes=raw))


#: A stream's ``type``: every camera has a main stream; a sub stream is optional.
MAIN = "main"
SUB = "sub"
STREAM_TYPES = (MAIN, SUB)


@dataclass(frozen=True, slots=True)
class Stream:
    """One of a camera's streams: where it comes from, whether and where it is recorded,
    and how much of it is kept (a row of table ``stream``)."""

    id: int
    camera_id: int
    type: str
    url: str
    record: bool
    retain_bytes: int
    #: Recordings older than this many days go even within the budget; None: no limit.
    max_age_days: int | None
    sample_file_dir_id: int
    next_recording_id: int
    #: RTSP transport: ``tcp``, ``udp`` or ``auto`` (TCP, then UDP if the camera refuses TCP).
    transport: str = "auto"
    #: The archive its recordings are uploaded to (``archive.id``); None: not archived.
    archive_id: int | None = None
    #: Archived objects older than this many days go; None: kept forever.
    archive_days: int | None = None


STREAM_COLUMNS = (
    "id, camera_id, type, url, record, retain_bytes, max_age_days, sample_file_dir_id, "
    "next_recording_id, transport, archive_id, archive_days"
)


def stream_from_row(row: Sequence[Any]) -> Stream:
    """A ``Stream`` from a row of ``STREAM_COLUMNS`` (``record`` is stored as 0 or 1)."""
    (id_, camera_id, type_, url, record, retain, max_age, dir_id, next_id, transport,
     archive_id, archive_days) = row
    return Stream(
        id_, camera_id, type_, url, bool(record), retain, max_age, dir_id, next_id, transport,
        archive_id, archive_days,
    )


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera and its streams: ``main`` always, ``sub`` if it has one."""

    id: int
    uuid: bytes
    short_name: str
    description: str
    username: str | None
    password: str | None
    rotate_interval_sec: int
    main: Stream
    sub: Stream | None

    @property
    def streams(self) -> list[Stream]:
        """Main first, then sub if there is one."""
        return [self.main] if self.sub is None else [self.main, self.sub]

    def stream(self, stream_type: str) -> Stream:
        """The ``main`` or ``sub`` stream; ``LookupError`` naming the camera if it has none."""
        if stream_type == MAIN:
            return self.main
        if stream_type == SUB and self.sub is not None:
            return self.sub
        if stream_type == SUB:
            raise UnknownStreamError(f"camera {self.short_name!r} has no sub stream")
        raise UnknownStreamError(
            f"no stream type {stream_type!r}; a camera has {MAIN!r} and {SUB!r}"
        )


# Era-1 columns may be NULL in upgraded databases; present them as empty strings.
CAMERA_COLUMNS = (
    "id, uuid, short_name, coalesce(description, ''), username, password, rotate_interval_sec"
)


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """The small fields of a committed recording: enough to list, size and rotate it."""

    composite_id: int
    stream_id: int
    run_offset: int
    flags: int
    sample_file_bytes: int
    start_time_90k: int
    duration_90k: int
    local_time_delta_90k: int
    video_samples: int
    video_sync_samples: int
    video_sample_entry_id: int
    #: The directory open that committed it (None before schema version 4).
    open_id: int | None = None

    @property
    def recording_id(self) -> int:
        return self.composite_id & RECORDING_ID_MASK

    @property
    def end_time_90k(self) -> int:
        return self.start_time_90k + self.duration_90k

    @property
    def has_trailing_zero(self) -> bool:
        """The last sample has duration 0: the stream ended before its successor arrived."""
        return bool(self.flags & FLAG_TRAILING_ZERO)


def index_mismatches(row: RecordingRow, decoded: DecodedIndex) -> list[str]:
    """How a recording's decoded ``video_index`` disagrees with its row; empty if it doesn't.

    The index must describe the row's file, else a ``.mp4`` would point at the wrong bytes:
    frames, key frames, sample file bytes, duration and the trailing-zero flag, one phrase each
    (``"expected 7 frames, found only 5"``), in that order.  Used by ``Segment`` (which refuses
    the first) and by ``moonfire check`` (which reports them all).
    """
    problems = []
    found = len(decoded.durations)
    if found != row.video_samples:
        only = " only" if found < row.video_samples else ""
        problems.append(f"expected {row.video_samples} frames, found{only} {found}")
    keys = int(decoded.video_sync_samples)
    if keys != row.video_sync_samples:
        problems.append(f"expected {row.video_sync_samples} key frames, found {keys}")
    if decoded.sample_file_bytes != row.sample_file_bytes:
        problems.append(
            f"expected {row.sample_file_bytes} sample file bytes, "
            f"index sums to {decoded.sample_file_bytes}"
        )
    if decoded.total_duration_90k != row.duration_90k:
        problems.append(
            f"expected duration {row.duration_90k}, index sums to {decoded.total_duration_90k}"
        )
    if bool(decoded.has_trailing_zero) != row.has_trailing_zero:
        problems.append(
            f"the row's trailing zero flag is {row.has_trailing_zero}, "
            f"the index's {bool(decoded.has_trailing_zero)}"
        )
    return problems


#: Every one of these is in the ``recording_cover`` index (composite_id is the rowid).
RECORDING_COLUMNS = (
    "composite_id, stream_id, run_offset, flags, sample_file_bytes, start_time_90k, "
    "duration_90k, local_time_delta_90k, video_samples, video_sync_samples, "
    "video_sample_entry_id, open_id"
)


@dataclass(frozen=True, slots=True)
class Playback:
    """The large fields of a recording, needed only to serve or verify its bytes."""

    composite_id: int
    sample_file_uuid: bytes
    sample_file_sha1: bytes
    video_index: bytes


PLAYBACK_COLUMNS = "composite_id, sample_file_uuid, sample_file_sha1, video_index"


@dataclass(frozen=True, slots=True)
class VideoSampleEntry:
    """A complete ``avc1`` VisualSampleEntry box, shared by recordings with equal bytes."""

    id: int
    sha1: bytes
    width: int
    height: int
    data: bytes


VIDEO_SAMPLE_ENTRY_COLUMNS = "id, sha1, width, height, data"


@dataclass(frozen=True, slots=True)
class Open:
    """One read-write open of a sample file directory (a row of table ``open``)."""

    id: int
    uuid: bytes

    def __str__(self) -> str:
        return f"open {self.id} ({uuidlib.UUID(bytes=self.uuid)})"


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    """An S3-compatible archive (a row of table ``archive``): where, never credentials."""

    id: int
    name: str
    #: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``.
    url: str
    #: The endpoint URL for a non-AWS store (MinIO, Ceph, moto...); None: AWS's own.
    endpoint: str | None
    region: str | None
    #: The uploader's latest failure, None after a success (for ``archive status``).
    last_error: str | None
    last_error_time_sec: int | None

    @property
    def bucket(self) -> str:
        return self.url[len("s3://"):].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The key prefix, without slashes at either end ('' for a whole bucket)."""
        rest = self.url[len("s3://"):].split("/", 1)
        return rest[1].strip("/") if len(rest) > 1 else ""


ARCHIVE_COLUMNS = "id, name, url, endpoint, region, last_error, last_error_time_sec"


@dataclass(frozen=True, slots=True)
class SampleFileDirRow:
    """A sample file directory: its name, where it is, and the two uuids its ``meta``
    file must repeat."""

    id: int
    name: str
    path: str
    uuid: bytes
    db_uuid: bytes
