"""Recordings the recorder still holds in memory, as the API lists and serves them.

Moonfire users ask to watch what is being recorded now (Moonfire #156), and a
recording is committed to the database only a minute or so after its first
frame.  Two kinds of recording exist only in the recorder's memory:

* **uncommitted**: closed by its writer (every byte is in its file) and queued
  for the syncer, which fsyncs and commits it a moment later
  (``Syncer.uncommitted``);
* **growing**: the one being written, as its writer's last snapshot describes
  it (``StreamRecorder.growing``, refreshed every half second).  Only the
  samples whose bytes already reached the file are served; the rest are in
  the writer's buffer.

Each becomes a ``RecordingRow`` plus its ``video_index`` and file name, so
``/recordings`` and ``view.mp4`` treat it like a committed one.  Ids are not
assigned until commit; they are predicted here as Moonfire's are (the ids a
stream's next recordings will get, in order), from the stream's newest
committed recording.  The reads are ordered so each recording is seen at least
once: the recorder's state first (growing, then uncommitted), the database
after; one committed in between is then in both, recognised by its start time,
and the committed row wins.  If a queued recording is rejected at commit (a
rare, logged event) the ids predicted after it are one too high until the list
is read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moonfire.db import RecordingRow, Stream
from moonfire.db.rows import composite_id
from moonfire_core import decode_index, encode_index
from moonfire_core.records import FLAG_TRAILING_ZERO, RecordingToSave, WriterSnapshot


@dataclass(frozen=True, slots=True)
class RecorderState:
    """What the recorder holds of one stream, read in this order: ``growing`` first."""

    growing: WriterSnapshot | None
    uncommitted: Sequence[RecordingToSave]
    #: The directory open these will be committed under (the API's ``openId``).
    open_id: int | None


@dataclass(frozen=True, slots=True)
class UnsavedRecording:
    """A recording not in the database yet, with what serving it needs."""

    row: RecordingRow
    video_index: bytes
    sample_file_uuid: bytes
    #: The one being written (``growing`` in the API), not a closed one.
    growing: bool


def unsaved_recordings(
    state: RecorderState, stream: Stream, newest_committed: RecordingRow | None
) -> list[UnsavedRecording]:
    """The stream's recordings in memory and not (yet) in the database, oldest first.

    ``newest_committed`` is the stream's newest committed recording, read from the
    database *after* ``state`` was taken; anything starting at or before it is
    committed and left out.
    """
    if newest_committed is None:
        next_id, committed_until = stream.next_recording_id, None
    else:
        next_id = newest_committed.recording_id + 1
        committed_until = newest_committed.start_time_90k
    out: list[UnsavedRecording] = []
    seen_starts: set[int] = set()
    for recording in state.uncommitted:
        if committed_until is not None and recording.start_time_90k <= committed_until:
            continue
        row = RecordingRow(
            composite_id=composite_id(stream.id, next_id + len(out)),
            stream_id=stream.id,
            run_offset=recording.run_offset,
            flags=recording.flags,
            sample_file_bytes=recording.sample_file_bytes,
            start_time_90k=recording.start_time_90k,
            duration_90k=recording.duration_90k,
            local_time_delta_90k=recording.local_time_delta_90k,
            video_samples=recording.video_samples,
            video_sync_samples=recording.video_sync_samples,
            video_sample_entry_id=recording.video_sample_entry_id,
            open_id=state.open_id,
        )
        out.append(UnsavedRecording(row, recording.video_index, recording.sample_file_uuid, False))
        seen_starts.add(recording.start_time_90k)
    growing = state.growing
    if (
        growing is not None
        and growing.start_time_90k not in seen_starts  # closed since: the queued one is whole
        and (committed_until is None or growing.start_time_90k > committed_until)
    ):
        on_disk = _on_disk(growing, composite_id(stream.id, next_id + len(out)), state.open_id)
        if on_disk is not None:
            out.append(on_disk)
    return out


def _on_disk(snapshot: WriterSnapshot, recording_composite_id: int, open_id: int | None) -> (
    UnsavedRecording | None
):
    """The snapshot cut to the samples whose bytes are all in the file (None: not one yet)."""
    decoded = decode_index(snapshot.video_index)
    ends = decoded.positions.astype(np.int64) + decoded.sizes
    count = int(np.searchsorted(ends, snapshot.file_bytes, side="right"))
    if count == 0:
        return None
    if count == decoded.video_samples:
        video_index = snapshot.video_index
    else:
        video_index = encode_index(
            decoded.durations[:count], decoded.sizes[:count], decoded.is_key[:count],
            decoded.composition_offsets[:count],
        )
    durations = decoded.durations[:count]
    row = RecordingRow(
        composite_id=recording_composite_id,
        stream_id=snapshot.stream_id,
        run_offset=snapshot.run_offset,
        flags=FLAG_TRAILING_ZERO if durations[-1] == 0 else 0,
        sample_file_bytes=int(ends[count - 1]),
        start_time_90k=snapshot.start_time_90k,
        duration_90k=int(durations.sum()),
        local_time_delta_90k=snapshot.local_time_delta_90k,
        video_samples=count,
        video_sync_samples=int(decoded.is_key[:count].sum()),
        video_sample_entry_id=snapshot.video_sample_entry_id,
        open_id=open_id,
    )
    return UnsavedRecording(row, video_index, snapshot.sample_file_uuid, True)
