"""The implementation switch does what it says, and a broken build is never hidden."""

import os
import subprocess
import sys

import pytest

import moonfire_core

NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))


@pytest.mark.skipif(NO_EXTENSIONS, reason="this run selects the twins on purpose")
def test_compiled_core_is_in_use_without_the_switch() -> None:
    assert moonfire_core.FALLBACKS == set()
    assert moonfire_core.IMPLEMENTATION == "cython"


def test_switch_selects_the_twins() -> None:
    code = (
        "import moonfire_core, moonfire_core.index as i; "
        "print(moonfire_core.IMPLEMENTATION, i.SampleIndexEncoder.__module__)"
    )
    env = dict(os.environ, MOONFIRE_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["python", "moonfire_core._index_py"]
