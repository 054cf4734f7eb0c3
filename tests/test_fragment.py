"""Fragmented MP4 for the live view (``moonfire.playback.fragment``): the boxes field by field
(media-notes §1), and PyAV decoding an init segment plus one fragment per frame, every frame,
of a real clip (tests/data/clip.mp4) and of the synthetic camera."""

from __future__ import annotations

import io
import itertools
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import av
import pytest

from moonfire.codec import sample_entry_from_extradata
from moonfire.db import VideoSampleEntry
from moonfire.ingest.sources import open_source
from moonfire.playback.fragment import (
    KEY_SAMPLE_FLAGS,
    NON_KEY_SAMPLE_FLAGS,
    FragmentSample,
    aspect,
    codec_string,
    content_type,
    init_segment,
    media_segment,
)

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf"}


@dataclass
class Box:
    fourcc: bytes
    offset: int
    size: int
    header: int
    payload: bytes
    children: list[Box] = field(default_factory=list)

    def find(self, path: str) -> Box:
        box = self
        for name in path.split("/"):
            matches = [c for c in box.children if c.fourcc == name.encode()]
            assert len(matches) == 1, f"{len(matches)} {name} boxes under {box.fourcc!r}"
            box = matches[0]
        return box

    def names(self) -> list[bytes]:
        return [c.fourcc for c in self.children]

    def full(self) -> tuple[int, int, bytes]:
        """(version, flags, body) of a full box."""
        word = struct.unpack_from(">I", self.payload)[0]
        return word >> 24, word & 0xFFFFFF, self.payload[4:]


def parse(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """Every box from ``start`` to ``end``; sizes must tile the range exactly."""
    end = len(data) if end is None else end
    out = []
    offset = start
    while offset < end:
        size, fourcc = struct.unpack_from(">I4s", data, offset)
        assert size >= 8, f"{fourcc!r} at {offset}: size {size}"
        assert size != 1, f"{fourcc!r} at {offset}: 64-bit size (Safari rejects it in mdat)"
        assert offset + size <= end, f"{fourcc!r} at {offset} overruns its parent"
        body = data[offset + 8 : offset + size]
        box = Box(fourcc, offset, size, 8, b"" if fourcc in CONTAINERS else body)
        if fourcc in CONTAINERS:
            box.children = parse(data, offset + 8, offset + size)
        out.append(box)
        offset += size
    assert offset == end
    return out


def root(data: bytes) -> Box:
    return Box(b"file", 0, len(data), 0, b"", parse(data))


def entry_from_extradata(extradata: bytes, entry_id: int = 1) -> tuple[VideoSampleEntry, object]:
    codec_entry = sample_entry_from_extradata(extradata)
    row = VideoSampleEntry(entry_id, b"", codec_entry.width, codec_entry.height, codec_entry.box)
    return row, codec_entry


@pytest.fixture
def camera_entry(testdata) -> VideoSampleEntry:
    data = (testdata / "avc1_1920x1080").read_bytes()
    return VideoSampleEntry(7, b"", 1920, 1080, data)


# ---- the init segment -------------------------------------------------------------------


def test_init_segment_boxes_field_by_field(camera_entry):
    data = init_segment(camera_entry)
    top = root(data)
    assert top.names() == [b"ftyp", b"moov"]
    ftyp = top.find("ftyp").payload
    assert ftyp[:4] == b"iso5"
    brands = [ftyp[i : i + 4] for i in range(8, len(ftyp), 4)]
    assert set(brands) == {b"iso5", b"iso6", b"mp41"}, "no avc1 brand with default-base-is-moof"

    moov = top.find("moov")
    assert moov.names() == [b"mvhd", b"trak", b"mvex"]
    version, _, mvhd = moov.find("mvhd").full()
    assert version == 0 and struct.unpack_from(">I", mvhd, 8)[0] == 90_000

    trak = moov.find("trak")
    assert trak.names() == [b"tkhd", b"mdia"]
    _, tkhd_flags, tkhd = trak.find("tkhd").full()
    assert tkhd_flags == 7
    assert struct.unpack_from(">I", tkhd, 8)[0] == 1  # track id
    assert struct.unpack_from(">II", tkhd, len(tkhd) - 8) == (1920 << 16, 1080 << 16)

    mdia = trak.find("mdia")
    assert mdia.names() == [b"mdhd", b"hdlr", b"minf"]
    assert struct.unpack_from(">I", mdia.find("mdhd").full()[2], 8)[0] == 90_000
    assert mdia.find("hdlr").full()[2][4:8] == b"vide"
    minf = mdia.find("minf")
    assert minf.names() == [b"vmhd", b"dinf", b"stbl"]
    stbl = minf.find("stbl")
    assert stbl.names() == [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]
    stsd = stbl.find("stsd").full()[2]
    assert struct.unpack_from(">I", stsd)[0] == 1
    assert stsd[4:] == camera_entry.data, "stsd holds the stored sample entry box unchanged"
    for name in ("stts", "stsc", "stco"):
        assert stbl.find(name).full()[2] == b"\x00\x00\x00\x00", f"{name} must be empty"
    assert struct.unpack(">II", stbl.find("stsz").full()[2]) == (0, 0)

    mvex = moov.find("mvex")
    assert mvex.names() == [b"trex"]
    # track 1, sample description 1, default duration/size/flags 0
    assert struct.unpack(">5I", mvex.find("trex").full()[2]) == (1, 1, 0, 0, 0)


def test_codec_string_content_type_and_aspect(camera_entry):
    sps_profile = camera_entry.data[86 + 8 + 1 : 86 + 8 + 4]  # avcC bytes 1-3
    assert codec_string(camera_entry) == "avc1." + sps_profile.hex()
    assert content_type(camera_entry) == f'video/mp4; codecs="avc1.{sps_profile.hex()}"'
    assert aspect(camera_entry) == (16, 9)
    d1 = VideoSampleEntry(1, b"", 704, 480, camera_entry.data)
    assert aspect(d1) == (22, 15)
    # a camera's box with a pasp child (10:11, NTSC D1): display 640x480 -> 4:3
    pasp = struct.pack(">I4sII", 16, b"pasp", 10, 11)
    body = d1.data + pasp
    with_pasp = VideoSampleEntry(2, b"", 704, 480, struct.pack(">I", len(body)) + body[4:])
    assert aspect(with_pasp) == (4, 3)
    tkhd = root(init_segment(with_pasp)).find("moov/trak/tkhd").full()[2]
    assert struct.unpack_from(">II", tkhd, len(tkhd) - 8) == (640 << 16, 480 << 16)
    unknown = VideoSampleEntry(3, b"", 16, 16, struct.pack(">I4s", 100, b"xyz1") + bytes(92))
    assert codec_string(unknown) is None and content_type(unknown) == "video/mp4"


# ---- media segments -----------------------------------------------------------------------


def check_segment(data: bytes, sequence: int, samples: list[FragmentSample], payload: bytes):
    """Every field of one media segment; returns the trun body's data offset."""
    top = root(data)
    assert top.names() == [b"moof", b"mdat"]
    moof, mdat = top.children
    assert moof.names() == [b"mfhd", b"traf"]
    assert moof.find("mfhd").full() == (0, 0, struct.pack(">I", sequence))
    traf = moof.find("traf")
    assert traf.names() == [b"tfhd", b"tfdt", b"trun"], "tfdt comes before trun"
    assert traf.find("tfhd").full() == (0, 0x020000, struct.pack(">I", 1))
    version, _, tfdt = traf.find("tfdt").full()
    assert (version, tfdt) == (0, b"\x00\x00\x00\x00"), "tfdt is 0, as Moonfire writes it"
    version, flags, trun = traf.find("trun").full()
    with_cto = any(s.composition_offset_90k for s in samples)
    assert flags == (0xF01 if with_cto else 0x701)
    assert version == (1 if with_cto else 0)
    count, data_offset = struct.unpack_from(">Ii", trun)
    assert count == len(samples)
    assert data_offset == moof.size + 8, "data offset from the moof start to the mdat payload"
    assert data[data_offset:] == payload
    entry = ">IIIi" if with_cto else ">III"
    width = struct.calcsize(entry)
    assert len(trun) == 8 + width * len(samples)
    for i, sample in enumerate(samples):
        fields = struct.unpack_from(entry, trun, 8 + i * width)
        flags_expected = KEY_SAMPLE_FLAGS if sample.is_key else NON_KEY_SAMPLE_FLAGS
        assert fields[:3] == (sample.duration_90k, sample.size, flags_expected)
        if with_cto:
            assert fields[3] == sample.composition_offset_90k
    assert mdat.size == 8 + len(payload) and mdat.payload == payload


def test_media_segment_of_one_frame():
    payload = bytes(range(256)) * 5
    sample = FragmentSample(3003, len(payload), True)
    data = media_segment(42, [sample], payload)
    check_segment(data, 42, [sample], payload)
    non_key = FragmentSample(3000, 10, False)
    check_segment(media_segment(43, [non_key], b"x" * 10), 43, [non_key], b"x" * 10)


def test_media_segment_of_several_frames_with_composition_offsets():
    parts = [b"a" * 100, b"b" * 7, b"c" * 33]
    samples = [
        FragmentSample(3000, 100, True, 3000),
        FragmentSample(3000, 7, False, -3000),
        FragmentSample(3000, 33, False, 0),
    ]
    data = media_segment(1, samples, parts)
    check_segment(data, 1, samples, b"".join(parts))
    plain = [FragmentSample(3000, 100, True), FragmentSample(2999, 7, False)]
    check_segment(media_segment(2, plain, parts[:2]), 2, plain, b"".join(parts[:2]))


def test_media_segment_with_a_64_bit_decode_time():
    data = media_segment(1, [FragmentSample(1, 1, True)], b"z", base_media_decode_time_90k=1 << 40)
    version, _, body = root(data).find("moof/traf/tfdt").full()
    assert version == 1 and struct.unpack(">Q", body)[0] == 1 << 40


def test_media_segment_refuses_inconsistent_input():
    with pytest.raises(ValueError, match="at least one sample"):
        media_segment(1, [], b"")
    with pytest.raises(ValueError, match="samples total 5 bytes; the data is 4"):
        media_segment(1, [FragmentSample(1, 5, True)], b"abcd")
    with pytest.raises(ValueError, match="sequence number"):
        media_segment(1 << 32, [FragmentSample(1, 1, True)], b"a")


# ---- PyAV decodes them, every frame --------------------------------------------------------


def decode_fragmented(data: bytes) -> tuple[list[av.Packet], list[av.VideoFrame]]:
    """Demux an init segment + fragments, then decode every demuxed packet.

    Every fragment's ``tfdt`` is 0, so FFmpeg's demuxer gives every packet decode time 0 and
    marks the repeats as discardable; a browser places them with ``timestampOffset`` instead.
    Here each packet's bytes are decoded afresh with increasing pts, which is what MSE does.
    """
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    packets = [p for p in container.demux(stream) if p.size]
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = stream.codec_context.extradata
    frames = []
    for i, packet in enumerate(packets):
        fresh = av.Packet(bytes(packet))
        fresh.pts = fresh.dts = i
        fresh.time_base = Fraction(1, 90_000)
        frames += decoder.decode(fresh)
    frames += decoder.decode(None)
    container.close()
    return packets, frames


def test_real_clip_as_fragments_decodes_every_frame(testdata):
    clip = av.open(str(testdata / "clip.mp4"))
    stream = clip.streams.video[0]
    extradata = bytes(stream.codec_context.extradata)
    packets = [p for p in clip.demux(stream) if p.size]
    originals = [bytes(p) for p in packets]
    keys = [p.is_keyframe for p in packets]
    pts = [p.pts for p in packets]
    clip.close()
    expected = av.open(str(testdata / "clip.mp4"))
    expected_frames = [f.to_ndarray() for f in expected.decode(video=0)]
    expected.close()
    assert len(originals) == len(expected_frames) == 10

    entry, codec_entry = entry_from_extradata(extradata)
    out = bytearray(init_segment(entry))
    durations = [b - a for a, b in zip(pts, pts[1:], strict=False)] + [pts[1] - pts[0]]
    for i, (data, key, duration) in enumerate(zip(originals, keys, durations, strict=True)):
        sample = codec_entry.to_sample(data)
        out += media_segment(i + 1, [FragmentSample(duration, len(sample), key)], sample)
    demuxed, frames = decode_fragmented(bytes(out))
    assert [bytes(p) for p in demuxed] == originals
    assert [p.is_keyframe for p in demuxed] == keys
    assert len(frames) == len(expected_frames), "every frame decodes"
    for got, want in zip(frames, expected_frames, strict=True):
        assert (got.width, got.height) == (320, 240)
        assert (got.to_ndarray() == want).all(), "the pictures are the clip's, bit for bit"


def test_synthetic_camera_as_fragments_decodes_every_frame():
    source = open_source("testsrc://?size=320x240&fps=60&bitrate=300k&gop=12")
    try:
        packets = list(itertools.islice(source.packets(), 31))
        extradata = source.extradata
    finally:
        source.close()
    entry, codec_entry = entry_from_extradata(extradata)
    init = init_segment(entry)
    out = bytearray(init)
    with_tfdt = bytearray(init)
    decode_time = 0
    for i, (a, b) in enumerate(itertools.pairwise(packets)):
        sample = codec_entry.to_sample(a.data)
        frag = [FragmentSample(b.pts_90k - a.pts_90k, len(sample), a.is_key)]
        out += media_segment(i + 1, frag, sample)
        with_tfdt += media_segment(i + 1, frag, sample, base_media_decode_time_90k=decode_time)
        decode_time += b.pts_90k - a.pts_90k
    demuxed, frames = decode_fragmented(bytes(out))
    assert len(demuxed) == len(frames) == 30
    assert [p.is_keyframe for p in demuxed] == [p.is_key for p in packets[:30]]
    assert sum(p.is_key for p in packets[:30]) == 3
    # With real decode times, FFmpeg's own demux-and-decode gives every frame at its pts.
    container = av.open(io.BytesIO(bytes(with_tfdt)))
    decoded = list(container.decode(video=0))
    container.close()
    assert [f.pts for f in decoded] == [p.pts_90k for p in packets[:30]]
