"""H.264 with B-frames made here, for the ``.mp4`` and browser tests (issue 10 §1).

``encode_clip`` encodes a short picture sequence with PyAV's libx264 and two B-frames, giving
the packets in decode order (pts and dts in 90 kHz) and the ``avc1`` sample entry; ``run_of``
stores them as one run of recordings, exactly as the writer would (decode-time durations,
``pts - dts`` offsets, a trailing zero at the run's end).
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np

from moonfire.codec import sample_entry_from_extradata
from tests.support.recordings import BASE_TIME_90K, Recording, SampleFiles, make_recording

FPS = 30
FRAME_90K = 90_000 // FPS


@dataclass(frozen=True)
class BFramePacket:
    pts: int
    dts: int
    is_key: bool
    data: bytes  # length-prefixed NAL units, as a sample file holds them


def encode_clip(
    frames: int = 45, width: int = 160, height: int = 120, gop: int = 15
) -> tuple[list[BFramePacket], bytes]:
    """``frames`` pictures (a key frame every ``gop``) with 2 B-frames; packets and ``avc1``."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.framerate = fractions.Fraction(FPS)
    ctx.gop_size = gop
    ctx.max_b_frames = 2
    ctx.options = {"preset": "ultrafast", "bframes": "2", "b-adapt": "0",
                   "keyint_min": str(gop), "sc_threshold": "0"}
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    raw = []
    ramp = np.arange(width, dtype=np.uint8)
    for number in range(frames):
        # A moving gradient: something to predict, so P- and B-frames are real ones.
        image = np.empty((height * 3 // 2, width), dtype=np.uint8)
        image[:] = ramp + np.uint8(5 * number % 256)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = number
        raw += ctx.encode(frame)
    raw += ctx.encode(None)
    entry = sample_entry_from_extradata(bytes(ctx.extradata))
    packets = [
        BFramePacket(p.pts * FRAME_90K, p.dts * FRAME_90K, p.is_keyframe, entry.to_sample(bytes(p)))
        for p in raw
    ]
    assert any(b.pts < a.pts for a, b in zip(packets, packets[1:], strict=False)), "no B-frames"
    return packets, entry.box


def run_of(files: SampleFiles, packets: list[BFramePacket], bounds: list[int]) -> list[Recording]:
    """Recordings over ``packets[bounds[i]:bounds[i+1]]``, written to ``files``."""
    recordings = []
    start = BASE_TIME_90K
    for offset, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        chunk = packets[lo:hi]
        ends = [p.dts for p in packets[lo + 1 : hi + 1]]
        durations = [end - p.dts for p, end in zip(chunk, ends, strict=False)]
        durations += [0] * (len(chunk) - len(durations))
        rec = make_recording(
            durations, [len(p.data) for p in chunk], [p.is_key for p in chunk],
            recording_id=offset + 1, run_offset=offset, start_time_90k=start,
            composition_offsets=[p.pts - p.dts for p in chunk],
        )
        files.write(rec.row, b"".join(p.data for p in chunk))
        recordings.append(rec)
        start = rec.row.end_time_90k
    return recordings
