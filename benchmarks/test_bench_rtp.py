"""RTP depacketizing speed: a 4 Mbit/s 1080p30 H.264 camera stream over RTSP (TCP interleaved).

The stream is what ``moonfire.ingest.rtsp`` reads from a camera: ``SECONDS`` s of 30 fps in
1-s GOPs (a key frame 5x the size of the others, as ``ingest_cpu.synthetic_gop``), the key
AU's SPS and PPS in their own packets, every slice in FU-A packets of 1400 bytes of RTP
payload (a 1500-byte MTU), an RTCP sender report on channel 1 each second, the sequence number
wrapping on the way.  It is pushed in 64 KiB chunks (``memoryview`` slices, as the client
pushes its receive buffer).

* ``test_bench_depacketize_1080p30[c|py]``: one round depacketizes the whole stream.
  ``extra_info``: ``MB/s`` of stream, ``ns_per_packet``, ``cpu_s_per_stream_hour``.
* ``test_compiled_against_the_twin_and_a_bytes_slicing_loop``: the compiled module, with
  rounds alternating the twin and the loop a user would write without this module (frames
  sliced out of a ``bytes`` buffer and FU-A fragments joined with ``b"".join``; no loss
  accounting and no validation, and only what this stream holds, so it does *less* work than
  either twin: a floor for pure Python, not a rival).  CPU time (``time.process_time``, best
  round of each), so neighbours on a shared machine move it less; ``extra_info``: each one's
  MB/s, ``twin_over_compiled`` and ``compiled_over_slicing_loop``, also printed.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from tests.support.implementations import Implementation

from benchmarks.sizes import size
from moonfire_core import _rtp_py

SECONDS = size("MOONFIRE_BENCH_RTP_SECONDS", 60, 2)
ROUNDS = size("MOONFIRE_BENCH_ROUNDS", 5, 1)
FPS = 30
BITRATE = 4_000_000
RTP_PAYLOAD_BYTES = 1400
CHUNK_BYTES = 64 * 1024
VIDEO_CHANNEL = 0
FRAME_90K = 90_000 // FPS
START_CODE = b"\x00\x00\x00\x01"


def gop_nal_units() -> list[list[bytes]]:
    """One second of AUs, each a list of NAL units: SPS, PPS and IDR slice, then P slices."""
    rng = random.Random(1)
    p_bytes = BITRATE // 8 // (FPS - 1 + 5)
    sps = bytes.fromhex("674d00299a6603c0113f2cd404040500000303e80000ea6004")
    pps = bytes.fromhex("68ee3c80")
    key = [sps, pps, b"\x65" + rng.randbytes(5 * p_bytes - len(sps) - len(pps) - 1)]
    return [key] + [[b"\x41" + rng.randbytes(p_bytes - 1)] for _ in range(FPS - 1)]


def rtp_payloads(nal: bytes) -> list[bytes]:
    """RFC 6184: a NAL unit in one packet if it fits, else in FU-A packets."""
    if len(nal) <= RTP_PAYLOAD_BYTES:
        return [nal]
    indicator = bytes([(nal[0] & 0xE0) | 28])
    step = RTP_PAYLOAD_BYTES - 2
    body = nal[1:]
    starts = range(0, len(body), step)
    return [
        indicator
        + bytes([(0x80 if at == 0 else 0) | (0x40 if at + step >= len(body) else 0)
                 | (nal[0] & 0x1F)])
        + body[at : at + step]
        for at in starts
    ]


def interleaved(channel: int, packet: bytes) -> bytes:
    return b"$" + bytes([channel]) + struct.pack(">H", len(packet)) + packet


def camera_stream(seconds: int) -> tuple[bytes, int, list[bytes]]:
    """(the interleaved bytes, how many RTP packets, the AUs they hold in Annex B form)."""
    gop = gop_nal_units()
    frames: list[bytes] = []
    access_units: list[bytes] = []
    sequence, timestamp, packets = 60_000, 0xFFF0_0000, 0
    for second in range(seconds):
        for nals in gop:
            payloads = [payload for nal in nals for payload in rtp_payloads(nal)]
            for number, payload in enumerate(payloads):
                marker = 0x80 if number == len(payloads) - 1 else 0
                header = struct.pack(">BBHII", 0x80, marker | 96, sequence, timestamp, 0xCAFE)
                frames.append(interleaved(VIDEO_CHANNEL, header + payload))
                sequence = (sequence + 1) & 0xFFFF
            packets += len(payloads)
            access_units.append(b"".join(START_CODE + nal for nal in nals))
            timestamp = (timestamp + FRAME_90K) & 0xFFFF_FFFF
        sender_report = struct.pack(">BBHIIIIII", 0x80, 200, 6, 0xCAFE, second, 0, timestamp,
                                    packets, 0)
        frames.append(interleaved(VIDEO_CHANNEL + 1, sender_report))
    return b"".join(frames), packets, access_units


@pytest.fixture(scope="module")
def stream() -> tuple[list[memoryview], int, list[bytes]]:
    data, packets, access_units = camera_stream(SECONDS)
    view = memoryview(data)
    chunks = [view[at : at + CHUNK_BYTES] for at in range(0, len(data), CHUNK_BYTES)]
    return chunks, packets, access_units


def depacketize(depacketizer_type: Any, chunks: Sequence[memoryview]) -> list[bytes]:
    """What the RTSP client does with the stream: push every chunk, keep the AUs' bytes."""
    depacketizer = depacketizer_type("h264", VIDEO_CHANNEL)
    push = depacketizer.push
    out: list[bytes] = []
    for chunk in chunks:
        out += [frame[0] for frame in push(chunk, 0)]
    assert depacketizer.packets_lost == 0 and depacketizer.frames_dropped == 0
    return out


def bytes_slicing_loop(chunks: Sequence[memoryview]) -> list[bytes]:
    """The least a pure-Python depacketizer of this stream does (see the module docstring)."""
    pending = b""
    pieces: list[bytes] = []
    out: list[bytes] = []
    for chunk in chunks:
        data = pending + chunk
        position = 0
        while len(data) - position >= 4:
            end = position + 4 + int.from_bytes(data[position + 2 : position + 4], "big")
            if end > len(data):
                break
            if data[position + 1] == VIDEO_CHANNEL:
                packet = data[position + 4 : end]
                payload = packet[12:]  # this stream has no CSRCs, extension or padding
                if payload[0] & 0x1F == 28:
                    if payload[1] & 0x80:
                        pieces.append(START_CODE + bytes([payload[0] & 0xE0 | payload[1] & 0x1F]))
                    pieces.append(payload[2:])
                else:
                    pieces += (START_CODE, payload)
                if packet[1] & 0x80:
                    out.append(b"".join(pieces))
                    pieces = []
            position = end
        pending = data[position:]
    return out


def stream_bytes(chunks: Sequence[memoryview]) -> int:
    return sum(len(chunk) for chunk in chunks)


def test_bench_depacketize_1080p30(benchmark, impl, stream) -> None:
    chunks, packets, expected = stream
    depacketizer_type = impl.rtp.RtpDepacketizer
    out = benchmark(depacketize, depacketizer_type, chunks)
    assert out == expected and len(out) == SECONDS * FPS
    seconds_per_round = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "stream_seconds": SECONDS,
        "packets": packets,
        "MB/s": round(stream_bytes(chunks) / 1e6 / seconds_per_round, 1),
        "ns_per_packet": round(seconds_per_round / packets * 1e9),
        "cpu_s_per_stream_hour": round(seconds_per_round * 3600 / SECONDS, 3),
    })


def best_cpu_seconds(times: list[float]) -> float:
    # A tiny stream can take less than the CPU clock's tick: never divide by zero.
    return max(min(times), 1e-9)


def test_compiled_against_the_twin_and_a_bytes_slicing_loop(benchmark, stream) -> None:
    chunks, _, expected = stream
    compiled = Implementation("c").rtp.RtpDepacketizer
    cpu: dict[str, list[float]] = {"compiled": [], "twin": [], "slicing loop": []}
    out: dict[str, list[bytes]] = {}

    def timed(name: str, work: Callable[[], list[bytes]]) -> None:
        began = time.process_time()
        out[name] = work()
        cpu[name].append(time.process_time() - began)

    def others() -> None:
        timed("twin", lambda: depacketize(_rtp_py.RtpDepacketizer, chunks))
        timed("slicing loop", lambda: bytes_slicing_loop(chunks))
        # The same AUs, byte for byte, from each (checked outside every timed part).
        assert out.pop("twin") == expected and out.pop("slicing loop") == expected

    benchmark.pedantic(
        lambda: timed("compiled", lambda: depacketize(compiled, chunks)),
        setup=others, rounds=ROUNDS, iterations=1,
    )
    assert out["compiled"] == expected
    megabytes = stream_bytes(chunks) / 1e6
    best = {name: best_cpu_seconds(times) for name, times in cpu.items()}
    benchmark.extra_info.update({
        "stream_seconds": SECONDS,
        **{f"{name.replace(' ', '_')}_MB/s": round(megabytes / seconds, 1)
           for name, seconds in best.items()},
        "twin_over_compiled": round(best["twin"] / best["compiled"], 1),
        "compiled_over_slicing_loop": round(best["compiled"] / best["slicing loop"], 2),
        "twin_over_slicing_loop": round(best["twin"] / best["slicing loop"], 2),
        "compiled_cpu_s_per_stream_hour": round(best["compiled"] * 3600 / SECONDS, 3),
    })
    print(
        f"\nRTP depacketizer, {SECONDS} s of 4 Mbit/s 1080p30 in 64 KiB chunks (CPU, best of "
        f"{ROUNDS}): compiled {megabytes / best['compiled']:.0f} MB/s, twin "
        f"{megabytes / best['twin']:.0f} MB/s ({best['twin'] / best['compiled']:.1f}x the "
        f"compiled time), bytes slicing loop {megabytes / best['slicing loop']:.0f} MB/s "
        f"(compiled {best['compiled'] / best['slicing loop']:.2f}x its time)"
    )
