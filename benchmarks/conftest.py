"""Benchmark fixtures: the same ``impl`` and ``testdata`` fixtures as the tests.

Each benchmark takes ``impl`` so its table shows ``[c]`` and ``[py]`` side by side
(``--benchmark-group-by=func``).
"""

from tests.support.implementations import impl, testdata  # noqa: F401 - fixtures
