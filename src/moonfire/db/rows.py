"""Immutable records returned by ``Database`` (one per table row kind).

Each record lists the SQL columns it is built from, in field order, so a query
can select ``...COLUMNS`` and build the record with ``Record(*row)``.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from moonfire_core.records import FLAG_TRAILING_ZERO

#: The low 32 bits of a composite id are the per-camera recording id.
RECORDING_ID_MASK = 0xFFFF_FFFF


def composite_id(camera_id: int, recording_id: int) -> int:
    """``camera_id << 32 | recording_id``: the primary key of ``recording`` (brief §1.2)."""
    return camera_id << 32 | recording_id


def format_uuid(raw: bytes) -> str:
    """The canonical text form of a 16-byte uuid, as used for sample file names.

    Used in error messages, so a value of the wrong length is shown in hex instead.
    """
    raw = bytes(raw)
    if len(raw) != 16:
        return f"<{len(raw)} bytes: {raw.hex()}>"
    return str(uuidlib.UUID(bytes=raw))


@dataclass(frozen=True, slots=True)
class Camera:
    id: int
    uuid: bytes
    short_name: str
    description: str
    url: str
    username: str | None
    password: str | None
    retain_bytes: int
    rotate_interval_sec: int
    next_recording_id: int


# Era-1 columns may be NULL in upgraded databases; present them as empty strings.
CAMERA_COLUMNS = (
    "id, uuid, short_name, coalesce(description, ''), coalesce(url, ''), username, password, "
    "retain_bytes, rotate_interval_sec, next_recording_id"
)


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """The small fields of a committed recording: enough to list, size and rotate it."""

    composite_id: int
    camera_id: int
    run_offset: int
    flags: int
    sample_file_bytes: int
    start_time_90k: int
    duration_90k: int
    local_time_delta_90k: int
    video_samples: int
    video_sync_samples: int
    video_sample_entry_id: int

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


#: Every one of these is in the ``recording_cover`` index (composite_id is the rowid).
RECORDING_COLUMNS = (
    "composite_id, camera_id, run_offset, flags, sample_file_bytes, start_time_90k, "
    "duration_90k, local_time_delta_90k, video_samples, video_sync_samples, "
    "video_sample_entry_id"
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
class SampleFileDirRow:
    """Where the sample files live, and the two uuids its ``meta`` file must repeat."""

    path: str
    uuid: bytes
    db_uuid: bytes
