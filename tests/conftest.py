"""Shared fixtures: the twin-implementation fixtures and the hypothesis profiles.

Under ``CI`` the ``ci`` profile runs 1000 examples per property.
"""

import os

from hypothesis import HealthCheck, settings

from tests.support.engine import engine  # noqa: F401 - fixture
from tests.support.implementations import impl, testdata  # noqa: F401 - fixtures
from tests.support.net import free_port

settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Every `moonfire run` a test starts without --listen serves on this process's own port, not
# 8080: the suite runs in several processes at once (scripts/test.sh), each with its recorders.
os.environ["MOONFIRE_LISTEN"] = f"127.0.0.1:{free_port()}"
