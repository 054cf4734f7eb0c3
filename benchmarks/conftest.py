"""Benchmark fixtures: the same ``impl`` and ``testdata`` fixtures as the tests.

Each benchmark takes ``impl`` so its table shows ``[c]`` and ``[py]`` side by side
(``--benchmark-group-by=func``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from implementations import impl, testdata  # noqa: E402, F401 - fixtures
