"""RTP over RTSP (TCP interleaved) → access units (``moonfire_core.rtp``), run against both twins.

Every test takes ``impl`` and so runs against the compiled module and the pure-Python twin; the
expected values are written out (or, for the fuzz tests, are what ``_rtp_py`` does), so a test
passing for both means the twins agree.  The RTP packets are built here, with ``struct``, the
way a camera packetizes (RFC 3550 header; RFC 6184 single NAL unit, STAP-A and FU-A; RFC 7798
single NAL unit, AP and FU), so a broken packetizer can't hide behind a shared helper.
"""

from __future__ import annotations

import array
import random
import re
import struct
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonfire_core import _rtp_py as reference
from moonfire_core._annexb_py import split_annex_b
from moonfire_core._errors import RtpError
from tests.support.implementations import Implementation

#: The interleaved channels ``moonfire.ingest.rtsp`` asks for: RTP on 0, RTCP on 1.
VIDEO = 0
RTCP = VIDEO + 1
START_CODE = b"\x00\x00\x00\x01"

# H.264 NAL units (RFC 6184 looks only at the header byte: forbidden bit, NRI, type).
SPS = bytes.fromhex("674d00299a6603c0113f2cd404040500000303e80000ea6004")
PPS = bytes.fromhex("68ee3c80")
IDR = b"\x65" + bytes(range(1, 256)) * 3  # type 5, longer than one packet
P_SLICE = b"\x41" + bytes(range(255, 0, -1)) * 2  # type 1
SEI = b"\x06\x05\x10" + bytes(16) + b"\x80"
#: The smallest picture: an AU holds at least one slice (parameter sets alone don't end one).
SLICE = b"\x41\x9a\x02"  # type 1

# H.265 NAL units: a 2-byte header (F, type << 1, layer id, temporal id + 1).
VPS_265 = b"\x40\x01\x0c\x01\xff\xff"
SPS_265 = b"\x42\x01\x01\x01\x60\x00"
PPS_265 = b"\x44\x01\xc1\x72\xb4"
IDR_265 = b"\x26\x01" + bytes(range(1, 256)) * 3  # IDR_W_RADL (19)
TRAIL_265 = b"\x02\x01" + bytes(range(255, 0, -1)) * 2  # TRAIL_R (1)
SLICE_265 = b"\x02\x01\xaf"  # TRAIL_R, small

RTSP_ANSWER = b"RTSP/1.0 200 OK\r\nCSeq: 7\r\nSession: 12345678\r\n\r\n"


# ---- building the byte stream ----


def rtp_packet(
    payload: bytes, sequence: int, timestamp: int, *, marker: bool = False,
    payload_type: int = 96, ssrc: int = 0x1234ABCD, csrcs: Sequence[int] = (),
    extension: bytes | None = None, padding: int = 0,
) -> bytes:
    """An RTP packet (RFC 3550 §5.1): ``extension`` is the extension's data (a multiple of 4
    bytes), ``padding`` how many padding bytes to add (the last one counts them)."""
    first = (2 << 6) | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    header = struct.pack(
        ">BBHII", first | len(csrcs), (0x80 if marker else 0) | payload_type,
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc,
    )
    header += b"".join(struct.pack(">I", csrc) for csrc in csrcs)
    if extension is not None:
        assert len(extension) % 4 == 0
        header += struct.pack(">HH", 0xBEDE, len(extension) // 4) + extension
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def interleaved(packet: bytes, channel: int = VIDEO) -> bytes:
    """One RFC 2326 §10.12 interleaved frame: ``$``, channel, 16-bit length, data."""
    return b"$" + bytes([channel]) + struct.pack(">H", len(packet)) + packet


def annex_b(*nals: bytes) -> bytes:
    """What the depacketizer hands out: each NAL unit behind a 4-byte start code."""
    return b"".join(START_CODE + nal for nal in nals)


def fu_a(nal: bytes, piece_bytes: int) -> list[bytes]:
    """RFC 6184 §5.8: ``nal`` split into FU-A payloads of up to ``piece_bytes`` of its body."""
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    pieces = [body[i : i + piece_bytes] for i in range(0, max(len(body), 1), piece_bytes)]
    return [
        bytes([indicator, (0x80 if i == 0 else 0) | (0x40 if i == len(pieces) - 1 else 0)
               | (nal[0] & 0x1F)]) + piece
        for i, piece in enumerate(pieces)
    ]


def stap_a(*nals: bytes) -> bytes:
    """RFC 6184 §5.7.1: one STAP-A payload holding ``nals`` (its NRI is their largest)."""
    nri = max((nal[0] & 0x60 for nal in nals), default=0x60)
    return bytes([nri | 24]) + b"".join(struct.pack(">H", len(nal)) + nal for nal in nals)


def hevc_fu(nal: bytes, piece_bytes: int) -> list[bytes]:
    """RFC 7798 §4.4.3: ``nal`` split into FU payloads of up to ``piece_bytes`` of its body."""
    header = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
    nal_type = (nal[0] >> 1) & 0x3F
    body = nal[2:]
    pieces = [body[i : i + piece_bytes] for i in range(0, max(len(body), 1), piece_bytes)]
    return [
        header + bytes([(0x80 if i == 0 else 0) | (0x40 if i == len(pieces) - 1 else 0)
                        | nal_type]) + piece
        for i, piece in enumerate(pieces)
    ]


def hevc_ap(*nals: bytes) -> bytes:
    """RFC 7798 §4.4.2: one AP payload holding ``nals`` (layer 0, temporal id 0)."""
    return bytes([48 << 1, 0x01]) + b"".join(struct.pack(">H", len(nal)) + nal for nal in nals)


def packetize(codec: str, nals: Sequence[bytes], mtu: int, aggregate: bool) -> list[bytes]:
    """The RTP payloads of one AU, as a camera with that MTU would send them: NAL units
    over ``mtu`` bytes in fragments, runs of small ones in aggregation packets if ``aggregate``,
    the rest one per packet."""
    fragments, aggregation = (fu_a, stap_a) if codec == "h264" else (hevc_fu, hevc_ap)
    payloads: list[bytes] = []
    run: list[bytes] = []

    def close_run() -> None:
        if len(run) > 1:
            payloads.append(aggregation(*run))
        else:
            payloads.extend(run)
        run.clear()

    for nal in nals:
        if len(nal) > mtu:
            close_run()
            payloads.extend(fragments(nal, mtu))
        elif aggregate and sum(2 + len(n) for n in run) + 2 + len(nal) + 2 <= mtu:
            run.append(nal)
        else:
            close_run()
            if aggregate:
                run.append(nal)
            else:
                payloads.append(nal)
    close_run()
    return payloads


class Camera:
    """Numbers RTP packets as a camera does and frames them for TCP interleaving."""

    def __init__(self, sequence: int = 1000, channel: int = VIDEO) -> None:
        self.sequence = sequence
        self.channel = channel

    def send(self, payload: bytes, timestamp: int, marker: bool = False, **header: Any) -> bytes:
        """One packet's interleaved frame; the next one gets the next sequence number."""
        packet = rtp_packet(payload, self.sequence, timestamp, marker=marker, **header)
        self.sequence = (self.sequence + 1) & 0xFFFF
        return interleaved(packet, self.channel)

    def lose(self, count: int = 1) -> None:
        """Sequence numbers that never arrive (the packets were lost)."""
        self.sequence = (self.sequence + count) & 0xFFFF

    def access_unit(self, payloads: Iterable[bytes], timestamp: int, marker: bool = True) -> bytes:
        """An AU's packets, the marker bit on the last one."""
        payloads = list(payloads)
        return b"".join(
            self.send(payload, timestamp, marker and i == len(payloads) - 1)
            for i, payload in enumerate(payloads)
        )


def rtcp_sender_report() -> bytes:
    """An RTCP SR (RFC 3550 §6.4.1) as a camera sends on the odd channel: not RTP at all."""
    return struct.pack(">BBHIIIIII", 0x80, 200, 6, 0x1234ABCD, 1, 2, 3, 4, 5)


def push_all(depacketizer: Any, chunks: Iterable[bytes], received_ns: int = 0) -> list[tuple]:
    frames: list[tuple] = []
    for chunk in chunks:
        frames += depacketizer.push(chunk, received_ns)
    return frames


def error_of(depacketizer: Any, data: bytes) -> str:
    """The message of the ``RtpError`` pushing ``data`` raises (the test fails if none)."""
    with pytest.raises(RtpError) as caught:
        depacketizer.push(data, 0)
    return str(caught.value)


# ---- H.264 ----


def test_h264_single_nal_unit_packets_make_one_access_unit_ended_by_the_marker(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([SPS, PPS, SEI, IDR[:200]], 90_000)
    assert depacketizer.push(data, 5) == [(annex_b(SPS, PPS, SEI, IDR[:200]), 90_000, True, 5)]
    assert (depacketizer.packets, depacketizer.packets_lost, depacketizer.frames_dropped) == (
        4, 0, 0)
    assert depacketizer.offset == len(data)


def test_h264_stap_a_units_come_out_one_by_one_and_an_idr_inside_makes_it_key(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([stap_a(SPS, PPS, IDR[:100])], 3000)
    data += camera.access_unit([stap_a(b"\x09\xf0", P_SLICE[:50])], 6000)
    assert depacketizer.push(data, 1) == [
        (annex_b(SPS, PPS, IDR[:100]), 3000, True, 1),
        (annex_b(b"\x09\xf0", P_SLICE[:50]), 6000, False, 1),
    ]


def test_h264_stap_a_skips_zero_size_units_and_an_empty_one_gives_no_access_unit(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    with_empty_unit = bytes([0x78]) + b"\x00\x00" + struct.pack(">H", len(SLICE)) + SLICE
    data = camera.access_unit([with_empty_unit], 3000)
    data += camera.access_unit([bytes([0x78])], 6000)  # a STAP-A holding nothing
    assert depacketizer.push(data, 0) == [(annex_b(SLICE), 3000, False, 0)]
    assert depacketizer.frames_dropped == 0  # the empty AU is neither handed out nor counted


def test_h264_fu_a_start_middle_end_rebuilds_the_nal_unit_header(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    pieces = fu_a(IDR, 300)
    assert len(pieces) == 3 and [p[1] & 0xC0 for p in pieces] == [0x80, 0x00, 0x40]
    frames = depacketizer.push(camera.access_unit([SPS, PPS, *pieces], 1234), 9)
    assert frames == [(annex_b(SPS, PPS, IDR), 1234, True, 9)]


def test_h264_fu_a_keeps_the_nri_and_forbidden_bit_of_the_fu_indicator(impl) -> None:
    nal = bytes([0x80 | 0x20 | 1]) + b"payload bytes"  # forbidden bit set, NRI 1, type 1
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    frames = depacketizer.push(Camera().access_unit(fu_a(nal, 5), 0), 0)
    assert frames == [(annex_b(nal), 0, False, 0)]


def test_h264_lost_middle_fragment_drops_that_frame_and_counts_the_loss(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    first, middle, last = fu_a(IDR, 300)
    data = camera.access_unit([SPS, PPS, first, middle, last], 3000)
    data += camera.send(fu_a(P_SLICE, 200)[0], 6000)
    camera.lose()
    data += camera.send(fu_a(P_SLICE, 200)[2], 6000, marker=True)
    data += camera.access_unit([P_SLICE], 9000)
    assert depacketizer.push(data, 0) == [
        (annex_b(SPS, PPS, IDR), 3000, True, 0),
        (annex_b(P_SLICE), 9000, False, 0),
    ]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (1, 1)


def test_h264_fragment_whose_start_never_came_drops_its_frame(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    _, middle, last = fu_a(IDR, 300)
    data = camera.access_unit([middle, last], 3000)  # joined mid-FU: no gap, no start
    data += camera.access_unit([P_SLICE], 6000)
    assert depacketizer.push(data, 0) == [(annex_b(P_SLICE), 6000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (0, 1)


def test_h264_fu_still_open_at_the_marker_drops_the_frame(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    first, middle, _ = fu_a(IDR, 300)
    data = camera.access_unit([first, middle], 3000)  # the marker on a middle fragment
    data += camera.access_unit([P_SLICE], 6000)
    assert depacketizer.push(data, 0) == [(annex_b(P_SLICE), 6000, False, 0)]
    assert depacketizer.frames_dropped == 1


def test_h264_new_nal_unit_while_an_fu_is_open_drops_the_frame(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    first, _, _ = fu_a(IDR, 300)
    second_start = fu_a(P_SLICE, 100)[0]
    data = camera.access_unit([first, PPS], 3000)  # a whole NAL unit interrupts the FU
    data += camera.access_unit([first, second_start], 6000)  # a new FU start interrupts it
    data += camera.access_unit([P_SLICE], 9000)
    assert depacketizer.push(data, 0) == [(annex_b(P_SLICE), 9000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (0, 2)


@pytest.mark.parametrize(
    ("nal_type", "name"),
    [(0, "reserved"), (25, "STAP-B"), (26, "MTAP16"), (27, "MTAP24"), (29, "FU-B"),
     (30, "reserved"), (31, "reserved")],
)
def test_h264_unsupported_payload_types_are_an_error_naming_them(
    impl, nal_type: int, name: str
) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    good = Camera(5).access_unit([P_SLICE], 0)
    depacketizer.push(good, 0)
    bad = interleaved(rtp_packet(bytes([0x60 | nal_type, 1, 2, 3]), 6, 0))
    assert error_of(depacketizer, bad) == (
        f"RTP packet at stream offset {len(good)}: H.264 payload type {nal_type} ({name}) "
        "is not supported"
    )


# ---- H.265 ----


def test_hevc_single_nal_unit_packets_make_one_key_access_unit(impl) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    nals = [VPS_265, SPS_265, PPS_265, IDR_265[:300]]
    frames = depacketizer.push(Camera().access_unit(nals, 90_000), 2)
    assert frames == [(annex_b(*nals), 90_000, True, 2)]


def test_hevc_aggregation_packet_units_come_out_one_by_one(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    data = camera.access_unit([hevc_ap(VPS_265, SPS_265, PPS_265), IDR_265[:100]], 3000)
    data += camera.access_unit([hevc_ap(TRAIL_265[:40], TRAIL_265[:30])], 6000)
    assert depacketizer.push(data, 0) == [
        (annex_b(VPS_265, SPS_265, PPS_265, IDR_265[:100]), 3000, True, 0),
        (annex_b(TRAIL_265[:40], TRAIL_265[:30]), 6000, False, 0),
    ]


def test_hevc_fu_rebuilds_the_two_byte_nal_unit_header(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    # F bit, the high bit of the layer id and a temporal id of 3 survive the FU header.
    odd_header = bytes([0x80 | (19 << 1) | 1, (5 << 3) | 3]) + bytes(range(200))
    pieces = hevc_fu(odd_header, 64)
    assert len(pieces) == 4
    frames = depacketizer.push(camera.access_unit(pieces, 3000), 0)
    assert frames == [(annex_b(odd_header), 3000, True, 0)]


def test_hevc_lost_middle_fragment_drops_that_frame_and_counts_the_loss(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    pieces = hevc_fu(IDR_265, 200)
    data = camera.access_unit([VPS_265, *pieces], 3000)
    data += camera.access_unit(hevc_fu(TRAIL_265, 200)[:1], 6000, marker=False)
    camera.lose(2)
    data += camera.access_unit([hevc_fu(TRAIL_265, 200)[-1]], 6000)
    data += camera.access_unit([TRAIL_265], 9000)
    assert depacketizer.push(data, 0) == [
        (annex_b(VPS_265, IDR_265), 3000, True, 0),
        (annex_b(TRAIL_265), 9000, False, 0),
    ]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (2, 1)


@pytest.mark.parametrize(
    ("nal_type", "is_key"),
    [(1, False), (15, False), (16, True), (19, True), (20, True), (21, True), (23, True),
     (24, False), (32, False), (39, False)],
)
def test_hevc_key_frames_are_the_irap_nal_types_16_to_23(impl, nal_type: int, is_key: bool) -> None:
    nal = bytes([nal_type << 1, 1]) + b"slice"
    # Each AU ends with a picture (types 32 and 39 alone would wait for one).
    for payloads in ([nal, SLICE_265], [*hevc_fu(nal, 2), SLICE_265],
                     [hevc_ap(nal, PPS_265, SLICE_265)]):
        depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
        frames = depacketizer.push(Camera().access_unit(payloads, 0), 0)
        assert [frame[2] for frame in frames] == [is_key]


@pytest.mark.parametrize(
    ("nal_type", "name"), [(50, "PACI"), (51, "unspecified"), (63, "unspecified")]
)
def test_hevc_unsupported_payload_types_are_an_error_naming_them(
    impl, nal_type: int, name: str
) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    bad = interleaved(rtp_packet(bytes([nal_type << 1, 1, 2, 3]), 6, 0))
    assert error_of(depacketizer, bad) == (
        f"RTP packet at stream offset 0: H.265 payload type {nal_type} ({name}) is not supported"
    )


# ---- access unit boundaries, loss, sequence and timestamp wrap ----


def test_a_marker_on_parameter_sets_or_a_leading_sei_does_not_split_the_picture(impl) -> None:
    # Some cameras set the marker bit on every NAL unit's packet, SPS and PPS included (Retina
    # works around the same); a split would leave the IDR without its parameter sets and give
    # two AUs at one timestamp, which the recorder takes for a broken run.
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = b"".join(camera.send(nal, 9000, marker=True) for nal in (SPS, PPS, IDR[:80]))
    data += b"".join(camera.send(nal, 12000, marker=True) for nal in (SEI, P_SLICE[:40]))
    assert depacketizer.push(data, 3) == [
        (annex_b(SPS, PPS, IDR[:80]), 9000, True, 3),
        (annex_b(SEI, P_SLICE[:40]), 12000, False, 3),
    ]
    assert depacketizer.frames_dropped == 0


def test_parameter_sets_at_a_timestamp_of_their_own_go_with_the_next_picture(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([SPS, PPS], 8999) + camera.access_unit([IDR[:60]], 9000)
    assert depacketizer.push(data, 0) == [(annex_b(SPS, PPS, IDR[:60]), 9000, True, 0)]


def test_h265_parameter_sets_with_the_marker_stay_with_their_irap(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("hevc", VIDEO)
    nals = (VPS_265, SPS_265, PPS_265, IDR_265[:70])
    data = b"".join(camera.send(nal, 3000, marker=True) for nal in nals)
    data += camera.access_unit([hevc_ap(VPS_265, SPS_265)], 6000)  # no picture yet: held
    assert depacketizer.push(data, 0) == [(annex_b(*nals), 3000, True, 0)]
    assert depacketizer.push(camera.access_unit([SLICE_265], 6000), 0) == [
        (annex_b(VPS_265, SPS_265, SLICE_265), 6000, False, 0)]


def test_parameter_sets_after_a_loss_are_dropped_as_one_corrupt_unit(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.send(SPS, 3000)
    camera.lose()
    data += camera.send(PPS, 3000, marker=True)  # corrupt, and no picture: still ends here
    data += camera.access_unit([SLICE], 6000)
    assert depacketizer.push(data, 0) == [(annex_b(SLICE), 6000, False, 0)]
    assert depacketizer.frames_dropped == 1


def test_a_timestamp_change_ends_an_access_unit_whose_marker_never_came(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    frames = depacketizer.push(camera.access_unit([SPS, PPS, IDR[:99]], 3000, marker=False), 1)
    assert frames == []  # it may go on
    frames = depacketizer.push(camera.access_unit([P_SLICE], 6000), 2)
    assert frames == [
        (annex_b(SPS, PPS, IDR[:99]), 3000, True, 1),
        (annex_b(P_SLICE), 6000, False, 2),
    ]
    assert depacketizer.frames_dropped == 0


def test_an_access_unit_carries_the_receive_time_of_the_push_completing_its_first_packet(
    impl,
) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    first = camera.send(SPS, 3000)
    rest = camera.access_unit([PPS, IDR[:50]], 3000)
    assert depacketizer.push(first[:5], 100) == []
    assert depacketizer.push(first[5:] + rest[:3], 200) == []
    assert depacketizer.push(rest[3:], 300) == [(annex_b(SPS, PPS, IDR[:50]), 3000, True, 200)]


def test_a_gap_inside_an_access_unit_drops_it_and_the_next_one_is_kept(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.send(SPS, 3000)
    camera.lose(3)
    data += camera.access_unit([PPS, IDR[:50]], 3000)
    data += camera.access_unit([P_SLICE], 6000)
    assert depacketizer.push(data, 0) == [(annex_b(P_SLICE), 6000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (3, 1)


def test_a_gap_between_an_unended_access_unit_and_the_next_drops_both(impl) -> None:
    """The lost packets may have been the end of one or the start of the other."""
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([P_SLICE], 3000, marker=False)
    camera.lose()
    data += camera.access_unit([P_SLICE], 6000)
    data += camera.access_unit([P_SLICE[:10]], 9000)
    assert depacketizer.push(data, 0) == [(annex_b(P_SLICE[:10]), 9000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (1, 2)


def test_a_gap_after_a_marker_drops_only_the_access_unit_after_it(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([P_SLICE], 3000)
    camera.lose()
    data += camera.access_unit([P_SLICE[:20]], 9000)  # its first packet may have been lost
    data += camera.access_unit([P_SLICE[:30]], 12000)
    assert depacketizer.push(data, 0) == [
        (annex_b(P_SLICE), 3000, False, 0), (annex_b(P_SLICE[:30]), 12000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (1, 1)


def test_sequence_numbers_wrapping_at_65535_are_no_loss(impl) -> None:
    camera = Camera(sequence=65533)
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([SPS, PPS, *fu_a(IDR, 200)], 3000)  # 65533 .. 65535, 0 .. 2
    assert camera.sequence == 3
    assert depacketizer.push(data, 0) == [(annex_b(SPS, PPS, IDR), 3000, True, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (0, 0)


def test_a_gap_across_the_sequence_wrap_counts_the_missing_packets(impl) -> None:
    camera = Camera(sequence=65534)
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.access_unit([P_SLICE], 3000)  # 65534
    camera.lose(3)  # 65535, 0, 1
    data += camera.access_unit([P_SLICE], 6000)  # 2: dropped
    data += camera.access_unit([P_SLICE[:9]], 9000)
    assert depacketizer.push(data, 0) == [
        (annex_b(P_SLICE), 3000, False, 0), (annex_b(P_SLICE[:9]), 9000, False, 0)]
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (3, 1)


def test_rtp_timestamps_are_unwrapped_past_32_bits_and_may_step_back(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    stamps = [0xFFFF_F000, 0x0000_0BB8, 0x0000_0000, 0x0000_1770]  # wrap, B-frame, forward
    data = b"".join(camera.access_unit([P_SLICE[:8]], stamp) for stamp in stamps)
    frames = depacketizer.push(data, 0)
    assert [frame[1] for frame in frames] == [
        0xFFFF_F000, 0x1_0000_0BB8, 0x1_0000_0000, 0x1_0000_1770]


def test_flush_counts_a_pending_access_unit_as_dropped_and_an_empty_flush_not(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    depacketizer.flush()
    assert depacketizer.frames_dropped == 0
    assert depacketizer.push(camera.access_unit([SPS, PPS], 3000, marker=False), 0) == []
    depacketizer.flush()
    assert depacketizer.frames_dropped == 1
    depacketizer.flush()
    assert depacketizer.frames_dropped == 1
    # After the flush the same timestamp starts a fresh AU: nothing of the old one is in it.
    assert depacketizer.push(camera.access_unit([IDR[:9]], 3000), 0) == [
        (annex_b(IDR[:9]), 3000, True, 0)]


def test_an_access_unit_over_max_frame_bytes_is_an_error_and_one_at_it_is_not(impl) -> None:
    nals = [SPS, PPS, IDR]
    size = len(annex_b(*nals))
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO, max_frame_bytes=size)
    camera = Camera()
    assert depacketizer.push(camera.access_unit(packetize("h264", nals, 300, False), 0), 0) == [
        (annex_b(*nals), 0, True, 0)]
    offset = depacketizer.offset
    too_big = packetize("h264", [*nals, b"\x0c\xff"], 300, False)
    data = camera.access_unit(too_big, 3000)
    last_frame_offset = offset + len(data) - len(interleaved(rtp_packet(b"\x0c\xff", 0, 0)))
    assert error_of(depacketizer, data) == (
        f"RTP packet at stream offset {last_frame_offset}: access unit at RTP timestamp 3000 "
        f"grows to {size + 6} bytes, over max_frame_bytes ({size})"
    )


# ---- the interleaved byte stream ----


def mixed_stream(camera: Camera) -> bytes:
    """Several AUs of every packetization, with RTCP and another channel's frames among them."""
    data = camera.access_unit([stap_a(SPS, PPS), *fu_a(IDR, 100)], 3000)
    data += interleaved(rtcp_sender_report(), RTCP)
    data += camera.access_unit([b"\x09\xf0", *fu_a(P_SLICE, 70)], 6000)
    data += interleaved(b"", 7) + interleaved(b"audio" * 10, 2)
    data += camera.access_unit([P_SLICE[:40]], 9000, marker=False)
    data += camera.access_unit([P_SLICE[:41], P_SLICE[:42]], 12000)
    return data


def test_rtcp_and_other_channels_are_skipped_but_counted_in_the_offset(impl) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = mixed_stream(Camera())
    frames = depacketizer.push(data, 0)
    assert [frame[1] for frame in frames] == [3000, 6000, 9000, 12000]
    assert (depacketizer.packets, depacketizer.packets_lost, depacketizer.offset) == (
        (1 + 8) + (1 + 8) + 1 + 2, 0, len(data))
    # A camera whose SETUP answered with channels 6-7: channel 0 is now someone else's.
    on_six = impl.rtp.RtpDepacketizer("h264", 6)
    assert on_six.push(data, 0) == [] and on_six.packets == 0
    frames = on_six.push(Camera(channel=6).access_unit([SLICE], 1), 0)
    assert frames == [(annex_b(SLICE), 1, False, 0)]


def test_a_stream_split_at_every_byte_gives_what_one_push_gives(impl) -> None:
    data = mixed_stream(Camera())
    whole = impl.rtp.RtpDepacketizer("h264", VIDEO)
    expected = whole.push(data, 0)
    assert len(expected) == 4
    for cut in range(len(data) + 1):
        depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
        assert push_all(depacketizer, [data[:cut], data[cut:]]) == expected, cut
        assert (depacketizer.offset, depacketizer.packets) == (whole.offset, whole.packets)
    one_by_one = impl.rtp.RtpDepacketizer("h264", VIDEO)
    assert push_all(one_by_one, [data[i : i + 1] for i in range(len(data))]) == expected
    assert not one_by_one.at_message and one_by_one.take_unparsed() == b""


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda data: array.array("B", data),
     lambda data: memoryview(b"head" + data + b"tail")[4:-4],
     lambda data: np.frombuffer(data, dtype=np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "array", "memoryview slice", "numpy"],
)
def test_any_contiguous_bytes_like_input_is_accepted(impl, wrap) -> None:
    data = mixed_stream(Camera())
    expected = reference.RtpDepacketizer("h264", VIDEO).push(data, 0)
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    cut = len(data) // 2 + 3
    frames = depacketizer.push(wrap(data[:cut]), 0) + depacketizer.push(wrap(data[cut:]), 0)
    assert frames == expected
    assert all(type(frame[0]) is bytes for frame in frames)


def test_a_reused_receive_buffer_does_not_change_a_frame_cut_by_the_push_end(impl) -> None:
    """``moonfire.ingest.rtsp`` pushes views of one buffer it reads every recv into."""
    data = mixed_stream(Camera())
    expected = reference.RtpDepacketizer("h264", VIDEO).push(data, 0)
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    buffer = bytearray(64)
    view = memoryview(buffer)
    frames = []
    for start in range(0, len(data), 64):
        chunk = data[start : start + 64]
        buffer[: len(chunk)] = chunk
        frames += depacketizer.push(view[: len(chunk)], 0)
        buffer[:] = b"\xee" * 64  # the next recv overwrites it
    assert frames == expected


def test_non_buffer_and_strided_input_give_the_errors_every_core_twin_gives(impl) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    with pytest.raises(TypeError) as caught:
        depacketizer.push("$\x00\x00\x00", 0)
    assert str(caught.value) == "a bytes-like object is required, not 'str'"
    with pytest.raises(BufferError) as strided:
        depacketizer.push(memoryview(b"$\x00\x00\x00" * 2)[::2], 0)
    assert str(strided.value) == "a contiguous buffer is required, not a strided 'memoryview'"
    assert depacketizer.push(Camera().access_unit([SLICE], 0), 0) == [
        (annex_b(SLICE), 0, False, 0)]


def test_received_ns_must_be_a_64_bit_integer(impl) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    packet = Camera().access_unit([SLICE], 0)
    for value, error, message in [
        (2**63, OverflowError, "received_ns 9223372036854775808 does not fit in 64 bits"),
        (-(2**63) - 1, OverflowError, "received_ns -9223372036854775809 does not fit in 64 bits"),
        (True, TypeError, "received_ns must be an integer, not bool"),
        (1.0, TypeError, "received_ns must be an integer, not float"),
        (None, TypeError, "received_ns must be an integer, not NoneType"),
    ]:
        with pytest.raises(error) as caught:
            depacketizer.push(packet, value)
        assert str(caught.value) == message
    assert depacketizer.packets == 0  # the bad calls consumed nothing
    assert depacketizer.push(packet, np.int64(-(2**63))) == [
        (annex_b(SLICE), 0, False, -(2**63))]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (("mjpeg", 0), ValueError, "unsupported RTP video codec 'mjpeg' (h264 or hevc)"),
        ((b"h264", 0), ValueError, "unsupported RTP video codec b'h264' (h264 or hevc)"),
        (("h264", -1), ValueError, "channel must be 0..255, got -1"),
        (("h264", 256), ValueError, "channel must be 0..255, got 256"),
        (("h264", "0"), TypeError, "channel must be an integer, not str"),
        (("h264", False), TypeError, "channel must be an integer, not bool"),
        (("h264", 0, 0), ValueError, "max_frame_bytes must be 1..1073741824, got 0"),
        (("h264", 0, 2**30 + 1), ValueError,
         "max_frame_bytes must be 1..1073741824, got 1073741825"),
        (("h264", 0, 1e6), TypeError, "max_frame_bytes must be an integer, not float"),
    ],
    ids=["codec", "codec bytes", "channel -1", "channel 256", "channel str", "channel bool",
         "max 0", "max too big", "max float"],
)
def test_bad_constructor_arguments_give_the_same_error_and_message(
    impl, arguments: tuple, error: type[Exception], message: str
) -> None:
    codec, channel, *rest = arguments
    keywords = {"max_frame_bytes": rest[0]} if rest else {}
    with pytest.raises(error) as caught:
        impl.rtp.RtpDepacketizer(codec, channel, **keywords)
    assert str(caught.value) == message


# ---- an RTSP message between the frames ----


def test_an_rtsp_message_between_frames_stops_the_push_until_taken(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    before = camera.access_unit([SPS, PPS, IDR[:30]], 3000)
    after = camera.access_unit([P_SLICE[:30]], 6000)
    assert not depacketizer.at_message
    frames = depacketizer.push(before + RTSP_ANSWER + after, 1)
    assert frames == [(annex_b(SPS, PPS, IDR[:30]), 3000, True, 1)]
    assert depacketizer.at_message and depacketizer.offset == len(before)
    # More bytes while the message waits are kept behind it, not parsed.
    assert depacketizer.push(after, 2) == []
    unparsed = depacketizer.take_unparsed()
    assert unparsed == RTSP_ANSWER + after + after
    assert not depacketizer.at_message and depacketizer.take_unparsed() == b""
    assert depacketizer.push(unparsed[len(RTSP_ANSWER) :], 3) == [
        (annex_b(P_SLICE[:30]), 6000, False, 3)]
    # The second copy repeats sequence number and timestamp: its own AU, after a "gap".
    assert depacketizer.offset == len(before) + 2 * len(after)
    assert depacketizer.packets_lost == 0xFFFF and depacketizer.frames_dropped == 1


def test_an_rtsp_message_cut_by_the_push_end_is_taken_whole_later(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    first = camera.access_unit([SLICE], 3000)
    second = camera.access_unit([SPS], 6000)
    data = first + RTSP_ANSWER + second
    cut = len(first) + 10
    assert depacketizer.push(data[:cut], 0) == [(annex_b(SLICE), 3000, False, 0)]
    assert depacketizer.at_message
    pending = depacketizer.take_unparsed()
    assert pending == RTSP_ANSWER[:10]
    assert depacketizer.push(pending + data[cut:], 0) == []  # still at the message
    assert depacketizer.take_unparsed() == RTSP_ANSWER + second


def test_an_rtsp_message_at_the_very_start_and_a_lone_dollar_sign(impl) -> None:
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    request = b"GET_PARAMETER rtsp://cam/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    assert depacketizer.push(request, 0) == [] and depacketizer.at_message
    assert depacketizer.take_unparsed() == request
    assert depacketizer.push(b"$", 0) == [] and not depacketizer.at_message  # a frame's start
    assert depacketizer.take_unparsed() == b"$"
    assert depacketizer.push(b"R", 0) == [] and depacketizer.at_message


# ---- odd and broken packets ----


def test_csrcs_extension_and_padding_are_skipped(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.send(SPS, 3000, csrcs=(1, 2, 15))
    data += camera.send(PPS, 3000, extension=b"\x10\xaa\xbb\x00" * 3)
    data += camera.send(IDR[:40], 3000, padding=7)
    data += camera.send(IDR[40:41], 3000, padding=1)  # the count byte alone
    data += camera.send(IDR[:20], 3000, marker=True, csrcs=[9] * 15, extension=b"", padding=255)
    frames = depacketizer.push(data, 0)
    assert frames == [(annex_b(SPS, PPS, IDR[:40], IDR[40:41], IDR[:20]), 3000, True, 0)]


def test_payload_type_and_ssrc_are_not_looked_at(impl) -> None:
    camera = Camera()
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    data = camera.send(SPS, 3000, payload_type=0, ssrc=1)
    data += camera.send(SLICE, 3000, marker=True, payload_type=127, ssrc=2)
    assert depacketizer.push(data, 0) == [(annex_b(SPS, SLICE), 3000, False, 0)]


def odd_packet_cases() -> list[tuple[str, str, bytes, str]]:
    """(id, codec, RTP packet, what the error message says after the offset)."""
    header = struct.pack(">BBHII", 0x80, 0xE0, 7, 3000, 1)

    def with_first_byte(first: int, rest: bytes) -> bytes:
        return bytes([first]) + header[1:] + rest

    return [
        ("version 0", "h264", with_first_byte(0x00, PPS), "version 0, expected 2"),
        ("version 1", "h264", with_first_byte(0x40, PPS), "version 1, expected 2"),
        ("version 3", "hevc", with_first_byte(0xC0, PPS_265), "version 3, expected 2"),
        ("zero-length frame", "h264", b"", "0 bytes, shorter than its 12-byte header"),
        ("truncated header", "h264", header[:11], "11 bytes, shorter than its 12-byte header"),
        ("version checked after size", "h264", b"\x00" * 5,
         "5 bytes, shorter than its 12-byte header"),
        ("header only", "h264", header, "empty payload"),
        ("header only hevc", "hevc", header, "empty payload"),
        ("csrcs past the end", "h264", with_first_byte(0x8F, b"\x00" * 8 + PPS),
         "24 bytes, shorter than its 72-byte header"),
        ("csrcs and no payload", "h264", with_first_byte(0x81, b"\x00" * 4), "empty payload"),
        ("extension header cut", "h264", with_first_byte(0x90, b"\xbe\xde"),
         "14 bytes, shorter than its 16-byte header"),
        ("extension words past the end", "h264", with_first_byte(0x90, b"\xbe\xde\x00\x03" + PPS),
         "20 bytes, shorter than its 28-byte header"),
        ("extension and no payload", "h264", with_first_byte(0x90, b"\xbe\xde\x00\x00"),
         "empty payload"),
        ("padding count 0", "h264", with_first_byte(0xA0, PPS + b"\x00"),
         "padding bit set but the padding count is 0"),
        ("padding past the header", "h264", with_first_byte(0xA0, PPS + b"\x06"),
         "6 bytes of padding, more than the 5 bytes after the 12-byte header"),
        ("padding is all of it", "h264", with_first_byte(0xA0, b"\x00\x00\x03"),
         "empty payload"),
        ("padding into the csrcs", "h264", with_first_byte(0xA1, b"\x00" * 4 + b"\x02"),
         "2 bytes of padding, more than the 1 bytes after the 16-byte header"),
        ("fu-a without its header", "h264", header + b"\x7c",
         "FU-A payload of 1 bytes has no FU header"),
        ("stap-a size cut", "h264", header + b"\x78\x00\x02\x68\xee\x01",
         "STAP-A size field at payload byte 5 runs past the 6-byte payload"),
        ("stap-a unit past the end", "h264", header + b"\x78\x00\x05\x68\xee",
         "STAP-A NAL unit of 5 bytes at payload byte 1 runs past the 5-byte payload"),
        ("hevc one-byte payload", "hevc", header + b"\x40",
         "1-byte payload, shorter than the H.265 payload header"),
        ("hevc fu without its header", "hevc", header + b"\x62\x01",
         "FU payload of 2 bytes has no FU header"),
        ("hevc ap size cut", "hevc", header + b"\x60\x01\x00\x02\x44\x01\x00",
         "AP size field at payload byte 6 runs past the 7-byte payload"),
        ("hevc ap unit past the end", "hevc", header + b"\x60\x01\x01\x00\x44\x01",
         "AP NAL unit of 256 bytes at payload byte 2 runs past the 6-byte payload"),
    ]


@pytest.mark.parametrize(
    ("codec", "packet", "message"),
    [case[1:] for case in odd_packet_cases()],
    ids=[case[0] for case in odd_packet_cases()],
)
def test_broken_packets_give_the_same_error_and_message_and_stay_broken(
    impl, codec: str, packet: bytes, message: str
) -> None:
    depacketizer = impl.rtp.RtpDepacketizer(codec, VIDEO)
    good = (interleaved(rtcp_sender_report(), RTCP)
            + Camera(5).access_unit([SLICE if codec == "h264" else SLICE_265], 0))
    assert len(depacketizer.push(good, 0)) == 1
    expected = f"RTP packet at stream offset {len(good)}: {message}"
    assert error_of(depacketizer, interleaved(packet) + good) == expected
    assert (depacketizer.packets, depacketizer.offset) == (2, len(good) + 4 + len(packet))
    # Finished: every later push raises the same error, whatever it holds.
    assert error_of(depacketizer, good) == expected
    assert error_of(depacketizer, b"") == expected
    assert depacketizer.packets == 2


def test_after_an_error_a_depacketizer_keeps_nothing_and_raises_again(impl) -> None:
    good = Camera(5).access_unit([PPS], 0)
    bad = interleaved(b"\x40" + bytes(12))
    data = good + bad + good + RTSP_ANSWER
    depacketizer = impl.rtp.RtpDepacketizer("h264", VIDEO)
    with pytest.raises(RtpError) as first:
        depacketizer.push(data, 0)
    assert depacketizer.take_unparsed() == b""
    with pytest.raises(RtpError) as again:
        depacketizer.push(good, 0)
    assert str(again.value) == str(first.value)
    assert depacketizer.take_unparsed() == b""


# ---- real content: x264 and x265 encodes ----


def encode(codec_name: str, options: dict[str, str], frames: int = 10) -> list[tuple[bytes, int]]:
    """A short 160x128 encode: its access units in Annex B form, with their pts."""
    context: Any = av.CodecContext.create(codec_name, "w")  # a VideoCodecContext
    context.width, context.height, context.pix_fmt = 160, 128, "yuv420p"
    context.time_base = Fraction(1, 30)
    context.framerate = Fraction(30)
    context.options = options
    rng = np.random.default_rng(7)
    pattern = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    out: list[tuple[bytes, int]] = []
    for number in range(frames):
        image = np.roll(pattern, number * 3, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = number
        out += [(bytes(packet), packet.pts) for packet in context.encode(frame)]
    out += [(bytes(packet), packet.pts) for packet in context.encode(None)]
    return out


ENCODERS = {
    "h264": ("libx264", {"preset": "ultrafast", "g": "4", "bf": "2"}),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "keyint=4:bframes=2:log-level=0"}),
}


@pytest.fixture(scope="module", params=list(ENCODERS))
def encoded(request: pytest.FixtureRequest) -> tuple[str, list[tuple[bytes, int]]]:
    codec = request.param
    name, options = ENCODERS[codec]
    return codec, encode(name, options)


def test_a_real_encode_packetized_comes_back_byte_for_byte_and_decodes(impl, encoded) -> None:
    codec, access_units = encoded
    base = 0xFFFF_0000  # the 32-bit RTP timestamp wraps a few frames in
    camera = Camera(sequence=65530)
    data = b""
    expected = []
    for number, (access_unit, pts) in enumerate(access_units):
        nals = split_annex_b(access_unit)
        types = [nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F for nal in nals]
        is_key = 5 in types if codec == "h264" else any(16 <= t <= 23 for t in types)
        expected.append((annex_b(*nals), base + pts * 3000, is_key, 0))
        data += camera.access_unit(packetize(codec, nals, 400, aggregate=number % 2 == 0),
                                   base + pts * 3000)
        data += interleaved(rtcp_sender_report(), RTCP)
    assert sum(is_key for _, _, is_key, _ in expected) >= 2  # keyint 4 over 10 frames
    assert any(b[1] < a[1] for a, b in zip(expected, expected[1:], strict=False))  # B-frames
    depacketizer = impl.rtp.RtpDepacketizer(codec, VIDEO)
    frames = push_all(depacketizer, [data[i : i + 1000] for i in range(0, len(data), 1000)])
    assert frames == expected
    assert (depacketizer.packets_lost, depacketizer.frames_dropped) == (0, 0)
    decoder = av.CodecContext.create(codec, "r")
    pictures = [p for frame in frames for p in decoder.decode(av.Packet(frame[0]))]
    pictures += decoder.decode(None)
    assert len(pictures) == 10 and (pictures[0].width, pictures[0].height) == (160, 128)


# ---- fuzz: random streams, damage and splits, against the reference twin ----


def outcome(
    depacketizer_type: Any, codec: str, chunks: Sequence[bytes], *, same_clock: bool = False,
    max_frame_bytes: int = 16 * 1024 * 1024,
) -> dict[str, Any]:
    """All a caller sees, pushing ``chunks`` the way ``moonfire.ingest.rtsp`` does: an RTSP
    message (up to its blank line) is taken out and what follows it pushed; a message not yet
    whole is kept and pushed again with the next chunk."""
    depacketizer = depacketizer_type(codec, VIDEO, max_frame_bytes=max_frame_bytes)
    frames: list[tuple] = []
    messages: list[bytes] = []
    pending = b""
    error = None
    try:
        for number, chunk in enumerate(chunks):
            received = 0 if same_clock else number
            frames += depacketizer.push(pending + chunk, received)
            pending = b""
            while depacketizer.at_message:
                unparsed = depacketizer.take_unparsed()
                end = unparsed.find(b"\r\n\r\n")
                if end < 0:
                    pending = unparsed
                    break
                messages.append(unparsed[: end + 4])
                frames += depacketizer.push(unparsed[end + 4 :], received)
    except RtpError as raised:
        error = str(raised)
        with pytest.raises(RtpError) as again:
            depacketizer.push(b"", 0)
        assert str(again.value) == error
    counters = {
        "error": error, "packets": depacketizer.packets, "lost": depacketizer.packets_lost,
        "dropped": depacketizer.frames_dropped, "offset": depacketizer.offset,
    }
    if error is None:
        depacketizer.flush()
        counters["dropped after flush"] = depacketizer.frames_dropped
    return {**counters, "frames": frames, "messages": messages, "pending": pending}


def random_nal(rng: random.Random, codec: str) -> bytes:
    """A NAL unit of a common type (now and then of any), the forbidden bit set now and then
    (and in H.265 the layer id's high bit), which the FU headers must carry through."""
    size = rng.choice([1, 2, 3, rng.randint(1, 40), rng.randint(1, 700)])
    forbidden = 0x80 if rng.random() < 0.1 else 0
    if codec == "h264":
        kind = rng.choice([0x67, 0x68, 0x65, 0x41, 0x01, 0x06, 0x09, rng.randint(1, 23) | 0x60])
        return bytes([forbidden | kind]) + rng.randbytes(size)
    nal_type = rng.choice([32, 33, 34, 19, 20, 21, 1, 0, 39, rng.randint(0, 47)])
    layer_high_bit = rng.choice([0, 0, 0, 1])
    header = bytes([forbidden | nal_type << 1 | layer_high_bit, rng.choice([1, 1, 2, 0x2B])])
    return header + rng.randbytes(size)


def random_stream(rng: random.Random, codec: str) -> list[bytes]:
    """A camera's interleaved frames: AUs of every packetization, RTCP among them."""
    camera = Camera(sequence=rng.choice([0, 65530, rng.randrange(65536)]))
    timestamp = rng.choice([0, 0xFFFF_F000, rng.randrange(2**32)])
    frames: list[bytes] = []
    for _ in range(rng.randint(1, 6)):
        nals = [random_nal(rng, codec) for _ in range(rng.randint(1, 4))]
        mtu = rng.randint(8, 400)
        for payload in packetize(codec, nals, mtu, aggregate=rng.random() < 0.5):
            header: dict[str, Any] = {}
            if rng.random() < 0.1:
                header["padding"] = rng.randint(1, 20)
            if rng.random() < 0.1:
                header["csrcs"] = [rng.randrange(2**32) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.1:
                header["extension"] = rng.randbytes(4 * rng.randint(0, 3))
            frames.append(camera.send(payload, timestamp, **header))
        if rng.random() < 0.8:  # the marker on the AU's last packet
            frames[-1] = frames[-1][:5] + bytes([frames[-1][5] | 0x80]) + frames[-1][6:]
        timestamp += rng.choice([3000, 3000, 3000, 0, -3000, 2**31, 2**32 - 1])
        if rng.random() < 0.2:
            frames.append(interleaved(rtcp_sender_report(), RTCP))
    return frames


def damage(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """What a bad network, camera or middlebox does to the frames, a few times over."""
    frames = list(frames)
    for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
        i = rng.randrange(len(frames))
        frame = bytearray(frames[i])
        kind = rng.randrange(10)
        if kind == 0:
            del frames[i]  # a lost packet
            if not frames:
                frames.append(interleaved(b"", RTCP))
            continue
        if kind == 1:
            frames.insert(i, frames[i])  # a duplicate
        elif kind == 2 and i + 1 < len(frames):
            frames[i], frames[i + 1] = frames[i + 1], frames[i]  # reordered
        elif kind == 3:
            frames.insert(i, RTSP_ANSWER)
        elif kind == 4:
            frames.insert(i, RTSP_ANSWER[: rng.randrange(len(RTSP_ANSWER))])  # never ends
        elif kind == 5:
            frames.insert(i, interleaved(rng.randbytes(rng.randint(0, 20)),
                                         rng.choice([VIDEO, RTCP, 3])))
        elif kind == 6 and len(frame) > 4:  # the RTP header or payload header
            frame[rng.randrange(4, min(len(frame), 20))] ^= 1 << rng.randrange(8)
            frames[i] = bytes(frame)
        elif kind == 7 and len(frame) > 4:  # anywhere, framing included
            frame[rng.randrange(len(frame))] = rng.randrange(256)
            frames[i] = bytes(frame)
        elif kind == 8 and len(frame) > 4:  # a shorter packet behind a right length
            cut = rng.choice([0, 11, 12, 13, rng.randrange(len(frame) - 4)])
            packet = frame[4 : 4 + min(cut, len(frame) - 5)]
            frames[i] = interleaved(bytes(packet), frame[1])
        elif kind == 9:
            frames[i] = bytes(frame[: rng.randrange(len(frame) + 1)])  # framing cut short
    return frames


def random_splits(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 12))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@given(seed=st.integers(0, 2**64 - 1), codec=st.sampled_from(["h264", "hevc"]))
def test_random_streams_damage_and_splits_give_what_the_reference_gives(
    impl, seed: int, codec: str
) -> None:
    rng = random.Random(seed)
    data = b"".join(damage(rng, random_stream(rng, codec)))
    chunks = random_splits(rng, data)
    max_frame_bytes = rng.choice([16 * 1024 * 1024, 16 * 1024 * 1024, rng.randint(1, 2000)])
    ours = outcome(impl.rtp.RtpDepacketizer, codec, chunks, max_frame_bytes=max_frame_bytes)
    theirs = outcome(reference.RtpDepacketizer, codec, chunks, max_frame_bytes=max_frame_bytes)
    assert ours == theirs
    # And the splits change nothing but the receive times (and, on an error, which AUs came
    # out before it: a push that raises returns none of the AUs it had completed).
    split = outcome(impl.rtp.RtpDepacketizer, codec, chunks, same_clock=True,
                    max_frame_bytes=max_frame_bytes)
    whole = outcome(reference.RtpDepacketizer, codec, [data], same_clock=True,
                    max_frame_bytes=max_frame_bytes)
    if whole["error"] is not None:
        for key in ("frames", "messages", "pending"):
            del split[key], whole[key]
    assert split == whole


@given(
    payload=st.binary(max_size=60),
    first=st.integers(0, 255),
    second=st.integers(0, 255),
    codec=st.sampled_from(["h264", "hevc"]),
)
def test_arbitrary_packet_bytes_give_what_the_reference_gives(
    impl, payload: bytes, first: int, second: int, codec: str
) -> None:
    """Header flags and payload bytes drawn freely, behind a well-formed frame."""
    header = struct.pack(">BBHII", first, second, 1, 3000, 1)
    for packet in (header + payload, (header + payload)[: len(payload) % 16]):
        chunks = [interleaved(packet), Camera(2).access_unit([b"\x41\x01" * 3], 6000)]
        ours = outcome(impl.rtp.RtpDepacketizer, codec, chunks)
        assert ours == outcome(reference.RtpDepacketizer, codec, chunks)


def test_the_fuzz_streams_reach_every_outcome(impl) -> None:
    """The fuzz test above is only as good as what its streams reach: frames, drops, losses,
    messages and the common errors must all come out of its first thousand seeds."""
    seen: set[str] = set()
    for seed in range(1000):
        rng = random.Random(seed)
        codec = "h264" if seed % 2 else "hevc"
        data = b"".join(damage(rng, random_stream(rng, codec)))
        result = outcome(impl.rtp.RtpDepacketizer, codec, random_splits(rng, data))
        seen |= {key for key in ("frames", "messages", "pending", "lost", "dropped")
                 if result[key]}
        if result["error"] is not None:
            seen.add(re.sub(r"\d+", "N", result["error"].partition(": ")[2]))
    assert {
        "frames", "messages", "pending", "lost", "dropped",
        "N bytes, shorter than its N-byte header",
        "version N, expected N",
        "empty payload",
        "N bytes of padding, more than the N bytes after the N-byte header",
        "STAP-A NAL unit of N bytes at payload byte N runs past the N-byte payload",
        "AP NAL unit of N bytes at payload byte N runs past the N-byte payload",
    } <= seen, seen


def test_the_c_run_uses_the_compiled_module_and_the_py_run_the_twin(impl: Implementation) -> None:
    assert impl.rtp.__name__ == f"moonfire_core._rtp_{impl.kind}"
    assert str(impl.rtp.__file__).endswith(".py" if impl.kind == "py" else ".so")
