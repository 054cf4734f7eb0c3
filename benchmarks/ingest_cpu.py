"""CPU cost of recording, per recorded stream-hour, ingest included (issue 5's benchmark).

Usage::

    python3 benchmarks/ingest_cpu.py [--seconds 60] [--streams 16] [--cache DIR]
    python3 -m benchmarks.ingest_cpu --record-file CLIP --work DIR

The second form is one process recording ``CLIP`` at full speed, as (a) does, and writing
``DIR/result.json`` (its session's CPU, the video recorded): what
``test_bench_ingest_vs_ffmpeg.py`` measures from ``wait4`` against ffmpeg and GStreamer.

Two measurements, both as CPU seconds of the whole process (every thread: the
streamer, the syncer's fsyncs and SQLite transactions) from ``time.process_time``:

(a) **one 1080p30, 4 Mbit/s stream through the full streamer path.**  A clip of
    ``--seconds`` is encoded once with PyAV (cached in ``--cache``) as MPEG-TS,
    so packets are Annex B like RTSP's and go through ``annex_b_to_avc``.  It is
    read at full speed (``open_source(..., realtime=False)``; a file camera is otherwise
    paced to its frame rate) by ``Streamer``'s session code: PyAV demux (no decoding),
    sample entry, local time, conversion, ``StreamRecorder.write``, rotation
    every 60 s, syncer.  Target: well under 1% of a core per real-time stream.

(b) **the storage engine alone.**  ``--streams`` cameras, each fed ``--seconds``
    of 30 fps, 4 Mbit/s packets already in memory, interleaved frame by frame
    through ``StreamRecorder.write`` (staggered 60 s rotations).  Reported as
    real-time streams one core could sustain.  Target: >= 1000.

The moonfire_core implementation in use (compiled or pure) is printed first;
set ``MOONFIRE_NO_EXTENSIONS=1`` to measure the pure-Python twins.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import tempfile
import time
from fractions import Fraction

import av
import numpy as np

import moonfire_core
from moonfire.ingest.recorder import StreamRecorder
from moonfire.ingest.sources import open_source
from moonfire.ingest.streamer import Streamer
from moonfire.storage import data_dir as datadir
from moonfire.time import TIME_UNITS_PER_SEC

FPS = 30
BITRATE = 4_000_000
WIDTH, HEIGHT = 1920, 1080
#: Where encoded clips are kept between runs (encoding 1080p costs more than recording it).
CACHE = os.path.join(tempfile.gettempdir(), "moonfire-bench")


def clip_path(seconds: int, cache: str = CACHE) -> str:
    """A ``seconds``-long clip from ``encode_clip``, encoded on first use and cached."""
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"1080p30-4M-{seconds}s.ts")
    if not os.path.exists(path):
        print(f"encoding {path} once ...", flush=True)
        encode_clip(path, seconds)
    return path


def looped_clip_path(
    seconds: int, ffmpeg: str, cache: str = CACHE, piece_seconds: int = 60
) -> str:
    """A ``seconds``-long clip cut from a ``piece_seconds`` ``clip_path`` repeated (timestamps
    continued, by ffmpeg's concat demuxer, no re-encoding): any length, one clip encoded."""
    path = os.path.join(cache, f"1080p30-4M-{seconds}s-of-{piece_seconds}s.ts")
    if os.path.exists(path):
        return path
    piece_sec = piece_seconds
    piece = clip_path(piece_sec, cache)
    listing = path + ".txt"
    with open(listing, "w") as f:
        f.writelines(f"file '{piece}'\n" for _ in range(-(-seconds // piece_sec)))
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "concat",
         "-safe", "0", "-i", listing, "-t", str(seconds), "-c", "copy", "-f", "mpegts",
         path + ".tmp"],
        check=True,
    )
    os.remove(listing)
    os.replace(path + ".tmp", path)
    return path


def encode_clip(path: str, seconds: int) -> None:
    """A 1080p30 4 Mbit/s H.264 MPEG-TS clip: noise blocks and a moving bar (cheap to draw)."""
    rng = np.random.default_rng(5)
    noise = [rng.integers(16, 235, (HEIGHT * 3 // 2, WIDTH), dtype=np.uint8) for _ in range(4)]
    with av.open(path + ".tmp", "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = BITRATE
        stream.codec_context.gop_size = FPS
        stream.codec_context.max_b_frames = 0
        stream.codec_context.time_base = Fraction(1, FPS)
        stream.options = {
            "preset": "ultrafast", "tune": "zerolatency", "sc_threshold": "0",
            "maxrate": str(BITRATE), "bufsize": str(BITRATE),
        }
        for i in range(seconds * FPS):
            image = noise[(i // 8) % len(noise)].copy()
            x = (i * 16) % (WIDTH - 64)
            image[:HEIGHT, x : x + 64] = 235
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    os.replace(path + ".tmp", path)


def bench_streamer(clip: str, work: str) -> tuple[float, float, int]:
    """(cpu seconds, video seconds, bytes) for one full-speed session over ``clip``."""
    path = os.path.join(work, "a")
    db, sample_file_dir = datadir.init(path)
    camera = db.add_camera("clip", url=clip, retain_bytes=10**12, rotate_interval_sec=60)
    syncer = sample_file_dir.start_syncer()
    # A file source is paced to its frame rate like a camera; the benchmark wants full speed.
    full_speed = functools.partial(open_source, realtime=False)
    streamer = Streamer(camera, camera.main, db, syncer, source_factory=full_speed)
    cpu0 = time.process_time()
    streamer._session()  # one session in this thread: open, demux, convert, write, end_run
    syncer.close()
    cpu = time.process_time() - cpu0
    rows = db.list_recordings(camera.main.id)
    video_sec = sum(r.duration_90k for r in rows) / TIME_UNITS_PER_SEC
    total = sum(r.sample_file_bytes for r in rows)
    sample_file_dir.close()
    db.close()
    return cpu, video_sec, total


def synthetic_gop() -> list[tuple[bytes, bool]]:
    """One second of 4 Mbit/s, 30 fps packets: a key frame 5x the size of the others."""
    per_second = BITRATE // 8
    p_size = per_second // (FPS - 1 + 5)
    rng = np.random.default_rng(1)
    return [
        (rng.bytes(p_size * (5 if i == 0 else 1)), i == 0) for i in range(FPS)
    ]


def bench_storage(streams: int, seconds: int, work: str) -> tuple[float, float, int]:
    """(cpu seconds, stream-seconds recorded, bytes) for ``streams`` interleaved recorders."""
    path = os.path.join(work, "b")
    db, sample_file_dir = datadir.init(path)
    entry = db.insert_video_sample_entry(WIDTH, HEIGHT, bytes(range(90)))
    gop = synthetic_gop()
    syncer = sample_file_dir.start_syncer()
    recorders = []
    for i in range(streams):
        cam = db.add_camera(f"s{i}", retain_bytes=10**12, rotate_interval_sec=60)
        recorders.append(
            StreamRecorder(syncer, cam.main.id, f"s{i}", 60, 60 * i // streams)
        )
    base = 1_700_000_000 * TIME_UNITS_PER_SEC
    frame_90k = TIME_UNITS_PER_SEC // FPS
    cpu0 = time.process_time()
    for n in range(seconds * FPS):
        data, is_key = gop[n % FPS]
        pts = n * frame_90k
        local = base + pts + frame_90k
        for recorder in recorders:
            recorder.write(data, local, pts, is_key, entry)
    for recorder in recorders:
        recorder.end_run()
    syncer.close()
    cpu = time.process_time() - cpu0
    total = sum(
        r.sample_file_bytes for c in db.list_cameras() for r in db.list_recordings(c.main.id)
    )
    sample_file_dir.close()
    db.close()
    return cpu, streams * seconds, total


def record_file(clip: str, work: str) -> None:
    """``--record-file``: one full-speed session over ``clip``; ``work/result.json`` says its
    CPU (the session alone, start-up excluded) and the video recorded."""
    os.makedirs(work, exist_ok=True)
    cpu, video, nbytes = bench_streamer(clip, work)
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump({"cpu_s": cpu, "video_s": video, "bytes": nbytes,
                   "implementation": moonfire_core.IMPLEMENTATION}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="video per stream (default 60)")
    parser.add_argument("--streams", type=int, default=16, help="streams for (b) (default 16)")
    parser.add_argument(
        "--cache", default=CACHE,
        help="where the encoded clip is kept between runs",
    )
    parser.add_argument("--record-file", metavar="CLIP", help="record CLIP once (see above)")
    parser.add_argument("--work", help="--record-file's data directory and result.json")
    args = parser.parse_args()
    if args.record_file:
        if not args.work:
            parser.error("--record-file needs --work DIR")
        record_file(args.record_file, args.work)
        return
    print(f"moonfire_core implementation: {moonfire_core.IMPLEMENTATION}")
    clip = clip_path(args.seconds, args.cache)
    with tempfile.TemporaryDirectory(dir=args.cache) as work:
        cpu, video, nbytes = bench_streamer(clip, work)
        print(
            f"(a) streamer, 1080p30 file at full speed: {video:.1f} s of video "
            f"({nbytes * 8 / video / 1e6:.2f} Mbit/s) in {cpu:.3f} CPU s = "
            f"{cpu / video * 3600:.1f} CPU s per stream-hour = "
            f"{cpu / video * 100:.3f}% of a core per real-time stream"
        )
        cpu, stream_sec, nbytes = bench_storage(args.streams, args.seconds, work)
        print(
            f"(b) storage engine, {args.streams} streams x {args.seconds} s in memory: "
            f"{nbytes / 1e6:.0f} MB in {cpu:.3f} CPU s = "
            f"{cpu / stream_sec * 3600:.2f} CPU s per stream-hour = "
            f"{stream_sec / cpu:.0f} real-time 4 Mbit/s streams per core"
        )


if __name__ == "__main__":
    main()
