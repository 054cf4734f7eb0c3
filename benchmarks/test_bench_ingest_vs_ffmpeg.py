"""Recording CPU against what a user would run instead: ffmpeg ``-c copy`` segmenting (Frigate's
recorder) and GStreamer's ``splitmuxsink``, measured in the same run (issue 13).

**Live** (``test_live_rtsp_ingest_cpu_against_ffmpeg``): a GStreamer RTSP server
(``tests/support/rtsp_server.py --file``, Debian's ``/usr/bin/python3``) plays a 1080p30
4 Mbit/s H.264 clip at its native rate; at the same time, on the same mount, ``moonfire run``
(a real process: its web server listening, Python's start-up and imports included) and
``ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 60 out%03d.mp4`` record
it for ``SECONDS``.  Both are stopped together (SIGTERM: both save what they have) and each
one's whole-process CPU (user + system, every thread) comes from ``os.wait4``.  Each round has
a fresh server, data directory and output directory; the ratio is of the rounds' sums.

**File** (``test_file_ingest_cpu_against_ffmpeg_and_splitmuxsink``): a ``FILE_SECONDS`` clip
(the live clip repeated, timestamps continued) recorded at full speed into 60-s files by
moonfire's streamer (``benchmarks/ingest_cpu.py --record-file``: a process of its own, start-up
included, the session's own CPU reported beside it), by ``ffmpeg -i CLIP -c copy -f segment
-segment_time 60`` and by ``gst-launch-1.0 filesrc ! tsdemux ! h264parse ! splitmuxsink
max-size-time=60 s``.

CPU is reported per hour of the *wall time* both ran (live: both saw the same stream for the
same time) or of the clip (file), and each recorder's recorded duration is checked to be
nearly all of it, so a recorder that quietly records less can't look cheap.  The live rounds
also give each process's CPU from ``STEADY_FROM_SEC`` to the stop (``steady_*``): start-up
left out, what every further hour of recording costs.  Peers missing
(``scripts/bench-peers.sh`` installs them) fail the benchmark; nothing is skipped.

Sizes (``benchmarks/sizes.py``, tiny under ``MOONFIRE_BENCH_TINY``):
``MOONFIRE_BENCH_INGEST_SECONDS`` (default 300), ``MOONFIRE_BENCH_INGEST_FILE_SECONDS`` (default
600), ``MOONFIRE_BENCH_ROUNDS`` (default 3).  The clip is encoded once (60 s; 10 s when tiny)
into ``sizes.cache_dir()`` and repeated to length.  Target (issue 13): live <= 1.0x ffmpeg.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.cli import moonfire_process
from tests.support.net import free_port
from tests.test_ingest import SYSTEM_PYTHON, RtspServer

from benchmarks.ingest_cpu import looped_clip_path
from benchmarks.installed import IMPORT_DIR, moonfire_env, require_compiled_core
from benchmarks.sizes import TINY, cache_dir, size
from moonfire.storage import data_dir as datadir
from moonfire.time import TIME_UNITS_PER_SEC

#: Rounds of 5 minutes: moonfire's start-up (Python's imports, the database, the web server:
#: ~0.5 CPU s) costs what ffmpeg spends recording the first 1.5 minutes, so 60-s rounds
#: measure mostly start-up; ``steady_*`` gives what every further hour costs either way.
SECONDS = size("MOONFIRE_BENCH_INGEST_SECONDS", 300, 12)
FILE_SECONDS = size("MOONFIRE_BENCH_INGEST_FILE_SECONDS", 600, 20)
ROUNDS = size("MOONFIRE_BENCH_ROUNDS", 3, 1)
#: The clip encoded once and repeated to each length (encoding 1080p costs more than the runs).
PIECE_SECONDS = 10 if TINY else 60
ROOT = Path(__file__).resolve().parent.parent
#: How much of the time it ran a live recorder may not have recorded: its start-up (Python's
#: imports for moonfire), connecting, and waiting for the first key frame (1 s GOP).  A tiny
#: run on a loaded machine only has to have recorded something.
START_ALLOWANCE_SEC = SECONDS - 1.0 if TINY else 6.0
INSTALL_HINT = "install the benchmark's peers with `bash scripts/bench-peers.sh`"


#: The live rounds also report each recorder's CPU from here to the stop (``/proc``), past its
#: start-up: what every further stream-hour costs.
STEADY_FROM_SEC = min(15.0, SECONDS / 2)


@dataclass
class Usage:
    """One process's CPU seconds (user + system, from ``wait4``), its CPU seconds from
    ``STEADY_FROM_SEC`` to the stop (``/proc/PID/stat``, 10 ms ticks) and what it recorded."""

    cpu_s: float
    steady_cpu_s: float
    recorded_s: float


def proc_cpu_s(pid: int) -> float:
    """A live process's CPU seconds so far (user + system, every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="module")
def peers() -> dict[str, str]:
    found = {name: require(name) for name in ("ffmpeg", "ffprobe", "gst-launch-1.0")}
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} (with GStreamer's RTSP server bindings) is missing: "
                    f"{INSTALL_HINT}")
    where = require_compiled_core(moonfire_env())
    # An installed moonfire has its bytecode compiled; a checkout run with
    # PYTHONDONTWRITEBYTECODE (CI, containers) would compile every module at each start-up
    # (a seventh of it here), which no user pays.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(IMPORT_DIR / "moonfire"),
                    str(IMPORT_DIR / "moonfire_core")], check=True)
    print(f"\nmoonfire's subprocesses run the compiled core from {where}")
    return found


#: Longest a recorder may take to finish once it should (the file case: minutes of video at
#: full speed take seconds).  A hung recorder fails the round, never hangs it.
EXIT_DEADLINE_SEC = 120.0
#: GStreamer 1.22's ``gst-launch-1.0 ... splitmuxsink`` hangs at the end of the file in about
#: one run of ten (seen in CI and here), having written every segment: a run not done within
#: this (a 10-minute clip takes ~3 s) is killed and run again, up to ``SPLITMUXSINK_RUNS`` in
#: all, and the hung runs are counted in the results.  Only complete runs are measured.
SPLITMUXSINK_DEADLINE_SEC = 30.0
SPLITMUXSINK_RUNS = 3


class Hung(Exception):
    """A process didn't exit within its deadline (it was killed)."""


def wait_usage(
    process: subprocess.Popen, name: str, ok: tuple[int, ...] = (0,),
    deadline_sec: float = EXIT_DEADLINE_SEC, hang_fails: bool = True,
) -> float:
    """Reap ``process``; its CPU seconds.  Fails if it exited with a code not in ``ok``, or
    didn't exit within ``deadline_sec`` (then it is killed; ``Hung`` instead of failing
    unless ``hang_fails``)."""
    deadline = time.monotonic() + deadline_sec
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            if not hang_fails:
                raise Hung(name)
            pytest.fail(f"{name} did not exit within {deadline_sec:g} s; killed it")
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode in ok, f"{name} exited {process.returncode}:\n{output[-4000:]}"
    return usage.ru_utime + usage.ru_stime


def segments_seconds(ffprobe: str, directory: Path) -> float:
    """Summed duration of the video in the files in ``directory`` (ffmpeg's or splitmuxsink's).

    The video stream's duration, not the file's: ffmpeg's segments keep the stream's
    timestamps, and a file's duration then runs from 0 to its end (the fifth minute's segment
    says 300 s)."""
    total = 0.0
    files = sorted(directory.glob("out*.mp4"))
    assert files, f"no segments in {directory}"
    for path in files:
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
             "stream=duration", "-of", "json", str(path)],
            capture_output=True, text=True, check=True,
        )
        total += float(json.loads(probe.stdout)["streams"][0]["duration"])
    return total


def moonfire_recorded_seconds(data_dir: Path) -> float:
    with datadir.open_db(str(data_dir), read_only=True) as db:
        camera = db.list_cameras()[0]
        rows = db.list_recordings(camera.main.id)
        return sum(r.duration_90k for r in rows) / TIME_UNITS_PER_SEC


def ffmpeg_segment_command(ffmpeg: str, source: list[str], out: Path) -> list[str]:
    """The issue's ffmpeg recorder (Frigate's): copy, 60-s MP4 segments."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *source, "-c", "copy",
            "-f", "segment", "-segment_time", "60", str(out / "out%03d.mp4")]


def live_round(peers: dict[str, str], clip: Path, work: Path) -> tuple[Usage, Usage]:
    server = RtspServer(flags=("--file", str(clip)))
    try:
        server.start()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"the GStreamer RTSP server didn't start ({e}): {INSTALL_HINT}")
    try:
        url = server.url("file")
        data_dir = work / "moonfire"
        for argv in (("init",), ("camera", "add", "cam", "--url", url, "--transport", "tcp",
                                 "--retain", "10GB", "--rotate-seconds", "60")):
            done = moonfire_process(*argv, "--data-dir", str(data_dir))
            assert done.returncode == 0, done.stdout + done.stderr
        ffmpeg_out = work / "ffmpeg"
        ffmpeg_out.mkdir()
        env = moonfire_env()  # what a user runs: the compiled core
        began = time.monotonic()
        moonfire = subprocess.Popen(
            [sys.executable, "-m", "moonfire", "run", "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{free_port()}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ffmpeg = subprocess.Popen(
            ffmpeg_segment_command(peers["ffmpeg"], ["-rtsp_transport", "tcp", "-i", url],
                                   ffmpeg_out),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        time.sleep(max(0.0, began + STEADY_FROM_SEC - time.monotonic()))
        steady_from = {p.pid: proc_cpu_s(p.pid) for p in (moonfire, ffmpeg)}
        time.sleep(max(0.0, began + SECONDS - time.monotonic()))
        steady = {}
        for process in (moonfire, ffmpeg):
            assert process.poll() is None, f"{process.args[:3]} ended early"
            steady[process.pid] = proc_cpu_s(process.pid) - steady_from[process.pid]
        for process in (moonfire, ffmpeg):
            process.send_signal(signal.SIGTERM)
        ran_s = time.monotonic() - began
        moonfire_cpu = wait_usage(moonfire, "moonfire run")
        # ffmpeg stopped by a signal finishes its segment and exits 255 ("received signal 15").
        ffmpeg_cpu = wait_usage(ffmpeg, "ffmpeg", ok=(0, 255))
    finally:
        server.stop()
    ours = Usage(moonfire_cpu, steady[moonfire.pid], moonfire_recorded_seconds(data_dir))
    theirs = Usage(ffmpeg_cpu, steady[ffmpeg.pid], segments_seconds(peers["ffprobe"], ffmpeg_out))
    for name, usage in (("moonfire", ours), ("ffmpeg", theirs)):
        assert usage.recorded_s >= ran_s - START_ALLOWANCE_SEC, (
            f"{name} recorded {usage.recorded_s:.1f} s of the {ran_s:.1f} s it ran"
        )
    return ours, theirs


def test_live_rtsp_ingest_cpu_against_ffmpeg(benchmark, peers, tmp_path):
    clip = Path(looped_clip_path(
        SECONDS + 20, peers["ffmpeg"], str(cache_dir()), piece_seconds=PIECE_SECONDS
    ))
    ours: list[Usage] = []
    theirs: list[Usage] = []
    rounds = iter(range(ROUNDS))

    def run() -> None:
        work = tmp_path / f"round-{next(rounds)}"
        work.mkdir()
        moonfire, ffmpeg = live_round(peers, clip, work)
        ours.append(moonfire)
        theirs.append(ffmpeg)
        shutil.rmtree(work)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    per_hour = 3600 / SECONDS
    steady_per_hour = 3600 / (SECONDS - STEADY_FROM_SEC)
    ratios = [o.cpu_s / t.cpu_s for o, t in zip(ours, theirs, strict=True)]
    steady_ratios = [o.steady_cpu_s / t.steady_cpu_s for o, t in zip(ours, theirs, strict=True)]
    benchmark.extra_info.update(
        {
            "seconds": SECONDS,
            "rounds": ROUNDS,
            "cpu_s_per_stream_hour": [round(o.cpu_s * per_hour, 1) for o in ours],
            "ffmpeg_cpu_s_per_stream_hour": [round(t.cpu_s * per_hour, 1) for t in theirs],
            "round_ratios": [round(r, 2) for r in ratios],
            "ratio": round(sum(o.cpu_s for o in ours) / sum(t.cpu_s for t in theirs), 2),
            # From STEADY_FROM_SEC on: start-up (Python's imports, ~1.5 CPU s here) left out.
            "steady_from_s": STEADY_FROM_SEC,
            "steady_cpu_s_per_stream_hour": [
                round(o.steady_cpu_s * steady_per_hour, 1) for o in ours
            ],
            "ffmpeg_steady_cpu_s_per_stream_hour": [
                round(t.steady_cpu_s * steady_per_hour, 1) for t in theirs
            ],
            "steady_round_ratios": [round(r, 2) for r in steady_ratios],
            "steady_ratio": round(
                sum(o.steady_cpu_s for o in ours) / sum(t.steady_cpu_s for t in theirs), 2
            ),
            "recorded_s": [round(o.recorded_s, 1) for o in ours],
            "ffmpeg_recorded_s": [round(t.recorded_s, 1) for t in theirs],
        }
    )
    print("\nlive RTSP ingest against ffmpeg:", benchmark.extra_info)


def file_round(peers: dict[str, str], clip: Path, work: Path) -> dict[str, float]:
    """CPU seconds of each recorder over ``clip`` at full speed (and moonfire's session alone)."""
    cpu: dict[str, float] = {}
    env = moonfire_env()
    moonfire = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ingest_cpu", "--record-file", str(clip),
         "--work", str(work / "moonfire")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    cpu["moonfire"] = wait_usage(moonfire, "moonfire (ingest_cpu.py --record-file)")
    report = json.loads(Path(work / "moonfire" / "result.json").read_text())
    assert report["implementation"] == "cython", f"ingest_cpu.py ran the twins: {report}"
    cpu["moonfire_session"] = report["cpu_s"]
    recorded = {"moonfire": report["video_s"]}
    shutil.rmtree(work / "moonfire")

    ffmpeg_out = work / "ffmpeg"
    ffmpeg_out.mkdir()
    ffmpeg = subprocess.Popen(
        ffmpeg_segment_command(peers["ffmpeg"], ["-i", str(clip)], ffmpeg_out),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    cpu["ffmpeg"] = wait_usage(ffmpeg, "ffmpeg")
    recorded["ffmpeg"] = segments_seconds(peers["ffprobe"], ffmpeg_out)
    shutil.rmtree(ffmpeg_out)

    gst_out = work / "gst"
    cpu["splitmuxsink_hung_runs"] = 0
    for _ in range(SPLITMUXSINK_RUNS):
        shutil.rmtree(gst_out, ignore_errors=True)
        gst_out.mkdir()
        gst = subprocess.Popen(
            [peers["gst-launch-1.0"], "-q", "filesrc", f"location={clip}", "!", "tsdemux", "!",
             "h264parse", "!", "splitmuxsink", f"location={gst_out / 'out%03d.mp4'}",
             f"max-size-time={60 * 10**9}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            cpu["splitmuxsink"] = wait_usage(
                gst, "gst-launch-1.0 ... splitmuxsink", deadline_sec=SPLITMUXSINK_DEADLINE_SEC,
                hang_fails=False,
            )
            break
        except Hung:
            cpu["splitmuxsink_hung_runs"] += 1
    else:
        pytest.fail(f"gst-launch-1.0 ... splitmuxsink hung {SPLITMUXSINK_RUNS} times running "
                    f"{clip} (each killed after {SPLITMUXSINK_DEADLINE_SEC:g} s)")
    recorded["splitmuxsink"] = segments_seconds(peers["ffprobe"], gst_out)
    shutil.rmtree(gst_out)
    for name, seconds in recorded.items():
        assert seconds >= 0.98 * FILE_SECONDS, f"{name} recorded {seconds:.1f} s of {FILE_SECONDS}"
    return cpu


def test_file_ingest_cpu_against_ffmpeg_and_splitmuxsink(benchmark, peers, tmp_path):
    clip = Path(looped_clip_path(
        FILE_SECONDS, peers["ffmpeg"], str(cache_dir()), piece_seconds=PIECE_SECONDS
    ))
    results: list[dict[str, float]] = []
    rounds = iter(range(ROUNDS))

    def run() -> None:
        work = tmp_path / f"round-{next(rounds)}"
        work.mkdir()
        results.append(file_round(peers, clip, work))
        shutil.rmtree(work)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    per_hour = 3600 / FILE_SECONDS

    def best(name: str) -> float:
        return min(r[name] for r in results)

    benchmark.extra_info.update(
        {
            "seconds": FILE_SECONDS,
            "rounds": ROUNDS,
            **{
                f"{name}_cpu_s_per_stream_hour": round(best(name) * per_hour, 2)
                for name in ("moonfire", "moonfire_session", "ffmpeg", "splitmuxsink")
            },
            "splitmuxsink_hung_runs": sum(r["splitmuxsink_hung_runs"] for r in results),
            "ratio_to_ffmpeg": round(best("moonfire") / best("ffmpeg"), 2),
            "ratio_to_splitmuxsink": round(best("moonfire") / best("splitmuxsink"), 2),
            "session_ratio_to_ffmpeg": round(best("moonfire_session") / best("ffmpeg"), 2),
        }
    )
    print("\nfile ingest against ffmpeg and splitmuxsink:", benchmark.extra_info)
