"""``moonfire check --repair``: adopt a database whose open a sample directory doesn't name.

A restored older database (or one copy of a database whose sample directory two copies
share) is refused at every read-write open (``dir_meta.verify_open``), before anything
could be deleted.  Adopting it, on a stopped recorder (the exclusive lock is taken here):

* a recording row whose file is present with the recorded size keeps it;
* a row whose file is gone but that an archive holds (a live ``recording_archive`` row:
  local retention deleted the file after the database was backed up) becomes archived-only
  (``local_deleted_time_sec``, schema 7), one line printed each: it plays from the archive,
  and ``archive_days`` expires it with its objects;
* any other row whose file is gone (or has another size) is dropped, one line printed each;
  a file of another size is left alone, as a stray;
* a file no row names is listed and left alone: never deleted;
* a reservation whose uuid a recording row names is dropped (its recovery would unlink
  that recording's file); every other reservation is left for the recorder's recovery,
  which unlinks it, and listed with the size of its file: no row names those files, so
  that recovery can't break invariant 1;
* then a new open makes the directory usable again (meta and database agree).

The database and directory UUIDs must still match: a foreign directory is never adopted.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from moonfire.db import Database, Open, RecordingRow, SampleFileDirRow
from moonfire.storage.dir_meta import NON_SAMPLE_NAMES, DirMeta, read_meta, verify_uuids
from moonfire.storage.sample_file_dir import record_open, uuid_name
from moonfire.time import Time, format_time
from moonfire_core.sampledir import SampleDirectory

RESERVATION_STATES = {0: "writing", 1: "deleting"}


@dataclass
class RepairReport:
    dropped_recordings: list[str] = field(default_factory=list)
    #: Rows whose file is gone, kept as archived-only: their archive holds them.
    archived_only: list[str] = field(default_factory=list)
    dropped_reservations: list[str] = field(default_factory=list)
    reservations_left: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    previous_open: Open | None = None
    new_open: Open | None = None


def adopt(
    db: Database, row: SampleFileDirRow, say: Callable[[str], None] = print
) -> RepairReport:
    """Adopt ``db`` for its sample file directory ``row``; ``say`` gets one line per change
    or find.

    Raises ``BlockingIOError`` if a recorder holds the directory, ``DirectoryMismatchError``
    if the directory belongs to another database (or is another directory).
    """
    report = RepairReport(previous_open=db.last_complete_open(row.id))
    with SampleDirectory(row.path) as directory:
        found = read_meta(directory.fileno(), row.path)
        verify_uuids(found, DirMeta(db_uuid=row.db_uuid, dir_uuid=row.uuid), row.path)
        assert found is not None
        names = set(directory.list_names()) - NON_SAMPLE_NAMES
        sizes: dict[str, int | None] = {}

        def size_of(name: str) -> int | None:
            if name not in sizes:
                try:
                    sizes[name] = directory.file_size(name) if name in names else None
                except FileNotFoundError:
                    sizes[name] = None
            return sizes[name]

        to_drop: list[RecordingRow] = []
        to_archive_only: list[RecordingRow] = []
        named: set[bytes] = set()
        for stream in db.list_streams(row.id):
            for rec, sample_file_uuid in db.list_oldest_recordings(stream.id):
                named.add(sample_file_uuid)
                name = uuid_name(sample_file_uuid)
                size = size_of(name)
                if size == rec.sample_file_bytes:
                    continue
                label = (f"recording {db.stream_name(stream.id)}/{rec.recording_id} (started "
                         f"{format_time(Time(rec.start_time_90k))})")
                archive = db.archive_holding(rec.composite_id) if size is None else None
                if archive is not None:
                    to_archive_only.append(rec)
                    report.archived_only.append(
                        f"{label}: its sample file {name} is missing; kept as archived-only, "
                        f"it plays from archive {archive!r}")
                    continue
                why = (
                    "is missing" if size is None
                    else f"has {size} bytes, the row says {rec.sample_file_bytes}; "
                    "the file is left alone"
                )
                to_drop.append(rec)
                report.dropped_recordings.append(f"dropped {label}: its sample file {name} {why}")
        reserved = dict(db.list_reserved_sample_files(row.id))
        colliding = sorted(u for u in reserved if u in named)
        for u in colliding:
            report.dropped_reservations.append(
                f"dropped reservation {uuid_name(u)} (state "
                f"{RESERVATION_STATES.get(reserved[u], reserved[u])}): a recording names its file"
            )
        for u, state in sorted(reserved.items()):
            if u in named:
                continue
            size = size_of(uuid_name(u))
            on_disk = "no file" if size is None else f"file of {size} bytes"
            report.reservations_left.append(
                f"reservation {uuid_name(u)} (state {RESERVATION_STATES.get(state, state)}, "
                f"{on_disk}) left for the recorder's recovery, which unlinks it"
            )
        kept = named - {_uuid_of(db, r) for r in to_drop + to_archive_only}
        for name in sorted(names):
            parsed = _parse_uuid(name)
            if parsed is not None and (parsed in kept or parsed in reserved):
                continue
            size = size_of(name)
            report.strays.append(
                f"stray file {name} ({size} bytes): no row names it; left alone"
            )
        if to_drop or to_archive_only or colliding:
            with db.transaction() as tx:
                tx.mark_sample_files_deleted(colliding)
                freed = tx.delete_recordings(to_drop)  # now state-1 reservations...
                # (the same, keeping the rows: archived-only; re-checked in the statement)
                freed += db.delete_local_files(tx, to_archive_only)
                tx.mark_sample_files_deleted(freed)  # ...dropped: nothing to unlink
        for line in (
            report.dropped_recordings + report.archived_only + report.dropped_reservations
            + report.reservations_left + report.strays
        ):
            say(line)
        report.new_open = record_open(directory, db, row.id, found)
    return report


def _uuid_of(db: Database, row: RecordingRow) -> bytes:
    return db.get_playback(row.composite_id).sample_file_uuid


def _parse_uuid(name: str) -> bytes | None:
    try:
        parsed = uuidlib.UUID(name)
    except ValueError:
        return None
    return parsed.bytes if str(parsed) == name else None
