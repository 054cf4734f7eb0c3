"""RTP over RTSP (TCP interleaved) → whole H.264/H.265 access units in Annex B form.

This is the readable reference; ``_rtp_c.pyx`` is its compiled twin with the same names,
results, exceptions and messages.

Our RTSP client (``moonfire.ingest.rtsp``) reads the connection in bulk and pushes the bytes
here.  They are interleaved frames (RFC 2326 §10.12): ``$``, a channel byte, a 16-bit
big-endian length, then that many bytes of one RTP packet (RFC 3550).  The video's RTP comes
on ``channel``; its RTCP (``channel + 1``) and any other channel are skipped.  Between two
frames the server may send an RTSP message (a keepalive's answer, or a request of its own):
pushing stops there, ``at_message`` turns true and the caller takes the rest of the bytes
with ``take_unparsed()``, handles the message and pushes what follows it.

The RTP payload carries NAL units (H.264: RFC 6184, packetization mode 0 or 1; H.265: RFC
7798 without DONL fields): one per packet, several in an aggregation packet (STAP-A / AP, each
behind a 16-bit size), or one split over several fragmentation units (FU-A / FU, whose NAL
unit header is rebuilt from the payload header and the FU header).  Every NAL unit comes out
behind a 4-byte start code, the form FFmpeg hands out.

Rules, shared by both twins:

* An access unit (AU) is the NAL units of one RTP timestamp.  A packet with the marker bit
  ends its AU, which comes out at once; a packet with another timestamp than the pending AU's
  ends that AU first (its marker was never seen), then starts its own.  Only an AU holding a
  picture (a VCL NAL unit: H.264 types 1-5, H.265 0-31), or a corrupt one, ends so: some
  cameras set the marker on their SPS/PPS or a leading SEI, or send those at a timestamp of
  their own, and those NAL units go with the picture that follows (taking its timestamp),
  rather than come out as an AU of their own that would split the picture's.
* A sequence-number gap (16-bit, wrapping) adds to ``packets_lost`` and makes both the pending
  AU and the AU of the packet after the gap corrupt (the lost packets may have been the end of
  one or the start of the other).  A fragment whose FU start was never seen, and an FU still
  open when its AU ends, make the AU corrupt too.  A corrupt AU is dropped, never handed out:
  ``frames_dropped`` counts it.  An AU holding no NAL unit at all (an aggregation packet with
  no units in it) is neither handed out nor counted.
* RTP padding, CSRCs and the header extension are skipped; the RTP payload type, SSRC and
  the NAL units' contents are not looked at (only their type, for ``is_key``).
* Broken or unsupported input raises ``RtpError`` naming the stream offset of the frame (see
  ``offset``).  The depacketizer is then finished: later pushes raise the same error again.
"""

from typing import Any

from ._bytes_like import byte_view
from ._errors import RtpError

__all__ = ["RtpDepacketizer", "RtpError"]

#: What ``push`` accepts: anything with a contiguous byte buffer.
_BytesLike = bytes | bytearray | memoryview

#: Largest ``max_frame_bytes`` (the compiled twin's AU buffer may grow to it).
MAX_FRAME_BYTES_LIMIT = 1 << 30
_START_CODE = b"\x00\x00\x00\x01"
_INTERLEAVED_MAGIC = 0x24  # b"$"
_RTP_HEADER_BYTES = 12
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

#: Payload types refused, by codec: the name each message gives them.
_UNSUPPORTED = {
    "h264": {0: "reserved", 25: "STAP-B", 26: "MTAP16", 27: "MTAP24", 29: "FU-B",
             30: "reserved", 31: "reserved"},
    "hevc": {50: "PACI", **{t: "unspecified" for t in range(51, 64)}},
}


class RtpDepacketizer:
    """Turns the bytes of an RTSP connection into the access units of its video stream.

    :param codec: ``"h264"`` (RFC 6184) or ``"hevc"`` (RFC 7798).
    :param channel: the interleaved channel of the video's RTP (from ``SETUP``'s answer).
    :param max_frame_bytes: the largest AU (with its start codes) accepted; a larger one is an
        ``RtpError`` (a broken stream must not eat the memory).
    """

    def __init__(
        self, codec: str, channel: int, *, max_frame_bytes: int = 16 * 1024 * 1024
    ) -> None:
        if not isinstance(codec, str) or codec not in _UNSUPPORTED:
            raise ValueError(f"unsupported RTP video codec {codec!r} (h264 or hevc)")
        channel = _integer(channel, "channel")
        if not 0 <= channel <= 255:
            raise ValueError(f"channel must be 0..255, got {channel}")
        max_frame_bytes = _integer(max_frame_bytes, "max_frame_bytes")
        if not 1 <= max_frame_bytes <= MAX_FRAME_BYTES_LIMIT:
            raise ValueError(
                f"max_frame_bytes must be 1..{MAX_FRAME_BYTES_LIMIT}, got {max_frame_bytes}"
            )
        self._hevc = codec == "hevc"
        self._unsupported = _UNSUPPORTED[codec]
        self._channel = channel
        self._max_frame_bytes = max_frame_bytes
        #: Bytes pushed but not consumed yet: a partial frame, or an RTSP message and after.
        self._buffer = bytearray()
        self._packets = 0
        self._packets_lost = 0
        self._frames_dropped = 0
        self._offset = 0
        self._failure: str | None = None
        self._last_sequence: int | None = None
        self._last_rtp_timestamp = 0  # the last packet's 32-bit timestamp, as sent
        self._timestamp = 0  # ... and unwrapped
        # The pending access unit.
        self._au_open = False
        self._au = bytearray()
        self._au_timestamp = 0
        self._au_received_ns = 0
        self._au_key = False
        self._au_picture = False  # it holds a slice (VCL NAL unit), not only SPS/PPS/SEI
        self._au_corrupt = False
        self._fu_open = False  # an FU's start was seen, its end not yet

    @property
    def at_message(self) -> bool:
        """The unconsumed bytes begin with an RTSP message, not an interleaved frame."""
        return bool(self._buffer) and self._buffer[0] != _INTERLEAVED_MAGIC

    @property
    def packets(self) -> int:
        """RTP packets seen on the video channel."""
        return self._packets

    @property
    def packets_lost(self) -> int:
        """Packets missing from the video's sequence numbers (the sum of the gaps)."""
        return self._packets_lost

    @property
    def frames_dropped(self) -> int:
        """AUs dropped because a packet of theirs was lost, or their end never came."""
        return self._frames_dropped

    @property
    def offset(self) -> int:
        """Bytes of interleaved frames consumed so far (what error messages count from).

        Bytes handed back by ``take_unparsed()`` are not counted: the caller pushes part of
        them again.
        """
        return self._offset

    def push(self, data: _BytesLike, received_ns: int) -> list[tuple[bytes, int, bool, int]]:
        """Consume every whole interleaved frame ``data`` completes; the AUs they complete.

        Each AU is ``(annex_b_data, timestamp, is_key, received_ns)``: its NAL units behind
        4-byte start codes, its unwrapped RTP timestamp, whether it holds an IDR (H.264) or
        IRAP (H.265) NAL unit, and the ``received_ns`` of the push that completed its first
        packet.  Stops early, without error, where an RTSP message begins (``at_message``).
        """
        view = byte_view(data)
        received_ns = _int64(received_ns, "received_ns")
        if self._failure is not None:
            raise RtpError(self._failure)
        buffer = self._buffer
        buffer += view
        done: list[tuple[bytes, int, bool, int]] = []
        position = 0
        try:
            while len(buffer) - position >= 4 and buffer[position] == _INTERLEAVED_MAGIC:
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                end = position + 4 + length
                if end > len(buffer):
                    break  # the rest of the frame comes with a later push
                frame_offset = self._offset
                self._offset += 4 + length
                if buffer[position + 1] == self._channel:
                    packet = bytes(buffer[position + 4 : end])
                    self._packet(packet, frame_offset, received_ns, done)
                position = end
        except RtpError as error:
            self._failure = str(error)
            position = len(buffer)  # a failed depacketizer keeps nothing for take_unparsed()
            raise
        finally:
            del buffer[:position]
        return done

    def take_unparsed(self) -> bytes:
        """The bytes pushed but not consumed (an RTSP message and whatever came after it);
        none after an ``RtpError``: the stream can't be trusted past it."""
        unparsed = bytes(self._buffer)
        self._buffer.clear()
        return unparsed

    def flush(self) -> None:
        """Drop the pending AU (the connection ended before its end came): counted as dropped."""
        if self._au_open and (self._au_corrupt or self._fu_open or self._au):
            self._frames_dropped += 1
        self._reset_au()

    # ---- one RTP packet ----

    def _packet(
        self, packet: bytes, frame_offset: int, received_ns: int,
        done: list[tuple[bytes, int, bool, int]],
    ) -> None:
        where = f"RTP packet at stream offset {frame_offset}"
        self._packets += 1
        size = len(packet)
        header_bytes = _RTP_HEADER_BYTES
        if size < header_bytes:
            raise RtpError(f"{where}: {size} bytes, shorter than its {header_bytes}-byte header")
        version = packet[0] >> 6
        if version != 2:
            raise RtpError(f"{where}: version {version}, expected 2")
        header_bytes += 4 * (packet[0] & 0x0F)  # CSRCs
        if packet[0] & 0x10:  # header extension: 16-bit profile data, 16-bit length in words
            header_bytes += 4
            if size >= header_bytes:
                header_bytes += 4 * int.from_bytes(packet[header_bytes - 2 : header_bytes], "big")
        if size < header_bytes:
            raise RtpError(f"{where}: {size} bytes, shorter than its {header_bytes}-byte header")
        padding = 0
        if packet[0] & 0x20:  # the last byte counts the padding bytes, itself included
            padding = packet[-1]
            if padding == 0:
                raise RtpError(f"{where}: padding bit set but the padding count is 0")
            if padding > size - header_bytes:
                raise RtpError(
                    f"{where}: {padding} bytes of padding, more than the "
                    f"{size - header_bytes} bytes after the {header_bytes}-byte header"
                )
        payload = packet[header_bytes : size - padding]
        if not payload:
            raise RtpError(f"{where}: empty payload")
        marker = bool(packet[1] & 0x80)
        sequence = int.from_bytes(packet[2:4], "big")
        rtp_timestamp = int.from_bytes(packet[4:8], "big")

        lost = False
        if self._last_sequence is None:
            self._timestamp = rtp_timestamp
        else:
            gap = (sequence - self._last_sequence - 1) & 0xFFFF
            if gap:
                self._packets_lost += gap
                lost = True
            step = (rtp_timestamp - self._last_rtp_timestamp) & 0xFFFFFFFF
            self._timestamp += step - (1 << 32) if step >= 1 << 31 else step
        self._last_sequence = sequence
        self._last_rtp_timestamp = rtp_timestamp

        if self._au_open:
            if lost:
                self._au_corrupt = True
            if self._timestamp != self._au_timestamp:
                if self._au_picture or self._au_corrupt:
                    self._finish_au(done)
                else:  # parameter sets or SEI sent at their own timestamp: the next picture's
                    self._au_timestamp = self._timestamp
        if not self._au_open:
            self._au_open = True
            self._au_timestamp = self._timestamp
            self._au_received_ns = received_ns
            self._au_corrupt = lost

        if self._hevc:
            self._hevc_payload(payload, where)
        else:
            self._h264_payload(payload, where)
        # Some cameras set the marker on SPS/PPS/SEI too: an AU ends with a picture in it.
        if marker and (self._au_picture or self._au_corrupt):
            self._finish_au(done)

    def _h264_payload(self, payload: bytes, where: str) -> None:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            self._whole_nal(payload, nal_type == 5, nal_type <= 5, where)
        elif nal_type == 24:
            self._aggregation(payload, 1, "STAP-A", where)
        elif nal_type == 28:
            if len(payload) < 2:
                raise RtpError(f"{where}: FU-A payload of {len(payload)} bytes has no FU header")
            fu_header = payload[1]
            fu_type = fu_header & 0x1F
            nal_header = bytes([(payload[0] & 0xE0) | fu_type])
            self._fragment(fu_header, nal_header, payload[2:], fu_type == 5,
                           1 <= fu_type <= 5, where)
        else:
            raise RtpError(
                f"{where}: H.264 payload type {nal_type} ({self._unsupported[nal_type]}) "
                "is not supported"
            )

    def _hevc_payload(self, payload: bytes, where: str) -> None:
        if len(payload) < 2:
            raise RtpError(
                f"{where}: {len(payload)}-byte payload, shorter than the H.265 payload header"
            )
        nal_type = (payload[0] >> 1) & 0x3F
        if nal_type <= 47:
            self._whole_nal(payload, _is_irap(nal_type), nal_type <= 31, where)
        elif nal_type == 48:
            self._aggregation(payload, 2, "AP", where)
        elif nal_type == 49:
            if len(payload) < 3:
                raise RtpError(f"{where}: FU payload of {len(payload)} bytes has no FU header")
            fu_header = payload[2]
            fu_type = fu_header & 0x3F
            nal_header = bytes([(payload[0] & 0x81) | (fu_type << 1), payload[1]])
            self._fragment(fu_header, nal_header, payload[3:], _is_irap(fu_type),
                           fu_type <= 31, where)
        else:
            raise RtpError(
                f"{where}: H.265 payload type {nal_type} ({self._unsupported[nal_type]}) "
                "is not supported"
            )

    def _aggregation(self, payload: bytes, header_bytes: int, name: str, where: str) -> None:
        """STAP-A / AP: NAL units behind 16-bit sizes, after the payload header."""
        position = header_bytes
        while position < len(payload):
            if position + 2 > len(payload):
                raise RtpError(
                    f"{where}: {name} size field at payload byte {position} runs past the "
                    f"{len(payload)}-byte payload"
                )
            nal_size = int.from_bytes(payload[position : position + 2], "big")
            if position + 2 + nal_size > len(payload):
                raise RtpError(
                    f"{where}: {name} NAL unit of {nal_size} bytes at payload byte {position} "
                    f"runs past the {len(payload)}-byte payload"
                )
            nal = payload[position + 2 : position + 2 + nal_size]
            position += 2 + nal_size
            if nal:  # a zero size holds no NAL unit
                if self._hevc:
                    nal_type = (nal[0] >> 1) & 0x3F
                    is_key, is_picture = _is_irap(nal_type), nal_type <= 31
                else:
                    nal_type = nal[0] & 0x1F
                    is_key, is_picture = nal_type == 5, 1 <= nal_type <= 5
                self._whole_nal(nal, is_key, is_picture, where)

    def _whole_nal(self, nal: bytes, is_key: bool, is_picture: bool, where: str) -> None:
        if self._fu_open:  # a new NAL unit while an FU still waits for its end
            self._au_corrupt = True
            self._fu_open = False
        self._au_key = self._au_key or is_key
        self._au_picture = self._au_picture or is_picture
        self._append(where, _START_CODE, nal)

    def _fragment(
        self, fu_header: int, nal_header: bytes, fragment: bytes, is_key: bool,
        is_picture: bool, where: str,
    ) -> None:
        starts, ends = bool(fu_header & 0x80), bool(fu_header & 0x40)
        if starts:
            if self._fu_open:
                self._au_corrupt = True
            self._au_key = self._au_key or is_key
            self._au_picture = self._au_picture or is_picture
            self._append(where, _START_CODE, nal_header, fragment)
            self._fu_open = not ends
        elif not self._fu_open:  # its start was lost
            self._au_corrupt = True
        else:
            self._append(where, fragment)
            self._fu_open = not ends

    def _append(self, where: str, *pieces: bytes) -> None:
        if self._au_corrupt:
            return  # it will be dropped: don't keep its bytes
        size = len(self._au) + sum(len(piece) for piece in pieces)
        if size > self._max_frame_bytes:
            raise RtpError(
                f"{where}: access unit at RTP timestamp {self._au_timestamp} grows to {size} "
                f"bytes, over max_frame_bytes ({self._max_frame_bytes})"
            )
        for piece in pieces:
            self._au += piece

    def _finish_au(self, done: list[tuple[bytes, int, bool, int]]) -> None:
        if self._fu_open:  # the FU never ended
            self._au_corrupt = True
        if self._au_corrupt:
            self._frames_dropped += 1
        elif self._au:
            done.append((bytes(self._au), self._au_timestamp, self._au_key, self._au_received_ns))
        self._reset_au()

    def _reset_au(self) -> None:
        self._au_open = False
        self._au = bytearray()
        self._au_key = False
        self._au_picture = False
        self._au_corrupt = False
        self._fu_open = False


def _is_irap(nal_type: int) -> bool:
    """H.265 IRAP pictures (BLA, IDR, CRA and the reserved IRAP types): key frames."""
    return 16 <= nal_type <= 23


def _integer(value: Any, name: str) -> int:
    """An ``int`` or ``__index__`` integer (NumPy's), never a ``bool`` or ``float``."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    return int(value.__index__())


def _int64(value: Any, name: str) -> int:
    result = _integer(value, name)
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise OverflowError(f"{name} {result} does not fit in 64 bits")
    return result

