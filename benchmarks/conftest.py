"""Benchmark fixtures: the same ``impl`` and ``testdata`` fixtures as ``tests/conftest.py``.

Each benchmark takes ``impl`` so its table shows ``[c]`` and ``[py]`` side by side
(``--benchmark-group-by=func``).
"""

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))
IMPLEMENTATIONS = ["py"] if NO_EXTENSIONS else ["c", "py"]
TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"


class Implementation:
    """Loads ``moonfire_core._<stem>_<kind>`` on attribute access: ``impl.index``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __getattr__(self, stem: str) -> ModuleType:
        if stem.startswith("__"):
            raise AttributeError(stem)
        suffix = "c" if self.kind == "c" else "py"
        return importlib.import_module(f"moonfire_core._{stem}_{suffix}")

    def __repr__(self) -> str:
        return self.kind


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(k, marks=[pytest.mark.c_extension] if k == "c" else [])
        for k in IMPLEMENTATIONS
    ],
    ids=str,
)
def impl(request: pytest.FixtureRequest) -> Implementation:
    return Implementation(request.param)


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"shared test data not found at {TESTDATA}")
    return TESTDATA
