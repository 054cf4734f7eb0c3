"""Selector for the RTP-over-RTSP depacketizer (H.264/H.265): compiled or pure-Python twin."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS
from ._errors import RtpError

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._rtp_py import RtpDepacketizer
else:
    try:
        from ._rtp_c import RtpDepacketizer
    except ImportError:
        FALLBACKS.add("rtp")
        from ._rtp_py import RtpDepacketizer

__all__ = ["RtpDepacketizer", "RtpError"]
