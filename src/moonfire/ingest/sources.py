"""Where a camera's H.264 packets come from: PyAV (libavformat) or a built-in test pattern.

``open_source(url, username, password)`` gives a ``Source`` whose ``packets()``
yields ``SourcePacket``s with presentation times rebased to 90 kHz and to start
at 0, so the streamer never sees a stream's own time base or epoch:

* ``rtsp://`` URLs are read over TCP with a socket timeout; credentials are put
  into the URL's userinfo (percent-encoded) so FFmpeg answers a digest or basic
  challenge itself;
* file paths and any other URL FFmpeg understands are read as they are (a file
  at full speed, which is what the ingest benchmark wants);
* ``testsrc://?size=1280x720&fps=30&bitrate=2M&gop=30`` is a synthetic camera
  (``bitrate`` in bits per second, read like a size: ``300k``, ``2M``):
  an H.264 test pattern encoded by PyAV and paced in real time, so the whole
  system runs with no camera at all (``moonfire demo``, the tests).

Only the first video stream is used.  Every FFmpeg failure is raised as
``SourceError`` naming the URL *without* its password; passwords never reach a
log line or an exception message.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np

from moonfire.errors import MoonfireError
from moonfire.sizes import parse_size
from moonfire.time import TIME_UNITS_PER_SEC

#: Seconds to wait for the camera to answer when connecting, and between packets.
OPEN_TIMEOUT_SEC = 10.0
READ_TIMEOUT_SEC = 10.0

TESTSRC_SCHEME = "testsrc"
_TESTSRC_DEFAULTS = {"size": "1280x720", "fps": "30", "bitrate": "2M", "gop": "30"}


class SourceError(MoonfireError):
    """A camera could not be opened or read; ``url`` never contains a password."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SourcePacket:
    """One access unit: ``pts_90k`` counts from the session's first packet.

    ``new_extradata`` is set when the stream announced new parameter sets
    (SPS/PPS) with this packet; the recording must then change sample entry.

    ``received_ns`` is ``time.monotonic_ns()`` when the packet's first piece was
    read, for sources that hold a packet back (``AvSource`` merges pieces): its
    local frame time is the time of receipt (brief §3.2), not the time it is
    handed on.  ``None`` means "now", for sources that yield at once.
    """

    data: bytes
    pts_90k: int
    is_key: bool
    new_extradata: bytes | None = None
    received_ns: int | None = None


class Source:
    """An open H.264 stream.  ``packets()`` may be iterated once; ``close()`` always."""

    url: str
    extradata: bytes
    width: int
    height: int

    def packets(self) -> Iterator[SourcePacket]:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Ask ``packets()`` to stop soon; safe to call from any thread."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(url: str, username: str | None = None, password: str | None = None) -> Source:
    """Open ``url`` (an RTSP URL, a file path, any FFmpeg URL, or ``testsrc://...``)."""
    if urllib.parse.urlsplit(url).scheme == TESTSRC_SCHEME:
        return TestPatternSource(url)
    return AvSource(url, username, password)


# ---- URLs and passwords --------------------------------------------------------------


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with ``username``/``password`` as its percent-encoded userinfo.

    A password without a username is refused: userinfo can't carry one alone, and
    dropping it would only show up later as an unexplained authentication failure.
    """
    if not username:
        if password:
            raise SourceError(
                redact_url(url), "a password is configured without a username; set a username"
            )
        return url
    parts = urllib.parse.urlsplit(url)
    userinfo = urllib.parse.quote(username, safe="")
    if password is not None:
        userinfo += ":" + urllib.parse.quote(password, safe="")
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def redact_url(url: str) -> str:
    """``url`` with any password in its userinfo replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ---- PyAV sources ----------------------------------------------------------------------


class AvSource(Source):
    """Any stream libavformat can demux, RTSP included."""

    def __init__(self, url: str, username: str | None, password: str | None) -> None:
        full_url = with_credentials(url, username, password)
        self.url = redact_url(full_url)
        self._secrets = [s for s in (password, urllib.parse.quote(password or "", safe="")) if s]
        embedded = urllib.parse.urlsplit(url).password
        if embedded:
            self._secrets.append(embedded)
        self._full_url = full_url
        self._interrupted = threading.Event()
        options: dict[str, str] = {}
        if urllib.parse.urlsplit(url).scheme in ("rtsp", "rtsps"):
            options = {
                "rtsp_transport": "tcp",
                # FFmpeg >= 5 names the RTSP socket I/O timeout "timeout", in microseconds.
                "timeout": str(int(READ_TIMEOUT_SEC * 1_000_000)),
                "user_agent": "moonfire",
                "probesize": "262144",
            }
        try:
            self._container = av.open(
                full_url, options=options, timeout=(OPEN_TIMEOUT_SEC, READ_TIMEOUT_SEC)
            )
        except (av.FFmpegError, OSError, ValueError) as e:
            raise self._error("can't open", e) from None
        try:
            self._stream = self._pick_video_stream()
        except BaseException:
            self._container.close()
            raise
        ctx = self._stream.codec_context
        self.width = ctx.width
        self.height = ctx.height
        self.extradata = bytes(ctx.extradata or b"")
        tb = self._stream.time_base or Fraction(1, TIME_UNITS_PER_SEC)
        self._tb_num = tb.numerator * TIME_UNITS_PER_SEC
        self._tb_den = tb.denominator

    def _error(self, what: str, e: BaseException) -> SourceError:
        # An FFmpegError's str() repeats the URL (with its password); its strerror does not.
        text = getattr(e, "strerror", None) or str(e).replace(self._full_url, self.url)
        reason = f"{what}: {_scrub(text, self._secrets)}"
        return SourceError(self.url, reason)

    def _pick_video_stream(self) -> av.video.stream.VideoStream:
        streams = self._container.streams
        if not streams.video:
            kinds = ", ".join(s.type for s in streams) or "none"
            raise SourceError(self.url, f"no video stream (streams found: {kinds})")
        stream = streams.video[0]
        codec = stream.codec_context.name
        if codec != "h264":
            raise SourceError(self.url, f"video codec is {codec}; only H.264 is supported")
        return stream

    def packets(self) -> Iterator[SourcePacket]:
        """Access units in order; pieces FFmpeg split off with one pts are joined back."""
        for packet in merge_same_pts(self._demux()):
            if self._interrupted.is_set():
                return
            yield packet

    def _demux(self) -> Iterator[SourcePacket]:
        first_pts: int | None = None
        last_extradata = self.extradata
        monotonic_ns = time.monotonic_ns
        try:
            for packet in self._container.demux(self._stream):
                received_ns = monotonic_ns()
                if self._interrupted.is_set():
                    return
                if packet.pts is None or packet.size == 0:
                    continue  # FFmpeg ticket 5018: the first RTSP packet may lack a pts
                pts_90k = packet.pts * self._tb_num // self._tb_den
                if first_pts is None:
                    first_pts = pts_90k
                new_extradata = None
                if packet.has_sidedata("new_extradata"):
                    data = bytes(packet.get_sidedata("new_extradata"))
                    if data and data != last_extradata:
                        new_extradata = last_extradata = data
                yield SourcePacket(
                    bytes(packet), pts_90k - first_pts, packet.is_keyframe, new_extradata,
                    received_ns,
                )
        except (av.FFmpegError, OSError) as e:
            if self._interrupted.is_set():
                return
            raise self._error("read failed", e) from None

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._interrupted.set()
        self._container.close()


def merge_same_pts(pieces: Iterable[SourcePacket]) -> Iterator[SourcePacket]:
    """``pieces`` with consecutive runs of one pts joined into one packet.

    FFmpeg's parser can cut a multi-slice RTSP frame into several packets with
    the same pts; the recorder needs one sample per pts, so they are merged.  A
    packet is yielded only when the next pts arrives (one frame of latency), so
    it keeps the ``received_ns`` of its first piece: its local time stays the
    time it arrived.
    """
    pending: SourcePacket | None = None
    for piece in pieces:
        if pending is not None and piece.pts_90k == pending.pts_90k:
            pending = SourcePacket(
                pending.data + piece.data,
                pending.pts_90k,
                pending.is_key or piece.is_key,
                piece.new_extradata or pending.new_extradata,
                pending.received_ns,
            )
            continue
        if pending is not None:
            yield pending
        pending = piece
    if pending is not None:
        yield pending


# ---- the synthetic camera --------------------------------------------------------------


@dataclass(frozen=True)
class TestPatternSettings:
    width: int
    height: int
    fps: int
    bitrate: int
    gop: int

    @classmethod
    def from_url(cls, url: str) -> TestPatternSettings:
        query = dict(_TESTSRC_DEFAULTS)
        for key, values in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items():
            if key not in query:
                raise SourceError(
                    url, f"unknown testsrc parameter {key!r} (known: {', '.join(query)})"
                )
            query[key] = values[-1]
        try:
            width, height = (int(v) for v in query["size"].lower().split("x"))
            settings = cls(
                width, height, int(query["fps"]), parse_size(query["bitrate"]),
                int(query["gop"]),
            )
        except ValueError:
            raise SourceError(url, f"bad testsrc parameters {query}") from None
        if min(width, height) < 16 or width % 2 or height % 2:
            raise SourceError(url, f"testsrc size {width}x{height}: need even sides >= 16")
        if not (1 <= settings.fps <= 240 and settings.gop >= 1 and settings.bitrate > 0):
            raise SourceError(url, f"testsrc fps, gop and bitrate must be positive: {query}")
        return settings


def _h264_encoder_name(url: str) -> str:
    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            try:
                if av.Codec(name, "w").type == "video":
                    return name
            except (av.FFmpegError, ValueError):
                continue
    raise SourceError(url, "this PyAV has no H.264 encoder; testsrc:// needs one (libx264)")


class TestPatternSource(Source):
    """A synthetic camera: a moving bar and frame counter encoded to H.264 in real time.

    The frames are cheap: a precomputed gradient with a bright bar that moves one
    step a frame and a binary counter strip, drawn with numpy slicing, so most
    of the CPU goes to the encoder (ultrafast, zero latency, no B-frames).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, url: str) -> None:
        self.url = url
        s = self.settings = TestPatternSettings.from_url(url)
        self.width, self.height = s.width, s.height
        self._stop = threading.Event()
        name = _h264_encoder_name(url)
        ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
        ctx.width, ctx.height, ctx.pix_fmt = s.width, s.height, "yuv420p"
        ctx.time_base = Fraction(1, s.fps)
        ctx.framerate = Fraction(s.fps)
        ctx.bit_rate = s.bitrate
        ctx.gop_size = s.gop
        ctx.max_b_frames = 0
        if name == "libx264":
            ctx.options = {
                "tune": "zerolatency", "preset": "ultrafast", "keyint_min": str(s.gop),
                "sc_threshold": "0",
            }
        ctx.flags |= av.codec.context.Flags.global_header
        try:
            ctx.open()
        except av.FFmpegError as e:
            raise SourceError(url, f"can't open H.264 encoder {name}: {e}") from None
        self._encoder = ctx
        self.extradata = bytes(ctx.extradata or b"")
        # Luma gradient plus neutral chroma, the background of every frame.
        ramp = np.linspace(16, 235, s.width, dtype=np.float32).astype(np.uint8)
        self._background = np.empty((s.height * 3 // 2, s.width), dtype=np.uint8)
        self._background[: s.height] = ramp
        self._background[s.height :] = 128

    def _frame(self, number: int) -> av.VideoFrame:
        s = self.settings
        image = self._background.copy()
        bar = max(s.width // 40, 2)
        x = (number * 8) % (s.width - bar)
        image[: s.height, x : x + bar] = 235
        cell = max(s.width // 64, 2)
        for bit in range(min(32, s.width // cell)):  # the frame number in binary
            if number >> bit & 1:
                image[:cell, bit * cell : (bit + 1) * cell] = 235
            else:
                image[:cell, bit * cell : (bit + 1) * cell] = 16
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = number
        return frame

    def packets(self) -> Iterator[SourcePacket]:
        fps = self.settings.fps
        start = time.monotonic()
        number = 0
        while not self._stop.is_set():
            delay = start + number / fps - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            for packet in self._encoder.encode(self._frame(number)):
                # Every frame sent has a pts, so every packet the encoder gives back has one.
                pts = packet.pts if packet.pts is not None else number
                yield SourcePacket(
                    bytes(packet), pts * TIME_UNITS_PER_SEC // fps, packet.is_keyframe
                )
            number += 1

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
