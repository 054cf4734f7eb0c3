"""Human byte counts for budgets: IEC suffixes are powers of 1024, SI ones powers of 1000."""

from __future__ import annotations

import pytest

from moonfire.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1073741824", 2**30),
        ("10GiB", 10 * 2**30),
        ("10gib", 10 * 2**30),
        ("10 Gi", 10 * 2**30),
        ("3KiB", 3 * 1024),
        ("500MB", 500 * 10**6),
        ("500M", 500 * 10**6),
        ("2k", 2000),
        ("1.5T", 1_500_000_000_000),
        ("1.5TiB", 3 * 2**39),
        ("0.5KiB", 512),
        ("1.0001k", 1000),  # fractions of a byte round down
        ("7B", 7),
        (" 2 PB ", 2 * 10**15),
    ],
)
def test_parse_size_reads_iec_and_si_suffixes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unparseable size ''"),
        ("lots", "unparseable size 'lots'"),
        ("10XB", "unparseable size '10XB'"),
        ("10i", "unparseable size '10i'"),
        ("1.2.3G", "unparseable size '1.2.3G'"),
        ("-5GiB", "size '-5GiB' is negative"),
        ("1.5", "size '1.5' is a fraction of a byte"),
    ],
)
def test_parse_size_rejects_bad_input_quoting_it(text, message):
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        parse_size(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (10 * 2**30, "10.0 GiB"),
     (2**70, f"{2**20:.1f} PiB")],
)
def test_format_size_uses_the_largest_iec_unit(n, text):
    assert format_size(n) == text
