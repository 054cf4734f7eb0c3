"""A test RTSP server: GStreamer's gst-rtsp-server serving live x264 test patterns.

Run with Debian's ``/usr/bin/python3`` (it has the ``gi`` bindings)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 [--user U --password P]

Mount points (each a live ``videotestsrc`` encoded by x264, one key frame a
second at 30 fps, RTP payload type 96):

* ``/cam1`` and ``/cam2``: 320x240 streams with different patterns;
* ``/bframes``: 320x240, x264 high profile with two B-frames between references
  (``bframes=2``, no ``tune=zerolatency``, which would turn them off): frames arrive in decode
  order with presentation times out of order, as from Axis, Amcrest and Dahua cameras;
* ``/h265``: 320x240 H.265 (x265, Main profile, no B-frames; key frames after the first are
  CRA pictures, not IDR), as many current cameras send;
* ``/audio``: an audio-only stream (no video), for the bad-input tests;
* ``/file`` (with ``--file PATH``): an H.264 MPEG-TS file played once at its native rate, no
  re-encoding, like a camera sending that stream (the ingest benchmark's 1080p30 4 Mbit/s clip).

With ``--user``/``--password`` every mount requires digest authentication.
With ``--udp-only`` every mount refuses RTP over TCP (``461 Unsupported transport``),
like a camera that streams only over UDP.
Prints ``READY`` on stdout once it is listening; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = (
    "( videotestsrc is-live=true pattern={pattern} "
    "! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
BFRAMES = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc speed-preset=ultrafast bframes=2 b-adapt=false dct8x8=true rc-lookahead=4 "
    "key-int-max=30 bitrate=500 ! video/x-h264,profile=high "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
H265 = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,format=I420,width=320,height=240,framerate=30/1 "
    "! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=300 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1 )"
)
#: ``--file``: demuxed and payloaded as it is, paced by the pipeline clock (native rate).
FILE = (
    "( filesrc location={path} ! tsdemux ! h264parse "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
AUDIO = "( audiotestsrc is-live=true ! audioconvert ! rtpL16pay name=pay0 pt=97 )"
MOUNTS = {
    "/cam1": VIDEO.format(pattern="ball"),
    "/cam2": VIDEO.format(pattern="smpte"),
    "/bframes": BFRAMES,
    "/h265": H265,
    "/audio": AUDIO,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument(
        "--udp-only", action="store_true", help="refuse RTP over TCP (461), as some cameras do"
    )
    parser.add_argument("--file", help="also serve this H.264 MPEG-TS file at /file")
    args = parser.parse_args()
    mounts_to_serve = dict(MOUNTS)
    if args.file:
        mounts_to_serve["/file"] = FILE.format(path='"' + args.file.replace('"', '\\"') + '"')

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_digest(args.user, args.password or "", token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for path, launch in mounts_to_serve.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        if args.udp_only:
            factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role("user")
            permissions.add_permission_for_role(
                "user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True
            )
            permissions.add_permission_for_role(
                "user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
            )
            factory.set_permissions(permissions)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"can't listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: loop.quit() or False)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
