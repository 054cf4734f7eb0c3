"""Annex B → AVC conversion throughput on 1080p-sized access units, compiled vs twin.

The sizes follow the brief's bench index (§6.3): 1080p30 non-key frames of 11.9–17.6 KB and key
frames of ~45 KB.  A key access unit carries SPS, PPS, SEI and the IDR slice with 4-byte start
codes; a non-key one an access unit delimiter and one slice with 3-byte start codes.  Payloads
are random bytes with emulation prevention applied, like real entropy-coded slices.  Each
result records MB/s of Annex B input in ``extra_info``.
"""

import random

import pytest
from tests.support.nal import nal_payload

CONVERSIONS_PER_ROUND = 100


def access_unit(seed: int, key: bool, slice_bytes: int) -> bytes:
    rng = random.Random(seed)

    def nal(header: int, size: int) -> bytes:
        return bytes([header]) + nal_payload(rng.randbytes(size))

    if key:
        nals = [nal(0x67, 24), nal(0x68, 4), nal(0x06, 30), nal(0x65, slice_bytes)]
        start_code = b"\x00\x00\x00\x01"
    else:
        nals = [b"\x09\xf0", nal(0x41, slice_bytes)]
        start_code = b"\x00\x00\x01"
    return b"".join(start_code + unit for unit in nals)


ACCESS_UNITS = {
    "p_frame_15k": access_unit(1, key=False, slice_bytes=15_000),
    "idr_frame_45k": access_unit(2, key=True, slice_bytes=45_000),
}


@pytest.mark.parametrize("frame", list(ACCESS_UNITS))
def test_bench_annex_b_to_avc(benchmark, impl, frame: str) -> None:
    data = ACCESS_UNITS[frame]
    convert = impl.annexb.annex_b_to_avc
    expected_size = len(convert(data))

    def run() -> bytes:
        for _ in range(CONVERSIONS_PER_ROUND):
            out = convert(data)
        return out

    out = benchmark(run)
    assert len(out) == expected_size
    megabytes = len(data) * CONVERSIONS_PER_ROUND / 1e6
    benchmark.extra_info["input_bytes"] = len(data)
    benchmark.extra_info["MB/s"] = round(megabytes / benchmark.stats.stats.mean, 1)
