"""moonfire's own RTSP client: RTP over the RTSP connection (TCP), read in bulk (issue 13).

libavformat's RTSP client reads every interleaved RTP packet with its own poll and two
``recv`` calls (three system calls per ~1400-byte packet, ~1100 a second at 4 Mbit/s) and hands
each piece to Python through PyAV: recording a camera that way cost about twice the CPU of
``ffmpeg -c copy``.  This client reads the connection every ``READ_INTERVAL_SEC``, taking what
came meanwhile (a few frames' packets) with one ``recv_into``, and gives the bytes to the compiled
depacketizer (``moonfire_core.rtp``), which hands back whole access units in Annex B form, the
form FFmpeg gave: the streamer, the recorder and the live view see the same packets as before.

What it speaks (RFC 2326, RTSP 1.0, as cameras do):

* ``OPTIONS`` (to learn whether the camera takes ``GET_PARAMETER`` keepalives), ``DESCRIBE``
  (the SDP: the first video stream, its codec and parameter sets), ``SETUP`` with
  ``RTP/AVP/TCP;unicast;interleaved=0-1``, ``PLAY``, keepalives at half the session's timeout,
  and a ``TEARDOWN`` sent (not waited for) at close;
* Basic and Digest (RFC 7616: SHA-256 preferred to MD5, ``-sess``, ``qop=auth``/``auth-int``
  or none) authentication, Digest over Basic whenever both are offered, answered once per
  challenge (again only for a stale nonce): a second 401 is a refused password;
* H.264 (RFC 6184) and H.265 (RFC 7798) payloads; the parameter sets come from the SDP
  (``sprop-parameter-sets``; ``sprop-vps``/``sprop-sps``/``sprop-pps``) or, when the SDP has
  none, from the first key frame that carries them in band;
* decode times: RTP carries presentation times only.  As libavformat does, a packet's decode
  time is the (d+1)-th largest presentation time so far, where d is the stream's reorder depth
  from its SPS (0 for a stream without B-frames: decode time = presentation time); the first
  d packets get theirs from ``DecodeTimeFiller``.

Not here (``sources.AvSource`` still does these through libavformat): RTP over UDP (``auto``
falls back to it when the camera answers ``SETUP`` over TCP with 461), ``rtsps://``, and every
other codec (which moonfire doesn't record anyway).

Errors are ``SourceError``\\ s naming the URL without its password, in the same words as
``AvSource``'s, so logs, ``moonfire status`` and the API read the same whichever client ran.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from moonfire.codec import (
    RECORDABLE_CODECS,
    h264_sps,
    h265_sps,
    recordable_codec_names,
    sample_entry_from_extradata,
)
from moonfire.codec.base import CodecError
from moonfire.errors import MoonfireError
from moonfire.ingest import sources
from moonfire.ingest.decode_times import DecodeTimeFiller
from moonfire.time import TIME_UNITS_PER_SEC
from moonfire_core.rtp import RtpDepacketizer, RtpError

#: One ``recv_into`` reads at most this much: several frames of a 16 Mbit/s stream.
RECV_BYTES = 256 * 1024
#: A read comes this long after the last one, so it takes what arrived meanwhile at once: each
#: read is a thread's wake-up, which here costs ~100 us of CPU whatever it brings, and a camera's
#: packets, read as they arrive, come ~80 times a second at 4 Mbit/s.  Reading every 0.1 s took
#: the client's CPU from 5.1 to 1.6 ms a second.  It delays a frame by at most this much, less
#: than a browser's live buffer.
READ_INTERVAL_SEC = 0.1
#: ... or sooner, for a stream that brings more than this in an interval, so the socket's receive
#: buffer (128 KiB to start with) never holds much more than this between two reads.
READ_TARGET_BYTES = 64 * 1024
#: The longest RTSP response (headers and body: an SDP) the client accepts.
MAX_MESSAGE_BYTES = 64 * 1024
#: A session whose SETUP response gives no timeout: RFC 2326's default.
DEFAULT_SESSION_TIMEOUT_SEC = 60
#: Bytes of frames held while waiting for the first key frame's parameter sets (an SDP
#: without them): ~a minute of a 4 Mbit/s stream; a camera sending more never sends them.
MAX_HELD_BYTES = 32 << 20
#: Interleaved data a camera may send before answering PLAY (a few seconds of a 4 Mbit/s
#: stream); more is a camera that streams without answering, refused rather than held.
MAX_EARLY_BYTES = 4 << 20
#: How often lost packets and dropped frames are logged, at most (a link losing packets
#: all the time gives one line a minute per camera, not one per frame).
LOSS_REPORT_INTERVAL_SEC = 60.0
#: The interleaved channels asked for in SETUP (RTP; RTCP is the next one).
RTP_CHANNEL = 0
USER_AGENT = "moonfire"

log = logging.getLogger(__name__)

#: RTP encoding names (SDP ``rtpmap``) → the codec names FFmpeg uses, which the rest of moonfire
#: (``moonfire.codec``) speaks.
_ENCODINGS = {"H264": "h264", "H265": "hevc", "JPEG": "mjpeg", "MP4V-ES": "mpeg4"}
#: Static RTP payload types (RFC 3551) a camera may send without an ``rtpmap``.
_STATIC_PAYLOAD_TYPES = {"26": "JPEG", "32": "MPV", "34": "H263"}

_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class RefusedTransportError(MoonfireError):
    """The camera answered SETUP over TCP with 461: ``auto`` asks libavformat for UDP."""


@dataclass
class Response:
    """One RTSP response: its status, headers (names lower case, repeats kept) and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass
class VideoTrack:
    """What the SDP says of the first video stream."""

    codec: str  # FFmpeg's name: h264, hevc, mjpeg, ...
    payload_type: int
    clock_rate: int
    control: str
    #: The parameter sets in the SDP, each without a start code (may be empty).
    parameter_sets: list[bytes] = field(default_factory=list)


def parse_message(buffer: bytes | bytearray) -> tuple[bytes, bytes, int] | None:
    """The first whole RTSP message in ``buffer``: (start line and headers, body, its length);
    None if it isn't all there yet.  ``ValueError`` for one larger than ``MAX_MESSAGE_BYTES``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise ValueError(f"an RTSP message's headers run past {MAX_MESSAGE_BYTES} bytes")
        return None
    head = bytes(buffer[:end])
    match = re.search(rb"(?im)^content-length\s*:\s*(\d+)\s*$", head)
    length = int(match.group(1)) if match else 0
    total = end + 4 + length
    if total > MAX_MESSAGE_BYTES:
        raise ValueError(f"an RTSP message of {total} bytes (at most {MAX_MESSAGE_BYTES})")
    if len(buffer) < total:
        return None
    return head, bytes(buffer[end + 4 : total]), total


def parse_response(head: bytes, body: bytes) -> Response:
    """``ValueError`` when the start line isn't ``RTSP/1.x CODE REASON``."""
    lines = head.decode("utf-8", "replace").split("\r\n")
    match = re.match(r"RTSP/\d\.\d\s+(\d{3})\s*(.*)", lines[0])
    if not match:
        raise ValueError(f"not an RTSP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return Response(int(match.group(1)), match.group(2).strip(), headers, body)


#: One ``m=`` section of a session description: its media kind (``video``, ``audio``...), its
#: payload formats and its attributes (``a=name:value``, values by lower-case name).
SdpMedia = tuple[str, list[str], dict[str, list[str]]]


def sdp_sections(sdp: str) -> tuple[dict[str, list[str]], list[SdpMedia]]:
    """A session description's session-level attributes and its media sections, in order."""
    session: dict[str, list[str]] = {}
    media: list[SdpMedia] = []
    attributes = session
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            attributes = {}
            media.append((parts[0].lower() if parts else "", parts[3:], attributes))
        elif line.startswith("a="):
            name, _, value = line[2:].partition(":")
            attributes.setdefault(name.strip().lower(), []).append(value.strip())
    return session, media


def rtpmap(payload: str, attributes: dict[str, list[str]]) -> tuple[str, str] | None:
    """``payload``'s ``a=rtpmap`` entry: (encoding name, clock rate[/channels]); the last one
    if there are several, None without one."""
    found = None
    for value in attributes.get("rtpmap", []):
        number, _, rest = value.partition(" ")
        if number == payload:
            name, _, rate = rest.partition("/")
            found = (name.strip(), rate)
    return found


def parse_sdp(sdp: str, base_url: str) -> tuple[VideoTrack | None, list[str]]:
    """The first video stream of a session description, and the kinds of every stream
    (``video``, ``audio``, ...) for the "no video" message."""
    _session, media = sdp_sections(sdp)
    track = next(
        (
            _video_track(formats[0], attributes, base_url)
            for kind, formats, attributes in media
            if kind == "video" and formats
        ),
        None,
    )
    return track, [kind for kind, _formats, _attributes in media]


#: A number a camera writes in its SDP or headers: ASCII digits (``str.isdigit`` takes "²"),
#: few enough that ``int`` neither refuses nor takes long over them.
_DECIMAL = re.compile(r"[0-9]{1,9}")


def _video_track(payload: str, attributes: dict[str, list[str]], base_url: str) -> VideoTrack:
    encoding, clock_rate = _STATIC_PAYLOAD_TYPES.get(payload, "?"), TIME_UNITS_PER_SEC
    mapped = rtpmap(payload, attributes)
    if mapped is not None:
        encoding = mapped[0].upper()
        rate = mapped[1].split("/")[0]
        clock_rate = int(rate) if _DECIMAL.fullmatch(rate) else clock_rate
    fmtp: dict[str, str] = {}
    for value in attributes.get("fmtp", []):
        number, _, rest = value.partition(" ")
        if number == payload:
            for item in rest.split(";"):
                key, _, val = item.strip().partition("=")
                fmtp[key.strip().lower()] = val.strip()
    codec = _ENCODINGS.get(encoding, encoding.lower())
    names = ["sprop-parameter-sets"] if codec == "h264" else ["sprop-vps", "sprop-sps", "sprop-pps"]
    parameter_sets: list[bytes] = []
    for name in names:
        for piece in fmtp.get(name, "").split(","):
            if piece:
                try:
                    parameter_sets.append(base64.b64decode(piece + "=" * (-len(piece) % 4)))
                except ValueError:
                    continue  # a garbled sprop: the parameter sets come in band instead
    control = attributes.get("control", ["*"])[0]
    return VideoTrack(
        codec, int(payload) if _DECIMAL.fullmatch(payload) else -1, clock_rate,
        control_url(base_url, control), [p for p in parameter_sets if p],
    )


def control_url(base_url: str, control: str) -> str:
    """A track's ``a=control`` as an absolute URL (FFmpeg's rule: relative to the base, which
    ends with a slash; ``*`` is the base itself)."""
    if control in ("", "*"):
        return base_url
    if re.match(r"(?i)rtsps?://", control):
        return control
    return base_url.rstrip("/") + "/" + control.lstrip("/")


#: Digest algorithms answered (RFC 7616 §3.4.2), best first: the camera's first choice isn't
#: always ours (RFC 7616 cameras list SHA-256 first, and MD5 after it for older clients).
_DIGEST_ALGORITHMS = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")
#: Where a challenge starts in a ``WWW-Authenticate`` value that may hold several (RFC 9110
#: §11.6.1): a scheme token followed by an auth-param's name and ``=``.
_CHALLENGE_START = re.compile(r"(?:^|,)\s*([A-Za-z][\w.+-]*)\s+(?=[\w-]+\s*=)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def split_challenges(headers: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Every challenge in ``WWW-Authenticate`` values: (scheme, lower-cased, its params).

    One value may hold several (``Basic realm="x", Digest realm="x", nonce="n"``); quoted
    strings are skipped when looking for where the next starts, and unescaped."""
    challenges: list[tuple[str, dict[str, str]]] = []
    for header in headers:
        masked = _QUOTED.sub(lambda m: "_" * len(m.group()), header)
        starts = list(_CHALLENGE_START.finditer(masked))
        if not starts:  # a bare scheme ("Negotiate") or a token68 form
            scheme = header.strip().partition(" ")[0]
            challenges.append((scheme.lower(), {}))
            continue
        for i, match in enumerate(starts):
            stop = starts[i + 1].start() if i + 1 < len(starts) else len(header)
            params = {
                m.group(1).lower(): (
                    re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
                )
                for m in _AUTH_PARAM.finditer(header, match.end(), stop)
            }
            challenges.append((match.group(1).lower(), params))
    return challenges


def is_stale(headers: list[str]) -> bool:
    """Whether a Digest challenge says the nonce was stale (the password was right)."""
    return any(scheme == "digest" and params.get("stale", "").lower() == "true"
               for scheme, params in split_challenges(headers))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Authenticator:
    """Answers a camera's 401 challenge for every later request: Digest (SHA-256 before MD5,
    whatever order the camera lists them in), else Basic, never Basic when Digest is offered
    too (it would send the password in the clear)."""

    def __init__(
        self, username: str, password: str, cnonce: Callable[[], str] = lambda: os.urandom(8).hex()
    ) -> None:
        self._username = username
        self._cnonce = cnonce
        self._password = password
        self._scheme: str | None = None
        self._params: dict[str, str] = {}
        self._algorithm = "MD5"
        self._count = 0

    @property
    def ready(self) -> bool:
        return self._scheme is not None

    def challenge(self, headers: list[str]) -> bool:
        """Take a 401's ``WWW-Authenticate`` headers; False if none is a challenge we answer
        (a Digest algorithm or qop we don't know, or another scheme)."""
        challenges = split_challenges(headers)
        best: tuple[int, dict[str, str]] | None = None
        for scheme, params in challenges:
            if scheme != "digest" or "nonce" not in params:
                continue
            algorithm = params.get("algorithm", "MD5").upper()
            qops = {q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()}
            if algorithm not in _DIGEST_ALGORITHMS or (qops and not qops & {"auth", "auth-int"}):
                continue
            rank = _DIGEST_ALGORITHMS.index(algorithm)
            if best is None or rank < best[0]:
                best = (rank, params)
        if best is not None:
            self._scheme = "digest"
            self._algorithm = _DIGEST_ALGORITHMS[best[0]]
            self._params = best[1]
            self._count = 0
            return True
        if any(scheme == "basic" for scheme, _params in challenges):
            self._scheme = "basic"
            return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        if self._scheme == "basic":
            token = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
            return f"Basic {token}"
        if self._scheme != "digest":
            return None
        p = self._params
        realm, nonce = p.get("realm", ""), p.get("nonce", "")
        name = "sha256" if self._algorithm.startswith("SHA-256") else "md5"

        def digest(text: str) -> str:
            return hashlib.new(name, text.encode(), usedforsecurity=False).hexdigest()

        qops = [q.strip().lower() for q in p.get("qop", "").split(",")]
        qop = "auth" if "auth" in qops else "auth-int" if "auth-int" in qops else None
        cnonce = self._cnonce() if qop or self._algorithm.endswith("-SESS") else ""
        ha1 = digest(f"{self._username}:{realm}:{self._password}")
        if self._algorithm.endswith("-SESS"):
            ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
        # RTSP requests carry no body: auth-int's H(entity-body) is that of nothing.
        ha2 = digest(f"{method}:{uri}" + (f":{digest('')}" if qop == "auth-int" else ""))
        fields = [
            f"username={_quote(self._username)}", f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}", f"uri={_quote(uri)}",
        ]
        if qop:
            self._count += 1
            nc = f"{self._count:08x}"
            response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
            fields += [f"qop={qop}", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
        else:
            response = digest(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if "opaque" in p:
            fields.append(f"opaque={_quote(p['opaque'])}")
        if "algorithm" in p:
            fields.append(f"algorithm={p['algorithm']}")
        return "Digest " + ", ".join(fields)


class _ReorderDecodeTimes:
    """Decode times from presentation times, as libavformat derives them: the (d+1)-th largest
    pts so far, d the reorder depth (None until d+1 have been seen; d = 0: the pts itself, so a
    camera whose clock goes back is still seen going back)."""

    def __init__(self, depth: int) -> None:
        self.depth = self._depth = depth
        self._largest: list[int] = []  # a min-heap of the d+1 largest pts so far

    def dts(self, pts: int) -> int | None:
        if self._depth == 0:
            return pts
        largest = self._largest
        if len(largest) <= self._depth:
            heapq.heappush(largest, pts)
            return largest[0] if len(largest) > self._depth else None
        if pts > largest[0]:
            heapq.heapreplace(largest, pts)
        return largest[0]


def reorder_depth(codec: str, parameter_sets: list[bytes]) -> int:
    """The stream's reorder depth from its SPS; 16 (H.264's largest) when it can't be read."""
    for nal in parameter_sets:
        try:
            if codec == "h264" and nal and nal[0] & 0x1F == 7:
                return h264_sps.reorder_depth(h264_sps.parse_sps(nal))
            if codec == "hevc" and len(nal) > 1 and (nal[0] >> 1) & 0x3F == 33:
                return h265_sps.reorder_depth(h265_sps.parse_sps(nal))
        except CodecError:
            continue
    return 16


def _annex_b(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def _nals(annex_b: bytes) -> list[bytes]:
    return [nal for nal in re.split(rb"\x00\x00\x00\x01", annex_b) if nal]


def _nal_kind(codec: str, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


#: The parameter sets a sample entry needs: SPS and PPS (H.264), VPS, SPS and PPS (H.265).
_PARAMETER_SET_KINDS = {"h264": frozenset({7, 8}), "hevc": frozenset({32, 33, 34})}


def parameter_sets_in(codec: str, annex_b: bytes) -> list[bytes]:
    """The parameter sets among ``annex_b``'s NAL units, or [] unless every kind a sample
    entry needs is there."""
    wanted = _PARAMETER_SET_KINDS[codec]
    found = [nal for nal in _nals(annex_b) if _nal_kind(codec, nal) in wanted]
    return found if {_nal_kind(codec, nal) for nal in found} >= wanted else []


class RtspSource(sources.Source):
    """A live RTSP camera over TCP, read by moonfire's own client (see the module docstring).

    Opening connects, authenticates, describes, sets up and plays, so by the time the
    constructor returns ``extradata``, ``width``, ``height`` and ``codec`` are known (from the
    SDP, or from the first key frame when the SDP has no parameter sets).  ``RefusedTransportError``
    when the camera refuses RTP over TCP; ``SourceError`` for everything else.
    """

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        *,
        open_timeout_sec: float = sources.OPEN_TIMEOUT_SEC,
    ) -> None:
        full_url = sources.with_credentials(url, username, password)
        self.url = sources.redact_url(full_url)
        self.transport = "tcp"
        self.finite = False
        self.realtime = True
        parts = urllib.parse.urlsplit(full_url)
        self._user = urllib.parse.unquote(parts.username or "")
        self._password = urllib.parse.unquote(parts.password or "")
        self._secrets = [s for s in (password, parts.password, self._password) if s]
        # Requests name the URL without its userinfo.
        host = parts.netloc.rpartition("@")[2]
        self._request_url = urllib.parse.urlunsplit(parts._replace(netloc=host))
        self._host_port = sources.host_port(full_url)
        self._auth = _Authenticator(self._user, self._password) if self._user else None
        self._cseq = 0
        self._session: str | None = None
        self._keepalive_sec = DEFAULT_SESSION_TIMEOUT_SEC / 2
        self._keepalive_method = "OPTIONS"
        self._interrupted = threading.Event()
        self._closed = False
        #: Bytes read while opening and not yet parsed.
        self._buffer = bytearray()
        #: Interleaved frames that came before PLAY's answer (a camera starting early).
        self._early = bytearray()
        #: The start of an RTSP message (a keepalive's answer) whose end hasn't come yet.
        self._partial_message = b""
        self._held: list[tuple[bytes, int, bool, int]] = []
        #: (packets lost, frames dropped) as last logged, and when the next report is due.
        self._reported = (0, 0)
        self._loss_report_since_ns = time.monotonic_ns()
        self._next_loss_report_ns = self._loss_report_since_ns + int(
            LOSS_REPORT_INTERVAL_SEC * 1e9)
        self._answer_timeout = min(open_timeout_sec, sources.RTSP_SOCKET_TIMEOUT_SEC)
        self._sock = self._connect(parts, open_timeout_sec)
        try:
            self._open()
        except (ValueError, OverflowError) as e:
            # A value in the camera's answers no check above foresaw: still the camera's
            # error, named as such, not a traceback from deep in the parsing.
            self._sock.close()
            raise sources.SourceError(
                self.url, f"can't open: the camera's answers don't parse: {self._scrub(str(e))}"
            ) from None
        except BaseException:
            self._sock.close()
            raise

    # ---- opening ----

    def _connect(self, parts: urllib.parse.SplitResult, timeout: float) -> socket.socket:
        host = parts.hostname or ""
        try:
            port = parts.port or 554
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            if isinstance(e, TimeoutError):
                reason = f"no answer from {self._host_port} within {timeout:g} s"
            else:
                reason = self._scrub(e.strerror or str(e))
            raise sources.SourceError(self.url, f"can't open: {reason}") from None
        except ValueError as e:
            raise sources.SourceError(self.url, f"not a valid URL: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._answer_timeout)
        return sock

    def _open(self) -> None:
        options = self._request("OPTIONS", self._request_url)
        public = (options.header("public") or "").upper() if options.status == 200 else ""
        if "GET_PARAMETER" in public:
            self._keepalive_method = "GET_PARAMETER"
        described = self._request("DESCRIBE", self._request_url, {"Accept": "application/sdp"})
        self._expect_ok("DESCRIBE", described)
        base = (
            described.header("content-base") or described.header("content-location")
            or self._request_url
        )
        track, kinds = parse_sdp(described.body.decode("utf-8", "replace"), base)
        if track is None:
            raise sources.SourceError(
                self.url, f"no video stream (streams found: {', '.join(kinds) or 'none'})"
            )
        if track.codec not in RECORDABLE_CODECS:
            only = recordable_codec_names()
            raise sources.SourceError(
                self.url, f"video codec is {track.codec}; moonfire records only {only}"
            )
        self.codec = track.codec
        self._clock_rate = track.clock_rate or TIME_UNITS_PER_SEC
        setup = self._request(
            "SETUP", track.control,
            {"Transport": f"RTP/AVP/TCP;unicast;interleaved={RTP_CHANNEL}-{RTP_CHANNEL + 1}"},
        )
        if setup.status == 461:
            raise RefusedTransportError()
        self._expect_ok("SETUP", setup)
        session = setup.header("session") or ""
        self._session = session.split(";")[0].strip() or None
        match = re.search(r"timeout\s*=\s*([0-9]{1,9})\b", session)
        if match and int(match.group(1)) > 0:
            self._keepalive_sec = max(1.0, int(match.group(1)) / 2)
        channel = RTP_CHANNEL
        transport = setup.header("transport") or ""
        match = re.search(r"interleaved\s*=\s*([0-9]+)", transport)
        if match:
            if len(match.group(1)) > 3 or int(match.group(1)) > 255:
                raise sources.SourceError(
                    self.url, f"can't open: SETUP's answer gives interleaved channel "
                    f"{match.group(1)[:20]!r}, not one of 0..255 (Transport: {transport[:200]!r})"
                )
            channel = int(match.group(1))
        self._depacketizer = RtpDepacketizer(self.codec, channel)
        played = self._request("PLAY", base, {"Range": "npt=0.000-"})
        self._expect_ok("PLAY", played)
        self._next_keepalive_ns = time.monotonic_ns() + int(self._keepalive_sec * 1e9)
        parameter_sets = parameter_sets_in(self.codec, _annex_b(track.parameter_sets))
        if not parameter_sets:
            parameter_sets = self._parameter_sets_from_first_key_frame()
        self.extradata = _annex_b(parameter_sets)
        try:
            entry = sample_entry_from_extradata(self.extradata, self.codec)
        except CodecError as e:
            raise sources.SourceError(self.url, f"can't open: bad parameter sets: {e}") from None
        self.width, self.height = entry.width, entry.height
        self._decode_times = _ReorderDecodeTimes(reorder_depth(self.codec, parameter_sets))

    def _parameter_sets_from_first_key_frame(self) -> list[bytes]:
        """An SDP without parameter sets: read until a key frame brings them (frames read
        meanwhile are held for ``packets()``), within the read timeout."""
        deadline = time.monotonic() + self._read_timeout()
        held_bytes = 0
        for batch in self._batches(deadline):
            self._held += batch  # all of it: the frames after the key frame too
            for data, _timestamp, is_key, _received_ns in batch:
                held_bytes += len(data)
                found = parameter_sets_in(self.codec, data) if is_key else []
                if found:
                    return found
            if len(self._held) > 300 or held_bytes > MAX_HELD_BYTES:
                break
        raise sources.SourceError(
            self.url, "can't open: the camera sent no parameter sets (SPS/PPS), neither in its "
            "SDP nor with a key frame",
        )

    def _expect_ok(self, method: str, response: Response) -> None:
        if response.status == 200:
            return
        if response.status == 401:
            reason = "the camera refused the username/password (401 Unauthorized)"
            if self._auth is None:
                reason = "the camera asks for a username/password (401 Unauthorized); set them"
        else:
            reason = f"the camera answered {method} with {response.status} {response.reason}"
        raise sources.SourceError(self.url, f"can't open: {self._scrub(reason)}")

    # ---- requests ----

    def _send(self, method: str, uri: str, headers: dict[str, str] | None = None) -> None:
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self._session is not None:
            lines.append(f"Session: {self._session}")
        if self._auth is not None and self._auth.ready:
            value = self._auth.header(method, uri)
            if value:
                lines.append(f"Authorization: {value}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Response:
        """Send a request and wait for its response; a 401 is answered once (again only if the
        camera says the nonce was stale), so a wrong password is a 401, not a loop."""
        response = self._exchange(method, uri, headers)
        if response.status == 401 and self._auth is not None:
            challenges = response.all("www-authenticate")
            if (not self._auth.ready or is_stale(challenges)) and self._auth.challenge(challenges):
                response = self._exchange(method, uri, headers)
        return response

    def _exchange(self, method: str, uri: str, headers: dict[str, str] | None) -> Response:
        try:
            self._send(method, uri, headers)
            return self._read_response(self._cseq)
        except TimeoutError:
            raise sources.SourceError(
                self.url,
                f"can't open: no answer from {self._host_port} within {self._answer_timeout:g} s",
            ) from None
        except OSError as e:
            reason = self._scrub(e.strerror or str(e))
            raise sources.SourceError(self.url, f"can't open: {reason}") from None

    def _read_response(self, cseq: int) -> Response:
        """The answer to request ``cseq``, within the answer timeout in all: a camera sending
        other messages or early video but never this answer doesn't hold the open forever."""
        deadline = time.monotonic() + self._answer_timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            parsed = self._message_at_head()
            if parsed is None:
                self._fill()
                continue
            if parsed.status < 0:
                continue  # a request from the camera, answered
            if parsed.header("cseq") in (None, str(cseq)):
                return parsed

    def _fill(self) -> None:
        chunk = self._sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionResetError(0, "the camera closed the connection")
        self._buffer += chunk

    def _message_at_head(self) -> Response | None:
        """The RTSP message at the head of the buffer (removed), None if it isn't whole yet;
        a request from the camera is answered and returned as a status of -1.  Interleaved
        data at the head before PLAY's answer (a camera starting early) is kept for the
        depacketizer."""
        buffer = self._buffer
        stray = len(buffer) - len(buffer.lstrip(b"\r\n"))
        if stray:  # a CRLF after the last message (some cameras end a body with one)
            del buffer[:stray]
        if buffer[:1] == b"$":
            if len(buffer) < 4:
                return None
            end = 4 + int.from_bytes(buffer[2:4], "big")
            if len(buffer) < end:
                return None
            if len(self._early) + end > MAX_EARLY_BYTES:
                raise ConnectionError(
                    0, f"the camera sent over {MAX_EARLY_BYTES >> 20} MiB of video before "
                    "answering the request"
                )
            self._early += buffer[:end]
            del buffer[:end]
            return Response(-1, "", [], b"")
        try:
            parsed = parse_message(buffer)
        except ValueError as e:
            raise ConnectionError(0, str(e)) from None
        if parsed is None:
            return None
        head, body, length = parsed
        del buffer[:length]
        if not head.startswith(b"RTSP/"):
            self._answer_request(head)
            return Response(-1, "", [], b"")
        try:
            return parse_response(head, body)
        except ValueError as e:
            raise ConnectionError(0, str(e)) from None

    def _answer_request(self, head: bytes) -> None:
        """A camera's own request (some send OPTIONS or GET_PARAMETER as keepalives): 200 with
        its CSeq, so it doesn't drop us."""
        match = re.search(rb"(?im)^cseq\s*:\s*(\d+)", head)
        cseq = match.group(1).decode() if match else "0"
        self._sock.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n".encode())

    # ---- streaming ----

    def _read_timeout(self) -> float:
        # A silent camera fails the read after two socket timeouts, as with libavformat.
        return 2 * sources.RTSP_SOCKET_TIMEOUT_SEC

    def _batches(
        self, deadline: float | None = None
    ) -> Iterator[list[tuple[bytes, int, bool, int]]]:
        """Access units as the depacketizer gives them, a list per read of the socket (whole
        lists, so a reader that stops early can keep the rest); until ``deadline`` (monotonic
        seconds) if given."""
        depacketizer = self._depacketizer
        push = depacketizer.push
        sock = self._sock
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        buffer = bytearray(RECV_BYTES)
        view = memoryview(buffer)
        timeout = self._read_timeout()
        sock.settimeout(timeout)
        # What came with (or before) PLAY's answer goes first.
        leftover = bytes(self._early + self._buffer)
        self._early.clear()
        self._buffer.clear()
        if leftover:
            yield self._push_with_messages(leftover, monotonic_ns())
        while not self._interrupted.is_set():
            try:
                count = sock.recv_into(buffer)
            except TimeoutError:
                raise self._read_error(
                    f"no data from {self._host_port} for {timeout:g} s"
                ) from None
            except OSError as e:
                if self._interrupted.is_set():
                    return
                raise self._read_error(self._scrub(e.strerror or str(e))) from None
            if not count:
                if self._interrupted.is_set():
                    return
                raise self._read_error("the camera closed the connection")
            now_ns = monotonic_ns()
            if self._partial_message:
                frames = self._push_with_messages(self._partial_message + view[:count], now_ns)
            else:
                try:
                    frames = push(view[:count], now_ns)
                except RtpError as e:
                    raise self._read_error(str(e)) from None
                if depacketizer.at_message:
                    frames += self._push_with_messages(b"", now_ns)
            if frames:
                yield frames
            if now_ns >= self._next_keepalive_ns:
                self._keepalive()
            if now_ns >= self._next_loss_report_ns:
                self._report_losses(now_ns)
            if deadline is not None and time.monotonic() > deadline:
                return
            # interrupt() shuts the socket down: the read after the pause ends.
            if count <= READ_TARGET_BYTES:
                sleep(READ_INTERVAL_SEC)
            elif count < RECV_BYTES // 2:
                sleep(READ_INTERVAL_SEC * READ_TARGET_BYTES / count)

    def _push_with_messages(self, data: bytes, now_ns: int) -> list[tuple[bytes, int, bool, int]]:
        """Push ``data``, taking out (and handling) the RTSP messages between its interleaved
        frames; a message not yet whole is kept for the next read."""
        depacketizer = self._depacketizer
        self._partial_message = b""
        try:
            frames = depacketizer.push(data, now_ns)
            while depacketizer.at_message:
                # A CRLF after a message (a body's last line, an empty keepalive line) isn't
                # the start of another one: skipped, or the frames behind it would wait.
                pending = depacketizer.take_unparsed().lstrip(b"\r\n")
                if not pending:
                    break
                if pending[:1] == b"$":
                    frames += depacketizer.push(pending, now_ns)
                    continue
                try:
                    parsed = parse_message(pending)
                except ValueError as e:
                    raise self._read_error(str(e)) from None
                if parsed is None:
                    self._partial_message = pending
                    break
                head, body, length = parsed
                if head.startswith(b"RTSP/"):
                    self._check_keepalive_answer(head, body)
                else:
                    self._answer_request(head)
                frames += depacketizer.push(pending[length:], now_ns)
        except RtpError as e:
            raise self._read_error(str(e)) from None
        return frames

    def _check_keepalive_answer(self, head: bytes, body: bytes) -> None:
        try:
            response = parse_response(head, body)
        except ValueError as e:
            raise self._read_error(str(e)) from None
        if response.status == 454:  # Session Not Found: the camera dropped us
            raise self._read_error("the camera ended the RTSP session (454 Session Not Found)")

    def _report_losses(self, now_ns: int) -> None:
        """Log the RTP packets lost and frames dropped since the last report, if any: a
        flaky link shows in the log, not only as gaps in the recordings."""
        self._next_loss_report_ns = now_ns + int(LOSS_REPORT_INTERVAL_SEC * 1e9)
        lost, dropped = self._depacketizer.packets_lost, self._depacketizer.frames_dropped
        new_lost, new_dropped = lost - self._reported[0], dropped - self._reported[1]
        if new_lost or new_dropped:
            self._reported = (lost, dropped)
            log.warning(
                "%s: %d RTP packet%s lost and %d frame%s dropped (incomplete) in the last "
                "%.0f s; %d and %d since connecting",
                self.url, new_lost, "" if new_lost == 1 else "s", new_dropped,
                "" if new_dropped == 1 else "s",
                (now_ns - self._loss_report_since_ns) / 1e9, lost, dropped,
            )
        self._loss_report_since_ns = now_ns

    def _keepalive(self) -> None:
        self._next_keepalive_ns = time.monotonic_ns() + int(self._keepalive_sec * 1e9)
        try:
            self._send(self._keepalive_method, self._request_url)
        except OSError as e:
            raise self._read_error(self._scrub(e.strerror or str(e))) from None

    def _read_error(self, reason: str) -> sources.SourceError:
        return sources.SourceError(self.url, f"read failed: {reason}")

    def _scrub(self, text: str) -> str:
        return sources.scrub(text, self._secrets)

    # ---- the Source interface ----

    def packets(self) -> Iterator[sources.SourcePacket]:
        """Access units in decode order, ``pts_90k`` counted from the session's first one."""
        first: int | None = None
        rate = self._clock_rate
        decode_time = self._decode_times.dts
        push = DecodeTimeFiller[sources.SourcePacket]().push
        packet_type = sources.SourcePacket
        held, self._held = self._held, []
        in_order = self._decode_times.depth == 0
        for frames in itertools.chain((held,), self._batches()):
            for data, timestamp, is_key, received_ns in frames:
                if first is None:
                    first = timestamp
                pts = timestamp - first
                if rate != TIME_UNITS_PER_SEC:
                    pts = pts * TIME_UNITS_PER_SEC // rate
                if in_order:  # no B-frames: decode time = presentation time, nothing held
                    yield packet_type(data, pts, is_key, None, received_ns, pts)
                    continue
                dts = decode_time(pts)
                for ready, decode_90k in push(
                    packet_type(data, pts, is_key, None, received_ns, dts), pts, dts
                ):
                    if ready.dts_90k != decode_90k:  # held without one, now filled in
                        ready = packet_type(
                            ready.data, ready.pts_90k, ready.is_key, None, ready.received_ns,
                            decode_90k,
                        )
                    yield ready

    def interrupt(self) -> None:
        """Wake a blocked read: the reading thread then ends ``packets()``."""
        self._interrupted.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._interrupted.set()
        if self._session is not None:
            try:  # best effort, never waited for: the camera frees the session at once
                self._sock.settimeout(0.2)
                self._send("TEARDOWN", self._request_url)
            except OSError:
                pass
        self._sock.close()
