"""Plain records shared by both twins of the writer and by the syncer.

They live in a pure-Python module so the compiled and the pure writer produce
the very same types.
"""

from dataclasses import dataclass

#: ``recording.flags`` bit: the last sample has duration 0 (brief §1.2).
FLAG_TRAILING_ZERO = 1


@dataclass(frozen=True, slots=True)
class PreviousWriter:
    """What the next writer of a run needs from the one before it (brief §4.1)."""

    end_time_90k: int
    local_time_delta_90k: int
    run_offset: int


@dataclass(slots=True)
class RecordingToSave:
    """A closed recording, handed by ``Writer.close`` to the syncer.

    ``fd`` is still open: the syncer fsyncs it, then the directory, then commits
    the row, and closes it.
    """

    stream_id: int
    sample_file_uuid: bytes
    fd: int
    run_offset: int
    flags: int
    sample_file_bytes: int
    start_time_90k: int
    duration_90k: int
    local_time_delta_90k: int
    video_samples: int
    video_sync_samples: int
    video_sample_entry_id: int
    video_index: bytes
    sample_file_sha1: bytes


@dataclass(frozen=True, slots=True)
class WriterSnapshot:
    """The recording a writer is writing, as far as it has gone (``Writer.snapshot``).

    For serving the recording being written (``growing`` in the API): the fields
    mean what ``RecordingToSave``'s do, over the samples indexed so far (every
    sample but the newest, whose duration is not known yet).  ``file_bytes`` is
    how many bytes reached the file: the indexed samples whose bytes all lie
    below it can be read back now; the rest are still in the writer's buffer.
    """

    stream_id: int
    sample_file_uuid: bytes
    run_offset: int
    start_time_90k: int
    duration_90k: int
    local_time_delta_90k: int
    video_samples: int
    video_sync_samples: int
    sample_file_bytes: int
    file_bytes: int
    video_sample_entry_id: int
    video_index: bytes
