"""The benchmarks can't rot: the test pass runs each of them once at a tiny size.

The benchmarks take minutes at their real sizes, so CI doesn't time them; but a benchmark
nobody runs breaks silently (an API it calls changes, a peer goes missing).  Here every
``benchmarks/test_*.py`` runs in a subprocess with ``MOONFIRE_BENCH_TINY=1``, which each
one honours (``benchmarks/sizes.py``: a few recordings, one round, no target asserted on a
time), and pytest-benchmark reduced to one round with no calibration (its
``--benchmark-disable`` would leave ``benchmark.stats`` empty, and the code that turns the
stats into the README's ratios would go untested).  The scripts that aren't pytest files
run with tiny arguments.

Peers the benchmarks compare with (``cp``, ``ffmpeg``, GStreamer, a C compiler) must be
installed: a missing one fails the benchmark, so it fails here (``scripts/test.sh``
installs them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
#: Generous: a tiny run takes ~30-60 s on a loaded 2-core machine; a hang must still end.
TIMEOUT_SEC = 600


def _tiny_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MOONFIRE_BENCH_TINY"] = "1"
    env["MOONFIRE_BENCH_CACHE"] = str(tmp_path / "cache")  # never the user's real-size cache
    for name in list(env):  # the outer run's sizes and pytest options stay out of it
        if name.startswith(("MOONFIRE_BENCH_", "PYTEST_XDIST_")) and name not in (
            "MOONFIRE_BENCH_TINY", "MOONFIRE_BENCH_CACHE"):
            del env[name]
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_every_benchmark_runs_once_at_a_tiny_size(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
        "--benchmark-only", "--benchmark-max-time=0", "--benchmark-min-rounds=1",
        "--benchmark-warmup=off", f"--basetemp={tmp_path / 'tmp'}", f"--junitxml={report}",
    ]
    completed = subprocess.run(
        command, cwd=ROOT, env=_tiny_env(tmp_path), capture_output=True, text=True,
        timeout=TIMEOUT_SEC, check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{' '.join(command)} failed:\n{_tail(output)}"
    cases = ET.parse(report).getroot().iter("testcase")
    ran: dict[str, int] = {}
    for case in cases:
        outcome = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        name = f"{case.get('classname')}.{case.get('name')}"
        assert not outcome, f"{name}: {outcome[0]} in the tiny run:\n{_tail(output)}"
        module = str(case.get("classname")).rpartition(".")[2]
        ran[module] = ran.get(module, 0) + 1
    files = sorted(p.stem for p in BENCHMARKS.glob("test_*.py"))
    assert sorted(ran) == files, f"benchmark files that ran no test: {set(files) - set(ran)}"


def test_ingest_cpu_script_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """``benchmarks/ingest_cpu.py`` (not a pytest file): 2 s of video, 2 streams."""
    cache = tmp_path / "cache"
    cache.mkdir()
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "ingest_cpu.py"), "--seconds", "2", "--streams", "2",
         "--cache", str(cache)],
        cwd=ROOT, env=_tiny_env(tmp_path), capture_output=True, text=True,
        timeout=TIMEOUT_SEC, check=False,
    )
    assert completed.returncode == 0, _tail(completed.stdout + completed.stderr)
    lines = completed.stdout.splitlines()
    assert any(line.startswith("(a) streamer") and "CPU s per stream-hour" in line
               for line in lines), completed.stdout
    assert any(line.startswith("(b) storage engine, 2 streams x 2 s") for line in lines), (
        completed.stdout)


def test_report_merges_a_rerun_benchmark_into_the_readme_table_in_place() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.report import merge_rows
    finally:
        sys.path.remove(str(ROOT))
    old = "\n".join([
        "Machine: a 2-core box; measured 2026-01-01.",
        "",
        "| what | measured | against | target |",
        "|---|---|---|---|",
        "| export of 24 hours (1440 recordings) | 40 ms | 4.6× a query | < 100 ms |",
        "| recording a live camera, 3 rounds of 60 s | 161 s | 2.7× ffmpeg | ≤ 1.0× |",
        "| storage engine | 3.7 s | 1.1× a C loop | ≤ 1.5× |",
    ])
    new = "\n".join([
        "| what | measured | against | target |",
        "|---|---|---|---|",
        "| recording a live camera, 3 rounds of 300 s | 50 s | 0.9× ffmpeg | ≤ 1.0× |",
        "| recording a file | 14 s | 2.2× ffmpeg | |",
    ])
    merged = merge_rows(old, new, "a 4-core box; measured 2026-02-02").splitlines()
    assert merged[0] == old.splitlines()[0]  # the machine of the rows left as they were
    assert merged[1] == (
        'Measured again on a 4-core box; measured 2026-02-02: the rows "recording a live '
        'camera, 3 rounds …", "recording a file".'
    )
    assert merged[2:6] == old.splitlines()[1:5]  # untouched rows stay
    assert merged[6] == new.splitlines()[2]  # the rerun row, where the old one was
    assert merged[7] == old.splitlines()[6]
    assert merged[8] == new.splitlines()[3]  # a row new to the table goes last
    assert len(merged) == 9
    again = merge_rows("\n".join(merged), new, "elsewhere").splitlines()
    assert again[1].startswith("Measured again on elsewhere: ") and len(again) == 9
