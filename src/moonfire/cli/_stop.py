"""Turn SIGINT/SIGTERM into a stop event, so recording commands shut down in order.

A signal arriving while ``run_cameras`` writes must not raise
``KeyboardInterrupt`` in the middle of a save; the handlers only set the event
the recorder polls, and remember which signal it was for the exit code.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: The shell's convention for "ended by SIGINT" (128 + 2).
EXIT_INTERRUPTED = 130


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM set ``stop``; yields the signals received."""
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_code(code: int, received: list[int]) -> int:
    """``code``, except a clean stop by SIGINT (Ctrl-C) reports 130 like any interrupted command."""
    if code == 0 and signal.SIGINT in received:
        return EXIT_INTERRUPTED
    return code
