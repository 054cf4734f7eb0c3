"""Validation of camera and stream settings, shared by ``add_camera`` and ``update_camera``.

A camera's own settings (``CAMERA_SETTINGS``) are its names, credentials and
rotation; each stream has its own URL, budget, maximum age and directory
(``STREAM_SETTINGS``).  ``add_camera``/``update_camera`` take the main stream's
under their plain names and the sub stream's with a ``sub_`` prefix.

The schema's CHECK constraints would catch some of these too, but as an
``sqlite3.IntegrityError`` that names no setting; a user typing a negative budget
into ``moonfire config`` deserves a message naming the field and the value.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidConfigError

#: Recordings must stay under 5 minutes and rotation waits for a key frame.
MAX_ROTATE_INTERVAL_SEC = 299

CAMERA_SETTINGS = frozenset(
    {"short_name", "description", "username", "password", "rotate_interval_sec"}
)
#: ``sample_file_dir`` names the directory (its name or id), ``archive`` the archive (its
#: name; None or '' for none); the others are columns.
STREAM_SETTINGS = frozenset(
    {"url", "retain_bytes", "max_age_days", "sample_file_dir", "transport", "archive",
     "archive_days"}
)
#: A stream's RTSP transport (``moonfire.ingest.sources.TRANSPORTS``, which can't be imported
#: here: the database layer doesn't load PyAV).
TRANSPORTS = ("auto", "tcp", "udp")
SUB_PREFIX = "sub_"
SUB_STREAM_SETTINGS = frozenset(SUB_PREFIX + name for name in STREAM_SETTINGS)
#: No more than this many days (about 100 years), so the age in 90 kHz units fits an int64.
MAX_AGE_DAYS = 36_500


def validate_camera_settings(settings: dict[str, Any]) -> None:
    """Raises ``InvalidConfigError`` naming the first bad setting among those given."""
    for name, value in settings.items():
        if name.startswith(SUB_PREFIX) and name in SUB_STREAM_SETTINGS:
            _validate_stream_setting(name, name[len(SUB_PREFIX):], value)
        elif name in STREAM_SETTINGS:
            _validate_stream_setting(name, name, value)
        elif name == "short_name":
            if not isinstance(value, str) or not value.strip():
                raise InvalidConfigError(f"camera short name must be a non-empty string, "
                                         f"got {value!r}")
            if value != value.strip():
                raise InvalidConfigError(f"camera short name {value!r} has surrounding spaces")
        elif name == "description":
            if not isinstance(value, str):
                raise InvalidConfigError(f"camera {name} must be a string, got {value!r}")
        elif name in ("username", "password"):
            if value is not None and not isinstance(value, str):
                raise InvalidConfigError(f"camera {name} must be a string or None")
        elif name == "rotate_interval_sec":
            if not _is_int(value) or not 0 < value <= MAX_ROTATE_INTERVAL_SEC:
                raise InvalidConfigError(
                    f"rotate_interval_sec must be an integer from 1 to "
                    f"{MAX_ROTATE_INTERVAL_SEC} (recordings stay under 5 minutes), got {value!r}"
                )


def _validate_stream_setting(given_as: str, name: str, value: Any) -> None:
    if name == "url":
        if not isinstance(value, str):
            raise InvalidConfigError(f"camera {given_as} must be a string, got {value!r}")
    elif name == "retain_bytes":
        if not _is_int(value) or not 0 <= value < 1 << 63:
            raise InvalidConfigError(
                f"{given_as} must be an integer from 0 to 2**63 - 1, got {value!r}"
            )
    elif name == "max_age_days":
        if value is not None and (not _is_int(value) or not 0 < value <= MAX_AGE_DAYS):
            raise InvalidConfigError(
                f"{given_as} must be None or an integer from 1 to {MAX_AGE_DAYS}, got {value!r}"
            )
    elif name == "sample_file_dir":
        if value is not None and not isinstance(value, str) and not _is_int(value):
            raise InvalidConfigError(
                f"{given_as} must name a sample file directory (its name or id), got {value!r}"
            )
    elif name == "archive":
        if value is not None and not isinstance(value, str):
            raise InvalidConfigError(
                f"{given_as} must name an archive (`moonfire archive list`), got {value!r}"
            )
    elif name == "archive_days":
        if value is not None and (not _is_int(value) or not 0 < value <= MAX_AGE_DAYS):
            raise InvalidConfigError(
                f"{given_as} must be None or an integer from 1 to {MAX_AGE_DAYS}, got {value!r}"
            )
    elif name == "transport":
        if value not in TRANSPORTS:
            raise InvalidConfigError(
                f"{given_as} must be one of {', '.join(TRANSPORTS)}, got {value!r}"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
