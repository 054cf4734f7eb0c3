"""Benchmark fixtures: the same ``impl`` and ``testdata`` fixtures as the tests.

Each benchmark takes ``impl`` so its table shows ``[c]`` and ``[py]`` side by side
(``--benchmark-group-by=func``).  Every benchmark fails if the compiled core didn't import
(unless ``MOONFIRE_NO_EXTENSIONS=1`` chose the twins): a number measured on the twins by
accident would be wrong by several times.
"""

import pytest
from tests.support.implementations import impl, testdata  # noqa: F401 - fixtures

from benchmarks.installed import require_compiled_core_here


@pytest.fixture(scope="session", autouse=True)
def compiled_core() -> None:
    require_compiled_core_here()
