"""Runs the benchmarks that compare moonfire with what a user would use instead, and writes
the README's performance table from their results (with the machine and the date).

    python benchmarks/report.py            # full sizes, rewrites README.md's table
    python benchmarks/report.py --quick    # tiny sizes and few rounds (to check it runs)
    python benchmarks/report.py --print    # the table to standard output, README untouched
    python benchmarks/report.py --only benchmarks/test_bench_ingest_vs_ffmpeg.py
        # runs one benchmark and replaces only its rows of the README's table
    python benchmarks/report.py --results results.json
        # rows from a run already made (``pytest --benchmark-json``), merged the same way

Every row is a ratio to a baseline measured in the same run (``cp``, ffmpeg's concat
demuxer, a bare SQLite query, ``build_mp4`` alone, aiohttp's ``FileResponse``, a C write +
SHA-1 loop, ``python3 -c pass``): on a shared machine the absolute times move with the
neighbours, the ratios much less.  The peers must be installed (``bash
scripts/bench-peers.sh``); a missing one fails its benchmark, and then this script.  The table goes
between the ``START``/``END`` markers of README.md; the rest of the README is left alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- benchmarks/report.py: start -->"
END = "<!-- benchmarks/report.py: end -->"

#: The benchmarks the table is made of (pytest node ids or files, with ``-k`` filters).
BENCHMARKS = [
    "benchmarks/test_bench_startup.py",
    "benchmarks/test_bench_export.py",
    "benchmarks/test_bench_view.py",
    "benchmarks/test_bench_http.py::test_full_body_throughput",
    "benchmarks/test_bench_storage_vs_c.py",
    "benchmarks/test_bench_ingest_vs_ffmpeg.py",
]


#: What each ``test_full_body_throughput`` parameter serves.
BODY_LABELS = {
    "file": "a plain-file entity",
    "view.mp4": "a `view.mp4`, sendfile of its sample files",
}


def run_benchmarks(quick: bool, benchmarks: list[str] = BENCHMARKS) -> list[dict]:
    env = dict(os.environ)
    if quick:
        env["MOONFIRE_BENCH_TINY"] = "1"  # benchmarks/sizes.py: every benchmark tiny, one round
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "results.json"
        command = [
            # The live ingest rounds take 17 minutes: the tests' 600-s faulthandler dump
            # would print every thread's stack into the log mid-run, which reads as a hang.
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
            "-o", "faulthandler_timeout=3600",
            f"--benchmark-json={json_path}", *benchmarks,
        ]
        completed = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if completed.returncode != 0:
            sys.exit(f"benchmarks failed (exit {completed.returncode}): {' '.join(command)}")
        results = json.loads(json_path.read_text())
    return results["benchmarks"]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}; measured {today}"
    )


def _extra(results: list[dict], name: str) -> list[dict]:
    return [r["extra_info"] for r in results if r["name"].startswith(name)]


def _span(recordings: int) -> str:
    """One-minute recordings as the span they cover: ``24 hours``, ``1 hour``."""
    hours = recordings / 60
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def table(results: list[dict]) -> str:
    rows = ["| what | measured | against the baseline of the same run | target |",
            "|---|---|---|---|"]
    # Ingest (benchmarks/test_bench_ingest_vs_ffmpeg.py) rows go first, here.
    for e in _extra(results, "test_startup_1m_recordings_100_streams"):
        rows.append(
            f"| `moonfire run` start-up with {e['recordings']:,} recordings over "
            f"{e['streams']} streams: opens and checks, recovery and retention, every "
            f"stream's usage, streamers started, web server listening | {e['min_ms']} ms min, "
            f"{e['median_ms']} ms median | {e['ratio_to_bare_query']}× a bare SQLite open + "
            f"one `group by stream_id` count and sums ({e['bare_query_min_ms']} ms) | < 500 ms |"
        )
    for e in _extra(results, "test_cli_start_against_bare_python"):
        rows.append(
            "| `moonfire status` (reads the same database) / `moonfire --version`, each a new "
            f"process | {e['status_ms']} / {e['version_ms']} ms min | {e['status_ratio']}× / "
            f"{e['version_ratio']}× `python3 -c pass` ({e['python_ms']} ms) | |"
        )
    for e in _extra(results, "test_export_throughput_against_cp"):
        rows.append(
            f"| `moonfire export` of {e['recordings']} one-minute 4 Mbit/s recordings (30 MB "
            f"files, page cache) to one fsynced `.mp4` | {e['mb_per_s']} MB/s | {e['ratio']}× "
            f"`cp` + `sync` of the same files ({e['cp_mb_per_s']} MB/s; median rounds "
            f"{e['median_ratio']}×); {e['ratio_to_ffmpeg']}× `ffmpeg -f concat -c copy` + "
            f"`sync` of one `.mp4` per minute ({e['ffmpeg_mb_per_s']} MB/s) | ≥ 0.9× `cp` |"
        )
    for e in _extra(results, "test_export_first_byte_of_24_hours"):
        rows.append(
            f"| export of {_span(e['recordings'])} ({e['recordings']} recordings): database "
            "opened and queried, every sample "
            f"file checked, `moov` laid out, first byte | {e['first_byte_min_ms']} ms min, "
            f"{e['first_byte_median_ms']} ms median (whole 31 MB `moov`: {e['moov_min_ms']} ms) "
            f"| {e['ratio_to_bare_query']}× a bare SQLite query of the same rows and blobs "
            f"({e['bare_query_min_ms']} ms) | < 100 ms |"
        )
    for e in _extra(results, "test_view_mp4_first_byte_of_24_hours"):
        rows.append(
            f"| `view.mp4` over HTTP: first KiB of {_span(e['recordings'])} ({e['recordings']} "
            f"recordings), database query included | {e['first_kib_min_ms']} ms min, "
            f"{e['first_kib_median_ms']} ms median | "
            f"{e['ratio_to_build_alone']}× `build_mp4` alone ({e['build_mp4_alone_min_ms']} ms) "
            "| < 100 ms |"
        )
    for e in _extra(results, "test_storage_engine_cpu_against_a_c_write_sha1_loop"):
        rows.append(
            f"| storage engine, {e['streams']} streams × {e['seconds']} s of 4 Mbit/s packets in "
            "memory, not paced (index, SHA-1, writes, rotation, fsyncs, SQLite) | "
            f"{e['cpu_s_per_stream_hour']} CPU s per stream-hour | {e['ratio']}× a C loop "
            f"compiled by the benchmark doing write + SHA-1 + fsync per 60-s file "
            f"({e['c_cpu_s_per_stream_hour']} s) | ≤ 1.5× |"
        )
    for e in _extra(results, "test_live_rtsp_ingest_cpu_against_ffmpeg"):
        ours, theirs = e["cpu_s_per_stream_hour"], e["ffmpeg_cpu_s_per_stream_hour"]
        rows.append(
            "| recording a live 1080p30 4 Mbit/s H.264 RTSP camera (GStreamer's RTSP server "
            f"playing a file at its rate): `moonfire run`, {e['rounds']} rounds of "
            f"{e['seconds']} s, whole-process CPU from `wait4`, start-up included | "
            f"{min(ours)}–{max(ours)} CPU s per stream-hour; after the first "
            f"{e['steady_from_s']:g} s: {min(e['steady_cpu_s_per_stream_hour'])}–"
            f"{max(e['steady_cpu_s_per_stream_hour'])} s | {e['ratio']}× `ffmpeg "
            "-rtsp_transport tcp -i URL -c copy -f segment -segment_time 60` recording the same "
            f"camera at the same time ({min(theirs)}–{max(theirs)} s); after the first "
            f"{e['steady_from_s']:g} s: {e['steady_ratio']}× | ≤ 1.0× |"
        )
    for e in _extra(results, "test_file_ingest_cpu_against_ffmpeg_and_splitmuxsink"):
        rows.append(
            f"| recording a {e['seconds'] // 60}-minute 1080p30 4 Mbit/s H.264 file at full "
            "speed into 60-s recordings, one process, start-up included | "
            f"{e['moonfire_cpu_s_per_stream_hour']} CPU s per stream-hour (the session alone: "
            f"{e['moonfire_session_cpu_s_per_stream_hour']} s) | {e['ratio_to_ffmpeg']}× "
            f"`ffmpeg -c copy -f segment` ({e['ffmpeg_cpu_s_per_stream_hour']} s), "
            f"{e['ratio_to_splitmuxsink']}× GStreamer `splitmuxsink` "
            f"({e['splitmuxsink_cpu_s_per_stream_hour']} s) | |"
        )
    for result in results:
        if result["name"].startswith("test_full_body_throughput"):
            e = result["extra_info"]
            label = re.sub(r"^test_full_body_throughput\[?|\]$", "", result["name"])
            label = BODY_LABELS.get(label, label)
            rows.append(
                f"| `serve_entity` body over HTTP ({label}, {e['bytes'] >> 20} MiB) | "
                f"{e['mib_per_s']} MiB/s median | {e['ratio']}× `web.FileResponse` of a plain "
                f"file of the same bytes ({e['baseline_mib_per_s']} MiB/s) | ≥ 0.8× |"
            )
    return "\n".join(rows)


def _row_key(row: str) -> str:
    """What a row measures, its numbers left out: a row of a later run replaces the row with
    the same key."""
    return re.sub(r"[0-9][0-9,.]*", "#", row.split(" | ", 1)[0])


#: The line under the machine line that says where merged rows were measured.
REMEASURED = "Measured again on "


def merge_rows(old_table: str, new_rows: str, where: str) -> str:
    """``old_table`` (the README's, machine line included) with the rows of ``new_rows`` put
    in place of the rows they measure again (new ones at the end), and a line saying they
    were measured on ``where`` (the machine and date), naming them by their first words."""
    replacements = {_row_key(row): row for row in new_rows.splitlines()[2:]}
    whats = [row.split(" | ", 1)[0].removeprefix("| ").split() for row in replacements.values()]
    note = f"{REMEASURED}{where}: the rows " + ", ".join(
        f"\"{' '.join(words[:6])}{' …' if len(words) > 6 else ''}\"" for words in whats
    ) + "."
    lines = []
    for line in old_table.strip("\n").splitlines():
        if line.startswith(REMEASURED):
            continue  # an earlier merge's note: this one says where the new rows come from
        lines.append(replacements.pop(_row_key(line), line) if line.startswith("| ") else line)
        if line.startswith("Machine: "):
            lines.append(note)
    return "\n".join(lines + list(replacements.values()))


def readme_table(readme: Path) -> str:
    content = readme.read_text()
    if START not in content or END not in content:
        sys.exit(f"{readme} has no {START} ... {END} markers for the table")
    return content.partition(START)[2].partition(END)[0]


def write_readme(text: str, readme: Path) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        sys.exit(f"{readme} has no {START} ... {END} markers for the table")
    head, _, rest = content.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--print", action="store_true", help="print, don't touch README.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument(
        "--only", nargs="+", metavar="BENCHMARK",
        help="run these benchmarks only; their rows replace the README's, the rest stay",
    )
    parser.add_argument(
        "--results", type=Path, metavar="JSON",
        help="don't run: rows from this pytest-benchmark JSON file, merged as with --only",
    )
    args = parser.parse_args()
    if args.results is not None:
        results = json.loads(args.results.read_text())["benchmarks"]
    else:
        results = run_benchmarks(args.quick, args.only or BENCHMARKS)
    if args.only or args.results is not None:
        text = merge_rows(readme_table(args.readme), table(results), machine())
    else:
        text = f"Machine: {machine()}.\n\n{table(results)}"
    if args.print:
        print(text)
    else:
        write_readme(text, args.readme)
        print(f"wrote the performance table to {args.readme}")


if __name__ == "__main__":
    main()
