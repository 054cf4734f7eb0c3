"""A small tmpfs that a test mounts itself (as root) for a full disk or a vanishing one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=1m``) at ``mountpoint``; unmount after.

    Without root the test is skipped, except under ``CI``, where it fails: CI must run it.
    A test may unmount it itself (lazily, as a pulled disk); it is then left alone.
    """
    mountpoint.mkdir(exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        message = f"can't mount a tmpfs (needs root): {proc.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)
