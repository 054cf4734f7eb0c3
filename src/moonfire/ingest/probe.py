"""Connect to a camera once and say what it sends and whether moonfire can record it.

``moonfire camera probe URL`` and ``camera add --probe`` print this, and the web
UI's admin endpoint returns ``ProbeReport.as_dict()``, so a user finds out at setup
that a camera sends H.265 or MJPEG, refuses the password or never answers, not
after a night of "retrying".

The probe opens the stream exactly as a recording session would (``open_source``'s
rule): ``rtsp://`` over TCP (transport ``tcp`` or ``auto``) with moonfire's own
client (``moonfire.ingest.rtsp.RtspSource``, unless ``MOONFIRE_RTSP_CLIENT=ffmpeg``),
falling back to libavformat over UDP when ``auto`` meets a camera that refuses TCP;
UDP, ``rtsps://`` and files through libavformat (``connect``).  So the transport,
the credentials and the error wording are the ones recording will meet, and the
report's ``rtsp_client`` says which client that was.  It reads the first packets
for at most ``PACKET_WINDOW_SEC`` to see frames really arrive (over UDP the open
can succeed while a firewall drops every packet) and whether presentation times go
backwards (B-frames), and asks the codec package for a sample entry: what it can't
build, the recorder couldn't store.

With moonfire's client the codec details come from the stream itself rather than
from FFmpeg's decoder: the profile and the reorder depth from the SPS, the frame
rate from the packets' presentation times (as FFmpeg's ``average_rate`` is) or the
SDP's ``a=framerate``, the audio codecs from the SDP.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from moonfire.codec import (
    RECORDABLE_CODECS,
    h264_sps,
    h265_sps,
    recordable_codec_names,
    sample_entry_from_extradata,
)
from moonfire.codec.base import CodecError
from moonfire.ingest.rtsp import (
    RefusedTransportError,
    Response,
    RtspSource,
    parameter_sets_in,
    parse_sdp,
    rtpmap,
    sdp_sections,
)
from moonfire.ingest.sources import (
    DEFAULT_TRANSPORT,
    OPEN_TIMEOUT_SEC,
    TESTSRC_SCHEME,
    Connection,
    SourceError,
    TestPatternSource,
    after_refused_tcp,
    check_camera_url,
    connect,
    redact_url,
    url_scheme,
    uses_moonfire_client,
)
from moonfire.time import TIME_UNITS_PER_SEC

if TYPE_CHECKING:
    import av

#: How long the probe reads packets after connecting.
PACKET_WINDOW_SEC = 1.0
#: ... and at most this many video packets.
PACKET_LIMIT = 30

#: FFmpeg codec name -> how people call it (the recordable ones as the codec package does).
CODEC_NAMES = {**RECORDABLE_CODECS, "mjpeg": "MJPEG", "mpeg4": "MPEG-4 Part 2"}

#: H.264 profile_idc -> FFmpeg's profile name (libavcodec's ``ff_h264_profiles``).
H264_PROFILES = {
    66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10",
    122: "High 4:2:2", 144: "High 4:4:4", 244: "High 4:4:4 Predictive", 44: "CAVLC 4:4:4",
    118: "Multiview High", 128: "Stereo High",
}
#: Profiles FFmpeg names "... Intra" when constraint_set3_flag is set.
_H264_INTRA_PROFILES = frozenset({110, 122, 244})
#: constraint_set1_flag and constraint_set3_flag in ``SpsInfo.constraint_flags`` (set0 on top).
_CONSTRAINT_SET1 = 0x40
_CONSTRAINT_SET3 = 0x10
#: H.265 general_profile_idc -> FFmpeg's profile name (``ff_hevc_profiles``).
H265_PROFILES = {
    1: "Main", 2: "Main 10", 3: "Main Still Picture", 4: "Rext", 6: "Multiview Main", 9: "Scc",
}

#: RTP encoding names (SDP ``rtpmap``, upper case) -> FFmpeg's codec names, as libavformat's
#: RTSP demuxer maps them (its static payload table and dynamic payload handlers).
AUDIO_ENCODINGS = {
    "PCMU": "pcm_mulaw", "PCMA": "pcm_alaw", "L16": "pcm_s16be", "L24": "pcm_s24be",
    "G722": "adpcm_g722", "G723": "g723_1", "G729": "g729", "GSM": "gsm", "QCELP": "qcelp",
    "MPA": "mp2", "MPA-ROBUST": "mp3adu", "AC3": "ac3", "MPEG4-GENERIC": "aac",
    "MP4A-LATM": "aac_latm", "OPUS": "opus", "SPEEX": "speex", "VORBIS": "vorbis",
    "AMR": "amr_nb", "AMR-WB": "amr_wb", "ILBC": "ilbc",
    **{f"G726-{bits}": "adpcm_g726le" for bits in (16, 24, 32, 40)},
    **{f"AAL2-G726-{bits}": "adpcm_g726" for bits in (16, 24, 32, 40)},
}
#: Static audio payload types (RFC 3551) a camera may send without an ``rtpmap``.
STATIC_AUDIO_PAYLOADS = {
    "0": "PCMU", "3": "GSM", "4": "G723", "8": "PCMA", "9": "G722", "10": "L16", "11": "L16",
    "12": "QCELP", "14": "MPA", "18": "G729",
}

#: The start of the reason when the stream opened and no video came.
NO_VIDEO = "connected, but no video arrived"

#: ``ProbeReport.rtsp_client`` values: the RTSP client that read the stream.
MOONFIRE_CLIENT = "moonfire"
FFMPEG_CLIENT = "ffmpeg"


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
    #: The RTSP client that read the stream, as recording would: ``moonfire`` (its own) or
    #: ``ffmpeg`` (libavformat: UDP, rtsps, ``MOONFIRE_RTSP_CLIENT=ffmpeg``); None for a file,
    #: testsrc, or a probe that failed before a client was picked.
    rtsp_client: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: plain strings, numbers, booleans, None and a list."""
        out = asdict(self)
        out["audio"] = list(self.audio)
        return out

    def describe(self) -> list[str]:
        """Lines for a terminal."""
        lines = [f"URL:        {self.url}"]
        if self.transport is not None:
            client = {MOONFIRE_CLIENT: "moonfire's client", FFMPEG_CLIENT: "FFmpeg's client"}
            by = f" ({client[self.rtsp_client]})" if self.rtsp_client in client else ""
            lines.append(f"transport:  RTSP over {self.transport.upper()}{by}")
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
        if uses_moonfire_client(url, transport):
            try:
                return _probe_with_moonfire_client(url, username, password, timeout_sec)
            except RefusedTransportError:  # as open_source does
                transport = after_refused_tcp(url, username, password, transport)
        connection = connect(url, username, password, transport, timeout_sec)
    except SourceError as e:
        return _refused(url, e)
    return _probe_with_libavformat(connection)


def _refused(url: str, e: SourceError) -> ProbeReport:
    # The probe is all about opening; "can't open: " would only repeat that.
    reason = e.reason.removeprefix("can't open: ")
    return ProbeReport(redact_url(url), recordable=False, reason=reason)


# ---- libavformat ----------------------------------------------------------------------


def _probe_with_libavformat(connection: Connection) -> ProbeReport:
    client = FFMPEG_CLIENT if connection.transport is not None else None
    with connection.container as container:
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            return ProbeReport(
                connection.url, False, f"no video stream (streams found: {kinds})",
                connected=True, transport=connection.transport, audio=audio,
                rtsp_client=client,
            )
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name
        rate = stream.average_rate or stream.guessed_rate
        read_error, tally = _read_with_libavformat(container, stream, connection)
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
            b_frames=bool(ctx.has_b_frames) or tally.reordered,
            packets_seen=tally.count,
            audio=audio,
            rtsp_client=client,
        )


class _PacketTally:
    """The video packets a probe read: how many, their presentation times, and whether
    those ever went backwards (B-frames)."""

    def __init__(self) -> None:
        self.pts: list[int] = []
        self.reordered = False
        self._highest: int | None = None

    @property
    def count(self) -> int:
        return len(self.pts)

    def add(self, pts: int) -> None:
        if self._highest is not None and pts < self._highest:
            self.reordered = True
        self._highest = pts if self._highest is None else max(self._highest, pts)
        self.pts.append(pts)


def _read_with_libavformat(
    container: av.container.InputContainer, stream: Any, connection: Connection
) -> tuple[str | None, _PacketTally]:
    """(why no video arrived or None, the packets read)."""
    import av  # noqa: PLC0415 - as sources.py does: only where libavformat reads
    deadline = time.monotonic() + PACKET_WINDOW_SEC
    tally = _PacketTally()
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                tally.add(packet.pts)
            if tally.count >= PACKET_LIMIT or time.monotonic() > deadline:
                break
    except (av.FFmpegError, OSError) as e:
        if not tally.count:
            return connection.error(NO_VIDEO, e).reason, _PacketTally()
    if not tally.count:
        return f"{NO_VIDEO} (the stream ended at once)", tally
    return None, tally


# ---- moonfire's RTSP client -----------------------------------------------------------


class _DescribedRtspSource(RtspSource):
    """``RtspSource`` that also hands the SDP its DESCRIBE received to ``descriptions``, so
    the probe can say what a camera offers (its audio, a codec moonfire doesn't record)
    even when opening fails after DESCRIBE: the constructor then raises, with no object
    to ask.  It hooks ``RtspSource._request``, the one method every request goes through."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        *,
        open_timeout_sec: float,
        descriptions: list[str],
    ) -> None:
        self._descriptions = descriptions
        super().__init__(url, username, password, open_timeout_sec=open_timeout_sec)

    def _request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Response:
        response = super()._request(method, uri, headers)
        if method == "DESCRIBE" and response.status == 200:
            self._descriptions.append(response.body.decode("utf-8", "replace"))
        return response


def _probe_with_moonfire_client(
    url: str, username: str | None, password: str | None, timeout_sec: float
) -> ProbeReport:
    """Open ``url`` with ``RtspSource`` and read a little; ``RefusedTransportError`` (the
    camera wants UDP) and failures before a stream description came are raised."""
    descriptions: list[str] = []
    try:
        source = _DescribedRtspSource(
            url, username, password, open_timeout_sec=timeout_sec, descriptions=descriptions
        )
    except SourceError as e:
        if not descriptions:
            raise
        return _refused_after_describe(e, descriptions[-1])
    with source:
        sdp = _Sdp(descriptions[-1])
        sps = _sps(source.codec, source.extradata)
        read_error, tally = _read_with_moonfire_client(source)
        reason = read_error or _why_not_recordable(source.codec, source.extradata)
        return ProbeReport(
            source.url,
            recordable=reason is None,
            reason=reason,
            connected=True,
            transport=source.transport,
            codec=source.codec,
            profile=_profile_name(sps),
            width=source.width or None,
            height=source.height or None,
            frame_rate=_frame_rate_from_pts(tally.pts) or sdp.video_frame_rate,
            b_frames=_reorder_depth(sps) > 0 or tally.reordered,
            packets_seen=tally.count,
            audio=sdp.audio_codecs,
            rtsp_client=MOONFIRE_CLIENT,
        )


def _refused_after_describe(e: SourceError, description: str) -> ProbeReport:
    """The camera described its streams, then opening failed: say what it offers."""
    track, _kinds = parse_sdp(description, e.url)
    sdp = _Sdp(description)
    reason = e.reason.removeprefix("can't open: ")
    if track is not None and track.codec not in RECORDABLE_CODECS:
        reason = _why_not_recordable(track.codec, b"") or reason
    # "tcp": the connection that described the streams, as recording would use it (no RTP
    # was set up, so a camera that would refuse RTP over TCP isn't known to yet).
    return ProbeReport(
        e.url, recordable=False, reason=reason, connected=True, transport="tcp",
        codec=track.codec if track is not None else None,
        frame_rate=sdp.video_frame_rate if track is not None else None,
        audio=sdp.audio_codecs, rtsp_client=MOONFIRE_CLIENT,
    )


def _read_with_moonfire_client(source: RtspSource) -> tuple[str | None, _PacketTally]:
    """(why no video arrived or None, the packets read)."""
    deadline = time.monotonic() + PACKET_WINDOW_SEC
    tally = _PacketTally()
    try:
        for packet in source.packets():
            tally.add(packet.pts_90k)
            if tally.count >= PACKET_LIMIT or time.monotonic() > deadline:
                break
    except SourceError as e:
        if not tally.count:
            return f"{NO_VIDEO}: {e.reason.removeprefix('read failed: ')}", _PacketTally()
    if not tally.count:
        return f"{NO_VIDEO} (the stream ended at once)", tally
    return None, tally


_SpsInfo = h264_sps.SpsInfo | h265_sps.SpsInfo


def _sps(codec: str, extradata: bytes) -> _SpsInfo | None:
    """The stream's SPS, parsed; None if there is none that parses."""
    for nal in parameter_sets_in(codec, extradata):
        try:
            if codec == "h264" and h264_sps.nal_type(nal) == h264_sps.NAL_TYPE_SPS:
                return h264_sps.parse_sps(nal)
            if codec == "hevc" and h265_sps.nal_type(nal) == h265_sps.NAL_TYPE_SPS:
                return h265_sps.parse_sps(nal)
        except CodecError:
            continue
    return None


def _profile_name(sps: _SpsInfo | None) -> str | None:
    """FFmpeg's name for the SPS's profile (what ``codec_context.profile`` says)."""
    if isinstance(sps, h264_sps.SpsInfo):
        name = H264_PROFILES.get(sps.profile_idc)
        if name == "Baseline" and sps.constraint_flags & _CONSTRAINT_SET1:
            return "Constrained Baseline"
        if sps.profile_idc in _H264_INTRA_PROFILES and sps.constraint_flags & _CONSTRAINT_SET3:
            return "High 4:4:4 Intra" if sps.profile_idc == 244 else f"{name} Intra"
        return name
    if isinstance(sps, h265_sps.SpsInfo):
        idc = sps.profile.profile_idc
        if idc == 0:  # as FFmpeg does: the first profile the stream says it conforms to
            flags = sps.profile.compatibility_flags
            idc = next((i for i in range(1, 32) if flags >> (31 - i) & 1), 0)
        return H265_PROFILES.get(idc)
    return None


def _reorder_depth(sps: _SpsInfo | None) -> int:
    """How far the SPS lets frames be reordered; 0 when unknown (then only the packets tell)."""
    if isinstance(sps, h264_sps.SpsInfo):
        return h264_sps.reorder_depth(sps)
    if isinstance(sps, h265_sps.SpsInfo):
        return h265_sps.reorder_depth(sps)
    return 0


def _frame_rate_from_pts(pts_90k: Iterable[int]) -> float | None:
    """Frames per second from presentation times: 90 kHz over their usual spacing (the median,
    so one frame lost in the window doesn't show as 29 fps); None with fewer than two."""
    ordered = sorted(set(pts_90k))
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    if not gaps:
        return None
    return round(TIME_UNITS_PER_SEC / statistics.median(gaps), 3)


class _Sdp:
    """What the probe reads from a session description beyond ``parse_sdp``'s video track:
    the audio streams' codecs and the video's announced frame rate."""

    def __init__(self, text: str) -> None:
        self._session, self.media = sdp_sections(text)

    @property
    def audio_codecs(self) -> tuple[str, ...]:
        """FFmpeg's codec name for each audio stream's first format (the one it reads)."""
        return tuple(
            _audio_codec(formats[0], attributes)
            for kind, formats, attributes in self.media
            if kind == "audio" and formats
        )

    @property
    def video_frame_rate(self) -> float | None:
        """The first video stream's ``a=framerate`` (or the session's), None if absent."""
        for kind, _formats, attributes in self.media:
            if kind == "video":
                for value in attributes.get("framerate", []) + self._session.get("framerate", []):
                    try:
                        rate = float(value)
                    except ValueError:
                        continue
                    if rate > 0:
                        return round(rate, 3)
                return None
        return None


def _audio_codec(payload: str, attributes: dict[str, list[str]]) -> str:
    mapped = rtpmap(payload, attributes)
    encoding = STATIC_AUDIO_PAYLOADS.get(payload, "") if mapped is None else mapped[0]
    # An encoding FFmpeg doesn't know: its own name, lower case (FFmpeg would say "none").
    return AUDIO_ENCODINGS.get(encoding.upper(), encoding.lower() or f"payload type {payload}")


# ---- shared ---------------------------------------------------------------------------


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
