"""``moonfire demo``: show the system working with nothing but this checkout.

Until the recorder lands this round-trips a real camera's index, bundled with
the package, through the codec and prints its totals.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import moonfire_core
from moonfire_core import SampleIndexIterator, decode_index, encode_index

from ..time import format_duration

# A real camera's index (1800 samples, 60 s at 30 fps) shipped with the package.
BUNDLED_INDEX = resources.files("moonfire") / "data" / "video_sample_index.bin"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run a self-contained demonstration")
    p.add_argument(
        "--index", help="a video_index blob to decode (default: a real camera's bundled index)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    blob = open(args.index, "rb").read() if args.index else BUNDLED_INDEX.read_bytes()
    t0 = time.perf_counter()
    decoded = decode_index(blob)
    elapsed = time.perf_counter() - t0
    assert encode_index(decoded.durations, decoded.sizes, decoded.is_key) == blob
    n = len(decoded.durations)
    keys = int(decoded.is_key.sum())
    total_bytes = int(decoded.sizes.sum())
    total_90k = int(decoded.durations.sum())
    last = None
    for sample in SampleIndexIterator(blob):
        last = sample
    print(f"core implementation: {moonfire_core.IMPLEMENTATION}")
    print(f"index: {len(blob)} bytes, {len(blob) / max(n, 1):.2f} bytes/sample")
    print(f"samples: {n} ({keys} key frames), {total_bytes} sample bytes")
    print(f"duration: {total_90k} (90 kHz) = {format_duration(total_90k)}")
    if last is not None:
        print(f"last sample at byte {last.pos}, time {last.start_90k}")
    print(f"decoded and re-encoded identically in {elapsed * 1e6:.0f} µs")
    return 0
