#!/usr/bin/env bash
# Install the programs the benchmarks compare moonfire with (issue 13, "Benchmarks a user can
# believe"), from Debian's own packages, as a user choosing a recorder would get them:
#
#   bash scripts/bench-peers.sh
#
# * ffmpeg: `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 60` is
#   Frigate's recorder, the CPU cost moonfire's ingest is held to;
# * gstreamer1.0-tools (gst-launch-1.0) with the good plugins: `splitmuxsink`, GStreamer's
#   segmenting recorder, for the file case;
# * the GStreamer RTSP server's bindings, which serve the benchmark's 1080p30 file at its
#   native rate (tests/support/rtsp_server.py --file, run with /usr/bin/python3).
#
# The benchmarks don't install anything themselves, and fail (never skip) when a peer is
# missing, naming this script.  Needs root (or sudo).
set -euo pipefail

DEBIAN_PACKAGES=(
    ffmpeg
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
    python3-gi gir1.2-gst-rtsp-server-1.0 python3-gst-1.0
)
bash "$(cd "$(dirname "$0")" && pwd)/debian-install.sh" "${DEBIAN_PACKAGES[@]}"
ffmpeg -hide_banner -version | head -n 1
gst-launch-1.0 --version | head -n 1
