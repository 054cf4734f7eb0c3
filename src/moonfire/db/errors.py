"""Exceptions of the metadata layer.

Everything a user can cause (a wrong path, a duplicate name, a negative budget,
a database from a newer moonfire) derives from ``DatabaseError``, so the CLI can
print one line without a traceback.  ``sqlite3`` errors that escape mean a bug.
"""

from moonfire.errors import MoonfireError


class DatabaseError(MoonfireError):
    """Base class for user-facing failures of the metadata database."""


class NotAMoonfireDatabaseError(DatabaseError):
    """The file is missing, is not SQLite, or has no ``version`` table."""


class DatabaseVersionError(DatabaseError):
    """The schema version is one this moonfire cannot use (too old or too new)."""


class DuplicateCameraError(DatabaseError):
    """A camera with this short name already exists."""


class UnknownCameraError(DatabaseError, LookupError):
    """No camera has this id or short name."""


class UnknownRecordingError(DatabaseError, LookupError):
    """No recording has this composite id."""


class UnknownVideoSampleEntryError(DatabaseError, LookupError):
    """No video sample entry has this id."""


class InvalidConfigError(DatabaseError, ValueError):
    """A camera setting is out of range: empty name, negative budget, bad interval."""


class ConsistencyError(DatabaseError):
    """The database disagrees with what the caller asserted (e.g. an unreserved uuid).

    Raised by multi-part operations; the transaction that saw it is rolled back.
    """


class RecordingRejectedError(ConsistencyError):
    """A CHECK constraint refused a recording's row (e.g. a duration of 5 minutes or more).

    The fault is in that one recording, not in the database: the syncer discards
    the recording and goes on.
    """


class UnknownStreamError(DatabaseError, LookupError):
    """No stream has this id, or the camera has no stream of this type."""


class UnknownSampleFileDirError(DatabaseError, LookupError):
    """No sample file directory has this id or name."""


class SampleFileDirInUseError(DatabaseError):
    """A sample file directory can't be removed (streams use it, or it holds recordings),
    or a stream can't leave one that holds its recordings."""


class UnknownArchiveError(DatabaseError, LookupError):
    """No archive with that name or id."""


class ArchiveInUseError(DatabaseError):
    """An archive a stream still uploads to can't be removed."""
