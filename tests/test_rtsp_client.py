"""moonfire's own RTSP client (``moonfire.ingest.rtsp``, issue 13): its parsing, its
authentication, its decode times, a scripted camera for what a real server won't do on demand,
and GStreamer's RTSP server for the rest (digest, B-frames, H.265, a UDP-only camera)."""

from __future__ import annotations

import base64
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from moonfire.ingest import rtsp, sources
from moonfire.ingest.rtsp import (
    RtspSource,
    _Authenticator,
    _ReorderDecodeTimes,
    control_url,
    parameter_sets_in,
    parse_message,
    parse_response,
    parse_sdp,
)
from moonfire.ingest.sources import AvSource, SourceError, open_source
from tests.support.fake_rtsp import FakeCamera
from tests.test_ingest import RtspServer, start_server_or_fail

# ---- parsing ---------------------------------------------------------------------------

SDP_H264 = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=cam\r
t=0 0\r
m=audio 0 RTP/AVP 0\r
a=control:audio\r
m=video 0 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=fmtp:96 packetization-mode=1;profile-level-id=42e01e;sprop-parameter-sets=Z0LgHtoCgPRA,aM48gA==\r
a=control:trackID=1\r
"""


def test_sdp_gives_the_first_video_stream_its_codec_parameter_sets_and_control():
    track, kinds = parse_sdp(SDP_H264, "rtsp://cam/live/")
    assert kinds == ["audio", "video"]
    assert track is not None
    assert (track.codec, track.payload_type, track.clock_rate) == ("h264", 96, 90000)
    assert track.control == "rtsp://cam/live/trackID=1"
    assert track.parameter_sets == [
        base64.b64decode("Z0LgHtoCgPRA"), base64.b64decode("aM48gA==")
    ]


def test_sdp_for_h265_and_for_no_video():
    sdp = (
        "v=0\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n"
        "a=fmtp:97 sprop-vps=QAEMAf//;sprop-sps=QgEB;sprop-pps=RAHA\r\na=control:*\r\n"
    )
    track, _ = parse_sdp(sdp, "rtsp://cam/h265")
    assert track is not None and track.codec == "hevc"
    assert track.control == "rtsp://cam/h265"
    assert [p[:1] for p in track.parameter_sets] == [b"\x40", b"\x42", b"\x44"]
    assert parse_sdp("v=0\r\nm=audio 0 RTP/AVP 0\r\n", "rtsp://x/") == (None, ["audio"])
    jpeg, _ = parse_sdp("v=0\r\nm=video 0 RTP/AVP 26\r\n", "rtsp://x/")
    assert jpeg is not None and jpeg.codec == "mjpeg"  # static payload type, no rtpmap


@pytest.mark.parametrize(
    ("base", "control", "expected"),
    [
        ("rtsp://cam/live", "track1", "rtsp://cam/live/track1"),
        ("rtsp://cam/live/", "track1", "rtsp://cam/live/track1"),
        ("rtsp://cam/live/", "*", "rtsp://cam/live/"),
        ("rtsp://cam/live/", "rtsp://other/x", "rtsp://other/x"),
    ],
)
def test_control_urls_are_made_absolute_as_ffmpeg_does(base, control, expected):
    assert control_url(base, control) == expected


def test_messages_are_taken_whole_or_not_at_all():
    message = b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nabcd$\x00"
    assert parse_message(message[:20]) is None
    assert parse_message(message[:-3]) is None  # the body isn't all there
    head, body, length = parse_message(message)  # type: ignore[misc]
    assert body == b"abcd" and message[length:] == b"$\x00"
    response = parse_response(head, body)
    assert (response.status, response.reason, response.header("cseq")) == (200, "OK", "3")
    with pytest.raises(ValueError, match="run past 65536 bytes"):
        parse_message(b"x" * 70000)
    with pytest.raises(ValueError, match="not an RTSP response"):
        parse_response(b"HTTP/1.1 200 OK", b"")


def test_digest_answer_is_rfc_2617s_example():
    auth = _Authenticator("Mufasa", "Circle Of Life", cnonce=lambda: "0a4f113b")
    assert auth.challenge([
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    ])
    header = auth.header("GET", "/dir/index.html")
    assert header is not None
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    assert "nc=00000002" in (auth.header("GET", "/dir/index.html") or "")


RFC_7616_CHALLENGE = (
    'realm="http-auth@example.org", qop="auth, auth-int", algorithm={}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("offered", "response"),
    [
        # RFC 7616 §3.9.1: a server offering both, MD5 listed first, as cameras do.
        (["MD5", "SHA-256"], "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        (["MD5"], "8ca523f5e9506fed4657c9700eebdbec"),
    ],
    ids=["sha-256 preferred", "md5"],
)
def test_digest_answers_rfc_7616s_example_with_the_best_algorithm_offered(offered, response):
    auth = _Authenticator(
        "Mufasa", "Circle of Life", cnonce=lambda: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    )
    assert auth.challenge([f"Digest {RFC_7616_CHALLENGE.format(a)}" for a in offered])
    header = auth.header("GET", "/dir/index.html") or ""
    assert f'response="{response}"' in header
    assert f"algorithm={offered[-1]}" in header and "qop=auth," in header


def test_digest_is_taken_over_basic_in_one_header_and_unknown_algorithms_are_skipped():
    auth = _Authenticator("user", 'pw')
    assert auth.challenge(['Basic realm="cam", Digest realm="cam, Basic x=1", nonce="n1"'])
    header = auth.header("DESCRIBE", "rtsp://cam/") or ""
    assert header.startswith('Digest username="user", realm="cam, Basic x=1", nonce="n1"')
    only_unknown = _Authenticator("user", "pw")
    assert not only_unknown.challenge(['Digest realm="r", nonce="n", algorithm=SHA-512-256'])
    assert only_unknown.challenge(['Digest realm="r", nonce="n", algorithm=SHA-512-256',
                                   'Basic realm="r"'])
    assert (only_unknown.header("OPTIONS", "rtsp://cam/") or "").startswith("Basic ")


def test_digest_quotes_a_username_with_quotes_and_stale_is_read_in_every_form():
    auth = _Authenticator('a"b\\c', "pw", cnonce=lambda: "c")
    assert auth.challenge(['Digest realm="r", nonce="n", qop=auth'])
    assert 'username="a\\"b\\\\c"' in (auth.header("OPTIONS", "*") or "")
    for form in ('stale=true', 'stale="true"', 'stale = TRUE'):
        assert rtsp.is_stale([f'Digest realm="r", nonce="n2", {form}']), form
    assert not rtsp.is_stale(['Digest realm="r", nonce="n2", stale=false'])
    assert not rtsp.is_stale(['Basic realm="stale=true"'])


def test_basic_is_answered_when_digest_is_not_offered():
    auth = _Authenticator("user", "pw")
    assert not auth.challenge(['Negotiate abc'])
    assert auth.challenge(['Basic realm="cam"'])
    expected = "Basic " + base64.b64encode(b"user:pw").decode()
    assert auth.header("DESCRIBE", "rtsp://cam/") == expected


def test_decode_times_follow_libavformat_from_presentation_times():
    # Two B-frames between references, in decode order: I0 P3 B1 B2 P6 B4 B5.
    times = _ReorderDecodeTimes(2)
    assert [times.dts(p) for p in (0, 3, 1, 2, 6, 4, 5)] == [None, None, 0, 1, 2, 3, 4]
    no_reorder = _ReorderDecodeTimes(0)
    assert [no_reorder.dts(p) for p in (0, 1, 2, 1)] == [0, 1, 2, 1]  # a step back stays one


def test_parameter_sets_count_only_when_all_are_there():
    sps, pps, idr = b"\x67\x42", b"\x68\xce", b"\x65\x88"
    annex_b = b"".join(b"\x00\x00\x00\x01" + n for n in (sps, pps, idr))
    assert parameter_sets_in("h264", annex_b) == [sps, pps]
    assert parameter_sets_in("h264", b"\x00\x00\x00\x01" + sps) == []


# ---- a scripted camera -----------------------------------------------------------------

FRAMES = 45


@pytest.fixture(scope="module")
def access_units() -> tuple[list[bytes], list[bytes]]:
    """1.5 s of 320x240 H.264 (a key frame every 15), Annex B, and its SPS and PPS."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = 15
    codec.max_b_frames = 0
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "keyint_min": "15"}
    codec.open()
    units = []
    for i in range(FRAMES):
        image = np.random.default_rng(i).integers(0, 255, (360, 320), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        units += [bytes(p) for p in codec.encode(frame)]
    units += [bytes(p) for p in codec.encode(None)]
    units = [_four_byte_start_codes(u) for u in units]
    nals = [n for n in units[0].split(b"\x00\x00\x00\x01") if n]
    parameter_sets = [n for n in nals if n[0] & 0x1F in (7, 8)]
    return units, parameter_sets


def _four_byte_start_codes(annex_b: bytes) -> bytes:
    three_byte = annex_b.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01")
    nals = [n for n in three_byte.split(b"\x00\x00\x01") if n]
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def _read_camera(camera: FakeCamera, count: int) -> tuple[bytes, list[sources.SourcePacket]]:
    """Open ``camera`` (closed after) with moonfire's client: its extradata and ``count``
    packets."""
    try:
        source = open_source(camera.url, transport="tcp")
        try:
            return source.extradata, _read(source, count)
        finally:
            source.close()
    finally:
        camera.close()


def _read(source: sources.Source, count: int) -> list[sources.SourcePacket]:
    packets = []
    for packet in source.packets():
        packets.append(packet)
        if len(packets) == count:
            break
    return packets


def test_a_camera_is_read_whole_with_keepalives_and_its_own_requests_answered(access_units):
    units, parameter_sets = access_units
    camera = FakeCamera(
        units, parameter_sets=parameter_sets, session_timeout=2, camera_request_after=10
    )
    try:
        source = open_source(camera.url, transport="tcp")
        try:
            assert isinstance(source, RtspSource)
            assert (source.width, source.height, source.codec) == (320, 240, "h264")
            assert source.extradata == b"".join(b"\x00\x00\x00\x01" + p for p in parameter_sets)
            packets = _read(source, FRAMES)
        finally:
            source.close()
    finally:
        camera.close()
    assert [p.data for p in packets] == units[:FRAMES]
    # The RTP timestamps wrapped at 2**32 on the way (first_timestamp), yet the pts go on.
    assert [p.pts_90k for p in packets] == [i * 3000 for i in range(FRAMES)]
    assert [p.dts_90k for p in packets] == [p.pts_90k for p in packets]  # no B-frames
    assert [p.is_key for p in packets] == [i % 15 == 0 for i in range(FRAMES)]
    methods = [r.split(" ", 1)[0] for r in camera.requests]
    assert methods[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    # 1.5 s of frames with a 2-s session timeout: a keepalive every second.
    assert "GET_PARAMETER" in methods[4:], methods
    assert all("Session: 12345678" in r for r in camera.requests[3:])
    assert camera.answer_to_camera is not None and "CSeq: 77" in camera.answer_to_camera


def test_an_sdp_without_parameter_sets_takes_them_from_the_first_key_frame(access_units):
    units, parameter_sets = access_units
    # The stream starts mid-GOP: the first key frame (with its SPS and PPS) is frame 15.
    camera = FakeCamera(units[5:], parameter_sets=parameter_sets, sprops=False)
    extradata, packets = _read_camera(camera, 20)
    assert extradata == b"".join(b"\x00\x00\x00\x01" + p for p in parameter_sets)
    assert [p.data for p in packets] == units[5:25]  # the frames read meanwhile come first


def test_a_camera_ending_the_session_is_a_read_failure_naming_it(access_units):
    units, parameter_sets = access_units
    camera = FakeCamera(
        units, parameter_sets=parameter_sets, session_timeout=2,
        keepalive_status="454 Session Not Found",
    )
    try:
        source = open_source(camera.url, transport="tcp")
        try:
            with pytest.raises(SourceError) as raised:
                _read(source, 10**6)
        finally:
            source.close()
    finally:
        camera.close()
    assert str(raised.value) == (
        f"{camera.url}: read failed: the camera ended the RTSP session (454 Session Not Found)"
    )


def test_a_camera_marking_its_parameter_sets_and_ending_answers_with_a_crlf_loses_nothing(
    access_units,
):
    # Two quirks of real cameras at once: the marker bit on the SPS, PPS and SEI packets (the
    # key frame's AU must not be split, or the parameter sets never reach the client without
    # sprops) and a stray CRLF after every answer, keepalives' included (which must not hold
    # up the frames behind it).
    units, parameter_sets = access_units
    camera = FakeCamera(
        units, parameter_sets=parameter_sets, sprops=False, session_timeout=2,
        marker_on_parameter_sets=True, crlf_after_answers=True,
    )
    extradata, packets = _read_camera(camera, FRAMES)
    assert extradata == b"".join(b"\x00\x00\x00\x01" + p for p in parameter_sets)
    assert [p.data for p in packets] == units[:FRAMES]
    assert [p.pts_90k for p in packets] == [i * 3000 for i in range(FRAMES)]
    assert "GET_PARAMETER" in [r.split(" ", 1)[0] for r in camera.requests[4:]]


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        ("RTP/AVP/TCP;unicast;interleaved=300-301",
         "SETUP's answer gives interleaved channel '300', not one of 0..255"),
        ("RTP/AVP/TCP;unicast;interleaved=" + "9" * 5000,
         "SETUP's answer gives interleaved channel '99999999999999999999', not one of 0..255"),
    ],
    ids=["channel 300", "5000 digits"],
)
def test_an_odd_transport_answer_is_a_camera_error_naming_it(access_units, transport, message):
    units, parameter_sets = access_units
    camera = FakeCamera(units, parameter_sets=parameter_sets, transport=transport)
    try:
        with pytest.raises(SourceError) as raised:
            open_source(camera.url, transport="tcp")
    finally:
        camera.close()
    assert str(raised.value).startswith(f"{camera.url}: can't open: {message}")


def test_a_camera_streaming_instead_of_answering_play_is_refused_with_bounded_memory(
    access_units,
):
    units, parameter_sets = access_units
    camera = FakeCamera(units, parameter_sets=parameter_sets,
                        video_instead_of_play=rtsp.MAX_EARLY_BYTES + (1 << 20))
    began = time.monotonic()
    try:
        with pytest.raises(SourceError) as raised:
            open_source(camera.url, transport="tcp")
    finally:
        camera.close()
    assert str(raised.value) == (
        f"{camera.url}: can't open: the camera sent over 4 MiB of video before answering "
        "the request"
    )
    assert time.monotonic() - began < 10  # not the camera's 10 s of holding on


def test_odd_numbers_in_the_sdp_are_ignored_not_raised():
    sdp = "\r\n".join([
        "v=0", "m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/\u00b2", "a=control:track1", ""])
    track, kinds = parse_sdp(sdp, "rtsp://cam/")
    assert kinds == ["video"] and track is not None
    assert (track.codec, track.clock_rate) == ("h264", 90000)


def test_lost_packets_and_dropped_frames_are_logged(access_units, monkeypatch, caplog):
    units, parameter_sets = access_units
    monkeypatch.setattr(rtsp, "LOSS_REPORT_INTERVAL_SEC", 0.3)
    camera = FakeCamera(units, parameter_sets=parameter_sets, lose_packet_before=3)
    with caplog.at_level("WARNING", logger="moonfire.ingest.rtsp"):
        _extradata, packets = _read_camera(camera, FRAMES - 1)  # 1.5 s: reports every 0.3 s
    assert [p.data for p in packets] == units[:3] + units[4:FRAMES]  # frame 3 lost its start
    [record] = [r for r in caplog.records if "lost" in r.getMessage()]
    assert record.getMessage().startswith(
        f"{camera.url}: 1 RTP packet lost and 1 frame dropped (incomplete) in the last ")
    assert record.getMessage().endswith("; 1 and 1 since connecting")


def test_ffmpeg_is_the_way_back(access_units, monkeypatch):
    units, parameter_sets = access_units
    camera = FakeCamera(units, parameter_sets=parameter_sets)
    monkeypatch.setenv("MOONFIRE_RTSP_CLIENT", "ffmpeg")
    try:
        source = open_source(camera.url, transport="tcp")
        source.close()
    finally:
        camera.close()
    assert isinstance(source, AvSource)
    monkeypatch.setenv("MOONFIRE_RTSP_CLIENT", "vlc")
    with pytest.raises(SourceError, match="unknown RTSP client 'vlc'"):
        open_source(camera.url)


# ---- GStreamer's RTSP server -----------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    server = start_server_or_fail(RtspServer())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_server():
    server = start_server_or_fail(RtspServer(user="viewer", password="s3cret:p@ss"))
    yield server
    server.stop()


def test_digest_authentication_and_a_refused_password(auth_server):
    source = open_source(auth_server.url("cam1"), "viewer", "s3cret:p@ss")
    try:
        assert isinstance(source, RtspSource)
        packets = _read(source, 40)
    finally:
        source.close()
    assert any(p.is_key for p in packets)
    with pytest.raises(SourceError) as raised:
        open_source(auth_server.url("cam1"), "viewer", "wrong-pw")
    assert str(raised.value) == (
        f"rtsp://viewer:***@127.0.0.1:{auth_server.port}/cam1: can't open: "
        "the camera refused the username/password (401 Unauthorized)"
    )
    with pytest.raises(SourceError, match="asks for a username/password"):
        open_source(auth_server.url("cam1"))


def test_b_frames_get_increasing_decode_times_before_their_presentation(server):
    source = open_source(server.url("bframes"))
    try:
        packets = _read(source, 90)
    finally:
        source.close()
    dts = [p.dts_90k for p in packets]
    assert all(d is not None for d in dts)
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), dts  # type: ignore[operator]
    assert all(p.dts_90k <= p.pts_90k for p in packets)  # type: ignore[operator]
    pairs = zip(packets, packets[1:], strict=False)
    assert any(b.pts_90k < a.pts_90k for a, b in pairs), "no B-frames seen"
    # What was read decodes, frame for frame.
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = source.extradata
    first_key = next(i for i, p in enumerate(packets) if p.is_key)
    decoded = 0
    for p in packets[first_key:]:
        packet = av.Packet(p.data)
        packet.pts, packet.dts = p.pts_90k, p.dts_90k
        decoded += len(decoder.decode(packet))
    decoded += len(decoder.decode(None))
    assert decoded == len(packets) - first_key


def test_h265_is_read_with_its_parameter_sets_and_key_frames(server):
    source = open_source(server.url("h265"))
    try:
        assert isinstance(source, RtspSource) and source.codec == "hevc"
        assert (source.width, source.height) == (320, 240)
        packets = _read(source, 60)
    finally:
        source.close()
    keys = [i for i, p in enumerate(packets) if p.is_key]
    assert len(keys) >= 1 and all(b - a == 30 for a, b in zip(keys, keys[1:], strict=False)), keys


def test_an_audio_only_stream_and_a_udp_only_camera(server):
    with pytest.raises(SourceError, match=r"no video stream \(streams found: audio\)"):
        open_source(server.url("audio"))
    udp_only = start_server_or_fail(RtspServer(flags=("--udp-only",)))
    try:
        with pytest.raises(SourceError) as raised:
            open_source(udp_only.url("cam1"), transport="tcp")
        assert str(raised.value).endswith(sources.REFUSED_TCP)
        # gst-rtsp-server answers 503 while it still tears down the refused session.
        time.sleep(1.0)
        source = open_source(udp_only.url("cam1"), transport="auto")
        source.close()
        assert isinstance(source, AvSource) and source.transport == "udp"
    finally:
        udp_only.stop()


def test_the_password_never_reaches_a_request_line(auth_server, monkeypatch):
    sent: list[bytes] = []
    original = rtsp.RtspSource._send

    def record(self, method, uri, headers=None):
        sent.append(f"{method} {uri}".encode())
        return original(self, method, uri, headers)

    monkeypatch.setattr(rtsp.RtspSource, "_send", record)
    source = open_source(auth_server.url("cam1"), "viewer", "s3cret:p@ss")
    source.close()
    assert sent and not any(b"s3cret" in line or b"viewer" in line for line in sent), sent
