"""``video_index`` codec speed, both twins (targets in the task: compiled batch encode and decode
<= 6 ns per sample on the one-hour index, ``add_sample`` <= 100 ns per call, compiled >= 50x the
twin on the batch operations).

Inputs come from the real camera index (1800 samples, one minute at 30 fps); the one-hour index is
those samples repeated 60 times (108,000 samples).  Divide the reported time by
``extra_info["samples"]`` for the per-sample cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moonfire_core import _index_py

MINUTES_PER_HOUR = 60


@pytest.fixture(scope="module")
def one_minute(testdata: Path) -> bytes:
    return (testdata / "video_sample_index.bin").read_bytes()


@pytest.fixture(scope="module")
def one_hour_columns(one_minute: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    minute = _index_py.decode_index(one_minute)
    return (
        np.tile(minute.durations, MINUTES_PER_HOUR),
        np.tile(minute.sizes, MINUTES_PER_HOUR),
        np.tile(minute.is_key, MINUTES_PER_HOUR),
    )


@pytest.fixture(scope="module")
def one_hour(one_hour_columns) -> bytes:
    return _index_py.encode_index(*one_hour_columns)


def test_add_sample_one_minute(benchmark, impl, one_minute: bytes) -> None:
    """The recorder's per-packet call: 1800 ``add_sample`` calls per round (plus one encoder)."""
    minute = _index_py.decode_index(one_minute)
    samples = list(
        zip(minute.durations.tolist(), minute.sizes.tolist(), minute.is_key.tolist(), strict=True)
    )
    benchmark.extra_info["samples"] = len(samples)
    encoder_class = impl.index.SampleIndexEncoder

    @benchmark
    def _run() -> None:
        add_sample = encoder_class().add_sample
        for duration, size, is_key in samples:
            add_sample(duration, size, is_key)


def test_encode_index_one_hour(benchmark, impl, one_hour_columns, one_hour: bytes) -> None:
    benchmark.extra_info["samples"] = len(one_hour_columns[0])
    encoded = benchmark(impl.index.encode_index, *one_hour_columns)
    assert encoded == one_hour


def test_decode_index_one_minute(benchmark, impl, one_minute: bytes) -> None:
    benchmark.extra_info["samples"] = 1800
    decoded = benchmark(impl.index.decode_index, one_minute)
    assert decoded.video_samples == 1800


def test_decode_index_one_hour(benchmark, impl, one_hour: bytes) -> None:
    benchmark.extra_info["samples"] = 1800 * MINUTES_PER_HOUR
    decoded = benchmark(impl.index.decode_index, one_hour)
    assert decoded.video_samples == 1800 * MINUTES_PER_HOUR
