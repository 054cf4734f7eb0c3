"""The SQLite metadata layer: cameras, recordings, reservations (brief §1.2-1.4).

``Database.create``/``Database.open`` give the one writer (or a read-only reader);
writes happen in ``with db.transaction() as tx:`` blocks whose ``Transaction``
operations keep the sample-file invariants of design.md.
"""

from .database import Database
from .errors import (
    ConsistencyError,
    DatabaseError,
    DatabaseVersionError,
    DuplicateCameraError,
    InvalidConfigError,
    NotAMoonfireDatabaseError,
    RecordingRejectedError,
    UnknownCameraError,
    UnknownRecordingError,
    UnknownVideoSampleEntryError,
)
from .rows import (
    Camera,
    Open,
    Playback,
    RecordingRow,
    SampleFileDirRow,
    VideoSampleEntry,
    composite_id,
    format_uuid,
)
from .schema import SCHEMA_VERSION
from .transaction import STATE_DELETING, STATE_WRITING, Transaction

__all__ = [
    "SCHEMA_VERSION",
    "STATE_DELETING",
    "STATE_WRITING",
    "Camera",
    "Open",
    "ConsistencyError",
    "RecordingRejectedError",
    "Database",
    "DatabaseError",
    "DatabaseVersionError",
    "DuplicateCameraError",
    "InvalidConfigError",
    "NotAMoonfireDatabaseError",
    "Playback",
    "RecordingRow",
    "SampleFileDirRow",
    "Transaction",
    "UnknownCameraError",
    "UnknownRecordingError",
    "UnknownVideoSampleEntryError",
    "VideoSampleEntry",
    "composite_id",
    "format_uuid",
]
