"""Human byte counts for camera budgets: ``10GiB``, ``500MB``, ``1.5T``, ``1073741824``.

Suffixes follow IEC 80000-13, as ``numfmt --from=auto`` reads them, so a suffix
never means two things:

* IEC, powers of 1024: ``Ki``, ``Mi``, ``Gi``, ``Ti``, ``Pi`` (optionally followed by ``B``);
* SI, powers of 1000: ``k``/``K``, ``M``, ``G``, ``T``, ``P`` (optionally followed by ``B``);
* ``B`` or no suffix: bytes.

Suffixes are case-insensitive and may follow a space.  A fractional count is
allowed with a suffix (``1.5T``) and rounded down to whole bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from moonfire.errors import MoonfireError

_PREFIX_EXPONENT = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SIZE = re.compile(
    r"\s*(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*"
    r"(?P<prefix>[kmgtp]?)(?P<iec>i?)(?P<unit>b?)\s*",
    re.IGNORECASE,
)
_IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class SizeError(MoonfireError, ValueError):
    """Text that does not name a byte count (or names a negative one); the message quotes it."""


_FORMS = "expected bytes or a number with a suffix such as 500MB, 10GiB or 1.5T"


def parse_size(text: str) -> int:
    """The number of bytes ``text`` names.

    :raises SizeError: quoting ``text`` when it is not a size or is negative.
    """
    match = _SIZE.fullmatch(text)
    if match is None or (match["iec"] and not match["prefix"]):
        raise SizeError(f"unparseable size {text!r}: {_FORMS}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as e:  # pragma: no cover - the regex admits only decimals
        raise SizeError(f"unparseable size {text!r}: {_FORMS}") from e
    if number < 0:
        raise SizeError(f"size {text!r} is negative; a budget must be 0 or more bytes")
    if not match["prefix"] and number != number.to_integral_value():
        raise SizeError(f"size {text!r} is a fraction of a byte; {_FORMS}")
    base = 1024 if match["iec"] else 1000
    return int(number * base ** _PREFIX_EXPONENT[match["prefix"].lower()])


def format_size(n: int) -> str:
    """``n`` bytes in the largest IEC unit that keeps the number >= 1, e.g. ``9.3 GiB``."""
    if abs(n) < 1024:
        return f"{n} B"
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_IEC_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {_IEC_UNITS[unit]}"
