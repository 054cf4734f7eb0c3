"""The one interface every video codec offers the rest of moonfire: ``SampleEntry``.

Ingest and playback know nothing about a codec's bitstream (NAL unit types, where a box keeps
its profile bytes); they go through a ``SampleEntry``, which each codec module implements
(``moonfire.codec.h264`` for ``avc1``, ``moonfire.codec.h265`` for ``hvc1``).  A sample
entry is the ISO/IEC 14496-12 VisualSampleEntry box stored in ``video_sample_entry.data`` plus
what can be derived from it.

Samples, in this interface, are what the sample files hold: length-prefixed NAL units (ISO/IEC
14496-15).  Cameras may deliver *packets* in Annex B form (start codes) instead; then the entry
says ``need_transform`` and ``to_sample`` converts each packet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from moonfire.errors import MoonfireError

__all__ = ["CodecError", "CodecSampleEntry", "SampleEntry", "UnsupportedCodecError"]


class CodecError(MoonfireError, ValueError):
    """Malformed or unsupported codec configuration data; the message names what and where.

    Also a ``ValueError``, as codec errors have always been.
    """


class UnsupportedCodecError(CodecError):
    """A sample entry or stream of a codec moonfire does not know (named in the message)."""


class SampleEntry(Protocol):
    """A video sample entry of some codec, and the codec knowledge ingest and playback need.

    Members are read-only properties so that frozen dataclasses satisfy the protocol.
    """

    @property
    def fourcc(self) -> bytes:
        """The sample entry's box type, e.g. ``b"avc1"``."""
        ...

    @property
    def box(self) -> bytes:
        """The complete sample entry box, as stored in ``video_sample_entry.data``."""
        ...

    @property
    def codec_string(self) -> str:
        """The RFC 6381 ``codecs`` parameter, e.g. ``avc1.640028``."""
        ...

    @property
    def width(self) -> int:
        """Displayed picture width in pixels (after cropping)."""
        ...

    @property
    def height(self) -> int:
        """Displayed picture height in pixels (after cropping)."""
        ...

    @property
    def need_transform(self) -> bool:
        """True when the stream's packets are Annex B and ``to_sample`` must convert them."""
        ...

    def to_sample(self, packet: bytes) -> bytes:
        """A packet as the sample file stores it: Annex B start codes replaced by length prefixes
        when ``need_transform`` (H.265 also drops in-band repeats of the entry's parameter
        sets, as ``hvc1`` wants them only in ``hvcC``), otherwise the packet unchanged."""
        ...

    def is_key_frame(self, sample: bytes) -> bool:
        """Whether a (length-prefixed) sample starts a picture decodable on its own."""
        ...

    def parameter_sets(self, annex_b: bytes) -> tuple[bytes, ...]:
        """The distinct parameter-set NAL units (H.264: SPS, PPS; H.265: VPS, SPS, PPS) of an
        Annex B buffer, in first-seen order.  Cameras repeat them before key frames; repeats
        are not changes."""
        ...

    def extradata_from_parameter_sets(self, nals: Sequence[bytes]) -> bytes | None:
        """Annex B extradata holding ``nals`` when they are a complete set for a new entry of
        this codec (H.264: an SPS and a PPS; H.265: a VPS, an SPS and a PPS), else None (a
        partial update)."""
        ...


@dataclass(frozen=True, slots=True)
class CodecSampleEntry:
    """The fields every codec's ``SampleEntry`` holds, and the members every codec derives from
    them the same way.  A codec's entry (``h264.AvcSampleEntry``, ``h265.HevcSampleEntry``)
    subclasses it and adds what needs its bitstream: ``to_sample``, ``is_key_frame`` and the
    parameter set methods."""

    #: The complete sample entry box (``box``), as stored in ``video_sample_entry.data``.
    data: bytes
    width: int
    height: int
    rfc6381_codec: str
    need_transform: bool
    #: Bytes of each NAL unit's length prefix in a sample (from the codec's configuration
    #: record; 4 when we build the record).
    nal_length_size: int = 4

    @property
    def fourcc(self) -> bytes:
        """The box type: the codec modules only make entries of their own, checked, type."""
        return self.data[4:8]

    @property
    def box(self) -> bytes:
        return self.data

    @property
    def codec_string(self) -> str:
        return self.rfc6381_codec
