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


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM ``proc`` and wait for it; SIGKILL if it doesn't stop within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
