"""Compiled twin of ``_rtp_py``: RTP over RTSP (TCP interleaved) → H.264/H.265 access units.

``_rtp_py`` is the spec (framing, AU boundaries, loss, errors and messages); this module does
the same work with pointer walks over raw memory.  A push parses whole interleaved frames
straight from the caller's buffer; only a frame cut by the end of a push is copied, into a
buffer this object owns, and completed from the next push (so the bulk of the bytes is never
copied there).  NAL units are copied once, into a growing C buffer holding the pending access
unit, and each finished AU becomes one ``bytes``.  No Python object is made per packet: only
each AU's ``bytes`` and tuple, and the messages of errors.  Every call is short, so the GIL is
kept throughout.
"""

cimport cython
from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int32_t, int64_t, uint32_t
from moonfire_core._includes.buffers cimport get_view
from libc.string cimport memcpy

from moonfire_core._errors import RtpError

__all__ = ["RtpDepacketizer", "RtpError"]

#: Largest ``max_frame_bytes`` (the AU buffer may grow to it).
MAX_FRAME_BYTES_LIMIT = 1 << 30
cdef Py_ssize_t _MAX_FRAME_BYTES_LIMIT = 1 << 30
cdef unsigned char _INTERLEAVED_MAGIC = 0x24  # b"$"
cdef Py_ssize_t _RTP_HEADER_BYTES = 12
cdef Py_ssize_t _MIN_BUFFER_BYTES = 4096
cdef Py_ssize_t _MIN_AU_BYTES = 64 * 1024
cdef const unsigned char* _START_CODE = b"\x00\x00\x00\x01"

#: Payload types refused, by codec: the name each message gives them.
_UNSUPPORTED = {
    "h264": {0: "reserved", 25: "STAP-B", 26: "MTAP16", 27: "MTAP24", 29: "FU-B",
             30: "reserved", 31: "reserved"},
    "hevc": {50: "PACI", **{t: "unspecified" for t in range(51, 64)}},
}


def _integer(value, str name):
    """Same rule and message as ``_rtp_py._integer``."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    return int(value.__index__())


cdef int64_t _received_ns(object value) except? -1:
    """``value`` as int64: an exact in-range ``int`` in C, anything else as ``_rtp_py._int64``."""
    if type(value) is int:
        try:
            return value
        except OverflowError:
            pass
    result = _integer(value, "received_ns")
    if not -(2**63) <= result <= 2**63 - 1:
        raise OverflowError(f"received_ns {result} does not fit in 64 bits")
    return result


cdef inline bint _is_irap(unsigned int nal_type) noexcept:
    """H.265 IRAP pictures (BLA, IDR, CRA and the reserved IRAP types): key frames."""
    return 16 <= nal_type <= 23


@cython.final
cdef class RtpDepacketizer:
    """Turns the bytes of an RTSP connection into the access units of its video stream.

    See ``_rtp_py.RtpDepacketizer`` for the parameters and the rules.
    """

    cdef bint _hevc
    cdef int _channel
    cdef Py_ssize_t _max_frame_bytes
    cdef dict _unsupported
    # The unconsumed bytes: the head of a frame cut by a push's end, or an RTSP message on.
    cdef unsigned char* _buffer
    cdef Py_ssize_t _buffer_capacity
    cdef Py_ssize_t _buffered
    cdef int64_t _packets
    cdef int64_t _packets_lost
    cdef int64_t _frames_dropped
    cdef int64_t _offset
    cdef object _failure  # the message of the RtpError raised, or None
    cdef bint _have_sequence
    cdef unsigned int _last_sequence
    cdef uint32_t _last_rtp_timestamp
    # The unwrapped timestamp.  (It can't overflow: that takes 2**32 packets each jumping 2**31.)
    cdef int64_t _timestamp
    # The pending access unit.
    cdef unsigned char* _au
    cdef Py_ssize_t _au_capacity
    cdef Py_ssize_t _au_length
    cdef bint _au_open
    cdef bint _au_key
    cdef bint _au_picture
    cdef bint _au_corrupt
    cdef bint _fu_open  # an FU's start was seen, its end not yet
    cdef int64_t _au_timestamp
    cdef int64_t _au_received_ns

    def __cinit__(self):
        self._buffer = NULL
        self._au = NULL

    def __dealloc__(self):
        PyMem_Free(self._buffer)
        PyMem_Free(self._au)

    def __init__(self, codec, channel, *, max_frame_bytes=16 * 1024 * 1024):
        if not isinstance(codec, str) or codec not in _UNSUPPORTED:
            raise ValueError(f"unsupported RTP video codec {codec!r} (h264 or hevc)")
        channel = _integer(channel, "channel")
        if not 0 <= channel <= 255:
            raise ValueError(f"channel must be 0..255, got {channel}")
        max_frame_bytes = _integer(max_frame_bytes, "max_frame_bytes")
        if not 1 <= max_frame_bytes <= _MAX_FRAME_BYTES_LIMIT:
            raise ValueError(
                f"max_frame_bytes must be 1..{_MAX_FRAME_BYTES_LIMIT}, got {max_frame_bytes}"
            )
        self._hevc = codec == "hevc"
        self._unsupported = _UNSUPPORTED[codec]
        self._channel = channel
        self._max_frame_bytes = max_frame_bytes
        self._buffered = 0
        self._packets = 0
        self._packets_lost = 0
        self._frames_dropped = 0
        self._offset = 0
        self._failure = None
        self._have_sequence = False
        self._last_sequence = 0
        self._last_rtp_timestamp = 0
        self._timestamp = 0
        self._au_timestamp = 0
        self._au_received_ns = 0
        self._reset_au()

    @property
    def at_message(self):
        """The unconsumed bytes begin with an RTSP message, not an interleaved frame."""
        return self._buffered > 0 and self._buffer[0] != _INTERLEAVED_MAGIC

    @property
    def packets(self):
        """RTP packets seen on the video channel."""
        return self._packets

    @property
    def packets_lost(self):
        """Packets missing from the video's sequence numbers (the sum of the gaps)."""
        return self._packets_lost

    @property
    def frames_dropped(self):
        """AUs dropped because a packet of theirs was lost, or their end never came."""
        return self._frames_dropped

    @property
    def offset(self):
        """Bytes of interleaved frames consumed so far (what error messages count from)."""
        return self._offset

    def push(self, data, received_ns):
        """Consume every whole interleaved frame ``data`` completes; the AUs they complete."""
        cdef Py_buffer view
        cdef int64_t received
        cdef list done = []
        get_view(data, &view)
        try:
            received = _received_ns(received_ns)
            if self._failure is not None:
                raise RtpError(self._failure)
            try:
                self._push(<const unsigned char*>view.buf, view.len, received, done)
            except RtpError as error:
                self._failure = str(error)
                self._buffered = 0  # a failed depacketizer keeps nothing for take_unparsed()
                raise
        finally:
            PyBuffer_Release(&view)
        return done

    def take_unparsed(self):
        """The bytes pushed but not consumed (an RTSP message and whatever came after it);
        none after an ``RtpError``: the stream can't be trusted past it."""
        unparsed = PyBytes_FromStringAndSize(<const char*>self._buffer, self._buffered)
        self._buffered = 0
        return unparsed

    def flush(self):
        """Drop the pending AU (the connection ended before its end came): counted as dropped."""
        if self._au_open and (self._au_corrupt or self._fu_open or self._au_length > 0):
            self._frames_dropped += 1
        self._reset_au()

    # ---- bytes → interleaved frames ----

    cdef int _push(
        self, const unsigned char* data, Py_ssize_t size, int64_t received, list done
    ) except -1:
        cdef Py_ssize_t used = 0
        cdef Py_ssize_t take, frame_bytes
        if self._buffered > 0:
            # Invariant: a buffer beginning with '$' holds less than one frame.
            if self._buffer[0] != _INTERLEAVED_MAGIC:
                self._keep(data, size)  # an RTSP message waits for take_unparsed()
                return 0
            if self._buffered < 4:
                take = min(4 - self._buffered, size)
                self._keep(data, take)
                used = take
                if self._buffered < 4:
                    return 0
            frame_bytes = 4 + ((<Py_ssize_t>self._buffer[2] << 8) | self._buffer[3])
            take = min(frame_bytes - self._buffered, size - used)
            self._keep(data + used, take)
            used += take
            if self._buffered < frame_bytes:
                return 0
            self._frames(self._buffer, frame_bytes, received, done)
            self._buffered = 0
        used += self._frames(data + used, size - used, received, done)
        self._keep(data + used, size - used)
        return 0

    cdef int _keep(self, const unsigned char* data, Py_ssize_t size) except -1:
        """Append to the unconsumed bytes, doubling the buffer when it is full."""
        cdef Py_ssize_t capacity
        cdef unsigned char* grown
        if size <= 0:
            return 0
        if self._buffered + size > self._buffer_capacity:
            capacity = max(2 * self._buffer_capacity, self._buffered + size, _MIN_BUFFER_BYTES)
            grown = <unsigned char*>PyMem_Realloc(self._buffer, <size_t>capacity)
            if grown == NULL:
                raise MemoryError()
            self._buffer = grown
            self._buffer_capacity = capacity
        memcpy(self._buffer + self._buffered, data, <size_t>size)
        self._buffered += size
        return 0

    cdef Py_ssize_t _frames(
        self, const unsigned char* data, Py_ssize_t size, int64_t received, list done
    ) except -1:
        """Handle the whole frames at the head of ``data``; how many bytes they took."""
        cdef Py_ssize_t position = 0
        cdef Py_ssize_t length
        cdef int64_t frame_offset
        while size - position >= 4 and data[position] == _INTERLEAVED_MAGIC:
            length = (<Py_ssize_t>data[position + 2] << 8) | data[position + 3]
            if size - position - 4 < length:
                break  # the rest of the frame comes with a later push
            frame_offset = self._offset
            self._offset += 4 + length
            if data[position + 1] == self._channel:
                self._packet(data + position + 4, length, frame_offset, received, done)
            position += 4 + length
        return position

    # ---- one RTP packet ----

    cdef object _error(self, int64_t frame_offset, str what):
        return RtpError(f"RTP packet at stream offset {frame_offset}: {what}")

    cdef int _packet(
        self, const unsigned char* packet, Py_ssize_t size, int64_t frame_offset,
        int64_t received, list done,
    ) except -1:
        cdef Py_ssize_t header_bytes = _RTP_HEADER_BYTES
        cdef Py_ssize_t padding = 0
        cdef Py_ssize_t payload_size
        cdef unsigned int version, sequence, gap
        cdef uint32_t rtp_timestamp
        cdef bint marker
        cdef bint lost = False
        self._packets += 1
        if size < header_bytes:
            raise self._error(
                frame_offset, f"{size} bytes, shorter than its {header_bytes}-byte header"
            )
        version = packet[0] >> 6
        if version != 2:
            raise self._error(frame_offset, f"version {version}, expected 2")
        header_bytes += 4 * (packet[0] & 0x0F)  # CSRCs
        if packet[0] & 0x10:  # header extension: 16-bit profile data, 16-bit length in words
            header_bytes += 4
            if size >= header_bytes:
                header_bytes += 4 * (
                    (<Py_ssize_t>packet[header_bytes - 2] << 8) | packet[header_bytes - 1]
                )
        if size < header_bytes:
            raise self._error(
                frame_offset, f"{size} bytes, shorter than its {header_bytes}-byte header"
            )
        if packet[0] & 0x20:  # the last byte counts the padding bytes, itself included
            padding = packet[size - 1]
            if padding == 0:
                raise self._error(frame_offset, "padding bit set but the padding count is 0")
            if padding > size - header_bytes:
                raise self._error(
                    frame_offset,
                    f"{padding} bytes of padding, more than the "
                    f"{size - header_bytes} bytes after the {header_bytes}-byte header",
                )
        payload_size = size - header_bytes - padding
        if payload_size == 0:
            raise self._error(frame_offset, "empty payload")
        marker = (packet[1] & 0x80) != 0
        sequence = (<unsigned int>packet[2] << 8) | packet[3]
        rtp_timestamp = (
            (<uint32_t>packet[4] << 24) | (<uint32_t>packet[5] << 16)
            | (<uint32_t>packet[6] << 8) | <uint32_t>packet[7]
        )

        if not self._have_sequence:
            self._have_sequence = True
            self._timestamp = rtp_timestamp
        else:
            gap = (sequence - self._last_sequence - 1) & 0xFFFF
            if gap:
                self._packets_lost += gap
                lost = True
            self._timestamp += <int32_t>(rtp_timestamp - self._last_rtp_timestamp)
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
            self._au_received_ns = received
            self._au_corrupt = lost

        if self._hevc:
            self._hevc_payload(packet + header_bytes, payload_size, frame_offset)
        else:
            self._h264_payload(packet + header_bytes, payload_size, frame_offset)
        # Some cameras set the marker on SPS/PPS/SEI too: an AU ends with a picture in it.
        if marker and (self._au_picture or self._au_corrupt):
            self._finish_au(done)
        return 0

    cdef int _h264_payload(
        self, const unsigned char* payload, Py_ssize_t size, int64_t frame_offset
    ) except -1:
        cdef unsigned int nal_type = payload[0] & 0x1F
        cdef unsigned int fu_type
        cdef unsigned char nal_header[5]
        if 1 <= nal_type <= 23:
            self._whole_nal(payload, size, nal_type == 5, nal_type <= 5, frame_offset)
        elif nal_type == 24:
            self._aggregation(payload, size, 1, frame_offset)
        elif nal_type == 28:
            if size < 2:
                raise self._error(frame_offset, f"FU-A payload of {size} bytes has no FU header")
            fu_type = payload[1] & 0x1F
            memcpy(nal_header, _START_CODE, 4)
            nal_header[4] = (payload[0] & 0xE0) | fu_type
            self._fragment(payload[1], nal_header, 5, payload + 2, size - 2, fu_type == 5,
                           1 <= fu_type <= 5, frame_offset)
        else:
            raise self._error(
                frame_offset,
                f"H.264 payload type {nal_type} ({self._unsupported[nal_type]}) is not supported",
            )
        return 0

    cdef int _hevc_payload(
        self, const unsigned char* payload, Py_ssize_t size, int64_t frame_offset
    ) except -1:
        cdef unsigned int nal_type, fu_type
        cdef unsigned char nal_header[6]
        if size < 2:
            raise self._error(
                frame_offset, f"{size}-byte payload, shorter than the H.265 payload header"
            )
        nal_type = (payload[0] >> 1) & 0x3F
        if nal_type <= 47:
            self._whole_nal(payload, size, _is_irap(nal_type), nal_type <= 31, frame_offset)
        elif nal_type == 48:
            self._aggregation(payload, size, 2, frame_offset)
        elif nal_type == 49:
            if size < 3:
                raise self._error(frame_offset, f"FU payload of {size} bytes has no FU header")
            fu_type = payload[2] & 0x3F
            memcpy(nal_header, _START_CODE, 4)
            nal_header[4] = (payload[0] & 0x81) | (fu_type << 1)
            nal_header[5] = payload[1]
            self._fragment(payload[2], nal_header, 6, payload + 3, size - 3, _is_irap(fu_type),
                           fu_type <= 31, frame_offset)
        else:
            raise self._error(
                frame_offset,
                f"H.265 payload type {nal_type} ({self._unsupported[nal_type]}) is not supported",
            )
        return 0

    cdef int _aggregation(
        self, const unsigned char* payload, Py_ssize_t size, Py_ssize_t header_bytes,
        int64_t frame_offset,
    ) except -1:
        """STAP-A / AP: NAL units behind 16-bit sizes, after the payload header."""
        cdef Py_ssize_t position = header_bytes
        cdef Py_ssize_t nal_size
        cdef const unsigned char* nal
        cdef bint is_key, is_picture
        cdef unsigned int nal_type
        while position < size:
            if position + 2 > size:
                raise self._error(
                    frame_offset,
                    f"{'AP' if self._hevc else 'STAP-A'} size field at payload byte {position} "
                    f"runs past the {size}-byte payload",
                )
            nal_size = (<Py_ssize_t>payload[position] << 8) | payload[position + 1]
            if position + 2 + nal_size > size:
                raise self._error(
                    frame_offset,
                    f"{'AP' if self._hevc else 'STAP-A'} NAL unit of {nal_size} bytes at "
                    f"payload byte {position} runs past the {size}-byte payload",
                )
            nal = payload + position + 2
            position += 2 + nal_size
            if nal_size:  # a zero size holds no NAL unit
                if self._hevc:
                    nal_type = (nal[0] >> 1) & 0x3F
                    is_key = _is_irap(nal_type)
                    is_picture = nal_type <= 31
                else:
                    nal_type = nal[0] & 0x1F
                    is_key = nal_type == 5
                    is_picture = 1 <= nal_type <= 5
                self._whole_nal(nal, nal_size, is_key, is_picture, frame_offset)
        return 0

    cdef int _whole_nal(
        self, const unsigned char* nal, Py_ssize_t size, bint is_key, bint is_picture,
        int64_t frame_offset,
    ) except -1:
        if self._fu_open:  # a new NAL unit while an FU still waits for its end
            self._au_corrupt = True
            self._fu_open = False
        self._au_key = self._au_key or is_key
        self._au_picture = self._au_picture or is_picture
        self._append(frame_offset, _START_CODE, 4, nal, size)
        return 0

    cdef int _fragment(
        self, unsigned int fu_header, const unsigned char* prefix, Py_ssize_t prefix_size,
        const unsigned char* fragment, Py_ssize_t size, bint is_key, bint is_picture,
        int64_t frame_offset,
    ) except -1:
        """An FU: ``prefix`` is the start code and the rebuilt NAL unit header."""
        cdef bint starts = (fu_header & 0x80) != 0
        cdef bint ends = (fu_header & 0x40) != 0
        if starts:
            if self._fu_open:
                self._au_corrupt = True
            self._au_key = self._au_key or is_key
            self._au_picture = self._au_picture or is_picture
            self._append(frame_offset, prefix, prefix_size, fragment, size)
            self._fu_open = not ends
        elif not self._fu_open:  # its start was lost
            self._au_corrupt = True
        else:
            self._append(frame_offset, NULL, 0, fragment, size)
            self._fu_open = not ends
        return 0

    cdef int _append(
        self, int64_t frame_offset, const unsigned char* prefix, Py_ssize_t prefix_size,
        const unsigned char* body, Py_ssize_t body_size,
    ) except -1:
        cdef Py_ssize_t size, capacity
        cdef unsigned char* grown
        if self._au_corrupt:
            return 0  # it will be dropped: don't keep its bytes
        size = self._au_length + prefix_size + body_size
        if size > self._max_frame_bytes:
            raise self._error(
                frame_offset,
                f"access unit at RTP timestamp {self._au_timestamp} grows to {size} bytes, "
                f"over max_frame_bytes ({self._max_frame_bytes})",
            )
        if size > self._au_capacity:
            capacity = min(max(2 * self._au_capacity, size, _MIN_AU_BYTES), self._max_frame_bytes)
            grown = <unsigned char*>PyMem_Realloc(self._au, <size_t>capacity)
            if grown == NULL:
                raise MemoryError()
            self._au = grown
            self._au_capacity = capacity
        if prefix_size:
            memcpy(self._au + self._au_length, prefix, <size_t>prefix_size)
        if body_size:
            memcpy(self._au + self._au_length + prefix_size, body, <size_t>body_size)
        self._au_length = size
        return 0

    cdef int _finish_au(self, list done) except -1:
        if self._fu_open:  # the FU never ended
            self._au_corrupt = True
        if self._au_corrupt:
            self._frames_dropped += 1
        elif self._au_length > 0:
            data = PyBytes_FromStringAndSize(<const char*>self._au, self._au_length)
            done.append((data, self._au_timestamp, self._au_key, self._au_received_ns))
        self._reset_au()
        return 0

    cdef void _reset_au(self) noexcept:
        self._au_open = False
        self._au_length = 0
        self._au_key = False
        self._au_picture = False
        self._au_corrupt = False
        self._fu_open = False
