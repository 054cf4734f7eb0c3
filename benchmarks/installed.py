"""The moonfire a benchmark's subprocesses run: the one the benchmark itself imports, compiled.

A benchmark that starts ``python -m moonfire`` has to measure the moonfire the rest of the
run measures, with the compiled core a user gets.  Pointing the subprocesses at the
checkout's ``src/`` did neither once: after ``pip install .`` (the README's test command,
which builds the extensions into site-packages and leaves ``src/`` without them) the
subprocesses silently ran the pure-Python twins, and the README showed 2.3× ffmpeg for a
live camera and 9.4× for a file where the compiled core measured 0.9× and 1.75×.  So the
subprocesses import moonfire from where this process does (site-packages, or ``src/`` for
an editable install) and a benchmark fails rather than measure the twins by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import moonfire
import moonfire_core

#: Where this process imports moonfire (and moonfire_core) from.
IMPORT_DIR = Path(moonfire.__file__).resolve().parent.parent
#: The checkout: ``python -m benchmarks.ingest_cpu`` runs from here.
ROOT = Path(__file__).resolve().parent.parent
BUILD_HINT = (
    "build it with `pip install -e .` in the checkout (or `python setup.py build_ext "
    "--inplace` after editing a .pyx)"
)


def require_compiled_core_here() -> None:
    """Fail unless this process runs the compiled core, or the twins were chosen on purpose
    (``MOONFIRE_NO_EXTENSIONS=1``: the twin-against-compiled columns, the CI smoke run)."""
    if moonfire_core.NO_EXTENSIONS or not moonfire_core.FALLBACKS:
        return
    pytest.fail(
        f"moonfire_core in {Path(moonfire_core.__file__).parent} has no compiled "
        f"{', '.join(sorted(moonfire_core.FALLBACKS))}: these benchmarks would measure the "
        f"pure-Python twins; {BUILD_HINT}"
    )


def moonfire_env() -> dict[str, str]:
    """The environment for a ``python -m moonfire`` (or ``-m benchmarks.…``) subprocess:
    this process's moonfire first on the path, and the compiled core (what a user runs)."""
    env = dict(os.environ)
    env.pop("MOONFIRE_NO_EXTENSIONS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(IMPORT_DIR), str(ROOT)])
    return env


def require_compiled_core(env: dict[str, str]) -> str:
    """Fail unless a subprocess with ``env`` imports the compiled core from ``IMPORT_DIR``;
    return the directory it imports moonfire_core from (for the benchmark's log)."""
    probe = (
        "import moonfire_core as c, os; "
        "print(c.IMPLEMENTATION, ','.join(sorted(c.FALLBACKS)) or '-', "
        "os.path.dirname(os.path.dirname(os.path.realpath(c.__file__))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        pytest.fail(f"moonfire_core doesn't import in the benchmark's subprocess: "
                    f"{completed.stderr.strip()}")
    implementation, fallbacks, where = completed.stdout.split()
    if implementation != "cython":
        pytest.fail(
            f"moonfire_core in {where} has no compiled {fallbacks.replace(',', ', ')}: the "
            f"benchmark would measure the pure-Python twins; {BUILD_HINT}"
        )
    if Path(where) != IMPORT_DIR:
        pytest.fail(f"the benchmark's subprocess imports moonfire_core from {where}, "
                    f"this process from {IMPORT_DIR}")
    return where
