"""A real ``moonfire run`` process for the tests of the recorder and its web server together.

Several test files start one on a data directory holding the synthetic camera ``front``,
wait for its API, and stop it with SIGTERM the way a service manager would; ``moonfire_run``
is that lifecycle once, so none of them can leave a recorder running after a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.cli import moonfire_process
from tests.support.net import stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def data_dir_with_camera(path: str, url: str, *camera_args: str) -> str:
    """``moonfire init`` a data directory at ``path`` and ``moonfire camera add front --url
    URL --retain 100MiB CAMERA_ARGS`` in it, both as real processes; returns ``path``."""
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", url, "--retain", "100MiB", *camera_args),
    ):
        done = moonfire_process(*argv, "--data-dir", path)
        assert done.returncode == 0, done.stdout + done.stderr
    return path


def start_run(data_dir: str, *args: str) -> subprocess.Popen:
    """``moonfire run --data-dir DATA_DIR ARGS``, its stdout and stderr in one text pipe."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for_api(port: int, proc: subprocess.Popen, timeout: float = 30) -> dict:
    """``GET /api/?days=true`` of the run listening on ``port`` once it answers; fails with
    the run's output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/?days=true", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the API never answered")


@dataclass
class Run:
    """A running (then stopped) ``moonfire run``: ``output`` is set once it has stopped."""

    proc: subprocess.Popen
    output: str = ""

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


@contextmanager
def moonfire_run(data_dir: str, *args: str) -> Iterator[Run]:
    """``start_run(DATA_DIR, ARGS)`` for the ``with`` block; when the block ends it is stopped
    with SIGTERM (SIGKILL after 60 s) and ``Run.output`` holds all it printed, for the test to
    check ``returncode`` and the output after the block.  If the block fails it is killed at
    once: nothing it would say on a clean stop matters then."""
    run = Run(start_run(data_dir, *args))
    try:
        yield run
    except BaseException:
        run.proc.kill()
        run.output, _ = run.proc.communicate()
        raise
    run.output = stop_process(run.proc)
