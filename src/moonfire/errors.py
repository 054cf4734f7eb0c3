"""The root of every error moonfire reports to a person.

An error derived from ``MoonfireError`` means "the input, the configuration or the machine is
not as moonfire needs it", and its message is the whole story: the CLI prints it as one line
and exits 1.  Anything else that escapes is a bug in moonfire, and the CLI says so (an
internal error, with a hint to rerun with ``--verbose`` for the traceback), so that a bug is
never mistaken for bad input.

``moonfire_core`` keeps its own errors (it imports nothing from ``moonfire``); the few of them
that describe bad data rather than a bug are those ``core_user_errors()`` returns.
"""

from __future__ import annotations


class MoonfireError(Exception):
    """A failure whose message says what was wrong and where, for the person running moonfire."""


def core_user_errors() -> tuple[type[Exception], ...]:
    """Errors of the compiled core that describe bad data, not a bug in moonfire.

    A function, not a constant: ``moonfire_core`` imports NumPy, and every module imports
    this one, including the CLI's entry point, which must stay light (``moonfire --help``).
    """
    from moonfire_core import CorruptIndexError, RecordingAbandonedError

    return (CorruptIndexError, RecordingAbandonedError)
