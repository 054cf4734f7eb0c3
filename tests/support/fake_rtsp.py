"""A scripted RTSP camera in a thread, for what GStreamer's server won't do on demand: a short
session timeout (keepalives), its own requests between RTP frames, an SDP without parameter
sets, a 454 to a keepalive, and real cameras' quirks and hostile ones: the marker bit on SPS, PPS
and SEI packets, a CRLF after each answer, an odd ``Transport`` in SETUP's answer, video
sent instead of PLAY's answer.

``FakeCamera(access_units, ...)`` serves ``rtsp://127.0.0.1:PORT/cam`` to one client at a
time: OPTIONS, DESCRIBE, SETUP (TCP interleaved), PLAY, then every access unit packetized as
RFC 6184 says (single NAL units up to ``MTU`` bytes, FU-A beyond; the marker bit on each access
unit's last packet), paced ``FRAME_SEC`` apart, then it keeps the connection open until closed.
Everything the client sent is kept in ``requests`` (the start line and headers of each).
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time

MTU = 1400
FRAME_SEC = 1 / 30


def split_annex_b(access_unit: bytes) -> list[bytes]:
    return [nal for nal in access_unit.split(b"\x00\x00\x00\x01") if nal]


def rtp_packets(
    nals: list[bytes], timestamp: int, first_seq: int, ssrc: int = 0x1234,
    marker_on_parameter_sets: bool = False,
) -> list[bytes]:
    """One access unit's RTP packets (RFC 6184 single NAL unit and FU-A): the marker bit on
    the last, and with ``marker_on_parameter_sets`` on each SPS's, PPS's and SEI's too (some
    cameras do)."""
    ends: set[int] = set()
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= MTU:
            payloads.append(nal)
            if nal[0] & 0x1F in (6, 7, 8, 9):
                ends.add(len(payloads) - 1)
            continue
        indicator = (nal[0] & 0xE0) | 28
        kind = nal[0] & 0x1F
        body = nal[1:]
        pieces = [body[i : i + MTU] for i in range(0, len(body), MTU)]
        for number, piece in enumerate(pieces):
            start = 0x80 if number == 0 else 0
            end = 0x40 if number == len(pieces) - 1 else 0
            header = kind | start | end
            payloads.append(bytes([indicator, header]) + piece)
    packets = []
    for number, payload in enumerate(payloads):
        last = number == len(payloads) - 1 or (marker_on_parameter_sets and number in ends)
        marker = 0x80 if last else 0
        header = struct.pack(
            ">BBHII", 0x80, marker | 96, (first_seq + number) & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        packets.append(header + payload)
    return packets


def interleaved(channel: int, packet: bytes) -> bytes:
    return b"$" + bytes([channel]) + struct.pack(">H", len(packet)) + packet


class FakeCamera:
    """See the module docstring.  ``session_timeout`` goes into SETUP's ``Session`` header;
    ``sprops`` puts the parameter sets into the SDP; ``camera_request_after`` sends a
    GET_PARAMETER of the camera's own after that many access units; ``keepalive_status``
    answers keepalives with it (454 ends the session); ``marker_on_parameter_sets`` sets the marker
    on SPS, PPS and SEI packets too; ``crlf_after_answers`` sends a stray CRLF after each answer;
    ``transport`` replaces SETUP's ``Transport`` answer; ``video_instead_of_play`` sends that
    many bytes of video in answer to PLAY, and no answer; ``lose_packet_before`` skips a
    sequence number before that access unit (a packet lost on the way)."""

    def __init__(
        self,
        access_units: list[bytes],
        *,
        parameter_sets: list[bytes],
        sprops: bool = True,
        session_timeout: int = 60,
        camera_request_after: int | None = None,
        keepalive_status: str = "200 OK",
        first_timestamp: int = 0xFFFF_F000,
        marker_on_parameter_sets: bool = False,
        crlf_after_answers: bool = False,
        transport: str = "RTP/AVP/TCP;unicast;interleaved=0-1",
        video_instead_of_play: int = 0,
        lose_packet_before: int | None = None,
    ) -> None:
        self.lose_packet_before = lose_packet_before
        self.marker_on_parameter_sets = marker_on_parameter_sets
        self.crlf = "\r\n" if crlf_after_answers else ""
        self.transport = transport
        self.video_instead_of_play = video_instead_of_play
        self.access_units = access_units
        self.parameter_sets = parameter_sets
        self.sprops = sprops
        self.session_timeout = session_timeout
        self.camera_request_after = camera_request_after
        self.keepalive_status = keepalive_status
        self.first_timestamp = first_timestamp
        self.requests: list[str] = []
        #: The client's answer to the camera's own request, once it came.
        self.answer_to_camera: str | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _read_request(self, conn: socket.socket, buffer: bytearray) -> str | None:
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        end = buffer.index(b"\r\n\r\n")
        text = buffer[:end].decode()
        del buffer[: end + 4]
        return text

    def _sdp(self) -> bytes:
        lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=fake", "t=0 0", "m=video 0 RTP/AVP 96",
                 "a=rtpmap:96 H264/90000", "a=control:track1"]
        if self.sprops:
            sprops = ",".join(base64.b64encode(p).decode() for p in self.parameter_sets)
            lines.append(f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprops}")
        return ("\r\n".join(lines) + "\r\n").encode()

    def _session(self, conn: socket.socket) -> None:
        buffer = bytearray()
        while True:
            request = self._read_request(conn, buffer)
            if request is None:
                return
            self.requests.append(request)
            method = request.split(" ", 1)[0]
            cseq = next(
                line.split(":", 1)[1].strip() for line in request.split("\r\n")
                if line.lower().startswith("cseq:")
            )
            head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
            if method == "OPTIONS":
                conn.sendall(f"{head}Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, "
                             f"TEARDOWN\r\n\r\n{self.crlf}".encode())
            elif method == "DESCRIBE":
                sdp = self._sdp()
                conn.sendall(
                    f"{head}Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
                    f"Content-Length: {len(sdp)}\r\n\r\n".encode() + sdp + self.crlf.encode()
                )
            elif method == "SETUP":
                conn.sendall(
                    f"{head}Session: 12345678;timeout={self.session_timeout}\r\n"
                    f"Transport: {self.transport}\r\n\r\n{self.crlf}".encode()
                )
            elif method == "PLAY" and self.video_instead_of_play:
                frame = interleaved(0, bytes(12) + bytes(60000))
                for _ in range(self.video_instead_of_play // len(frame) + 1):
                    conn.sendall(frame)
                self._stop.wait(10)
                return
            elif method == "PLAY":
                conn.sendall(f"{head}Session: 12345678\r\n\r\n{self.crlf}".encode())
                self._stream(conn, buffer)
                return

    def _stream(self, conn: socket.socket, buffer: bytearray) -> None:
        seq = 60000  # wraps during the stream
        conn.setblocking(False)
        for number, access_unit in enumerate(self.access_units):
            if self._stop.is_set():
                return
            timestamp = self.first_timestamp + number * 3000
            if number == self.lose_packet_before:
                seq += 1
            packets = rtp_packets(split_annex_b(access_unit), timestamp, seq,
                                  marker_on_parameter_sets=self.marker_on_parameter_sets)
            seq += len(packets)
            data = b"".join(interleaved(0, p) for p in packets)
            if self.camera_request_after == number:
                # The camera's own request, split across two sends, between two frames.
                request = b"GET_PARAMETER rtsp://client/ RTSP/1.0\r\nCSeq: 77\r\n\r\n"
                conn.setblocking(True)
                conn.sendall(request[:20])
                time.sleep(0.05)
                data = request[20:] + data
            conn.setblocking(True)
            conn.sendall(data)
            conn.setblocking(False)
            self._answer_keepalives(conn, buffer)
            time.sleep(FRAME_SEC)
        while not self._stop.wait(0.05):
            if not self._answer_keepalives(conn, buffer):
                return

    def _answer_keepalives(self, conn: socket.socket, buffer: bytearray) -> bool:
        """Answer what the client sent meanwhile; False once it closed the connection."""
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            end = buffer.index(b"\r\n\r\n")
            text = buffer[:end].decode()
            del buffer[: end + 4]
            if text.startswith("RTSP/1.0"):
                self.answer_to_camera = text
                continue
            self.requests.append(text)
            cseq = next(
                line.split(":", 1)[1].strip() for line in text.split("\r\n")
                if line.lower().startswith("cseq:")
            )
            reply = (f"RTSP/1.0 {self.keepalive_status}\r\nCSeq: {cseq}\r\n\r\n"
                     f"{self.crlf}").encode()
            conn.setblocking(True)
            conn.sendall(reply)
            conn.setblocking(False)
        return True
