"""Validation of camera settings, shared by ``add_camera`` and ``update_camera``.

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
    {"short_name", "description", "url", "username", "password", "retain_bytes",
     "rotate_interval_sec"}
)


def validate_camera_settings(settings: dict[str, Any]) -> None:
    """Raises ``InvalidConfigError`` naming the first bad setting among those given."""
    for name, value in settings.items():
        if name == "short_name":
            if not isinstance(value, str) or not value.strip():
                raise InvalidConfigError(f"camera short name must be a non-empty string, "
                                         f"got {value!r}")
            if value != value.strip():
                raise InvalidConfigError(f"camera short name {value!r} has surrounding spaces")
        elif name in ("description", "url"):
            if not isinstance(value, str):
                raise InvalidConfigError(f"camera {name} must be a string, got {value!r}")
        elif name in ("username", "password"):
            if value is not None and not isinstance(value, str):
                raise InvalidConfigError(f"camera {name} must be a string or None")
        elif name == "retain_bytes":
            if not _is_int(value) or not 0 <= value < 1 << 63:
                raise InvalidConfigError(
                    f"retain_bytes must be an integer from 0 to 2**63 - 1, got {value!r}"
                )
        elif name == "rotate_interval_sec":
            if not _is_int(value) or not 0 < value <= MAX_ROTATE_INTERVAL_SEC:
                raise InvalidConfigError(
                    f"rotate_interval_sec must be an integer from 1 to "
                    f"{MAX_ROTATE_INTERVAL_SEC} (recordings stay under 5 minutes), got {value!r}"
                )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
