"""``moonfire.time`` (brief §3.1): the era-1 parse/format/display vectors, DST handling and
round trips in zones with daylight time, half-hour offsets and pre-1900 local mean time."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire.time import (
    DESIRED_RECORDING_DURATION,
    MAX_RECORDING_DURATION,
    TIME_UNITS_PER_SEC,
    Duration,
    Time,
    format_duration,
    format_time,
    from_timespec,
    now,
    parse_time,
)

SEC = TIME_UNITS_PER_SEC
ZONEINFO = Path("/usr/share/zoneinfo")
# DST, half-hour DST, +05:30, negative-DST Ireland, -03:30 with DST, +14, and Liberia's
# -00:44:30 (until 1972) for offsets that are not whole minutes.
ZONES = [
    "America/Los_Angeles",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Europe/Dublin",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Africa/Monrovia",
    "UTC",
]


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    """Make ``name`` the process's local zone (TZ + tzset), restoring the previous one after."""
    if not (ZONEINFO / name).is_file():
        pytest.fail(f"time zone data for {name} missing under {ZONEINFO}; install tzdata")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TZ", name)
            time.tzset()
            yield
    finally:
        time.tzset()


@pytest.fixture
def los_angeles() -> Iterator[None]:
    with local_zone("America/Los_Angeles"):
        yield


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2006-01-02T15:04:05-07:00", 102261550050000),
        ("2006-01-02T15:04:05:00001-07:00", 102261550050001),
        ("2006-01-02T15:04:05-08:00", 102261874050000),
        ("2006-01-02T15:04:05", 102261874050000),  # no zone: local (PST)
        ("2006-01-02T15:04:05Z", 102259282050000),
        ("2006-01-02T15:04:05-00:00", 102259282050000),
        ("102261874050000", 102261874050000),
        ("-5", -5),
        ("+5", 5),
    ],
)
def test_parse_time_brief_vectors(los_angeles, text: str, expected: int) -> None:
    parsed = parse_time(text)
    assert type(parsed) is Time
    assert parsed == expected


def test_format_time_brief_vector(los_angeles) -> None:
    assert format_time(102261874050000) == "2006-01-02T15:04:05:00000-08:00"
    assert str(Time(102261874050000)) == "2006-01-02T15:04:05:00000-08:00"


def test_format_time_writes_utc_as_plus_zero_and_never_a_negative_fraction() -> None:
    with local_zone("UTC"):
        assert format_time(0) == "1970-01-01T00:00:00:00000+00:00"
        assert format_time(-1) == "1969-12-31T23:59:59:89999+00:00"


@pytest.mark.parametrize(
    ("zone", "first_occurrence"),
    [
        ("America/Los_Angeles", "2006-10-29T01:30:00-07:00"),  # PDT, then PST
        ("Europe/Dublin", "2006-10-29T01:30:00+01:00"),  # IST, then GMT (east of UTC)
    ],
)
def test_ambiguous_local_time_means_the_first_occurrence(zone: str, first_occurrence) -> None:
    with local_zone(zone):
        assert parse_time(first_occurrence[:-6]) == parse_time(first_occurrence)


@pytest.mark.parametrize(
    ("zone", "skipped", "read_as"),
    [
        ("America/Los_Angeles", "2006-04-02T02:30:00-08:00", "2006-04-02T03:30:00:00000-07:00"),
        ("Europe/Dublin", "2006-03-26T01:30:00+00:00", "2006-03-26T02:30:00:00000+01:00"),
    ],
)
def test_skipped_local_time_is_read_with_the_offset_before_the_gap(
    zone: str, skipped: str, read_as: str
) -> None:
    with local_zone(zone):
        parsed = parse_time(skipped[:-6])
        assert parsed == parse_time(skipped)
        assert format_time(parsed) == read_as


def test_local_mean_time_offset_is_truncated_to_minutes_and_still_names_the_instant() -> None:
    with local_zone("America/Los_Angeles"):  # LMT -07:52:58 before 1883-11-18
        t = parse_time("1850-06-01T12:00:00Z")
        text = format_time(t)
        assert text == "1850-06-01T04:08:00:00000-07:52"
        assert parse_time(text) == t


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2006-13-02T15:04:05", "month 13 out of range"),
        ("2006-00-02T15:04:05", "month 0 out of range"),
        ("2006-02-29T15:04:05", "day 29 out of range for 2006-02"),
        ("2006-01-00T15:04:05", "day 0 out of range for 2006-01"),
        ("2006-01-02T24:04:05", "hour 24 out of range"),
        ("2006-01-02T15:60:05", "minute 60 out of range"),
        ("2006-01-02T15:04:60", "second 60 out of range"),
        ("2006-01-02T15:04:05:90000", "90 kHz fraction 90000 out of range (at most 89999)"),
        ("2006-01-02T15:04:05+24:00", "zone offset 24:00 out of range"),
        ("2006-01-02T15:04:05-07:60", "zone offset 07:60 out of range"),
        ("9223372036854775808", "9223372036854775808 is out of the 64-bit range"),
        ("", "expected 90 kHz units or YYYY-MM-DDTHH:MM:SS"),
        ("2006-01-02 15:04:05", "expected 90 kHz units or YYYY-MM-DDTHH:MM:SS"),
        ("2006-01-02T15:04:05.5", "expected 90 kHz units"),
        ("2006-01-02T15:04:05:0001", "expected 90 kHz units"),
        ("2006-01-02T15:04:05-0700", "expected 90 kHz units"),
        ("2006-01-02T15:04:05\n", "expected 90 kHz units"),
        ("1_000", "expected 90 kHz units"),
        ("٣", "expected 90 kHz units"),  # a non-ASCII digit
    ],
)
def test_bad_time_is_rejected_quoting_it_and_naming_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"unparseable time {text!r}: {reason}")):
        parse_time(text)


def test_parse_time_refuses_bytes() -> None:
    with pytest.raises(TypeError, match="parse_time expects a str, got bytes"):
        parse_time(b"0")  # type: ignore[arg-type]


FIRST_SUPPORTED = -62_167_132_800 * SEC  # 0000-01-02T00:00:00Z: a day of slack for zones
LAST_SUPPORTED = 253_402_214_400 * SEC - 1  # 9999-12-31T00:00:00Z minus one unit
DST_TRANSITIONS = [  # (zone, the instant its offset changed)
    ("America/Los_Angeles", "2006-04-02T10:00:00Z"),
    ("America/Los_Angeles", "2006-10-29T09:00:00Z"),
    ("Europe/Dublin", "2006-03-26T01:00:00Z"),
    ("Europe/Dublin", "2006-10-29T01:00:00Z"),
    ("Australia/Lord_Howe", "2006-04-01T15:00:00Z"),  # +11:00 -> +10:30
    ("America/St_Johns", "2006-04-02T03:31:00Z"),  # -03:30 -> -02:30
]
near_transitions = st.builds(
    lambda pair, offset: (pair[0], int(parse_time(pair[1])) + offset),
    st.sampled_from(DST_TRANSITIONS),
    st.integers(-2 * 3600 * SEC, 2 * 3600 * SEC),
)


def zones_and_times(first: int, last: int) -> st.SearchStrategy[tuple[str, int]]:
    return st.one_of(st.tuples(st.sampled_from(ZONES), st.integers(first, last)), near_transitions)


@given(zone_and_time=zones_and_times(FIRST_SUPPORTED, LAST_SUPPORTED))
def test_format_then_parse_round_trips_in_every_zone(zone_and_time: tuple[str, int]) -> None:
    zone, t = zone_and_time
    with local_zone(zone):
        text = format_time(t)
        assert parse_time(text) == t, text


# 1973-2100: every zone above has whole-minute offsets then (Liberia's -00:44:30 ended 1972).
@given(zone_and_time=zones_and_times(94_694_400 * SEC, 4_102_444_800 * SEC))
def test_zoneless_reading_parses_to_the_first_instant_showing_it(
    zone_and_time: tuple[str, int],
) -> None:
    zone, t = zone_and_time
    with local_zone(zone):
        reading = format_time(t)[:-6]  # drop "±hh:mm"
        parsed = parse_time(reading)
        assert parsed <= t  # the first occurrence of an ambiguous reading
        assert format_time(parsed)[:-6] == reading


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (2, "2 seconds"),
        (60, "1 minute"),
        (61, "1 minute 1 second"),
        (120, "2 minutes"),
        (3600, "1 hour"),
        (3660, "1 hour 1 minute"),
        (3720, "1 hour 2 minutes"),
        (7200, "2 hours"),
        (86_400, "1 day"),
        (86_400 + 3600, "1 day 1 hour"),
        (86_400 + 5, "1 day 5 seconds"),
        (2 * 86_400 + 3 * 3600 + 4 * 60 + 5, "2 days 3 hours 4 minutes 5 seconds"),
        (-61, "-1 minute 1 second"),
    ],
)
def test_format_duration_shows_every_nonzero_unit(seconds: int, text: str) -> None:
    assert format_duration(seconds * SEC) == text
    assert str(Duration(seconds * SEC)) == text


def test_format_duration_truncates_fractions_of_a_second() -> None:
    assert format_duration(SEC - 1) == "0 seconds"
    assert format_duration(-(SEC - 1)) == "0 seconds"
    assert format_duration(5_399_985) == "59 seconds"


@pytest.mark.parametrize(
    ("sec", "nsec", "expected"),
    [
        (0, 0, 0),
        (0, 11_111, 0),  # 11,111 ns is just under one 90 kHz unit
        (0, 11_112, 1),
        (1, 999_999_999, SEC + 89_999),
        (-1, 500_000_000, -SEC + 45_000),
        (1_430_006_400, 0, 128_700_576_000_000),  # the streamer test's T, 2015-04-26Z
    ],
)
def test_from_timespec_truncates_nanoseconds(sec: int, nsec: int, expected: int) -> None:
    converted = from_timespec(sec, nsec)
    assert type(converted) is Time
    assert converted == expected


@pytest.mark.parametrize("nsec", [-1, 1_000_000_000])
def test_from_timespec_rejects_unnormalized_nanoseconds(nsec: int) -> None:
    with pytest.raises(ValueError, match=f"timespec nanoseconds {nsec} out of range"):
        from_timespec(0, nsec)


def test_now_is_the_realtime_clock_in_90k_units() -> None:
    before = time.time_ns() * 9 // 100_000
    current = now()
    after = time.time_ns() * 9 // 100_000
    assert type(current) is Time
    assert before <= current <= after


T = Time(102261874050000)
D = Duration(90_000)


@pytest.mark.parametrize(
    ("expression", "kind", "value"),
    [
        (lambda: T - Time(102261874040000), Duration, 10_000),
        (lambda: T + D, Time, 102261874140000),
        (lambda: D + T, Time, 102261874140000),
        (lambda: T - D, Time, 102261873960000),
        (lambda: T + 5, Time, 102261874050005),
        (lambda: 5 + T, Time, 102261874050005),
        (lambda: D + D, Duration, 180_000),
        (lambda: D - 1, Duration, 89_999),
        (lambda: 1 - D, Duration, -89_999),
        (lambda: sum([D, D, D]), Duration, 270_000),
        (lambda: -D, Duration, -90_000),
        (lambda: abs(-D), Duration, 90_000),
        (lambda: 3 * D, Duration, 270_000),
        (lambda: D // 4, Duration, 22_500),
        (lambda: D % 7, Duration, 90_000 % 7),
        (lambda: MAX_RECORDING_DURATION // DESIRED_RECORDING_DURATION, int, 5),
        (lambda: T * 2, int, 204523748100000),
    ],
)
def test_arithmetic_keeps_the_meaningful_type(expression, kind: type, value: int) -> None:
    result = expression()
    assert type(result) is kind
    assert result == value


@pytest.mark.parametrize("expression", [lambda: T + T, lambda: D * D], ids=["T+T", "D*D"])
def test_meaningless_arithmetic_is_a_type_error(expression) -> None:
    with pytest.raises(TypeError):
        expression()


def test_repr_shows_the_number_and_format_specs_still_work(los_angeles) -> None:
    assert repr(T) == "Time(102261874050000)"
    assert repr(D) == "Duration(90000)"
    assert f"{T} / {D} / {T:d}" == "2006-01-02T15:04:05:00000-08:00 / 1 second / 102261874050000"


def test_constants() -> None:
    assert TIME_UNITS_PER_SEC == 90_000
    assert DESIRED_RECORDING_DURATION == 5_400_000
    assert MAX_RECORDING_DURATION == 27_000_000
    assert type(DESIRED_RECORDING_DURATION) is Duration

