"""Check the storage invariants of ``docs/design.md`` against a database and one of its
sample file directories (``moonfire check`` checks each in turn).

Read-only: it opens the database read-only, opens the directory through
``moonfire_core.sampledir.SampleDirectory`` without a lock (``lock="none"``; the
caller, ``moonfire check``, holds a shared one) and never deletes or changes
anything.  Each problem found becomes one
``Violation``; the caller prints them and exits non-zero if there is any.

1. every recording row has its playback row and its file, of the recorded size
   (and SHA-1 with ``hash_contents``), *or* is archived-only (schema 7:
   ``recording_archive.local_deleted_time_sec`` set), when its archive objects are its
   copy: those are checked by ``moonfire check --archive``
   (``storage.archive.check_archive``), so here they are only counted
   (``CheckSummary``); either way its index re-decodes to the row's bytes, samples,
   sync samples, duration and trailing-zero flag;
2. no file is in the directory without a recording row or a reservation row;
3. no reservation rows are left (true after an orderly shutdown).
"""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from moonfire.db import Database, RecordingRow, SampleFileDirRow
from moonfire.db.rows import index_mismatches
from moonfire.storage.dir_meta import (
    NON_SAMPLE_NAMES,
    DirectoryMismatchError,
    DirMeta,
    read_meta,
    verify_meta,
)
from moonfire.storage.sample_file_dir import uuid_name
from moonfire_core import CorruptIndexError, decode_index
from moonfire_core.sampledir import SampleDirectory

RESERVATION_STATES = {0: "writing", 1: "deleting"}


@dataclass(frozen=True)
class Violation:
    invariant: int  # 1, 2 or 3 as in the module docstring; 0 for the directory binding
    message: str

    def __str__(self) -> str:
        return f"[invariant {self.invariant}] {self.message}" if self.invariant else self.message


@dataclass
class CheckSummary:
    """What a check found that is not a violation."""

    #: Composite ids of the archived-only recordings (their archive objects are their copy).
    archived_only: list[int] = field(default_factory=list)


def check(
    db: Database,
    dir_row: SampleFileDirRow,
    hash_contents: bool = False,
    progress: Callable[[int], None] | None = None,
    summary: CheckSummary | None = None,
) -> Iterator[Violation]:
    """Yield every violation found in the directory ``dir_row`` and the rows of the streams
    stored there; ``progress(nbytes)`` is called as files are hashed, and ``summary``
    (if given) gets the archived-only recordings."""
    summary = summary if summary is not None else CheckSummary()
    sample_file_dir_path = dir_row.path
    try:
        directory = SampleDirectory(sample_file_dir_path, lock="none")
    except OSError as e:
        yield Violation(1, f"can't open sample file directory {sample_file_dir_path}: {e}")
        yield Violation(1, f"can't list sample file directory {sample_file_dir_path}: {e}")
        return
    with directory:
        yield from _check_directory(db, dir_row, directory, hash_contents, progress, summary)


def _check_directory(
    db: Database,
    dir_row: SampleFileDirRow,
    directory: SampleDirectory,
    hash_contents: bool,
    progress: Callable[[int], None] | None,
    summary: CheckSummary,
) -> Iterator[Violation]:
    sample_file_dir_path = directory.path
    yield from _check_binding(db, dir_row, directory)
    try:
        names = set(directory.list_names())
    except OSError as e:
        yield Violation(1, f"can't list sample file directory {sample_file_dir_path}: {e}")
        return
    reserved = dict(db.list_reserved_sample_files(dir_row.id))
    seen: dict[bytes, int] = {}
    for stream in db.list_streams(dir_row.id):
        archived_only = db.list_archived_only(stream.id, 0, 0xFFFF_FFFF)
        for row in db.list_recordings(stream.id):
            if row.composite_id in archived_only:
                summary.archived_only.append(row.composite_id)
                yield from _check_archived_only(db, row)
                continue
            yield from _check_recording(db, row, directory, names, seen, hash_contents, progress)
    for name in sorted(names - NON_SAMPLE_NAMES):
        try:
            sample_file_uuid = _parse_uuid(name)
        except ValueError:
            yield Violation(
                2,
                f"unknown file {name!r} in {sample_file_dir_path} (not a sample file); left alone",
            )
            continue
        if sample_file_uuid not in seen and sample_file_uuid not in reserved:
            yield Violation(
                2, f"sample file {name} is not used by any recording or reservation; left alone"
            )
    for sample_file_uuid, state in sorted(reserved.items()):
        yield Violation(
            3,
            f"reservation for {uuid_name(sample_file_uuid)} (state "
            f"{RESERVATION_STATES.get(state, state)}) remains; an orderly shutdown leaves none",
        )


def _parse_uuid(name: str) -> bytes:
    parsed = uuidlib.UUID(name)
    if str(parsed) != name:
        raise ValueError(name)
    return parsed.bytes


def _check_binding(
    db: Database, row: SampleFileDirRow, directory: SampleDirectory
) -> Iterator[Violation]:
    sample_file_dir_path = directory.path
    try:
        verify_meta(
            read_meta(directory.fileno(), sample_file_dir_path),
            DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid),
            sample_file_dir_path,
            db.last_complete_open(row.id),
        )
    except DirectoryMismatchError as e:
        yield Violation(0, str(e))


def _check_recording(
    db: Database,
    row: RecordingRow,
    directory: SampleDirectory,
    names: set[str],
    seen: dict[bytes, int],
    hash_contents: bool,
    progress: Callable[[int], None] | None,
) -> Iterator[Violation]:
    label = f"recording {db.stream_name(row.stream_id)}/{row.recording_id}"
    try:
        playback = db.get_playback(row.composite_id)
    except LookupError:
        yield Violation(1, f"{label} has no recording_playback row")
        return
    name = uuid_name(playback.sample_file_uuid)
    other = seen.setdefault(playback.sample_file_uuid, row.composite_id)
    if other != row.composite_id:
        yield Violation(1, f"{label} shares sample file {name} with composite id {other}")
    yield from _check_index(label, row, playback.video_index)
    if name not in names:
        yield Violation(1, f"{label}: sample file {name} is missing")
        return
    try:
        size = directory.file_size(name)
    except FileNotFoundError:
        yield Violation(1, f"{label}: sample file {name} is missing")
        return
    if size != row.sample_file_bytes:
        yield Violation(
            1, f"{label}: sample file {name} has {size} bytes; the row says {row.sample_file_bytes}"
        )
        return
    if hash_contents:
        try:
            digest = _sha1_file(directory, name, progress)
        except OSError as e:
            yield Violation(1, f"{label}: can't read sample file {name}: {e}")
            return
        if digest != playback.sample_file_sha1:
            yield Violation(
                1,
                f"{label}: sample file {name} has SHA-1 {digest.hex()}; the row says "
                f"{playback.sample_file_sha1.hex()}",
            )


def _check_archived_only(db: Database, row: RecordingRow) -> Iterator[Violation]:
    """An archived-only row needs its playback row (index, SHA-1) but no local file: its
    uuid is not counted as used, so a file of that name left without a reservation is a
    stray (invariant 2)."""
    label = f"recording {db.stream_name(row.stream_id)}/{row.recording_id} (archived-only)"
    try:
        playback = db.get_playback(row.composite_id)
    except LookupError:
        yield Violation(1, f"{label} has no recording_playback row")
        return
    yield from _check_index(label, row, playback.video_index)


def _check_index(label: str, row: RecordingRow, blob: bytes) -> Iterator[Violation]:
    try:
        decoded = decode_index(blob)
    except CorruptIndexError as e:
        yield Violation(1, f"{label}: corrupt video_index: {e}")
        return
    for problem in index_mismatches(row, decoded):
        yield Violation(1, f"{label}: video_index disagrees with the row: {problem}")


def _sha1_file(
    directory: SampleDirectory, name: str, progress: Callable[[int], None] | None
) -> bytes:
    h = hashlib.sha1()
    fd = directory.open_file(name)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    finally:
        os.close(fd)
    return h.digest()
