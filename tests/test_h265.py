"""H.265: the SPS parser, the ``hvc1``/``hvcC`` sample entry (checked against FFmpeg's own mp4
muxer), key frames and parameter sets, odd input; and a GStreamer ``x265enc`` camera recorded
by the real daemon, exported and decoded.

Parameter sets come from real encoders: PyAV's libx265 for the unit tests (a few frames, well
under a second each), GStreamer's x265enc (tests/support/rtsp_server.py ``/h265``) end to end.
"""

from __future__ import annotations

import dataclasses
import fractions
import io
import shutil
import struct
import subprocess

import av
import numpy as np
import pytest

from moonfire.codec import (
    CodecError,
    UnsupportedCodecError,
    h265,
    h265_sps,
    playback_note,
    sample_entry_from_box,
    sample_entry_from_extradata,
)
from moonfire.errors import MoonfireError
from moonfire.ingest.daemon import run_cameras
from moonfire.ingest.sources import SourceError, open_source
from moonfire.playback import fragment
from moonfire.playback.export_plan import plan_export
from moonfire.storage import data_dir as datadir
from moonfire_core import decode_index
from moonfire_core.annexb import split_annex_b
from tests.support.cli import moonfire
from tests.support.nal import escape_emulation
from tests.test_h264 import BitWriter, reordering_seen
from tests.test_ingest import (  # the GStreamer server and the daemon's data dir
    RtspServer,
    add_camera,
    assert_orderly,
    assert_runs_well_formed,
    data_dir,  # noqa: F401 - fixture
    recordings,
    start_server_or_fail,
)

START_CODE = b"\x00\x00\x00\x01"
PARAMETER_SET_TYPES = (h265.NAL_TYPE_VPS, h265.NAL_TYPE_SPS, h265.NAL_TYPE_PPS)


def nal(kind: int, payload: bytes = b"\xaf\x80") -> bytes:
    """A NAL unit of type ``kind`` (layer 0, temporal id 0) with a made-up payload."""
    return bytes([kind << 1, 1]) + payload


def annex_b(*nals: bytes) -> bytes:
    return b"".join(START_CODE + n for n in nals)


def length_prefixed(*nals: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def types_of(nals: list[bytes]) -> list[int]:
    return [h265.nal_type(n) for n in nals]


@dataclasses.dataclass(frozen=True)
class Encoded:
    """What libx265 gave: Annex B VPS+SPS+PPS (its SEI left out, as RTSP extradata has none),
    and the Annex B packets, key flags and presentation times, in decode order."""

    parameter_sets: bytes
    packets: list[bytes]
    keys: list[bool]
    pts: list[int]

    def nal(self, kind: int) -> bytes:
        (found,) = [n for n in split_annex_b(self.parameter_sets) if h265.nal_type(n) == kind]
        return found


def x265(
    width: int = 320,
    height: int = 240,
    pix_fmt: str = "yuv420p",
    frames: int = 12,
    params: str = "",
) -> Encoded:
    context = av.CodecContext.create("libx265", "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = fractions.Fraction(1, 30)
    context.flags |= av.codec.context.Flags.global_header
    context.options = {
        "preset": "ultrafast",
        "x265-params": f"log-level=error:keyint=10:bframes=0{':' if params else ''}{params}",
    }
    context.open()
    nals = split_annex_b(bytes(context.extradata))
    parameter_sets = annex_b(*(n for n in nals if h265.nal_type(n) in PARAMETER_SET_TYPES))
    packets = []
    for i in range(frames):
        picture = np.full((height, width, 3), (i * 20) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=pix_fmt)
        frame.pts = i
        packets += context.encode(frame)
    packets += context.encode(None)
    return Encoded(
        parameter_sets,
        [bytes(p) for p in packets],
        [p.is_keyframe for p in packets],
        [p.pts for p in packets],
    )


@pytest.fixture(scope="module")
def main_320x240() -> Encoded:
    return x265(params="repeat-headers=1")  # parameter sets before each key frame, as cameras


@pytest.fixture(scope="module")
def entry(main_320x240: Encoded) -> h265.HevcSampleEntry:
    return h265.sample_entry_from_extradata(main_320x240.parameter_sets)


@dataclasses.dataclass(frozen=True)
class Muxed:
    """PyAV's (FFmpeg's) mp4 muxer output for an Annex B stream: the test oracle."""

    data: bytes
    hvc1_box: bytes
    hvcc: bytes
    samples: list[bytes]
    codec_tag: str


def ffmpeg_mp4(encoded: Encoded) -> Muxed:
    """Mux ``encoded`` with ``codec_tag="hvc1"`` and the same extradata moonfire gets."""
    stream_bytes = encoded.parameter_sets + b"".join(encoded.packets)
    out_buffer = io.BytesIO()
    with av.open(io.BytesIO(stream_bytes), format="hevc") as source:
        in_stream = source.streams.video[0]
        with av.open(out_buffer, "w", format="mp4") as out:
            out_stream = out.add_stream_from_template(in_stream)
            out_stream.codec_tag = "hvc1"
            out_stream.codec_context.extradata = encoded.parameter_sets
            frames = (p for p in source.demux(in_stream) if p.size)
            for index, packet in enumerate(frames):  # 30 fps (the raw stream has no times)
                packet.time_base = fractions.Fraction(1, 30)
                packet.pts = packet.dts = index
                packet.stream = out_stream
                out.mux(packet)
    data = out_buffer.getvalue()
    hvcc_at = data.index(b"hvcC") - 4
    box_at = hvcc_at - 86
    (box_size,) = struct.unpack_from(">I", data, box_at)
    (hvcc_size,) = struct.unpack_from(">I", data, hvcc_at)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        samples = [bytes(p) for p in container.demux(stream) if p.size]
        tag = stream.codec_context.codec_tag
    return Muxed(
        data,
        data[box_at : box_at + box_size], data[hvcc_at + 8 : hvcc_at + hvcc_size], samples, tag
    )


# --- SPS --------------------------------------------------------------------------------------


def test_sps_of_a_main_profile_stream(main_320x240: Encoded) -> None:
    info = h265.parse_sps(main_320x240.nal(h265.NAL_TYPE_SPS))
    assert (info.width, info.height) == (320, 240)
    assert (info.chroma_format_idc, info.bit_depth_luma, info.bit_depth_chroma) == (1, 8, 8)
    assert (info.max_sub_layers, info.temporal_id_nesting) == (1, True)
    profile = info.profile
    assert (profile.profile_space, profile.tier_flag, profile.profile_idc) == (0, False, 1)
    # general_profile_compatibility_flag[1] (Main) and [2] (Main 10): bits 30 and 29.
    assert profile.compatibility_flags == 0x6000_0000
    assert profile.level_idc == 60  # level 2: 320x240 at 30 fps
    # progressive_source and frame_only_constraint: top bits of the first constraint byte.
    assert profile.constraint_flags >> 40 == 0x90


def test_conformance_window_gives_the_displayed_size() -> None:
    # 322x242 is no multiple of the 16-pixel coding blocks: x265 codes more and crops.
    info = h265.parse_sps(x265(322, 242, frames=0).nal(h265.NAL_TYPE_SPS))
    assert (info.width, info.height) == (322, 242)
    assert (info.coded_width, info.coded_height) == (336, 256)
    assert (info.crop_left, info.crop_right, info.crop_top, info.crop_bottom) == (0, 14, 0, 14)


@pytest.mark.parametrize(
    ("pix_fmt", "profile_idc", "chroma", "depth", "codec"),
    [
        ("yuv420p10le", 2, 1, 10, "hvc1.2.4.L60.90"),  # Main 10
        # Main 4:2:2 10 (Table A.2): progressive, frame only, max_12bit, max_10bit, max_422chroma;
        # then lower_bit_rate.  (8-bit 4:2:2 has no profile of its own.)
        ("yuv422p", 4, 2, 8, "hvc1.4.10.L60.9D.8"),
    ],
)
def test_other_profiles(pix_fmt: str, profile_idc: int, chroma: int, depth: int, codec: str):
    encoded = x265(pix_fmt=pix_fmt, frames=0)
    info = h265.parse_sps(encoded.nal(h265.NAL_TYPE_SPS))
    assert (info.profile.profile_idc, info.chroma_format_idc) == (profile_idc, chroma)
    assert (info.bit_depth_luma, info.bit_depth_chroma) == (depth, depth)
    assert h265.sample_entry_from_extradata(encoded.parameter_sets).codec_string == codec


def test_sps_odd_input_names_what_is_wrong(main_320x240: Encoded) -> None:
    sps = main_320x240.nal(h265.NAL_TYPE_SPS)
    # Ten bytes, one of them an emulation prevention 03: 72 bits of RBSP, and the 48 constraint
    # flag bits of profile_tier_level start at bit 64.
    message = r"^H.265 SPS truncated at bit 72: 48 bits needed from bit 64$"
    with pytest.raises(h265.SpsError, match=message):
        h265.parse_sps(sps[:10])
    with pytest.raises(h265.SpsError, match="NAL unit type is 34; an H.265 SPS has type 33"):
        h265.parse_sps(main_320x240.nal(h265.NAL_TYPE_PPS))
    with pytest.raises(h265.SpsError, match="NAL unit of 1 bytes is too short"):
        h265.parse_sps(sps[:1])
    bad_layers = sps[:2] + bytes([sps[2] | 0x0E]) + sps[3:]  # sps_max_sub_layers_minus1 = 7
    with pytest.raises(h265.SpsError, match="sps_max_sub_layers_minus1 is 7; at most 6"):
        h265.parse_sps(bad_layers)
    for error in (h265.SpsError, h265.DecoderConfigError, h265.SampleEntryError, h265.SampleError):
        assert issubclass(error, h265.H265Error)
        assert issubclass(error, CodecError) and issubclass(error, MoonfireError)
        assert issubclass(error, ValueError)


# --- reorder depth: sps_max_num_reorder_pics ------------------------------------------------


@pytest.mark.parametrize(
    ("params", "depth"),
    [
        pytest.param("bframes=0", 0, id="no-b-frames"),
        # x265's default B pyramid: the middle B-frame of four is a reference, two deep.
        pytest.param("bframes=4:b-adapt=0", 2, id="4b-pyramid"),
        pytest.param("bframes=4:b-adapt=0:b-pyramid=0", 1, id="4b-flat"),
    ],
)
def test_real_encodes_state_their_reorder_depth(params: str, depth: int) -> None:
    encoded = x265(frames=20, params=params)
    info = h265.parse_sps(encoded.nal(h265.NAL_TYPE_SPS))
    assert info.max_num_reorder_pics == h265_sps.reorder_depth(info) == depth
    assert reordering_seen(encoded.pts) == depth


def handmade_sps(
    ordering: list[tuple[int, int]], all_sub_layers: bool = True, end_after_bit_depths: bool = False
) -> bytes:
    """An H.265 SPS of 320x240 4:2:0 Main, written through the sub-layer ordering info:
    ``ordering`` holds (sps_max_dec_pic_buffering_minus1, sps_max_num_reorder_pics) per
    sub-layer, all of them coded if ``all_sub_layers`` (the present flag), else only the last."""
    w = BitWriter()
    sub_layers_minus1 = len(ordering) - 1
    w.u(4, 0)  # sps_video_parameter_set_id
    w.u(3, sub_layers_minus1)
    w.u(1, 1)  # sps_temporal_id_nesting_flag
    w.u(8, 0b0000_0001)  # general profile space, tier, profile_idc 1 (Main)
    w.u(32, 0x6000_0000)  # compatibility flags
    w.u(48, 0x90 << 40)  # progressive, frame only
    w.u(8, 60)  # general_level_idc
    w.u(2 * sub_layers_minus1, 0)  # no sub-layer profile or level
    if sub_layers_minus1:
        w.u(2 * (8 - sub_layers_minus1), 0)  # reserved_zero_2bits
    w.ue(0)  # sps_seq_parameter_set_id
    w.ue(1)  # chroma_format_idc
    w.ue(320)
    w.ue(240)
    w.u(1, 0)  # conformance_window_flag
    w.ue(0)  # bit_depth_luma_minus8
    w.ue(0)  # bit_depth_chroma_minus8
    if not end_after_bit_depths:
        w.ue(4)  # log2_max_pic_order_cnt_lsb_minus4
        w.u(1, all_sub_layers)
        for dec_pic_buffering_minus1, num_reorder_pics in (
            ordering if all_sub_layers else ordering[-1:]
        ):
            w.ue(dec_pic_buffering_minus1)
            w.ue(num_reorder_pics)
            w.ue(0)  # sps_max_latency_increase_plus1
    return bytes([h265.NAL_TYPE_SPS << 1, 1]) + escape_emulation(w.rbsp())


@pytest.mark.parametrize("all_sub_layers", [True, False])
def test_reorder_depth_is_the_highest_sub_layers(all_sub_layers: bool) -> None:
    info = h265.parse_sps(handmade_sps([(1, 0), (2, 1), (4, 3)], all_sub_layers))
    assert (info.width, info.height, info.max_sub_layers) == (320, 240, 3)
    assert info.max_num_reorder_pics == h265_sps.reorder_depth(info) == 3


def test_reorder_values_are_checked_as_ffmpeg_checks_them() -> None:
    # At the limits, and reordering more than its own DPB holds (FFmpeg warns and goes on).
    assert h265.parse_sps(handmade_sps([(15, 15)])).max_num_reorder_pics == 15
    assert h265.parse_sps(handmade_sps([(2, 5)])).max_num_reorder_pics == 5
    message = r"^H.265 SPS sps_max_dec_pic_buffering_minus1 is 16; at most 15 is allowed$"
    with pytest.raises(h265.SpsError, match=message):
        h265.parse_sps(handmade_sps([(16, 1)]))
    message = r"^H.265 SPS sps_max_num_reorder_pics is 16; at most 15 is allowed$"
    with pytest.raises(h265.SpsError, match=message):
        h265.parse_sps(handmade_sps([(15, 16)]))
    # Lower sub-layers are checked too, though only the highest is kept.
    with pytest.raises(h265.SpsError, match="sps_max_num_reorder_pics is 20"):
        h265.parse_sps(handmade_sps([(1, 20), (4, 3)]))


def test_sps_ending_after_its_bit_depths_is_truncated() -> None:
    # The ordering info is mandatory syntax, unlike H.264's VUI: no SPS ends before it.
    with pytest.raises(h265.SpsError, match=r"^H.265 SPS truncated at bit \d+: 1 bits needed"):
        h265.parse_sps(handmade_sps([(4, 2)], end_after_bit_depths=True))


# --- the codec string -------------------------------------------------------------------------


def test_codec_string_follows_iso_14496_15_annex_e() -> None:
    main = h265.ProfileTierLevel(0, False, 1, 0x6000_0000, 0xB0 << 40, 93)
    assert h265.codec_string(main) == "hvc1.1.6.L93.B0"  # the standard's own example
    high_tier = dataclasses.replace(main, tier_flag=True, level_idc=120)
    assert h265.codec_string(high_tier) == "hvc1.1.6.H120.B0"
    no_constraints = dataclasses.replace(main, constraint_flags=0)
    assert h265.codec_string(no_constraints) == "hvc1.1.6.L93"
    # Middle zero bytes stay; trailing ones go.  Profile space 1 is "A".
    odd = dataclasses.replace(main, profile_space=1, constraint_flags=0x9000_0800_0000)
    assert h265.codec_string(odd) == "hvc1.A1.6.L93.90.0.8"


# --- the sample entry, against FFmpeg -----------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt"),
    [(320, 240, "yuv420p"), (322, 242, "yuv420p"), (320, 240, "yuv420p10le")],
)
def test_hvcc_and_samples_are_what_ffmpegs_muxer_writes(width: int, height: int, pix_fmt: str):
    encoded = x265(width, height, pix_fmt, params="repeat-headers=1")
    muxed = ffmpeg_mp4(encoded)
    built = h265.sample_entry_from_extradata(encoded.parameter_sets)
    assert muxed.codec_tag == "hvc1"
    assert built.box[86:] == struct.pack(">I4s", 8 + len(muxed.hvcc), b"hvcC") + muxed.hvcc
    assert built.box[4:8] == muxed.hvc1_box[4:8] == b"hvc1"
    assert struct.unpack_from(">HH", built.box, 32) == (width, height)
    assert struct.unpack_from(">HH", muxed.hvc1_box, 32) == (width, height)
    # FFmpeg's box reads back as the same entry (its extra children, e.g. pasp, are skipped).
    theirs = sample_entry_from_box(muxed.hvc1_box)
    assert (theirs.codec_string, theirs.width, theirs.height) == (
        built.codec_string, width, height,
    )
    # Samples: length-prefixed, the in-band VPS/SPS/PPS dropped (hvc1 keeps them in hvcC only).
    assert [built.to_sample(p) for p in encoded.packets] == muxed.samples
    assert sum(h265.NAL_TYPE_VPS in types_of(split_annex_b(p)) for p in encoded.packets) == 2


def test_stored_box_reads_back(entry: h265.HevcSampleEntry) -> None:
    stored = sample_entry_from_box(entry.box)
    assert isinstance(stored, h265.HevcSampleEntry)
    assert stored.box == entry.box
    assert (stored.fourcc, stored.width, stored.height) == (b"hvc1", 320, 240)
    assert stored.codec_string == entry.codec_string == "hvc1.1.6.L60.90"
    assert (entry.need_transform, stored.need_transform) == (True, False)


def test_hvcc_extradata_is_kept_verbatim(entry: h265.HevcSampleEntry) -> None:
    record = entry.box[94:]
    two_byte = bytearray(record)
    two_byte[21] = (two_byte[21] & 0xFC) | 1  # lengthSizeMinusOne = 1
    from_file = sample_entry_from_extradata(bytes(two_byte), "hevc")
    assert from_file.box[94:] == bytes(two_byte)
    assert from_file.need_transform is False
    assert from_file.to_sample(b"\x00\x00\x00\x01junk") == b"\x00\x00\x00\x01junk"
    assert isinstance(from_file, h265.HevcSampleEntry) and from_file.nal_length_size == 2
    idr = nal(19)
    assert from_file.is_key_frame(struct.pack(">H", len(idr)) + idr)


# --- key frames and parameter sets ------------------------------------------------------------


def test_key_frames_are_irap_pictures(entry: h265.HevcSampleEntry, main_320x240: Encoded):
    samples = [entry.to_sample(p) for p in main_320x240.packets]
    assert [entry.is_key_frame(s) for s in samples] == main_320x240.keys
    assert main_320x240.keys.count(True) == 2  # frames 0 (IDR) and 10 (CRA: open GOP)
    for kind in range(16, 24):  # BLA, IDR, CRA, reserved IRAP
        assert entry.is_key_frame(length_prefixed(nal(35), nal(39), nal(kind))), kind
    for kind in (0, 1, 8, 9, 15, 24, 32, 33, 34, 39):  # trailing, RASL, reserved, VPS..SEI
        assert not entry.is_key_frame(length_prefixed(nal(kind))), kind
    assert not entry.is_key_frame(b"")


def test_truncated_sample_names_the_offset(entry: h265.HevcSampleEntry) -> None:
    idr = nal(19)
    message = "truncated at offset 4: NAL unit of 9 bytes, 4 left"
    with pytest.raises(h265.SampleError, match=message):
        entry.is_key_frame(struct.pack(">I", 9) + idr)
    with pytest.raises(h265.SampleError, match="truncated at offset 8: 2 bytes left"):
        entry.is_key_frame(length_prefixed(idr) + b"\x00\x00")


def test_only_repeats_of_the_entrys_parameter_sets_are_dropped(
    entry: h265.HevcSampleEntry, main_320x240: Encoded
) -> None:
    vps, sps, pps = (main_320x240.nal(kind) for kind in PARAMETER_SET_TYPES)
    aud, sei, idr = nal(35, b"\x50"), nal(39), nal(19)
    assert entry.to_sample(annex_b(aud, vps, sps, pps, sei, idr)) == length_prefixed(aud, sei, idr)
    # A different PPS is an update the decoder needs: kept in the sample.
    other_pps = pps[:-1] + bytes([pps[-1] ^ 0x40])
    assert entry.to_sample(annex_b(vps, other_pps, idr)) == length_prefixed(other_pps, idr)
    # Trailing zero bytes (Annex B trailing_zero_8bits) don't make a repeat a new one.
    assert entry.to_sample(annex_b(pps) + b"\x00\x00" + annex_b(idr)) == length_prefixed(idr)
    assert entry.to_sample(annex_b(nal(1))) == length_prefixed(nal(1))


def test_parameter_sets_in_band(entry: h265.HevcSampleEntry, main_320x240: Encoded) -> None:
    vps, sps, pps = (main_320x240.nal(kind) for kind in PARAMETER_SET_TYPES)
    packet = annex_b(nal(35), vps, sps, pps, nal(39), vps, sps, pps, nal(19))
    assert entry.parameter_sets(packet) == (vps, sps, pps)
    assert entry.parameter_sets(annex_b(nal(1))) == ()
    extradata = entry.extradata_from_parameter_sets((vps, sps, pps))
    assert extradata == main_320x240.parameter_sets
    assert h265.sample_entry_from_extradata(extradata).box == entry.box
    for partial in ((sps, pps), (vps, pps), (vps, sps), ()):
        assert entry.extradata_from_parameter_sets(partial) is None


def test_new_parameter_sets_make_a_new_entry(entry: h265.HevcSampleEntry) -> None:
    bigger = x265(640, 480, frames=0)
    new = entry.extradata_from_parameter_sets(entry.parameter_sets(bigger.parameter_sets))
    assert new is not None
    changed = sample_entry_from_extradata(new, "hevc")
    assert (changed.width, changed.height) == (640, 480)
    assert changed.box != entry.box


# --- odd extradata and boxes ------------------------------------------------------------------


def test_odd_extradata_names_what_is_wrong(main_320x240: Encoded) -> None:
    vps, sps, pps = (main_320x240.nal(kind) for kind in PARAMETER_SET_TYPES)
    cases = [
        (b"", "camera sent no VPS/SPS/PPS in its stream setup"),
        (annex_b(sps, pps), "extradata has 0 VPS NAL units; expected at least 1"),
        (annex_b(vps, pps), "extradata has 0 SPS NAL units; expected 1"),
        (annex_b(vps, sps, sps, pps), "extradata has 2 SPS NAL units; expected 1"),
        (annex_b(vps, sps), "extradata has 0 PPS NAL units; expected at least 1"),
        # H.264 SPS/PPS given as H.265: their types read as 51 and 4.
        (annex_b(bytes.fromhex("6742c01e"), bytes.fromhex("68ce3c80")), "0 VPS NAL units"),
        # (the zeros ending sps[:12] go with the next start code: 72 bits again)
        (annex_b(vps, sps[:12], pps), "H.265 SPS truncated at bit 72"),
        (b"\x02" + bytes(30), "HEVCDecoderConfigurationRecord version is 2 at offset 0"),
        (b"\x01" + bytes(10), "HEVCDecoderConfigurationRecord of 11 bytes is too short"),
    ]
    for extradata, message in cases:
        with pytest.raises(h265.H265Error, match=message):
            sample_entry_from_extradata(extradata, "hevc")


def test_odd_records_and_boxes_name_the_offset(entry: h265.HevcSampleEntry) -> None:
    record = entry.box[94:]
    # 23 header bytes, the VPS array (3 + 2 + 24), the SPS array's header and length: 57.
    message = "truncated at offset 57: NAL unit 1 of 1 of type 33 needs 39 bytes, 3 left"
    with pytest.raises(h265.DecoderConfigError, match=message):
        h265.parse_hevc_decoder_config(record[:60])
    no_sps = record[:22] + b"\x01" + record[23 : 23 + 3 + 2 + 24]  # the VPS array only
    with pytest.raises(h265.DecoderConfigError, match="has 0 SPS NAL units; expected 1"):
        h265.parse_hevc_decoder_config(no_sps)
    box = entry.box
    message = f"hvc1 box size field is {len(box)} at offset 0; the data is {len(box) + 1} bytes"
    with pytest.raises(h265.SampleEntryError, match=message):
        sample_entry_from_box(box + b"\x00")
    wrong_size = box[:32] + struct.pack(">HH", 640, 480) + box[36:]
    with pytest.raises(h265.SampleEntryError, match="says 640x480 but its SPS gives 320x240"):
        sample_entry_from_box(wrong_size)
    no_hvcc = box[:86] + b"\x00\x00\x00\x08free"
    no_hvcc = struct.pack(">I", len(no_hvcc)) + no_hvcc[4:]
    with pytest.raises(h265.SampleEntryError, match="hvc1 box has no hvcC child"):
        sample_entry_from_box(no_hvcc)


def test_codecs_moonfire_does_not_record_are_refused_by_name(main_320x240: Encoded) -> None:
    message = r"video codec is mjpeg; moonfire records only H.264 \(h264\) and H.265 \(hevc\)"
    with pytest.raises(UnsupportedCodecError, match=message):
        sample_entry_from_extradata(main_320x240.parameter_sets, "mjpeg")


def test_playback_note_only_for_h265(entry: h265.HevcSampleEntry) -> None:
    note = playback_note(entry.codec_string)
    assert note is not None and note.startswith("H.265 video: VLC, mpv")
    assert playback_note("avc1.640028") is None


# --- end to end: a GStreamer x265enc camera -----------------------------------------------------


@pytest.fixture
def h265_server():
    server = start_server_or_fail(RtspServer())
    yield server
    server.stop()


def test_h265_camera_is_recorded_exported_and_decoded(
    data_dir, h265_server, tmp_path, capsys  # noqa: F811 - data_dir is the imported fixture
) -> None:
    stream_id = add_camera(data_dir, "cam", h265_server.url("h265"))
    assert run_cameras(data_dir, duration_sec=7) == 0
    assert_orderly(data_dir)
    (run,) = assert_runs_well_formed(data_dir, stream_id)
    rows = recordings(data_dir, stream_id)
    frames = sum(r.video_samples for r in rows)
    seconds = sum(r.duration_90k for r in rows) / 90_000
    # The server sends 30 fps from the first key frame on: none of them is lost.
    assert frames >= 0.95 * 30 * seconds and seconds >= 4, (frames, seconds)

    with datadir.open_db(data_dir, read_only=True) as db:
        entry_ids = {r.video_sample_entry_id for r in rows}
        (entry_row,) = [db.get_video_sample_entry(i) for i in entry_ids]
        (part,) = plan_export(db, "cam", rows[0].start_time_90k, rows[-1].end_time_90k)
        data = part.file.read(0, part.file.size)
        for row in rows:  # every recording starts with an IRAP picture
            index = decode_index(db.get_playback(row.composite_id).video_index)
            assert bool(index.is_key[0])
    entry = sample_entry_from_box(entry_row.data)
    assert entry.codec_string == "hvc1.1.6.L60.90" and (entry.width, entry.height) == (320, 240)
    content_type = 'video/mp4; codecs="hvc1.1.6.L60.90"'
    assert part.file.content_type == content_type  # view.mp4
    assert fragment.content_type(entry_row) == content_type  # /api/init/<id>.mp4

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.codec_tag) == ("hevc", "hvc1")
        packets = [p for p in container.demux(stream) if p.size]
        decoded = sum(len(stream.codec_context.decode(p)) for p in packets)
        decoded += len(stream.codec_context.decode(None))
        # No in-band parameter sets left in the samples (hvc1: they are in hvcC only).
        in_band = [h265.nal_type(bytes(p)[4:6]) for p in packets]
    assert len(packets) == frames and decoded == frames, (len(packets), decoded, frames)
    assert not set(in_band) & set(PARAMETER_SET_TYPES)
    assert_live_fragments_decode(entry_row, [bytes(p) for p in packets[: run[0].video_samples]])
    if shutil.which("ffprobe"):
        path = tmp_path / "probe.mp4"
        path.write_bytes(data)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "stream=codec_tag_string", "-of", "csv=p=0", str(path)],
            capture_output=True, text=True, check=True,
        )
        assert probe.stdout.strip() == "hvc1"

    out = tmp_path / "out.mp4"
    code, stdout, stderr = moonfire(
        capsys, "export", "cam", "--data-dir", data_dir, "-o", str(out),
        "--start", str(rows[0].start_time_90k), "--end", str(rows[-1].end_time_90k),
    )
    assert code == 0 and out.read_bytes() == data
    assert f"wrote {out}" in stdout
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {out} is H.265 video: " + h265.PLAYERS.split(": ", 1)[1]]


def assert_live_fragments_decode(entry_row, samples: list[bytes]) -> None:
    """The live view's init segment and one fragment of ``samples`` (a GOP-started recording)
    decode in FFmpeg: the ``hvc1`` entry works in fMP4 too."""
    entry = sample_entry_from_box(entry_row.data)
    trun = [fragment.FragmentSample(3000, len(s), entry.is_key_frame(s)) for s in samples]
    data = fragment.init_segment(entry_row) + fragment.media_segment(1, trun, samples)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec_tag == "hvc1"
        decoded = [f for p in container.demux(stream) for f in stream.codec_context.decode(p)]
    assert len(decoded) == len(samples) and trun[0].is_key


# --- sources: which codecs are taken ----------------------------------------------------------


def test_h265_file_source_is_taken_with_its_hvcc(tmp_path, main_320x240: Encoded) -> None:
    path = tmp_path / "h265.mp4"
    muxed = ffmpeg_mp4(main_320x240)
    path.write_bytes(muxed.data)
    with open_source(str(path), realtime=False) as source:
        assert source.codec == "hevc"
        entry = sample_entry_from_extradata(source.extradata, source.codec)
        packets = list(source.packets())
    assert entry.box[94:] == muxed.hvcc and entry.need_transform is False
    assert [entry.to_sample(p.data) for p in packets] == muxed.samples
    assert [p.is_key for p in packets] == main_320x240.keys


def test_mjpeg_source_is_refused_naming_the_codec(tmp_path) -> None:
    path = tmp_path / "mjpeg.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame.reformat(format="yuvj420p")))
        out.mux(stream.encode(None))
    message = r"video codec is mjpeg; moonfire records only H.264 \(h264\) and H.265 \(hevc\)"
    with pytest.raises(SourceError, match=message):
        open_source(str(path), realtime=False)
