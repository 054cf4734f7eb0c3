"""The implementation fixtures shared by ``tests/`` and ``benchmarks/``.

``impl`` runs a core test (or benchmark) against each twin: ``c`` imports the
compiled modules *directly* (so a missing build fails loudly) and ``py`` the
pure-Python twins.  With ``MOONFIRE_NO_EXTENSIONS=1`` only ``py`` is collected.
"""

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))
IMPLEMENTATIONS = ["py"] if NO_EXTENSIONS else ["c", "py"]
#: Real camera data kept in the repository (``tests/data/README.md`` says what each file is).
TESTDATA = Path(__file__).resolve().parent.parent / "data"
#: A data directory written by the schema-2 release (``tests/data/README.md``).
FIXTURE_V2 = TESTDATA / "schema-v2"

class Implementation:
    """Loads ``moonfire_core._<stem>_<kind>`` on attribute access: ``impl.index``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __getattr__(self, stem: str) -> ModuleType:
        if stem.startswith("__"):
            raise AttributeError(stem)
        suffix = "c" if self.kind == "c" else "py"
        try:
            return importlib.import_module(f"moonfire_core._{stem}_{suffix}")
        except ModuleNotFoundError as error:
            # getattr() probes (hypothesis looks for a mock marker) need AttributeError; the
            # message and the chained error still name the missing module.
            if error.name != f"moonfire_core._{stem}_{suffix}":
                raise
            raise AttributeError(f"{self.kind} implementation has no {stem!r}: {error}") from error

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
        pytest.fail(f"test data not found at {TESTDATA}")
    return TESTDATA
