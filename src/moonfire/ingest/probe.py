"""Connect to a camera once and say what it sends and whether moonfire can record it.

``moonfire camera probe URL`` and ``camera add --probe`` print this, and the web
UI's admin endpoint returns ``ProbeReport.as_dict()``, so a user finds out at setup
that a camera sends H.265 or MJPEG, refuses the password or never answers, not
after a night of "retrying".

The probe opens the stream exactly as a recording session would (``connect``: the
same transport rule, credentials and error wording), reads its first packets for
at most ``PACKET_WINDOW_SEC`` to see frames really arrive (over UDP the open can
succeed while a firewall drops every packet) and whether presentation times go
backwards (B-frames), and asks the codec package for a sample entry: what it
can't build, the recorder couldn't store.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import av

from moonfire.codec import RECORDABLE_CODECS, recordable_codec_names, sample_entry_from_extradata
from moonfire.ingest.sources import (
    DEFAULT_TRANSPORT,
    OPEN_TIMEOUT_SEC,
    TESTSRC_SCHEME,
    Connection,
    SourceError,
    TestPatternSource,
    check_camera_url,
    connect,
    redact_url,
    url_scheme,
)

#: How long the probe reads packets after connecting.
PACKET_WINDOW_SEC = 1.0
#: ... and at most this many video packets.
PACKET_LIMIT = 30

#: FFmpeg codec name -> how people call it (the recordable ones as the codec package does).
CODEC_NAMES = {**RECORDABLE_CODECS, "mjpeg": "MJPEG", "mpeg4": "MPEG-4 Part 2"}


@dataclass(frozen=True)
class ProbeReport:
    """What one connection to a camera showed.  Fields the probe couldn't learn are None."""

    #: The URL probed, any password replaced by ``***``.
    url: str
    #: moonfire can record this stream as it is.
    recordable: bool
    #: Why not (None when recordable): what a user can act on.
    reason: str | None
    #: The connection was opened (a stream description arrived).
    connected: bool = False
    #: ``tcp`` or ``udp`` for RTSP (the one that worked); None for a file or testsrc.
    transport: str | None = None
    #: FFmpeg's codec name (``h264``, ``hevc``, ``mjpeg``...).
    codec: str | None = None
    #: The codec profile (``High``, ``Main``...).
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    #: Frames per second the stream announces (or FFmpeg guesses).
    frame_rate: float | None = None
    #: The stream reorders frames: from the SPS (``has_b_frames``) or seen in the packets.
    b_frames: bool | None = None
    #: Video packets read during the probe.
    packets_seen: int = 0
    #: Codec names of the audio streams (moonfire records video only, for now).
    audio: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: plain strings, numbers, booleans, None and a list."""
        out = asdict(self)
        out["audio"] = list(self.audio)
        return out

    def describe(self) -> list[str]:
        """Lines for a terminal."""
        lines = [f"URL:        {self.url}"]
        if self.transport is not None:
            lines.append(f"transport:  RTSP over {self.transport.upper()}")
        if self.codec is not None:
            video = CODEC_NAMES.get(self.codec, self.codec)
            if self.profile:
                video += f" ({self.profile})"
            if self.width and self.height:
                video += f", {self.width}x{self.height}"
            if self.frame_rate:
                video += f", {self.frame_rate:g} fps"
            if self.b_frames is not None:
                video += f", B-frames: {'yes' if self.b_frames else 'no'}"
            lines.append(f"video:      {video}")
        if self.connected:
            lines.append(f"audio:      {', '.join(self.audio) if self.audio else 'none'}")
            lines.append(f"packets:    {self.packets_seen} video packets read")
        lines.append(
            "recordable: yes" if self.recordable else f"recordable: no: {self.reason}"
        )
        return lines


def probe_stream(
    url: str,
    username: str | None = None,
    password: str | None = None,
    transport: str = DEFAULT_TRANSPORT,
    timeout_sec: float = OPEN_TIMEOUT_SEC,
) -> ProbeReport:
    """Connect to ``url`` once (within ``timeout_sec``) and report; never raises for a
    camera's failure (the report's ``reason`` says it), only for a bug."""
    try:
        check_camera_url(url)  # what `camera add` would refuse, moonfire can't record
        if url_scheme(url) == TESTSRC_SCHEME:
            return _probe_test_pattern(url)
        connection = connect(url, username, password, transport, timeout_sec)
    except SourceError as e:
        # The probe is all about opening; "can't open: " would only repeat that.
        refused = e.reason.removeprefix("can't open: ")
        return ProbeReport(redact_url(url), recordable=False, reason=refused)
    with connection.container as container:
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            return ProbeReport(
                connection.url, False, f"no video stream (streams found: {kinds})",
                connected=True, transport=connection.transport, audio=audio,
            )
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name
        rate = stream.average_rate or stream.guessed_rate
        read_error, packets, reordered = _read_some(container, stream, connection)
        reason = read_error or _why_not_recordable(codec, bytes(ctx.extradata or b""))
        return ProbeReport(
            connection.url,
            recordable=reason is None,
            reason=reason,
            connected=True,
            transport=connection.transport,
            codec=codec,
            profile=ctx.profile,
            width=ctx.width or None,
            height=ctx.height or None,
            frame_rate=round(float(Fraction(rate)), 3) if rate else None,
            b_frames=bool(ctx.has_b_frames) or reordered,
            packets_seen=packets,
            audio=audio,
        )


def _read_some(
    container: av.container.InputContainer, stream: Any, connection: Connection
) -> tuple[str | None, int, bool]:
    """(why no video arrived or None, video packets read, pts went backwards)."""
    deadline = time.monotonic() + PACKET_WINDOW_SEC
    packets = 0
    reordered = False
    highest: int | None = None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                packets += 1
                if highest is not None and packet.pts < highest:
                    reordered = True
                highest = packet.pts if highest is None else max(highest, packet.pts)
            if packets >= PACKET_LIMIT or time.monotonic() > deadline:
                break
    except (av.FFmpegError, OSError) as e:
        if not packets:
            return connection.error("connected, but no video arrived", e).reason, 0, False
    if not packets:
        return "connected, but no video arrived (the stream ended at once)", 0, False
    return None, packets, reordered


def _why_not_recordable(codec: str, extradata: bytes) -> str | None:
    """None if moonfire can store this codec with these parameter sets, else why not."""
    if codec not in RECORDABLE_CODECS:
        name = CODEC_NAMES.get(codec, codec)
        return (
            f"the camera sends {name}; moonfire records {recordable_codec_names()} only: "
            "set the camera's stream to one of those"
        )
    try:
        sample_entry_from_extradata(extradata, codec)
    except Exception as e:  # noqa: BLE001 - whatever the codec package can't build
        return f"the stream's {RECORDABLE_CODECS[codec]} parameters can't be used: {e}"
    return None


def _probe_test_pattern(url: str) -> ProbeReport:
    source = TestPatternSource(url)
    try:
        settings = source.settings
        reason = _why_not_recordable("h264", source.extradata)
        return ProbeReport(
            url, reason is None, reason, connected=True, codec="h264",
            width=settings.width, height=settings.height, frame_rate=float(settings.fps),
            b_frames=False,
        )
    finally:
        source.close()
