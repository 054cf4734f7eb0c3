"""Loopback helpers for the tests that run a real server or ``moonfire run --listen``."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> str:
    """SIGTERM ``proc`` and wait for it; SIGKILL if it doesn't stop within ``timeout`` (its
    ``returncode`` then says so).  Returns what it printed to a text-mode ``stdout`` pipe,
    read to the end (a pipe left unread can stall the process), or "" if it has none."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
