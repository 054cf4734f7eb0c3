"""Where a camera's H.264 packets come from: PyAV (libavformat) or a built-in test pattern.

``open_source(url, username, password)`` gives a ``Source`` whose ``packets()``
yields ``SourcePacket``s with presentation times rebased to 90 kHz and to start
at 0, so the streamer never sees a stream's own time base or epoch:

* ``rtsp://`` URLs are read over the stream's transport (``TRANSPORTS``: TCP, UDP,
  or ``auto``: TCP, then UDP if the camera refuses TCP with 461 Unsupported
  Transport) with FFmpeg's own socket timeout (``RTSP_SOCKET_TIMEOUT_SEC``), not PyAV's
  read timeout: PyAV checks that one from FFmpeg's interrupt callback, which takes the GIL
  and calls ``time.monotonic()`` at every socket wait, thousands of times a second at
  4 Mbit/s (issue 13: 5-10% of a stream's CPU); credentials are put into the URL's userinfo
  (percent-encoded) so FFmpeg answers a digest or basic challenge itself.  A
  camera that accepts the connection and never answers is reported as "no answer
  from HOST:PORT within N s", not as FFmpeg's "Invalid data found";
* file paths (and any other URL FFmpeg understands) are *finite*: read at their
  native rate, like a camera (paced by their presentation times, so frames are
  stamped with the wall clock as they would be live), and ``packets()`` ends at
  the end of the file: the streamer then ends that stream instead of reopening it.
  ``realtime=False`` reads at full speed (the ingest benchmark's choice);
* ``testsrc://?size=1280x720&fps=30&bitrate=2M&gop=30`` is a synthetic camera
  (``bitrate`` in bits per second, read like a size: ``300k``, ``2M``):
  an H.264 test pattern encoded by PyAV and paced in real time, so the whole
  system runs with no camera at all (``moonfire demo``, the tests).

Only the first video stream is used.  Every FFmpeg failure is raised as
``SourceError`` naming the URL *without* its password; passwords never reach a
log line or an exception message.

A frame cut off by a disconnect is never handed on: ``merge_same_pts`` yields a
frame only once the next one began, and a live stream's last frame (whose end
was never seen) is dropped; only a file's last frame is known to be complete.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast

import numpy as np

from moonfire.codec import RECORDABLE_CODECS, recordable_codec_names
from moonfire.errors import MoonfireError
from moonfire.ingest.decode_times import DecodeTimeFiller
from moonfire.sizes import parse_size
from moonfire.time import TIME_UNITS_PER_SEC

if TYPE_CHECKING:
    import av

#: Seconds to wait for the camera to answer when connecting, and between packets.
OPEN_TIMEOUT_SEC = 10.0
READ_TIMEOUT_SEC = 10.0
#: FFmpeg's RTSP socket timeout.  A camera gone silent mid-stream fails the read after two
#: of them (the first only flushes the frame FFmpeg's parser holds back; measured 4.0-4.2 s
#: for 2 s), so half the read timeout keeps that at ``READ_TIMEOUT_SEC``.
RTSP_SOCKET_TIMEOUT_SEC = READ_TIMEOUT_SEC / 2

TESTSRC_SCHEME = "testsrc"
RTSP_SCHEMES = ("rtsp", "rtsps")
#: A stream's RTSP transport: ``auto`` tries TCP, then UDP if the camera refuses TCP.
TRANSPORTS = ("auto", "tcp", "udp")
DEFAULT_TRANSPORT = "auto"
#: ``auto``'s pause between a camera refusing TCP and asking it for UDP: gst-rtsp-server
#: answers 5XX to a SETUP that comes while it still tears down the refused session.
AUTO_FALLBACK_PAUSE_SEC = 0.3
#: The environment variable that picks the RTSP client, and its values (``rtsp_client``).
RTSP_CLIENT_ENV = "MOONFIRE_RTSP_CLIENT"
RTSP_CLIENTS = ("moonfire", "ffmpeg")
REFUSED_TCP = (
    "the camera refused RTP over TCP (461 Unsupported Transport); "
    "it may stream only over UDP: use transport udp or auto"
)
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

    ``dts_90k`` is the decode time, on the pts's scale and origin.  Packets come
    in decode order; with B-frames their pts go back and forth while the dts
    increases (issue 10 §1).  ``None`` means the same as the pts (a source that
    never reorders, like the synthetic camera).  ``AvSource`` sets it on every
    packet, deriving it where FFmpeg gives none (``decode_times``).
    """

    data: bytes
    pts_90k: int
    is_key: bool
    new_extradata: bytes | None = None
    received_ns: int | None = None
    dts_90k: int | None = None


class Source:
    """An open H.264 stream.  ``packets()`` may be iterated once; ``close()`` always."""

    url: str
    extradata: bytes
    width: int
    height: int
    #: True for a source with an end (a file): ``packets()`` returning means the stream is
    #: over for good, not an error to reconnect after.
    finite: bool = False
    #: The RTSP transport in use (``tcp`` or ``udp``); None for anything but RTSP.
    transport: str | None = None
    #: Packets come at the pace of their timestamps (a camera, a paced file), so the two
    #: can be compared to catch a camera's clock jumping; False for a file at full speed.
    realtime: bool = True
    #: The video codec as FFmpeg names it (``h264``, ``hevc``): picks the sample entry builder.
    codec: str = "h264"

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


def open_source(
    url: str,
    username: str | None = None,
    password: str | None = None,
    *,
    transport: str = DEFAULT_TRANSPORT,
    realtime: bool = True,
    open_timeout_sec: float = OPEN_TIMEOUT_SEC,
) -> Source:
    """Open ``url`` (an RTSP URL, a file path, any FFmpeg URL, or ``testsrc://...``).

    ``transport`` applies to RTSP only; ``realtime=False`` reads a file at full speed.
    """
    scheme = url_scheme(url)
    if scheme == TESTSRC_SCHEME:
        return TestPatternSource(url)
    if uses_moonfire_client(url, transport):
        from moonfire.ingest.rtsp import RefusedTransportError, RtspSource

        try:
            return RtspSource(url, username, password, open_timeout_sec=open_timeout_sec)
        except RefusedTransportError:
            transport = after_refused_tcp(url, username, password, transport)
    return AvSource(
        url, username, password, transport=transport, realtime=realtime,
        open_timeout_sec=open_timeout_sec,
    )


def uses_moonfire_client(url: str, transport: str) -> bool:
    """Whether ``url`` is read by moonfire's own RTSP client (``rtsp://`` over TCP, unless
    ``MOONFIRE_RTSP_CLIENT=ffmpeg``) rather than by libavformat: recording and the probe
    both ask here, so a probe meets what recording will."""
    return url_scheme(url) == "rtsp" and transport in ("tcp", "auto") and (
        rtsp_client() == "moonfire"
    )


def after_refused_tcp(
    url: str, username: str | None, password: str | None, transport: str
) -> str:
    """The camera answered SETUP over TCP with 461: with transport ``tcp``, a ``SourceError``
    saying so; with ``auto``, a short pause (the camera frees the refused session) and
    ``udp``, the transport to open libavformat with instead."""
    if transport == "tcp":
        raise SourceError(
            redact_url(with_credentials(url, username, password)), f"can't open: {REFUSED_TCP}"
        )
    time.sleep(AUTO_FALLBACK_PAUSE_SEC)
    return "udp"


def rtsp_client() -> str:
    """Which RTSP client reads ``rtsp://`` over TCP: ``moonfire`` (the default: its own, in
    ``moonfire.ingest.rtsp``) or ``ffmpeg`` (libavformat, through PyAV), chosen by the
    ``MOONFIRE_RTSP_CLIENT`` environment variable: the way back for a camera the built-in
    client can't read.  UDP and ``rtsps://`` always use libavformat."""
    choice = os.environ.get(RTSP_CLIENT_ENV, "moonfire").strip().lower() or "moonfire"
    if choice not in RTSP_CLIENTS:
        raise SourceError(
            f"${RTSP_CLIENT_ENV}",
            f"unknown RTSP client {choice!r} (one of {', '.join(RTSP_CLIENTS)})",
        )
    return choice


def check_camera_url(url: str) -> None:
    """Refuse, with a ``SourceError`` saying why, a URL no session could open: one that
    doesn't parse (``rtsp://[::1``), an RTSP URL without a host or with a bad port, a
    scheme other than rtsp, rtsps, testsrc or a file path (``file://`` or none), bad
    ``testsrc`` parameters.  For ``camera add``/``edit`` and the web UI, so a mistake
    shows at setup rather than as a night of retries.  A file need not exist yet (its
    disk may be mounted later); ``--probe`` says whether it can be read."""
    scheme = url_scheme(url)
    redacted = redact_url(url)
    parts = urllib.parse.urlsplit(url)
    if scheme in RTSP_SCHEMES:
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that isn't a number
        except ValueError as e:
            raise SourceError(redacted, f"not a valid URL: {e}") from None
        if not parts.hostname:
            raise SourceError(redacted, "an RTSP URL needs a host: rtsp://HOST[:PORT]/PATH")
    elif scheme == TESTSRC_SCHEME:
        TestPatternSettings.from_url(url)
    elif scheme not in ("", "file"):
        raise SourceError(
            redacted, f"unsupported URL scheme {scheme!r}: moonfire records rtsp://, rtsps://, "
            "a file path or testsrc://"
        )


def url_scheme(url: str) -> str:
    """``url``'s scheme, lower case ('' for a file path); ``SourceError`` if it can't be parsed
    (``rtsp://[::1``), so a bad URL ends a session with a message, not a thread."""
    try:
        return urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as e:
        raise SourceError(redact_url(url), f"not a valid URL: {e}") from None


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
    """``url`` with any password in its userinfo replaced by ``***``, and any in its path or
    query too (cameras that take ``/user=admin&password=x`` or ``?pwd=x``, XMeye's and others).

    Never raises: a URL ``urlsplit`` refuses (``rtsp://u:pw@[::1``) is redacted by pattern,
    so one bad URL can't break ``camera list`` or a log line for every camera.
    """
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _USERINFO_PASSWORD.sub(r"\1:***@", url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


#: ``//user:password@`` in a URL, for ``redact_url``'s fallback.
_USERINFO_PASSWORD = re.compile(r"(//[^/:@]*):[^/@]*@")
#: A password given as a parameter in a URL's path or query (``password=``, ``pwd=``, …).
_PASSWORD_PARAMETER = re.compile(
    r"(?i)([/?&;](?:password|passwd|pass|pwd|psw)=)[^&;/?#]*"
)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ---- PyAV sources ----------------------------------------------------------------------


class AvSource(Source):
    """Any stream libavformat can demux, RTSP included."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        *,
        transport: str = DEFAULT_TRANSPORT,
        realtime: bool = True,
        open_timeout_sec: float = OPEN_TIMEOUT_SEC,
    ) -> None:
        self._connection = connect(url, username, password, transport, open_timeout_sec)
        self.url = self._connection.url
        self._container = self._connection.container
        self.transport = self._connection.transport
        self.finite = self.transport is None
        self._paced = self.finite and realtime
        self.realtime = realtime or not self.finite
        self._interrupted = threading.Event()
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
        return self._connection.error(what, e)

    def _pick_video_stream(self) -> av.video.stream.VideoStream:
        streams = self._container.streams
        if not streams.video:
            kinds = ", ".join(s.type for s in streams) or "none"
            raise SourceError(self.url, f"no video stream (streams found: {kinds})")
        stream = streams.video[0]
        codec = stream.codec_context.name
        if codec not in RECORDABLE_CODECS:
            only = recordable_codec_names()
            raise SourceError(self.url, f"video codec is {codec}; moonfire records only {only}")
        self.codec = codec
        return stream

    def packets(self) -> Iterator[SourcePacket]:
        """Access units in order; pieces FFmpeg split off with one pts are joined back.

        A live stream's last frame is dropped (``merge_same_pts``): the stream ending
        there means the link dropped, maybe mid-frame.  A file's are paced to its
        presentation times unless opened with ``realtime=False``.
        """
        merged = merge_same_pts(self._demux(), last_is_complete=self.finite)
        if self._paced:
            merged = pace(merged, self._interrupted)
        for packet in merged:
            if self._interrupted.is_set():
                return
            yield packet

    def _demux(self) -> Iterator[SourcePacket]:
        import av  # noqa: PLC0415 - PyAV (60 ms of start-up) only where libavformat or x264 work
        # Runs once per packet of every stream: names are bound to locals, and a packet whose
        # dts FFmpeg gave (nearly all) is built once, with it (no ``dataclasses.replace``).
        first_pts: int | None = None
        last_extradata = self.extradata
        monotonic_ns = time.monotonic_ns
        interrupted = self._interrupted.is_set
        tb_num, tb_den = self._tb_num, self._tb_den
        # FFmpeg gives the first packets of an RTSP session with B-frames no dts: hold them
        # until one has it, then fill theirs in (decode_times).
        decode_times: DecodeTimeFiller[SourcePacket] = DecodeTimeFiller()
        push = decode_times.push
        try:
            for packet in self._container.demux(self._stream):
                received_ns = monotonic_ns()
                if interrupted():
                    return
                pts = packet.pts
                if pts is None or packet.size == 0:
                    continue  # FFmpeg ticket 5018: the first RTSP packet may lack a pts
                pts_90k = pts * tb_num // tb_den
                if first_pts is None:
                    first_pts = pts_90k
                dts = packet.dts
                dts_90k = None if dts is None else dts * tb_num // tb_den - first_pts
                new_extradata = None
                if packet.has_sidedata("new_extradata"):
                    data = bytes(packet.get_sidedata("new_extradata"))
                    if data and data != last_extradata:
                        new_extradata = last_extradata = data
                source_packet = SourcePacket(
                    bytes(packet), pts_90k - first_pts, packet.is_keyframe, new_extradata,
                    received_ns, dts_90k,
                )
                for ready, decode_90k in push(source_packet, source_packet.pts_90k, dts_90k):
                    if ready.dts_90k != decode_90k:  # held without a dts, now filled in
                        ready = dataclasses.replace(ready, dts_90k=decode_90k)
                    yield ready
            for ready, decode_90k in decode_times.finish():
                yield dataclasses.replace(ready, dts_90k=decode_90k)
        except (av.FFmpegError, OSError) as e:
            if self._interrupted.is_set():
                return
            raise self._error("read failed", e) from None

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._interrupted.set()
        self._container.close()


def merge_same_pts(
    pieces: Iterable[SourcePacket], last_is_complete: bool = True
) -> Iterator[SourcePacket]:
    """``pieces`` with consecutive runs of one pts joined into one packet.

    FFmpeg's parser can cut a multi-slice RTSP frame into several packets with
    the same pts; the recorder needs one sample per pts, so they are merged.  A
    packet is yielded only when the next pts arrives (one frame of latency), so
    it keeps the ``received_ns`` of its first piece: its local time stays the
    time it arrived.

    That is also what makes a frame *known complete*: its successor began.  The
    last one, when ``pieces`` ends, is yielded only if ``last_is_complete`` (a
    file's end); a live stream that ends has dropped its link, perhaps mid-frame
    (a live555 camera killed mid-frame left its first RTP packet as a frame), so
    it is dropped.  If ``pieces`` raises, the pending frame is dropped too.
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
                pending.dts_90k,
            )
            continue
        if pending is not None:
            yield pending
        pending = piece
    if pending is not None and last_is_complete:
        yield pending


def pace(packets: Iterable[SourcePacket], stop: threading.Event) -> Iterator[SourcePacket]:
    """``packets`` handed on no faster than their presentation times, from the first one's
    arrival, each stamped as received when handed on: a file read like a live camera.

    It follows the largest pts so far, so reordered (B-frame) pts never make it wait.
    Returns early once ``stop`` is set.
    """
    start_ns: int | None = None
    first_pts = latest_pts = 0
    for packet in packets:
        if start_ns is None:
            start_ns, first_pts = time.monotonic_ns(), packet.pts_90k
        latest_pts = max(latest_pts, packet.pts_90k - first_pts)
        due_ns = start_ns + latest_pts * 100_000 // 9
        delay_ns = due_ns - time.monotonic_ns()
        if delay_ns > 0 and stop.wait(delay_ns / 1e9):
            return
        yield dataclasses.replace(packet, received_ns=time.monotonic_ns())


# ---- connecting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """An opened libavformat container and what is needed to describe its errors."""

    container: av.container.InputContainer
    #: The URL with any password replaced by ``***``.
    url: str
    #: ``tcp`` or ``udp`` for RTSP; None for a file.
    transport: str | None
    full_url: str
    secrets: tuple[str, ...]

    def error(self, what: str, e: BaseException) -> SourceError:
        reason = _ffmpeg_reason(e, self.full_url, self.url, self.secrets)
        return SourceError(self.url, f"{what}: {reason}")


def connect(
    url: str,
    username: str | None,
    password: str | None,
    transport: str = DEFAULT_TRANSPORT,
    open_timeout_sec: float = OPEN_TIMEOUT_SEC,
) -> Connection:
    """Open ``url`` with libavformat: an RTSP camera over ``transport`` (``auto``: TCP, then
    UDP if the camera refuses TCP), anything else as it is.  ``SourceError`` says why not,
    in words a user can act on (a refused password, a silent camera, a refused transport).
    """
    import av  # noqa: PLC0415 - see _demux
    if transport not in TRANSPORTS:
        raise SourceError(
            redact_url(url), f"unknown transport {transport!r} (one of {', '.join(TRANSPORTS)})"
        )
    scheme = url_scheme(url)
    full_url = with_credentials(url, username, password)
    redacted = redact_url(full_url)
    secrets = [s for s in (password, urllib.parse.quote(password or "", safe="")) if s]
    embedded = urllib.parse.urlsplit(url).password
    if embedded:
        secrets.append(embedded)
    if scheme not in RTSP_SCHEMES:
        try:
            container = av.open(full_url, timeout=(open_timeout_sec, READ_TIMEOUT_SEC))
        except (av.FFmpegError, OSError, ValueError) as e:
            reason = _ffmpeg_reason(e, full_url, redacted, secrets)
            raise SourceError(redacted, f"can't open: {reason}") from None
        return Connection(container, redacted, None, full_url, tuple(secrets))
    tries = ["tcp", "udp"] if transport == "auto" else [transport]
    for lower in tries:
        started = time.monotonic()
        try:
            # No PyAV read timeout (None): FFmpeg's socket timeout bounds every read instead,
            # with no Python call per socket wait (see the module docstring).
            container = av.open(
                full_url, options=_rtsp_options(lower), timeout=(open_timeout_sec, None)
            )
        except (av.FFmpegError, OSError, ValueError) as e:
            refused_tcp = lower == "tcp" and _refuses_transport(e)
            if refused_tcp and lower != tries[-1]:
                time.sleep(AUTO_FALLBACK_PAUSE_SEC)
                continue  # auto: the camera wants UDP
            raise SourceError(
                redacted, "can't open: " + _rtsp_open_failure(
                    e, full_url, redacted, secrets, lower, time.monotonic() - started,
                    min(open_timeout_sec, RTSP_SOCKET_TIMEOUT_SEC),
                ),
            ) from None
        return Connection(container, redacted, lower, full_url, tuple(secrets))
    raise AssertionError("unreachable: the last transport tried raises")


def _rtsp_options(transport: str) -> dict[str, str]:
    return {
        "rtsp_transport": transport,
        # FFmpeg >= 5 names the RTSP socket I/O timeout "timeout", in microseconds.
        "timeout": str(int(RTSP_SOCKET_TIMEOUT_SEC * 1_000_000)),
        "user_agent": "moonfire",
        "probesize": "262144",
    }


def _refuses_transport(e: BaseException) -> bool:
    """FFmpeg's word for RTSP's 461 Unsupported Transport is EPROTONOSUPPORT."""
    return getattr(e, "errno", None) == errno.EPROTONOSUPPORT or "461" in str(e)


def _rtsp_open_failure(
    e: BaseException, full_url: str, redacted: str, secrets: list[str], transport: str,
    elapsed_sec: float, timeout_sec: float,
) -> str:
    """Why an RTSP open failed, in a camera's terms rather than FFmpeg's."""
    import av  # noqa: PLC0415 - see _demux
    if isinstance(e, av.HTTPUnauthorizedError):
        return "the camera refused the username/password (401 Unauthorized)"
    if transport == "tcp" and _refuses_transport(e):
        return REFUSED_TCP
    if transport == "udp" and _refuses_transport(e):
        return (
            "the camera refused RTP over UDP (461 Unsupported Transport); "
            "use transport tcp or auto"
        )
    if elapsed_sec >= 0.9 * timeout_sec and not isinstance(e, ConnectionRefusedError):
        # A camera that accepts and never answers: FFmpeg says "Invalid data found".
        return f"no answer from {host_port(full_url)} within {timeout_sec:g} s"
    return _ffmpeg_reason(e, full_url, redacted, secrets)


def host_port(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    default = 322 if parts.scheme.lower() == "rtsps" else 554
    return f"{host}:{parts.port or default}"


def _ffmpeg_reason(
    e: BaseException, full_url: str, redacted: str, secrets: Iterable[str]
) -> str:
    # An FFmpegError's str() repeats the URL (with its password); its strerror does not.
    text = getattr(e, "strerror", None) or str(e).replace(full_url, redacted)
    return scrub(text, list(secrets))


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
    import av  # noqa: PLC0415 - see _demux
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
        import av  # noqa: PLC0415 - see _demux
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
        self._video_frame = av.VideoFrame  # PyAV's, imported above, for every frame
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
        frame = self._video_frame.from_ndarray(image, format="yuv420p")
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
