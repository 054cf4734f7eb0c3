"""90 kHz time (brief §3.1): ``Time``, ``Duration``, parsing and display.

90 kHz is the RTP clock rate of H.264 video, so frame timestamps and durations are exact integers
in these units.  ``Time`` counts them since 1970-01-01T00:00:00Z (leap seconds excluded) and
``Duration`` is a span.  Both are ``int`` subclasses so they go straight into SQLite, numpy and
plain arithmetic, while the combinations that carry meaning keep their type::

    Time - Time = Duration        Time +/- Duration (or int) = Time
    Duration +/- Duration = Duration, -Duration, Duration * int, Duration // int, ...

``Time + Time`` raises ``TypeError``: it is always a bug.  Anything else degrades to a plain int.
``str()`` (and therefore an f-string without a format spec) gives the human text; ``repr()`` the
number.
"""

from __future__ import annotations

import calendar
import os
import re
import time as _time
import zoneinfo
from datetime import datetime, timedelta
from operator import index
from typing import Any

from moonfire.errors import MoonfireError

TIME_UNITS_PER_SEC = 90_000

_SECONDS_PER_DAY = 86_400
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class Duration(int):
    """A span of time in 90 kHz units; ``str()`` gives e.g. ``"1 minute 1 second"``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Duration({int(self)})"

    def __str__(self) -> str:
        return format_duration(self)

    def __add__(self, other: Any) -> Duration:
        if isinstance(other, Time):
            return NotImplemented  # Time.__radd__ makes it a Time
        return _typed(Duration, int.__add__(self, other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Duration:
        if isinstance(other, Time):
            return NotImplemented
        return _typed(Duration, int.__sub__(self, other))

    def __rsub__(self, other: Any) -> Duration:
        return _typed(Duration, int.__rsub__(self, other))

    def __mul__(self, other: Any) -> Duration:
        if isinstance(other, (Duration, Time)):
            return NotImplemented  # units squared mean nothing
        return _typed(Duration, int.__mul__(self, other))

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Duration | int:
        result = int.__floordiv__(self, other)
        if isinstance(other, Duration):
            return result  # a ratio of two spans is a plain number
        return _typed(Duration, result)

    def __mod__(self, other: Any) -> Duration:
        return _typed(Duration, int.__mod__(self, other))

    def __neg__(self) -> Duration:
        return Duration(-int(self))

    def __pos__(self) -> Duration:
        return self

    def __abs__(self) -> Duration:
        return Duration(abs(int(self)))


class Time(int):
    """An instant in 90 kHz units since the Unix epoch; ``str()`` gives local time with offset."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Time({int(self)})"

    def __str__(self) -> str:
        return format_time(self)

    def __add__(self, other: Any) -> Time:
        if isinstance(other, Time):
            return NotImplemented  # Time + Time -> TypeError
        return _typed(Time, int.__add__(self, other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Time | Duration:
        return _typed(Duration if isinstance(other, Time) else Time, int.__sub__(self, other))


def _typed(cls: type, result: Any) -> Any:
    """Wrap an ``int.__op__`` result in ``cls``, passing ``NotImplemented`` through."""
    return result if result is NotImplemented else cls(result)


DESIRED_RECORDING_DURATION = Duration(60 * TIME_UNITS_PER_SEC)
MAX_RECORDING_DURATION = Duration(5 * 60 * TIME_UNITS_PER_SEC)


def from_timespec(sec: int, nsec: int) -> Time:
    """``sec * 90000 + nsec * 90000 // 10**9``: truncating, like the original's integer math.

    :raises ValueError: if ``nsec`` is not in ``[0, 10**9)`` (a normalized timespec).
    """
    if not 0 <= nsec < 1_000_000_000:
        raise ValueError(f"timespec nanoseconds {nsec} out of range [0, 1000000000)")
    return Time(sec * TIME_UNITS_PER_SEC + nsec * TIME_UNITS_PER_SEC // 1_000_000_000)


def now() -> Time:
    """The current wall-clock time (``CLOCK_REALTIME``), truncated to 90 kHz."""
    return from_timespec(*divmod(_time.time_ns(), 1_000_000_000))


# -- calendar arithmetic (``datetime``; the process's zone through ``time.localtime``) --------

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
#: The Gregorian calendar repeats every 400 years, exactly 146 097 days: ``datetime`` starts at
#: year 1, so a year-0 reading is shifted by one cycle there and back.  (Every zone keeps its
#: local mean time that far back, so the shifted instant has the same offset.)
_CYCLE_YEARS = 400
_CYCLE_SEC = 146_097 * _SECONDS_PER_DAY
_YEAR_1_SEC = (datetime(1, 1, 1) - _EPOCH) // _SECOND


def _wall_clock(wall_sec: int) -> tuple[int, datetime]:
    """``(year, reading)`` of a clock showing ``wall_sec`` (counted as if in UTC); ``reading``
    is shifted a cycle (400 years) later for year 0, so use ``year``, not ``reading.year``."""
    cycles = 1 if wall_sec < _YEAR_1_SEC else 0
    reading = _EPOCH + timedelta(seconds=wall_sec + cycles * _CYCLE_SEC)
    return reading.year - cycles * _CYCLE_YEARS, reading


def _utc_offset(unix_sec: int) -> int:
    """The process's local zone offset (seconds east of UTC) at an instant; honours TZ/tzset."""
    return _time.localtime(unix_sec).tm_gmtoff


def _local_reading_to_unix(reading: datetime) -> int:
    """The instant at which local clocks show the naive ``reading``, by ``datetime.timestamp``.

    The PEP 495 ``fold=0`` rule: a reading that occurs twice (the hour repeated when daylight
    time ends) means the first occurrence; a reading that never occurs (the hour skipped when it
    starts) is read with the offset in force before the gap, so ``02:30`` becomes ``03:30``
    daylight time.
    """
    return int(reading.timestamp())


# -- parse / format --------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TIMESTAMP = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?::(?P<fraction>[0-9]{5}))?"
    r"(?P<zone>Z|(?P<sign>[+-])(?P<zone_hour>[0-9]{2}):(?P<zone_minute>[0-9]{2}))?"
)


class TimeParseError(MoonfireError, ValueError):
    """Text that is not a time ``parse_time`` reads; the message quotes it and names the field."""


_FORMAT_HINT = "expected 90 kHz units or YYYY-MM-DDTHH:MM:SS[:FFFFF][Z|+hh:mm|-hh:mm]"


def parse_time(s: str) -> Time:
    """Parse a bare integer of 90 kHz units or ``YYYY-MM-DDTHH:MM:SS[:FFFFF][Z|±hh:mm]``.

    ``FFFFF`` is five digits of 90 kHz units (00000-89999), not a decimal fraction.  Without a
    zone the time is local to this process (``TZ``); see ``_local_reading_to_unix`` for how DST
    gaps and overlaps are read.  Years 0000-9999 are accepted.

    :raises TimeParseError: (a ``ValueError``) quoting ``s`` and naming the field that is wrong.
    """
    if not isinstance(s, str):
        raise TypeError(f"parse_time expects a str, got {type(s).__name__}")
    if _INTEGER.fullmatch(s):
        value = int(s)
        if not _I64_MIN <= value <= _I64_MAX:
            raise TimeParseError(f"unparseable time {s!r}: {value} is out of the 64-bit range")
        return Time(value)
    match = _TIMESTAMP.fullmatch(s)
    if match is None:
        raise TimeParseError(f"unparseable time {s!r}: {_FORMAT_HINT}")
    field = {k: int(v) for k, v in match.groupdict().items() if v is not None and v.isdigit()}
    problem = _field_problem(field)
    if problem:
        raise TimeParseError(f"unparseable time {s!r}: {problem}")
    cycles = 1 if field["year"] < 1 else 0  # see _CYCLE_YEARS
    reading = datetime(
        field["year"] + cycles * _CYCLE_YEARS, field["month"], field["day"],
        field["hour"], field["minute"], field["second"],
    )
    if match["zone"] is None:
        unix_sec = _local_reading_to_unix(reading)
    else:
        zone_sec = field.get("zone_hour", 0) * 3600 + field.get("zone_minute", 0) * 60
        wall = (reading - _EPOCH) // _SECOND
        unix_sec = wall + zone_sec if match["sign"] == "-" else wall - zone_sec
    unix_sec -= cycles * _CYCLE_SEC
    return Time(unix_sec * TIME_UNITS_PER_SEC + field.get("fraction", 0))


def _field_problem(field: dict[str, int]) -> str | None:
    """Why the matched fields do not name a real time, or ``None``."""
    year, month = field["year"], field["month"]
    if not 1 <= month <= 12:
        return f"month {month} out of range"
    if not 1 <= field["day"] <= calendar.monthrange(year, month)[1]:
        return f"day {field['day']} out of range for {year:04d}-{month:02d}"
    for name, limit in (("hour", 23), ("minute", 59), ("second", 59)):
        if field[name] > limit:
            return f"{name} {field[name]} out of range"
    if field.get("fraction", 0) >= TIME_UNITS_PER_SEC:
        return f"90 kHz fraction {field['fraction']:05d} out of range (at most 89999)"
    if field.get("zone_hour", 0) > 23 or field.get("zone_minute", 0) > 59:
        return f"zone offset {field['zone_hour']:02d}:{field['zone_minute']:02d} out of range"
    return None


def format_time(t: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS:FFFFF±hh:mm`` in the process's local zone (``FFFFF`` = 90 kHz units).

    e.g. 102261874050000 -> ``2006-01-02T15:04:05:00000-08:00`` in America/Los_Angeles.  Negative
    times count back from the epoch (the fraction is never negative).  UTC is written ``+00:00``.
    An offset that is not a whole number of minutes (pre-1900 local mean time) is truncated to
    minutes and the clock reading shifted to match, so the text always names exactly ``t`` and
    ``parse_time(format_time(t)) == t`` for years 0000-9999.
    """
    unix_sec, fraction = divmod(index(t), TIME_UNITS_PER_SEC)
    offset_sec = _utc_offset(unix_sec)
    offset_min = abs(offset_sec) // 60 * (1 if offset_sec >= 0 else -1)
    year, reading = _wall_clock(unix_sec + offset_min * 60)
    sign = "-" if offset_min < 0 else "+"
    zone_hour, zone_minute = divmod(abs(offset_min), 60)
    return (
        f"{year:04d}-{reading:%m-%dT%H:%M:%S}:{fraction:05d}"
        f"{sign}{zone_hour:02d}:{zone_minute:02d}"
    )


_DURATION_UNITS = (("day", _SECONDS_PER_DAY), ("hour", 3600), ("minute", 60), ("second", 1))


def format_duration(d: int) -> str:
    """A human duration: every nonzero unit among days, hours, minutes and seconds, largest first.

    Zero units are left out ("1 day 5 seconds"); fractions of a second are truncated; a span
    shorter than a second is "0 seconds".  This is the era-1 ``Display for Duration`` rule
    (brief §3.1): "0 seconds", "1 second", "1 minute 1 second", "1 hour 1 minute", "1 day 1 hour".
    A negative span is its magnitude with a leading "-".
    """
    units = index(d)
    remaining = abs(units) // TIME_UNITS_PER_SEC
    parts = []
    for name, size in _DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    if not parts:
        return "0 seconds"
    return ("-" if units < 0 else "") + " ".join(parts)


def server_time_zone() -> str:
    """The IANA name of the server's zone, for ``timeZoneName`` and calendar days.

    ``TZ`` if it names a zone, else what ``/etc/localtime`` links to, else ``UTC``.
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[-1])
    except OSError:
        pass
    try:
        with open("/etc/timezone") as f:
            candidates.append(f.read().strip())
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"
