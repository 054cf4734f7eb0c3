"""One stream's recording state across rotations: the policy between packets and writers.

The streamer (real cameras) and the synthetic sources of the tests and
benchmarks all feed packets through ``StreamRecorder``, so the rules below are
the same everywhere:

* packets before the first key frame of a run are dropped: every recording
  starts with a key frame;
* rotation (brief §3.3): a recording ends at the first key frame whose wall
  second is strictly past its boundary ``k·interval + offset``; the first
  recording of a run waits for the *second* boundary, so it lasts one to two
  intervals and has plenty of frames to estimate its start from.  The old
  writer is closed with the key frame's decode time, so its last duration is exact,
  and the next recording continues the run (it starts exactly where the last
  one ended);
* a new sample entry (new SPS/PPS) starts a new recording at that key frame;
* a recording never reaches the 5-minute maximum the database enforces: past
  ``ROTATE_BY_90K`` it ends at the next key frame whatever the schedule, and a
  camera that sends no key frame at all by ``END_RUN_AT_90K`` has its run ended
  there (the frames until its next key frame can't start a recording);
* decode time going backwards (a camera that restarted its clock) ends the
  run, and the packet is handled as the first of a new one.  Decode time is the
  packet's dts, or its pts when the source gives none: a camera with B-frames
  sends frames in decode order, with pts going back at every B-frame, and
  those frames belong in the run (issue 10 §1).  All media times here
  (rotation, the writer's durations) are decode times;
* a write error ends the run: the writer is closed (saving what it could) and
  the next key frame starts a new run.  When the error is a full disk, the
  syncer is asked to delete this stream's oldest recordings to make room, so
  recording goes on even if the budget was set larger than the disk.

The recording being written is published as ``growing`` (a ``WriterSnapshot``,
replaced whole, so other threads read it without a lock) at most every
``GROWING_REFRESH_90K``: the API serves it while it grows.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moonfire.time import MAX_RECORDING_DURATION, TIME_UNITS_PER_SEC
from moonfire_core import RecordingAbandonedError
from moonfire_core.records import PreviousWriter, WriterSnapshot
from moonfire_core.writer import Writer

if TYPE_CHECKING:
    from moonfire.storage.syncer import Syncer

log = logging.getLogger(__name__)

#: Media duration past which a recording ends at the next key frame.
ROTATE_BY_90K = MAX_RECORDING_DURATION - 30 * TIME_UNITS_PER_SEC
#: Media duration at which a recording without a key frame in sight ends anyway.
END_RUN_AT_90K = MAX_RECORDING_DURATION - 5 * TIME_UNITS_PER_SEC
#: How often the snapshot of the recording being written is refreshed (local time):
#: one copy of its index (a few KiB) per half second.
GROWING_REFRESH_90K = TIME_UNITS_PER_SEC // 2
#: The first recording of a run gets a second interval only while it stays this short.
FIRST_RECORDING_MAX_SEC = ROTATE_BY_90K // TIME_UNITS_PER_SEC - 30


def rotation_boundary(
    frame_sec: int, interval_sec: int, offset_sec: int, first_in_run: bool
) -> int:
    """The wall second after which the recording started at ``frame_sec`` ends (§3.3).

    The first recording of a run waits for the second boundary, unless long
    intervals would take it near the 5-minute maximum.
    """
    boundary = frame_sec - frame_sec % interval_sec + offset_sec
    if boundary <= frame_sec:
        boundary += interval_sec
    if first_in_run and boundary + interval_sec - frame_sec <= FIRST_RECORDING_MAX_SEC:
        boundary += interval_sec
    return boundary


@dataclass(frozen=True, slots=True)
class RecordingStart:
    """Where the recording being written began: what the live view says about its frames."""

    #: Wall time its first frame was received (90 kHz).
    local_time_90k: int
    #: Decode time of its first frame (its pts for streams without B-frames): the origin of
    #: the recording's media time.
    pts_90k: int
    #: Decode time of the first frame of its run.
    run_start_pts_90k: int
    #: Runs this recorder has begun, the recording's own included.
    runs: int
    #: Recordings this recorder handed to the syncer before this one.
    closed_before: int


class StreamRecorder:
    """Turns one stream's packets into a chain of rotated recordings.

    Not thread-safe: one streamer thread owns it.
    """

    def __init__(
        self,
        syncer: Syncer,
        stream_id: int,
        stream_name: str = "",
        rotate_interval_sec: int = 60,
        rotate_offset_sec: int = 0,
    ) -> None:
        self._syncer = syncer
        self.stream_id = stream_id
        self.stream_name = stream_name or str(stream_id)
        self.rotate_interval_sec = rotate_interval_sec
        self.rotate_offset_sec = rotate_offset_sec % rotate_interval_sec
        self._writer: Writer | None = None
        self._writer_entry_id: int | None = None
        self._prev: PreviousWriter | None = None
        self._rotate_at_sec = 0
        self._writer_start_dts = 0
        self._last_dts = 0
        #: Recordings handed to the syncer so far (for status displays).
        self.recordings_closed = 0
        #: The recording being written (None between recordings), for the live view.
        self.current: RecordingStart | None = None
        #: The recording being written as far as it has gone, for the API (None: none yet).
        self.growing: WriterSnapshot | None = None
        self._growing_due_90k = 0
        self._runs = 0
        self._run_start_dts = 0

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def write(
        self,
        packet: bytes | memoryview,
        local_time_90k: int,
        pts_90k: int,
        is_key: bool,
        video_sample_entry_id: int,
        dts_90k: int | None = None,
    ) -> None:
        """Record one packet, rotating or starting a recording at a key frame as needed.

        ``dts_90k`` is the packet's decode time, ``None`` for a stream in presentation order
        (then the pts is the decode time).
        """
        dts = pts_90k if dts_90k is None else dts_90k
        if self._writer is not None and dts <= self._last_dts:
            # The camera restarted its clock: what follows can't extend this run.
            log.warning(
                "stream %s: %s went from %d back to %d; ending the run",
                self.stream_name,
                "pts" if dts_90k is None else "decode time",
                self._last_dts,
                dts,
            )
            self.end_run()
        if self._writer is not None:
            media_90k = dts - self._writer_start_dts
            if is_key and (
                local_time_90k // TIME_UNITS_PER_SEC > self._rotate_at_sec
                or video_sample_entry_id != self._writer_entry_id
                or media_90k >= ROTATE_BY_90K
            ):
                self._close_writer(next_pts=dts)
            elif media_90k >= END_RUN_AT_90K:
                log.warning(
                    "stream %s: no key frame for %d s; ending the run",
                    self.stream_name,
                    media_90k // TIME_UNITS_PER_SEC,
                )
                self._close_writer(next_pts=dts)
                self._prev = None
        if self._writer is None:
            if not is_key:
                return
            self._start_writer(local_time_90k, dts, video_sample_entry_id)
        assert self._writer is not None
        try:
            self._writer.write(packet, local_time_90k, pts_90k, is_key, dts_90k)
        except OSError as e:
            self._on_write_error(e)
        else:
            self._last_dts = dts
            if local_time_90k >= self._growing_due_90k:
                self.growing = self._writer.snapshot()
                self._growing_due_90k = local_time_90k + GROWING_REFRESH_90K

    def end_run(self) -> None:
        """The session ended (error or shutdown): close with a trailing zero; next run anew."""
        if self._writer is not None:
            self._close_writer(next_pts=None)
        self._prev = None

    def _start_writer(self, local_time_90k: int, dts_90k: int, video_sample_entry_id: int) -> None:
        first_in_run = self._prev is None
        self._writer = self._syncer.create_writer(
            self._prev, self.stream_id, video_sample_entry_id
        )
        self._writer_entry_id = video_sample_entry_id
        self._writer_start_dts = dts_90k
        if first_in_run:
            self._runs += 1
            self._run_start_dts = dts_90k
        self.current = RecordingStart(
            local_time_90k, dts_90k, self._run_start_dts, self._runs, self.recordings_closed
        )
        self._rotate_at_sec = rotation_boundary(
            local_time_90k // TIME_UNITS_PER_SEC,
            self.rotate_interval_sec,
            self.rotate_offset_sec,
            first_in_run,
        )

    def _close_writer(self, next_pts: int | None) -> bool:
        """Close the current writer; True if its recording went to the syncer to be saved."""
        writer, self._writer = self._writer, None
        self.current = None
        self.growing = None
        self._growing_due_90k = 0
        assert writer is not None
        try:
            self._prev = writer.close(next_pts)
        except RecordingAbandonedError as e:
            log.warning("stream %s: %s", self.stream_name, e)
            self._prev = None
            return False
        self.recordings_closed += 1
        return True

    def _on_write_error(self, error: OSError) -> None:
        log.error("stream %s: write failed, ending this run: %s", self.stream_name, error)
        saved = self._writer is not None and self._close_writer(next_pts=None)
        self._prev = None
        # An abandoned recording reports ENOSPC to the syncer itself, which then
        # makes room; a saved one (the samples that fit) doesn't, so ask here.
        if error.errno == errno.ENOSPC and saved:
            self._syncer.make_room(self.stream_id)
