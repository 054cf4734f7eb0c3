"""The implementation switch does what it says, and a broken build is never hidden."""

import logging
import os
import subprocess
import sys

import pytest

import moonfire_core

NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))


@pytest.mark.skipif(NO_EXTENSIONS, reason="this run selects the twins on purpose")
def test_compiled_core_is_in_use_without_the_switch() -> None:
    assert moonfire_core.FALLBACKS == set()
    assert moonfire_core.IMPLEMENTATION == "cython"


def test_switch_selects_the_twins() -> None:
    code = (
        "import moonfire_core, moonfire_core.index as i; "
        "print(moonfire_core.IMPLEMENTATION, i.SampleIndexEncoder.__module__)"
    )
    env = dict(os.environ, MOONFIRE_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["python", "moonfire_core._index_py"]


def test_every_selector_is_counted_including_the_rtp_depacketizer() -> None:
    # IMPLEMENTATION is computed at import: a selector imported later (rtp was) could fall
    # back without FALLBACKS or IMPLEMENTATION saying so.
    kind = "py" if NO_EXTENSIONS else "c"
    assert moonfire_core.rtp.RtpDepacketizer.__module__ == f"moonfire_core._rtp_{kind}"


def test_recording_on_twins_by_accident_warns_in_the_log(monkeypatch, caplog) -> None:
    from moonfire.ingest.daemon import warn_if_core_not_compiled

    monkeypatch.setattr(moonfire_core, "NO_EXTENSIONS", False)
    monkeypatch.setattr(moonfire_core, "FALLBACKS", {"writer", "rtp"})
    with caplog.at_level(logging.INFO, logger="moonfire.ingest.daemon"):
        warn_if_core_not_compiled()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "the compiled core is missing (rtp, writer from " in record.getMessage()

    caplog.clear()
    monkeypatch.setattr(moonfire_core, "NO_EXTENSIONS", True)
    with caplog.at_level(logging.INFO, logger="moonfire.ingest.daemon"):
        warn_if_core_not_compiled()
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "MOONFIRE_NO_EXTENSIONS is set" in record.getMessage()
