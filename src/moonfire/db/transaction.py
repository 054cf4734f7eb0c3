"""``Transaction``: the multi-part writes that keep the sample-file invariants (brief §1.4).

A sample file may exist only while its uuid is in ``recording_playback`` or in
``reserved_sample_files``.  So a uuid is reserved (state 0, writing) before its
file is created; ``insert_recording`` swaps the reservation for the recording
rows; ``delete_recordings`` swaps them back (state 1, deleting); and only after
the file is unlinked and the directory fsynced does ``mark_sample_files_deleted``
drop the reservation.  Each swap is several statements; if any fails, the
transaction is marked ``must_rollback`` and can no longer commit.
"""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from moonfire_core.records import RecordingToSave

from .errors import (
    ConsistencyError,
    DatabaseError,
    RecordingRejectedError,
    UnknownCameraError,
    UnknownSampleFileDirError,
    UnknownStreamError,
)
from .rows import (
    CAMERA_COLUMNS,
    MAIN,
    RECORDING_ID_MASK,
    STREAM_COLUMNS,
    SUB,
    Camera,
    composite_id,
    format_uuid,
    stream_from_row,
)

STATE_WRITING = 0
STATE_DELETING = 1


class HasCompositeId(Protocol):
    @property
    def composite_id(self) -> int: ...  # read-only, so frozen rows (``RecordingRow``) qualify


class Transaction:
    """The operations of one open write transaction; get one from ``Database.transaction``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.must_rollback = False
        self._finished = False

    def finish(self) -> None:
        """Called by ``Database.transaction`` after COMMIT or ROLLBACK."""
        self._finished = True

    @contextmanager
    def _operation(self) -> Iterator[None]:
        if self._finished:
            raise DatabaseError("this transaction has already ended")
        if self.must_rollback:
            raise ConsistencyError("an earlier operation in this transaction failed; "
                                   "it can only roll back")
        try:
            yield
        except BaseException:
            self.must_rollback = True
            raise

    def reserve_sample_file(self, sample_file_dir_id: int) -> bytes:
        """A new random uuid, reserved for writing in that directory: its file may now be
        created there."""
        uuid = uuidlib.uuid4().bytes
        with self._operation():
            try:
                self.conn.execute(
                    "insert into reserved_sample_files (uuid, sample_file_dir_id, state)"
                    " values (?, ?, ?)",
                    (uuid, sample_file_dir_id, STATE_WRITING),
                )
            except sqlite3.IntegrityError as e:  # the foreign key
                raise UnknownSampleFileDirError(
                    f"no sample file directory with id {sample_file_dir_id}"
                ) from e
        return uuid

    def insert_recording(self, rec: RecordingToSave, open_id: int | None = None) -> int:
        """Turns the writing reservation of ``rec.sample_file_uuid`` into a recording.

        Assigns the stream's next recording id and returns the composite id.  The file
        must have been reserved in the stream's directory: a row naming a file in
        another directory would never find it.
        """
        uuid = bytes(rec.sample_file_uuid)
        with self._operation():
            reserved = self.conn.execute(
                "delete from reserved_sample_files where uuid = ? and state = ?"
                " returning sample_file_dir_id",
                (uuid, STATE_WRITING),
            ).fetchall()
            if len(reserved) != 1:
                raise ConsistencyError(f"uuid {format_uuid(uuid)} is not reserved for writing")
            row = self.conn.execute(
                "select next_recording_id, sample_file_dir_id from stream where id = ?",
                (rec.stream_id,),
            ).fetchone()
            if row is None:
                raise UnknownStreamError(f"no stream with id {rec.stream_id}")
            recording_id, dir_id = row
            if dir_id != reserved[0][0]:  # moved while recording: this one file is lost
                self.must_rollback = True
                raise RecordingRejectedError(
                    f"uuid {format_uuid(uuid)} was reserved in sample file directory "
                    f"{reserved[0][0]}, but stream {rec.stream_id} records to directory {dir_id}"
                )
            if recording_id > RECORDING_ID_MASK:
                raise ConsistencyError(f"stream {rec.stream_id} has used all 2**32 recording ids")
            cid = composite_id(rec.stream_id, recording_id)
            try:
                self._insert_rows(cid, uuid, rec, open_id)
            except sqlite3.IntegrityError as e:
                raise RecordingRejectedError(
                    f"recording {rec.stream_id}/{recording_id} (uuid {format_uuid(uuid)}) "
                    f"rejected by the database: {e}"
                ) from e
            self.conn.execute(
                "update stream set next_recording_id = next_recording_id + 1 where id = ?",
                (rec.stream_id,),
            )
        return cid

    def _insert_rows(self, cid: int, uuid: bytes, rec: Any, open_id: int | None) -> None:
        self.conn.execute(
            "insert into recording (composite_id, stream_id, run_offset, flags,"
            " sample_file_bytes, start_time_90k, duration_90k, local_time_delta_90k,"
            " video_samples, video_sync_samples, video_sample_entry_id, open_id)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, rec.stream_id, rec.run_offset, rec.flags, rec.sample_file_bytes,
             rec.start_time_90k, rec.duration_90k, rec.local_time_delta_90k,
             rec.video_samples, rec.video_sync_samples, rec.video_sample_entry_id, open_id),
        )
        self.conn.execute(
            "insert into recording_playback (composite_id, sample_file_uuid, sample_file_sha1,"
            " video_index) values (?, ?, ?, ?)",
            (cid, uuid, bytes(rec.sample_file_sha1), bytes(rec.video_index)),
        )

    def delete_recordings(self, rows: Iterable[HasCompositeId]) -> list[bytes]:
        """Turns recordings back into reservations (state deleting); returns their uuids.

        The files still exist: unlink them, fsync the directory, then call
        ``mark_sample_files_deleted`` in a later transaction.
        """
        uuids = []
        with self._operation():
            for row in rows:
                cid = row.composite_id
                # The child row first: recording_playback references recording.
                deleted = self.conn.execute(
                    "delete from recording_playback where composite_id = ?"
                    " returning sample_file_uuid",
                    (cid,),
                ).fetchall()
                if len(deleted) != 1:
                    raise ConsistencyError(
                        f"recording {cid >> 32}/{cid & RECORDING_ID_MASK}: deleted "
                        f"{len(deleted)} recording_playback rows; expected 1"
                    )
                count = self.conn.execute(
                    "delete from recording where composite_id = ?", (cid,)
                ).rowcount
                if count != 1:
                    raise ConsistencyError(
                        f"recording {cid >> 32}/{cid & RECORDING_ID_MASK}: deleted {count} "
                        "recording rows; expected 1"
                    )
                uuid = deleted[0][0]
                try:
                    # Its file is in its stream's directory (a stream with recordings
                    # never changes directory: ``Database.update_camera``).
                    self.conn.execute(
                        "insert into reserved_sample_files (uuid, sample_file_dir_id, state)"
                        " select ?, sample_file_dir_id, ? from stream where id = ?",
                        (uuid, STATE_DELETING, cid >> 32),
                    )
                except sqlite3.IntegrityError as e:
                    raise ConsistencyError(
                        f"uuid {format_uuid(uuid)} of recording {cid} is already reserved"
                    ) from e
                uuids.append(uuid)
        return uuids

    def mark_sample_files_deleted(self, uuids: Iterable[bytes]) -> None:
        """Drops reservations (either state) whose files are unlinked and the dir fsynced."""
        with self._operation():
            for uuid in uuids:
                count = self.conn.execute(
                    "delete from reserved_sample_files where uuid = ?", (bytes(uuid),)
                ).rowcount
                if count != 1:
                    raise ConsistencyError(f"uuid {format_uuid(uuid)} is not reserved")


def lookup_camera(conn: sqlite3.Connection, id_or_name: int | str) -> Camera:
    """The camera with this id (``int``) or short name (``str``) and its streams, else
    ``UnknownCameraError``."""
    if isinstance(id_or_name, str):
        row = conn.execute(
            f"select {CAMERA_COLUMNS} from camera where short_name = ?", (id_or_name,)
        ).fetchone()
        missing = f"no camera {id_or_name!r}"
    elif isinstance(id_or_name, int) and not isinstance(id_or_name, bool):
        row = conn.execute(f"select {CAMERA_COLUMNS} from camera where id = ?", (id_or_name,))\
            .fetchone()
        missing = f"no camera with id {id_or_name}"
    else:
        raise TypeError(f"a camera is named by its id (int) or short name (str), "
                        f"not {id_or_name!r}")
    if row is None:
        raise UnknownCameraError(missing)
    return camera_with_streams(conn, row)


def camera_with_streams(conn: sqlite3.Connection, row: Sequence[Any]) -> Camera:
    """A ``Camera`` from a row of ``CAMERA_COLUMNS``, with its streams read."""
    streams = {
        s.type: s
        for s in map(
            stream_from_row,
            conn.execute(f"select {STREAM_COLUMNS} from stream where camera_id = ?", (row[0],)),
        )
    }
    if MAIN not in streams:
        raise ConsistencyError(f"camera {row[2]!r} (id {row[0]}) has no main stream")
    id_, uuid, short_name, description, username, password, rotate_interval_sec = row
    return Camera(id_, uuid, short_name, description, username, password, rotate_interval_sec,
                  main=streams[MAIN], sub=streams.get(SUB))
