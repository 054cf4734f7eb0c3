"""Shared fixtures: the twin-implementation fixtures and the hypothesis profiles.

Under ``CI`` the ``ci`` profile runs 1000 examples per property.
"""

import os

from hypothesis import HealthCheck, settings

from tests.support.engine import engine  # noqa: F401 - fixture
from tests.support.implementations import impl, testdata  # noqa: F401 - fixtures

settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
