#!/usr/bin/env bash
# Install everything the tests need, build the compiled core, and run the tests.
#
#   bash scripts/test.sh            # compiled core (and both twins in core tests)
#   MOONFIRE_NO_EXTENSIONS=1 bash scripts/test.sh   # pure-Python twins only
#
# Extra arguments go to pytest.  Needs root (or sudo) for the Debian packages
# and for the tests that mount a small tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the GStreamer RTSP server the ingest tests start themselves, and the
# headless browser (with its WebDriver) that plays view.mp4 and live.m4s in tests/test_browser.py
# and drives the web UI in tests/test_ui.py, and Node.js for the UI's own unit tests (tests/js/).
# ffmpeg and gst-launch-1.0: the peers the benchmarks compare with, which
# tests/test_benchmarks_smoke.py runs once at a tiny size (a missing peer fails a benchmark).
DEBIAN_PACKAGES=(
    python3-gi gir1.2-gst-rtsp-server-1.0 python3-gst-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
    chromium chromium-driver
    nodejs
    ffmpeg gstreamer1.0-tools
)
bash scripts/debian-install.sh "${DEBIAN_PACKAGES[@]}"

# The package itself, always with the compiled core: the twins ship beside it,
# and MOONFIRE_NO_EXTENSIONS at run time is what selects them.
env -u MOONFIRE_NO_EXTENSIONS python3 -m pip install -q ".[test]"

python3 -m ruff check src tests benchmarks
python3 -m mypy src
# Two workers (one per core here), each taking whole test files (--dist loadfile, so a
# module's shared server is started once): most tests wait on real time (cameras, browsers),
# so this halves the wall time.  MOONFIRE_TEST_WORKERS=0 runs in one process.
# --durations: the slowest tests are named in the log, to keep the CI run within its budget.
python3 -m pytest -n "${MOONFIRE_TEST_WORKERS:-2}" --dist loadfile --durations=20 "$@"
