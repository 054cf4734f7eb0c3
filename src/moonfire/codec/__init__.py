"""What moonfire knows about each video codec: sample entries, parameter sets, key frames.

Everything outside this package goes through ``moonfire.codec.base.SampleEntry`` and the two
functions below; only the codec modules (``h264``, ``h265``) know bitstream details.
"""

from __future__ import annotations

from collections.abc import Callable

from moonfire.codec import h264, h265
from moonfire.codec.base import CodecError, SampleEntry, UnsupportedCodecError

__all__ = [
    "RECORDABLE_CODECS",
    "CodecError",
    "SampleEntry",
    "UnsupportedCodecError",
    "playback_note",
    "recordable_codec_names",
    "sample_entry_from_box",
    "sample_entry_from_extradata",
]

#: Stored sample entry box type → the parser of that codec's boxes.
_FROM_BOX: dict[bytes, Callable[[bytes], SampleEntry]] = {
    h264.FOURCC: h264.sample_entry_from_avc1,
    h265.FOURCC: h265.sample_entry_from_hvc1,
}

#: Stream codec (as FFmpeg names it) → the builder of that codec's entry from its extradata.
_FROM_EXTRADATA: dict[str, Callable[[bytes], SampleEntry]] = {
    "h264": h264.sample_entry_from_extradata,
    "hevc": h265.sample_entry_from_extradata,
}

#: Video codecs moonfire records, as FFmpeg names them → as people name them.
RECORDABLE_CODECS: dict[str, str] = {"h264": "H.264", "hevc": "H.265"}


def recordable_codec_names() -> str:
    """``H.264 (h264) and H.265 (hevc)``: for messages refusing another codec."""
    names = [f"{human} ({name})" for name, human in RECORDABLE_CODECS.items()]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def playback_note(codec_string: str) -> str | None:
    """What a user should know before playing a file of this RFC 6381 codec (which players can),
    or None for a codec every common player and browser plays (H.264)."""
    if codec_string.startswith((h265.FOURCC.decode(), "hev1")):
        return h265.PLAYERS
    return None


def sample_entry_from_box(data: bytes) -> SampleEntry:
    """The sample entry a stored box (``video_sample_entry.data``) describes, of whichever codec
    its box type (fourcc) names.  Raises ``UnsupportedCodecError`` for a fourcc no codec module
    reads, or the codec's ``CodecError`` for a malformed box."""
    data = bytes(data)
    if len(data) < 8:
        raise CodecError(f"sample entry box of {len(data)} bytes is too short; at least 8 expected")
    fourcc = data[4:8]
    parse = _FROM_BOX.get(fourcc)
    if parse is None:
        known = ", ".join(repr(k) for k in _FROM_BOX)
        raise UnsupportedCodecError(
            f"sample entry box type at offset 4 is {fourcc!r}; moonfire reads only {known}"
        )
    return parse(data)


def sample_entry_from_extradata(extradata: bytes, codec: str = "h264") -> SampleEntry:
    """The sample entry for a stream of ``codec`` (FFmpeg's name: ``h264``, ``hevc``), from its
    ffmpeg ``extradata``.  Raises ``UnsupportedCodecError`` for a codec moonfire does not record."""
    build = _FROM_EXTRADATA.get(codec)
    if build is None:
        raise UnsupportedCodecError(
            f"video codec is {codec}; moonfire records only {recordable_codec_names()}"
        )
    return build(extradata)
