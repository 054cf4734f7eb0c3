"""Exceptions shared by both twins, so they raise the very same classes."""


class CorruptIndexError(ValueError):
    """A ``video_index`` blob breaks the format; the message names offset and rule."""


class RecordingAbandonedError(Exception):
    """``Writer.close`` gave the file to ``sink.abandon`` instead of saving it.

    Raised when the writer is corrupt (a write failed and already-indexed bytes were lost) or
    holds no samples; the message names the file and the reason, and ``__cause__`` is the
    original error when there was one.
    """


class RtpError(ValueError):
    """An RTP-over-RTSP byte stream breaks RFC 2326/3550/6184/7798 (or asks for what we don't do).

    The message names the stream offset of the interleaved frame and what was wrong; the
    session is expected to reconnect (the depacketizer that raised is not reused).
    """
