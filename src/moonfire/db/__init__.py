"""The SQLite metadata layer: cameras, streams, sample file directories, recordings and
reservations (brief §1.2-1.4, §5).

``Database.create``/``Database.open`` give the one writer (or a read-only reader);
writes happen in ``with db.transaction() as tx:`` blocks whose ``Transaction``
operations keep the sample-file invariants of design.md.
"""

from .database import Database
from .errors import (
    ArchiveInUseError,
    ConsistencyError,
    DatabaseError,
    DatabaseVersionError,
    DuplicateCameraError,
    InvalidConfigError,
    NotAMoonfireDatabaseError,
    RecordingRejectedError,
    SampleFileDirInUseError,
    UnknownArchiveError,
    UnknownCameraError,
    UnknownRecordingError,
    UnknownSampleFileDirError,
    UnknownStreamError,
    UnknownVideoSampleEntryError,
)
from .rows import (
    MAIN,
    STREAM_TYPES,
    SUB,
    ArchiveRow,
    Camera,
    Open,
    Playback,
    RecordingRow,
    SampleFileDirRow,
    Stream,
    VideoSampleEntry,
    composite_id,
    format_uuid,
)
from .schema import SCHEMA_VERSION
from .transaction import STATE_DELETING, STATE_WRITING, Transaction

__all__ = [
    "ArchiveInUseError",
    "ArchiveRow",
    "UnknownArchiveError",
    "MAIN",
    "STREAM_TYPES",
    "SUB",
    "SampleFileDirInUseError",
    "UnknownSampleFileDirError",
    "UnknownStreamError",
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
    "Stream",
    "Transaction",
    "UnknownCameraError",
    "UnknownRecordingError",
    "UnknownVideoSampleEntryError",
    "VideoSampleEntry",
    "composite_id",
    "format_uuid",
]
