"""The web UI's logic that has no DOM (time in the server's zone across DST, the timeline's
axis, ticks and spans, view.mp4 segments of an export), unit-tested with node's built-in test
runner: ``node --test tests/js/`` runs the ``.test.mjs`` files there against the ES modules
the UI ships (``src/moonfire/web/static/js``).

Without node the test skips on a developer's machine and fails under ``CI``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JS_TESTS = os.path.join(ROOT, "tests", "js")


def test_the_ui_logic_passes_its_node_tests():
    node = shutil.which("node")
    if node is None:
        message = "node is not installed (Debian package nodejs); the UI's logic tests need it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    files = sorted(f for f in os.listdir(JS_TESTS) if f.endswith(".test.mjs"))
    assert len(files) >= 2, files
    done = subprocess.run(
        [node, "--test", *(os.path.join(JS_TESTS, f) for f in files)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        # TZ: the logic must not depend on the machine's zone (it takes the server's).
        env=dict(os.environ, TZ="Pacific/Chatham"),
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", done.stdout, re.M)
    assert passed and failed, done.stdout[-2000:]
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 10, done.stdout[-2000:]
