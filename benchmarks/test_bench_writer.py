"""``Writer.write`` per packet against the plain loop it replaces, in the same run.

The baseline (``plain``) is what a recorder without the Writer would do per packet:
``os.write(fd, data)`` plus ``sha1.update(data)``.  The Writer does more (index, clock
correction, local-start tracking) but batches writes through its user-space buffer, so the
targets are: at least 0.9x the plain loop's throughput at 16 KiB packets and faster than it at
512 B.  Each round writes a fresh small file (set up outside the timing) and the timed body
includes ``close``, i.e. the final flush and the hand-over, so buffered bytes are not left out.
Compare the ``[c]``/``[py]`` rows with ``[plain]`` in each table (``--benchmark-group-by=func``).
"""

import hashlib
import itertools
import os
import random
from pathlib import Path
from typing import Any

import pytest
from tests.support.implementations import IMPLEMENTATIONS, Implementation

from benchmarks.sizes import TINY

T0 = 128_700_576_000_000
FRAME = 3000
ROUNDS = 1 if TINY else 20
VARIANTS = [
    pytest.param(v, marks=[pytest.mark.c_extension] if v == "c" else [])
    for v in [*IMPLEMENTATIONS, "plain"]
]


class ClosingSink:
    """Takes the fd like the syncer would and closes it (no fsync: that is the syncer's cost)."""

    def save(self, recording: Any) -> None:
        os.close(recording.fd)

    def abandon(self, sample_file_uuid: bytes, fd: int | None, error: Any) -> None:
        if fd is not None:
            os.close(fd)


def frames(packet_bytes: int, count: int) -> list[tuple[bytes, int, int, bool]]:
    data = random.Random(packet_bytes).randbytes(packet_bytes)
    return [(data, T0 + i * FRAME, i * FRAME, i % 30 == 0) for i in range(count)]


def run_benchmark(benchmark: Any, tmp_path: Path, variant: str, packet_bytes: int, count: int):
    stream = frames(packet_bytes, count)
    names = (tmp_path / f"rec{i}" for i in itertools.count())
    last: list[Path] = []
    sink = ClosingSink()

    def new_file() -> int:
        if last:
            last.pop().unlink()
        path = next(names)
        last.append(path)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    if variant == "plain":

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (new_file(),), {}

        def run(fd: int) -> None:
            sha1 = hashlib.sha1()
            write, update = os.write, sha1.update
            for data, _, _, _ in stream:
                write(fd, data)
                update(data)
            sha1.digest()
            os.close(fd)

    else:
        writer_class = Implementation(variant).writer.Writer
        uuid = b"u" * 16

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            fd = new_file()
            return (writer_class(sink, fd, str(last[0]), uuid, 1, 1),), {}

        def run(writer: Any) -> None:
            write = writer.write
            for data, local_time, pts, key in stream:
                write(data, local_time, pts, key)
            writer.close(pts + FRAME)

    benchmark.extra_info["packets_per_round"] = count
    benchmark.extra_info["packet_bytes"] = packet_bytes
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    assert last[0].stat().st_size == packet_bytes * count


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_512_byte_packets(benchmark, tmp_path: Path, variant: str) -> None:
    run_benchmark(benchmark, tmp_path, variant, 512, 4000)


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_16_kib_packets(benchmark, tmp_path: Path, variant: str) -> None:
    run_benchmark(benchmark, tmp_path, variant, 16 * 1024, 250)
