"""The sizes every benchmark honours: ``MOONFIRE_BENCH_TINY=1`` runs each one once at a tiny
size (``tests/test_benchmarks_smoke.py``, in CI, so the benchmarks can't rot), and where
the big inputs built once are kept.

A tiny run checks that a benchmark still runs and that its assertions about *what* it did
hold; its timings mean nothing, so targets on times are not asserted then.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Set by the smoke test: every benchmark at a tiny size, one round.
TINY = os.environ.get("MOONFIRE_BENCH_TINY", "") not in ("", "0")


def size(name: str, full: int, tiny: int) -> int:
    """``$name`` if set, else ``tiny`` under ``MOONFIRE_BENCH_TINY``, else ``full``."""
    value = os.environ.get(name)
    if value is not None:
        return int(value)
    return tiny if TINY else full


def cache_dir() -> Path:
    """Where benchmarks keep inputs that take long to build (``$MOONFIRE_BENCH_CACHE``)."""
    return Path(os.environ.get("MOONFIRE_BENCH_CACHE", Path.home() / ".cache" / "moonfire-bench"))
