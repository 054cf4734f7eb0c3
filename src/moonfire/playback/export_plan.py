"""Planning an export: a stream's recordings in ``[start, end)`` as one ``.mp4`` per stretch.

Pure planning, no output: :func:`plan_export` queries the database, clips the first and last
recordings to the range, groups the segments into gap-free stretches (``split_at_gaps``; see
docs/design.md "Virtual .mp4": a ``.mp4`` never spans a gap) and builds a ``VirtualFile`` per
stretch.  Every sample file the export will read is checked (exists, has exactly the row's
``sample_file_bytes``) here, *before* the caller writes anything, so a missing or truncated file
fails the export up front instead of leaving a partial output behind.

A recording whose local file is gone and that an archive holds (schema 7) is read from the
archive instead, each object whole with its SHA-1 checked (``moonfire.storage.archive_reader``).
Planning checks that the archive answers (a ``HEAD`` of the first such object), so an archive
that can't be reached fails the export before anything is written; an object missing or
corrupted is found when its turn comes, and the caller removes what it wrote.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

from moonfire.db import MAIN, Database, RecordingRow
from moonfire.errors import MoonfireError
from moonfire.playback.mp4 import VirtualFile, build_mp4, split_at_gaps
from moonfire.playback.segment import Segment, recording_name
from moonfire.storage.archive_reader import (
    ArchivedSampleFile,
    ArchiveReadError,
    ArchiveReaders,
    ArchiveUnavailableError,
)
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.time import format_time
from moonfire_core.sampledir import SampleDirectory


class ExportError(MoonfireError):
    """The requested export cannot be produced (bad range, no recordings, bad sample file)."""


@dataclass(frozen=True, slots=True)
class ExportPart:
    """One gap-free stretch of the export and the ``.mp4`` that holds it."""

    file: VirtualFile
    #: Wall-clock range presented by the file (the requested range, clipped to the recordings).
    start_90k: int
    end_90k: int

    @property
    def duration_90k(self) -> int:
        return self.end_90k - self.start_90k

    @property
    def frames(self) -> int:
        """Samples in the file, the GOP prefix before a mid-GOP start included."""
        return sum(segment.frames for segment in self.file.segments)


def clip_to_range(row: RecordingRow, start_90k: int, end_90k: int) -> tuple[int, int]:
    """The part of ``row`` inside wall-clock ``[start_90k, end_90k)``, relative to its start."""
    begin = min(max(start_90k - row.start_time_90k, 0), row.duration_90k)
    end = max(min(end_90k - row.start_time_90k, row.duration_90k), begin)
    return begin, end


def plan_export(
    db: Database,
    camera: int | str,
    start_90k: int,
    end_90k: int,
    stream_type: str = MAIN,
    timestamps: datetime.tzinfo | None = None,
    archives: ArchiveReaders | None = None,
) -> list[ExportPart]:
    """The ``.mp4`` files (one per gap-free stretch, in time order) for ``[start_90k, end_90k)``
    of a camera's main (or sub) stream; with ``timestamps``, each has a subtitle track showing
    the wall-clock time in that zone.

    :raises ExportError: start not before end, no recordings in the range, a sample file
        that is missing or whose size differs from the database row, or an archive holding
        recordings whose local file is gone that can't be reached.
    :raises UnknownCameraError: no such camera.
    :raises UnknownStreamError: the camera has no such stream.
    """
    if start_90k >= end_90k:
        raise ExportError(
            f"start {format_time(start_90k)} ({start_90k}) is not before end "
            f"{format_time(end_90k)} ({end_90k})"
        )
    cam = db.get_camera(camera)
    stream = cam.stream(stream_type)
    rows = db.list_recordings_by_time(stream.id, start_90k, end_90k)
    if not rows:
        raise ExportError(
            f"stream {cam.short_name}/{stream.type} has no recordings between "
            f"{format_time(start_90k)} and {format_time(end_90k)}"
        )
    sample_file_dir_path = db.sample_file_dir(stream.sample_file_dir_id).path
    try:
        # No lock: an export reads committed recordings and may run beside the recorder.  The
        # handle stays open as long as the returned files can read from it.
        directory = SampleDirectory(sample_file_dir_path, lock="none")
    except OSError as e:
        raise ExportError(f"can't open sample file directory {sample_file_dir_path}: {e}") from None
    # One query for every playback blob (a 24-hour export has 1440; one query each was a
    # third of the time to the first byte).  A row's id range can hold ids outside the time
    # range (recordings out of time order): they are fetched and ignored.
    playbacks = db.list_playback_by_id(
        stream.id,
        min(row.recording_id for row in rows),
        max(row.recording_id for row in rows),
    )
    first_id = min(row.recording_id for row in rows)
    last_id = max(row.recording_id for row in rows)
    archived = (archives or ArchiveReaders()).archived_files(
        db, stream.id, first_id, last_id, {row.composite_id: row.sample_file_bytes for row in rows},
        mode="whole")
    _check_archives_answer(archived.values())
    names: dict[int, str] = {}
    segments = []
    for row in rows:
        playback = playbacks.get(row.composite_id)
        if playback is None:  # deleted between the two queries (an export takes no lock)
            raise ExportError(
                f"recording {recording_name(row)} ({format_time(row.start_time_90k)}) was "
                "deleted while the export was being planned"
            )
        in_archive = archived.get(row.composite_id)
        name = uuid_name(playback.sample_file_uuid)
        if in_archive is None:
            _check_sample_file(row, directory, name)
        names[row.composite_id] = name
        segments.append(Segment(row, playback.video_index,
                                clip_to_range(row, start_90k, end_90k), in_archive))
    entries = {
        entry_id: db.get_video_sample_entry(entry_id)
        for entry_id in {row.video_sample_entry_id for row in rows}
    }

    def open_sample_file(row: RecordingRow) -> int:
        return directory.open_file(names[row.composite_id])

    parts = []
    for stretch in split_at_gaps(segments):
        first, last = stretch[0], stretch[-1]
        parts.append(
            ExportPart(
                file=build_mp4(stretch, entries, open_sample_file, timestamps),
                start_90k=first.row.start_time_90k + first.desired_range_90k[0],
                end_90k=last.row.start_time_90k + last.desired_range_90k[1],
            )
        )
    return parts


def _check_archives_answer(files: Iterable[ArchivedSampleFile]) -> None:
    """A ``HEAD`` of the first object of each archive the export reads: one that can't be
    reached fails the export now, before anything is written."""
    seen: set[int] = set()
    for file in files:
        if id(file.reader) in seen:
            continue
        seen.add(id(file.reader))
        try:
            file.reader.probe(file)
        except (ArchiveUnavailableError, ArchiveReadError) as e:
            raise ExportError(f"{file} is only in the archive, and: {e}") from None


def _check_sample_file(row: RecordingRow, directory: SampleDirectory, name: str) -> None:
    path = os.path.join(directory.path, name)
    try:
        size = directory.file_size(name)
    except FileNotFoundError:
        raise ExportError(
            f"sample file {path} of recording {recording_name(row)} "
            f"({format_time(row.start_time_90k)}) is missing"
        ) from None
    if size != row.sample_file_bytes:
        raise ExportError(
            f"sample file {path} of recording {recording_name(row)} "
            f"({format_time(row.start_time_90k)}) is {size} bytes; the database says "
            f"{row.sample_file_bytes}"
        )
