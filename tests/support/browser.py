"""Headless Debian Chromium through selenium, for the tests that load moonfire's pages.

``need_browser`` skips on a developer's machine without Chromium, its driver or selenium and
fails under ``CI`` (which must run these tests; ``scripts/test.sh`` installs them);
``chromium`` starts one with the flags media-notes §7 lists and a fresh profile;
``wait_until`` polls with the page's state in the failure message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
    "--mute-audio",
)


def need_browser() -> None:
    """Skip (developer) or fail (CI) without Chromium, its driver or selenium."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = (f"no headless browser ({', '.join(missing)} missing); scripts/test.sh "
                   "installs the Debian packages chromium and chromium-driver and selenium")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def chromium(*, download_dir: str | None = None,
             window: tuple[int, int] | None = None) -> Iterator[Any]:
    """A headless Chromium (selenium ``WebDriver``); downloads go to ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="moonfire-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if window is not None:
        options.add_argument(f"--window-size={window[0]},{window[1]}")
    if download_dir is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": download_dir,
            "download.prompt_for_download": False,
        })
    # SE_OFFLINE: Selenium Manager would otherwise try to download a driver first.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(
    what: str, probe: Callable[[], Any], timeout: float, state: Callable[[], Any]
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the page's state."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; page state: {state()}")
        time.sleep(0.1)
