"""Retention policy without a disk: which of a stream's rows go, oldest first; then, with
the storage engine, how the syncer applies it to a stream with an archive (schema 7): an
archived recording loses only its local file, one not yet archived waits for the archive
unless the disk's floor needs its space."""

from __future__ import annotations

import logging
import os
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from moonfire.db import RecordingRow
from moonfire.db.database import ArchiveState
from moonfire.db.errors import ArchiveInUseError
from moonfire.storage import retention
from moonfire.storage.invariants import CheckSummary, check
from moonfire.storage.retention import (
    FREE_INODES_PER_STREAM,
    FREE_SPACE_RECORDINGS,
    for_free_inodes,
    for_free_space,
    oldest_across_streams,
    oldest_first,
    to_fit_budget,
    to_make_room,
)
from moonfire.storage.sample_file_dir import uuid_name
from tests.support.engine import write_frames


@dataclass(frozen=True)
class Row:
    composite_id: int
    stream_id: int
    sample_file_bytes: int
    start_time_90k: int = 0
    duration_90k: int = 0


def rows(
    stream_id: int, *sizes: int, start: int = 0, every: int = 60, duration: int = 0
) -> list[Row]:
    """A stream's rows oldest first, recording ids 1, 2, ..., starting ``every`` s apart
    and lasting ``duration`` s."""
    return [
        Row(
            (stream_id << 32) | (i + 1),
            stream_id,
            size,
            (start + i * every) * 90000,
            duration * 90000,
        )
        for i, size in enumerate(sizes)
    ]


def ids(chosen) -> list[int]:
    return [r.composite_id & 0xFFFFFFFF for r in chosen]


class Counting:
    """An iterator that counts how many rows were taken from it (the db's is lazy)."""

    def __init__(self, items: list[Row]) -> None:
        self.items = items
        self.taken = 0

    def __iter__(self) -> Iterator[Row]:
        for item in self.items:
            self.taken += 1
            yield item


def test_free_space_floor_is_three_recordings() -> None:
    assert FREE_SPACE_RECORDINGS == 3


def test_within_budget_deletes_nothing_and_reads_no_row() -> None:
    source = Counting(rows(1, 100, 100, 100))
    deletion = to_fit_budget(source, usage_bytes=300, retain_bytes=1000)
    assert deletion.rows == []
    assert not deletion.needed
    assert not deletion.short
    assert deletion.bytes_freed == 0
    assert source.taken == 0


def test_exactly_at_budget_deletes_nothing() -> None:
    assert to_fit_budget(rows(1, 100, 200), usage_bytes=300, retain_bytes=300).rows == []


def test_over_budget_deletes_the_oldest_first_and_no_more_than_needed() -> None:
    source = Counting(rows(1, 100, 200, 300, 400))
    deletion = to_fit_budget(source, usage_bytes=1000, retain_bytes=750)
    assert ids(deletion.rows) == [1, 2]  # 300 bytes freed >= 250 needed
    assert deletion.bytes_needed == 250
    assert deletion.bytes_freed == 300
    assert deletion.needed and not deletion.short
    assert source.taken <= 3  # stopped once enough was freed


def test_one_byte_over_costs_the_oldest_recording_only() -> None:
    deletion = to_fit_budget(rows(1, 50, 60), usage_bytes=110, retain_bytes=109)
    assert ids(deletion.rows) == [1]


def test_incoming_recording_counts_against_the_budget() -> None:
    existing = rows(1, 100, 100, 100)
    assert to_fit_budget(existing, 300, 400).rows == []
    deletion = to_fit_budget(existing, 300, 400, incoming_bytes=150)
    assert ids(deletion.rows) == [1]
    assert deletion.bytes_needed == 50


def test_budgets_are_per_camera() -> None:
    front, back = rows(1, 100, 100, 100, 100), rows(2, 100, 100, 100, 100)
    front_deletion = to_fit_budget(front, usage_bytes=400, retain_bytes=300)
    back_deletion = to_fit_budget(back, usage_bytes=400, retain_bytes=100)
    assert ids(front_deletion.rows) == [1]
    assert ids(back_deletion.rows) == [1, 2, 3]
    assert {r.stream_id for r in front_deletion.rows} == {1}
    assert {r.stream_id for r in back_deletion.rows} == {2}


def test_budget_beyond_reach_deletes_every_row_and_says_it_is_short() -> None:
    # Usage counts bytes the rows offered don't cover (say, a recording being saved).
    deletion = to_fit_budget(rows(1, 100, 100), usage_bytes=500, retain_bytes=100)
    assert ids(deletion.rows) == [1, 2]
    assert deletion.short
    assert deletion.bytes_needed == 400


def test_no_rows_at_all() -> None:
    assert to_fit_budget([], usage_bytes=500, retain_bytes=0).rows == []
    assert to_make_room([], 1000).rows == []
    assert for_free_space([], free_bytes=0, recording_bytes=100).rows == []


def test_zero_budget_deletes_everything() -> None:
    assert ids(to_fit_budget(rows(1, 1, 2, 3), 6, 0).rows) == [1, 2, 3]


def test_enough_free_space_deletes_nothing() -> None:
    deletion = for_free_space(rows(1, 100), free_bytes=3 * 100, recording_bytes=100)
    assert deletion.rows == [] and not deletion.needed
    assert deletion.free_bytes == 300


def test_free_space_keeps_room_for_three_recordings() -> None:
    deletion = for_free_space(rows(1, 40, 40, 40, 40), free_bytes=200, recording_bytes=100)
    assert deletion.bytes_needed == FREE_SPACE_RECORDINGS * 100 - 200
    assert ids(deletion.rows) == [1, 2, 3]  # 120 >= 100
    assert deletion.free_bytes == 200


def test_free_space_counts_and_skips_the_rows_the_budget_chose() -> None:
    stream = rows(1, 50, 50, 50, 50)
    chosen = stream[:1]
    deletion = for_free_space(stream, free_bytes=180, recording_bytes=100, already_chosen=chosen)
    # 180 free + 50 being deleted anyway = 230; 70 more are needed.
    assert deletion.free_bytes == 230
    assert deletion.bytes_needed == 70
    assert ids(deletion.rows) == [2, 3]


def test_free_space_satisfied_by_the_budgets_deletions_alone() -> None:
    stream = rows(1, 200, 50)
    deletion = for_free_space(
        stream, free_bytes=100, recording_bytes=100, already_chosen=stream[:1]
    )
    assert deletion.rows == [] and not deletion.needed


def test_free_space_short_when_the_camera_has_too_little() -> None:
    deletion = for_free_space(rows(1, 10), free_bytes=0, recording_bytes=100)
    assert ids(deletion.rows) == [1]
    assert deletion.short


def test_make_room_deletes_at_least_one_recording() -> None:
    assert ids(to_make_room(rows(1, 100, 100), bytes_wanted=0).rows) == [1]
    assert ids(to_make_room(rows(1, 100, 100), bytes_wanted=1).rows) == [1]


def test_make_room_frees_at_least_what_the_lost_recording_reached() -> None:
    deletion = to_make_room(rows(1, 30, 30, 30, 30), bytes_wanted=70)
    assert ids(deletion.rows) == [1, 2, 3]
    assert deletion.bytes_freed == 90


def test_oldest_first_needs_nothing() -> None:
    source = Counting(rows(1, 1, 2))
    assert oldest_first(source, 0) == []
    assert oldest_first(source, -5) == []


def test_recording_rows_satisfy_the_policy() -> None:
    def row(recording_id: int, size: int) -> RecordingRow:
        return RecordingRow(
            composite_id=(7 << 32) | recording_id,
            stream_id=7,
            run_offset=0,
            flags=0,
            sample_file_bytes=size,
            start_time_90k=recording_id * 90000,
            duration_90k=90000,
            local_time_delta_90k=0,
            video_samples=30,
            video_sync_samples=1,
            video_sample_entry_id=1,
        )

    deletion: retention.Deletion[RecordingRow] = to_fit_budget(
        [row(1, 10), row(2, 10), row(3, 10)], usage_bytes=30, retain_bytes=15
    )
    assert [r.recording_id for r in deletion.rows] == [1, 2]


# ---- the inode floor ------------------------------------------------------------------


def test_enough_free_inodes_deletes_nothing():
    d = for_free_inodes(rows(1, 10, 10), FREE_INODES_PER_STREAM * 2, 1000, streams=2)
    assert (d.rows, d.needed) == ([], False)


def test_few_free_inodes_delete_the_oldest_one_per_inode_missing():
    d = for_free_inodes(rows(1, 10, 20, 30, 40), FREE_INODES_PER_STREAM - 2, 1000, streams=1)
    assert (ids(d.rows), d.inodes_needed, d.bytes_freed, d.short) == ([1, 2], 2, 30, False)


def test_the_inode_floor_grows_with_the_cameras():
    d = for_free_inodes(rows(1, 10, 20, 30, 40), FREE_INODES_PER_STREAM, 1000, streams=2)
    assert ids(d.rows) == [1, 2, 3, 4][:FREE_INODES_PER_STREAM]


def test_rows_already_chosen_count_as_freed_inodes_and_are_skipped():
    # Their files are unlinked right after the commit, before the pool's next files are made.
    all_rows = rows(1, 10, 20, 30, 40)
    d = for_free_inodes(all_rows, FREE_INODES_PER_STREAM - 1, 1000, 1, already_chosen=all_rows[:1])
    assert (d.rows, d.needed, d.free_inodes) == ([], False, FREE_INODES_PER_STREAM)
    d = for_free_inodes(all_rows, FREE_INODES_PER_STREAM - 3, 1000, 1, already_chosen=all_rows[:1])
    assert (ids(d.rows), d.inodes_needed, d.free_inodes) == ([2, 3], 2, FREE_INODES_PER_STREAM - 2)


def test_too_few_rows_for_the_inode_floor_is_short():
    d = for_free_inodes(rows(1, 10), 0, 1000, streams=1)
    assert (ids(d.rows), d.short) == ([1], True)


def test_a_filesystem_without_an_inode_count_has_no_inode_floor():
    d = for_free_inodes(rows(1, 10, 20), 0, 0, streams=1)  # btrfs reports f_files = 0
    assert (d.rows, d.needed) == ([], False)


def test_the_inode_floor_reads_only_as_far_as_needed():
    source = Counting(rows(1, *([10] * 100)))
    for_free_inodes(source, FREE_INODES_PER_STREAM - 2, 1000, streams=1)
    assert source.taken <= 3


# ---- the floors for a transaction saving several streams ----------------------------------


def test_oldest_across_streams_merges_by_start_time() -> None:
    a, b = rows(1, 10, 10, 10, start=0), rows(2, 10, 10, 10, start=30)
    merged = list(oldest_across_streams([a, b]))
    assert [(r.stream_id, r.composite_id & 0xFFFFFFFF) for r in merged] == [
        (1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3)
    ]
    # The stream holding the oldest footage (the largest budget for the disk) goes first.
    old, recent = rows(1, 10, 10, 10, start=0), rows(2, 10, 10, start=1000)
    assert [r.stream_id for r in oldest_across_streams([recent, old])] == [1, 1, 1, 2, 2]


def test_oldest_across_streams_reads_only_as_far_as_needed() -> None:
    sources = [Counting(rows(c, *([10] * 100), start=c)) for c in (1, 2, 3, 4)]
    d = for_free_inodes(oldest_across_streams(sources), 4 * FREE_INODES_PER_STREAM - 2, 1000, 4)
    assert [r.stream_id for r in d.rows] == [1, 2]
    assert sum(s.taken for s in sources) <= 4 + 3


def test_one_inode_floor_for_a_transaction_of_several_cameras() -> None:
    """K streams saved in one transaction delete the shortfall once, not K times.

    The one ``statvfs`` reading serves the whole transaction; asking once with
    every saving stream's rows merged deletes what one-by-one saves (each
    re-reading ``statvfs`` after the last one's unlinks) would have.
    """
    streams = [rows(c, *([10] * 5), start=c) for c in (1, 2, 3, 4)]
    free = 4 * FREE_INODES_PER_STREAM - 2
    d = for_free_inodes(oldest_across_streams(streams), free, 1000, streams=4)
    assert (len(d.rows), d.short) == (2, False)
    assert [r.stream_id for r in d.rows] == [1, 2]


def test_the_budgets_deletions_count_toward_the_inode_floor_of_every_camera() -> None:
    streams = [rows(c, *([10] * 5), start=c) for c in (1, 2)]
    budget = streams[1][:1]  # stream 2's budget deletes one
    d = for_free_inodes(
        oldest_across_streams(streams), 2 * FREE_INODES_PER_STREAM - 2, 1000, 2, budget
    )
    assert [(r.stream_id, r.composite_id & 0xFFFFFFFF) for r in d.rows] == [(1, 1)]


def test_one_free_space_floor_for_a_transaction_of_several_cameras() -> None:
    streams = [rows(c, 40, 40, 40, start=c) for c in (1, 2, 3)]
    budget = streams[2][:1]  # 40 bytes being deleted anyway
    d = for_free_space(
        oldest_across_streams(streams), free_bytes=200, recording_bytes=100, already_chosen=budget
    )
    assert (d.free_bytes, d.bytes_needed) == (240, 60)
    assert [(r.stream_id, r.composite_id & 0xFFFFFFFF) for r in d.rows] == [(1, 1), (2, 1)]


# ---- the maximum age ----------------------------------------------------------------------

DAY_90K = retention.DAY_90K
NOW_90K = 1_800_000_000 * 90000


def aged_rows(stream_id: int, *ends_days_ago: float, size: int = 10) -> list[Row]:
    """Rows oldest first, each lasting a minute and ending ``ends_days_ago`` before NOW."""
    out = []
    for i, days in enumerate(ends_days_ago):
        end = NOW_90K - int(days * DAY_90K)
        out.append(Row((stream_id << 32) | (i + 1), stream_id, size, end - 60 * 90000, 60 * 90000))
    return out


def test_a_day_is_a_day_of_90khz_units() -> None:
    assert DAY_90K == 86_400 * 90000


def test_rows_younger_than_the_maximum_age_stay() -> None:
    deletion = retention.to_fit_max_age(aged_rows(1, 6.5, 3, 0.1), max_age_days=7, now_90k=NOW_90K)
    assert deletion.rows == []
    assert not deletion.needed and not deletion.short


def test_rows_older_than_the_maximum_age_go_oldest_first() -> None:
    source = Counting(aged_rows(1, 30, 10, 8, 6.9, 1, size=25))
    deletion = retention.to_fit_max_age(source, max_age_days=7, now_90k=NOW_90K)
    assert ids(deletion.rows) == [1, 2, 3]
    assert deletion.bytes_freed == 75
    assert deletion.needed and not deletion.short  # it asks for exactly what it chose
    assert source.taken == 4  # read up to the first young row, no further


def test_a_recording_ending_exactly_at_the_cutoff_is_kept() -> None:
    cutoff = NOW_90K - 7 * DAY_90K
    at_cutoff = Row((1 << 32) | 1, 1, 10, cutoff - 90000, 90000)
    just_before = Row((1 << 32) | 1, 1, 10, cutoff - 90001, 90000)
    assert retention.to_fit_max_age([at_cutoff], 7, NOW_90K).rows == []
    assert retention.to_fit_max_age([just_before], 7, NOW_90K).rows == [just_before]


def test_the_end_not_the_start_decides_the_age() -> None:
    cutoff = NOW_90K - 2 * DAY_90K
    # Started a minute before the cutoff but still running past it: kept.
    straddling = Row((1 << 32) | 1, 1, 10, cutoff - 60 * 90000, 120 * 90000)
    assert retention.to_fit_max_age([straddling], 2, NOW_90K).rows == []


def test_the_maximum_age_stops_at_the_first_young_row() -> None:
    # A clock set back (or a camera's ahead) leaves an old-looking row after a young one:
    # it is kept, not hunted down, so a wrong clock can't delete recent footage.
    source = Counting(aged_rows(1, 9, 1, 20, 30))
    deletion = retention.to_fit_max_age(source, max_age_days=7, now_90k=NOW_90K)
    assert ids(deletion.rows) == [1]
    assert source.taken == 2


def test_every_row_too_old_goes() -> None:
    deletion = retention.to_fit_max_age(aged_rows(1, 40, 35, 31), 30, NOW_90K)
    assert ids(deletion.rows) == [1, 2, 3]
    assert retention.to_fit_max_age([], 30, NOW_90K).rows == []


class Calls:
    """A ``rows_oldest_first`` callable that counts its calls and the rows read in all."""

    def __init__(self, items: list[Row]) -> None:
        self.items = items
        self.calls: list[Counting] = []

    def __call__(self) -> Counting:
        self.calls.append(Counting(self.items))
        return self.calls[-1]


def test_stream_deletion_without_a_maximum_age_is_the_budget_alone() -> None:
    source = Calls(aged_rows(1, 400, 300, 200, size=100))
    budget, aged = retention.stream_deletion(source, 300, 150, None, NOW_90K, incoming_bytes=50)
    assert aged is None
    assert ids(budget.rows) == [1, 2]  # 300 + 50 incoming - 150 = 200 bytes needed
    assert len(source.calls) == 1


def test_stream_deletion_the_age_wins_when_it_deletes_more() -> None:
    # Well within the budget, but two recordings are past the maximum age.
    source = Calls(aged_rows(1, 10, 8, 2, 1, size=100))
    budget, aged = retention.stream_deletion(source, 400, 10**9, 7, NOW_90K)
    assert budget.rows == [] and not budget.needed
    assert aged is not None and ids(aged.rows) == [1, 2]
    assert len(source.calls) == 2  # each rule reads the rows from the oldest itself
    assert source.calls[0].taken == 0  # the budget needed none


def test_stream_deletion_the_budget_wins_when_it_deletes_more() -> None:
    source = Calls(aged_rows(1, 10, 8, 2, 1, size=100))
    budget, aged = retention.stream_deletion(source, 400, 100, 9, NOW_90K)
    assert ids(budget.rows) == [1, 2, 3]
    assert aged is not None and ids(aged.rows) == [1]
    # Both are prefixes of the same rows: the longer one holds the other.
    assert budget.rows[: len(aged.rows)] == aged.rows


def test_stream_deletion_counts_the_incoming_recording_against_the_budget_only() -> None:
    items = aged_rows(1, 3, 2, 1, size=100)
    budget, aged = retention.stream_deletion(lambda: iter(items), 300, 300, 5, NOW_90K, 100)
    assert ids(budget.rows) == [1]
    assert aged is not None and aged.rows == []


# ---- the syncer, for a stream with an archive ---------------------------------------------


def record(syncer, stream_id: int, entry_id: int, count: int, first: int = 0) -> None:
    """``count`` short recordings of ``stream_id``, each committed before the next."""
    for i in range(first, first + count):
        w = syncer.create_writer(None, stream_id, entry_id)
        write_frames(w, stream_id, start=i * 3000)
        w.close()
        syncer.flush()


def archived_stream(db, retain_bytes: int, **changes):
    """Camera ``front`` whose main stream archives to ``offsite`` (no store is needed: the
    tests say which recordings are archived with ``mark_archived``)."""
    db.add_archive("offsite", "s3://footage/site")
    db.add_camera("front", retain_bytes=retain_bytes)
    db.update_camera("front", archive="offsite", **changes)
    return db.get_camera("front").main


def mark_archived(db, rows) -> None:
    archive = db.get_archive("offsite")
    for r in rows:
        db.mark_archived(r.composite_id, archive.id, f"k/{r.recording_id}.sample",
                         f"k/{r.recording_id}.json",
                         db.get_playback(r.composite_id).sample_file_sha1)


def archived_only(db) -> list[int]:
    return [cid for (cid,) in db._conn.execute(
        "select composite_id from recording_archive where local_deleted_time_sec is not null"
        " order by composite_id")]


def local_files(db, sample_file_dir, rows) -> list[bool]:
    return [os.path.exists(os.path.join(
        sample_file_dir.path, uuid_name(db.get_playback(r.composite_id).sample_file_uuid)))
        for r in rows]


def test_the_budget_keeps_archived_recordings_as_archived_only_and_waits_for_the_rest(
    engine, caplog
) -> None:
    db, sample_file_dir, entry_id = engine
    budget = 15_000  # one recording (~12 kB) and a bit
    stream = archived_stream(db, retain_bytes=budget)
    caplog.set_level(logging.WARNING, "moonfire.storage.syncer")
    with sample_file_dir.start_syncer() as syncer:
        record(syncer, stream.id, entry_id, 6)
        rows = db.list_recordings(stream.id)
        # Nothing archived yet: the budget deletes none of them, and says so once (at the
        # second save, the first over the budget).
        assert len(rows) == 6 and archived_only(db) == []
        overruns = [r.getMessage() for r in caplog.records if "over its budget" in r.message]
        over = rows[0].sample_file_bytes + rows[1].sample_file_bytes - budget
        assert overruns == [
            f"stream front/main goes {over} bytes over its budget of {budget} bytes: it keeps "
            f"1 recording(s) "
            f"({rows[0].sample_file_bytes} bytes) its archive doesn't have yet until the "
            f"uploader catches up (`moonfire archive status` shows the backlog)"]
        mark_archived(db, rows[:4])
        syncer.enforce_retention()
        # The four archived ones lost their local files and kept their rows; the two the
        # archive doesn't have yet stay (over the budget until it does).
        assert db.list_recordings(stream.id) == rows
        assert archived_only(db) == [r.composite_id for r in rows[:4]]
        assert local_files(db, sample_file_dir, rows) == [False] * 4 + [True] * 2
        assert db.stream_usage(stream.id) == (
            2, sum(r.sample_file_bytes for r in rows[4:]), sum(r.duration_90k for r in rows[4:]))
        assert db.stream_time_range(stream.id)[0] == rows[0].start_time_90k  # still listed
        assert syncer.stats.made_archived_only == 4
        assert len([r for r in caplog.records if "over its budget" in r.message]) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert db.stream_archive_backlog(stream.id) == (
            2, sum(r.sample_file_bytes for r in rows[4:]))
    summary = CheckSummary()
    assert [str(v) for v in check(db, db.sample_file_dir(sample_file_dir.id), True,
                                  summary=summary)] == []
    assert summary.archived_only == [r.composite_id for r in rows[:4]]
    # Recovery at the next start doesn't miss the archived-only rows' files.
    with sample_file_dir.start_syncer() as syncer:
        syncer.flush()
    assert db.list_recordings(stream.id) == rows
    assert db.archived_only_usage(db.get_archive("offsite").id) == (
        4, sum(r.sample_file_bytes for r in rows[:4]))


FakeStatvfs = namedtuple("FakeStatvfs", "f_bavail f_frsize f_favail f_files")


def test_the_free_space_floor_takes_archived_recordings_first_then_loses_one_for_the_archive(
    engine, monkeypatch, caplog
) -> None:
    """The disk's floor (a fake free space: short by ``need`` bytes at the next save) first
    takes the archived recordings, oldest first, losing nothing; only when none is left
    does it delete one not yet archived, with a WARNING naming it as lost for the archive."""
    db, sample_file_dir, entry_id = engine
    stream = archived_stream(db, retain_bytes=10**9)
    need: list[int] = []  # bytes the next save's floor is short of

    def fstatvfs(fd: int) -> FakeStatvfs:
        free = 10**12
        pending = syncer.uncommitted(stream.id)
        if need and pending:
            free = retention.FREE_SPACE_RECORDINGS * pending[-1].sample_file_bytes - need[0]
        return FakeStatvfs(f_bavail=free, f_frsize=1, f_favail=0, f_files=0)

    monkeypatch.setattr("moonfire.storage.syncer.os.fstatvfs", fstatvfs)
    caplog.set_level(logging.WARNING, "moonfire.storage.syncer")
    with sample_file_dir.start_syncer() as syncer:
        record(syncer, stream.id, entry_id, 3)
        rows = db.list_recordings(stream.id)
        mark_archived(db, [rows[0], rows[2]])  # the second waits for the archive
        need.append(rows[0].sample_file_bytes + rows[2].sample_file_bytes)
        record(syncer, stream.id, entry_id, 1, first=3)
        assert [r.recording_id for r in db.list_recordings(stream.id)] == [1, 2, 3, 4]
        assert archived_only(db) == [rows[0].composite_id, rows[2].composite_id]
        assert syncer.stats.lost_for_archive == 0
        need[0] = 1  # now only recordings the archive lacks are local
        record(syncer, stream.id, entry_id, 1, first=4)
        assert syncer.stats.lost_for_archive == 1
    assert [r.recording_id for r in db.list_recordings(stream.id)] == [1, 3, 4, 5]
    lost = [r.getMessage() for r in caplog.records if "lost for the archive" in r.message]
    assert lost == [
        f"recording front/main/2 was deleted locally before it could be archived to 'offsite': "
        f"sample file directory {sample_file_dir.path} ran short of free space or inodes; it "
        f"is lost for the archive"]
    assert [str(v) for v in check(db, db.sample_file_dir(sample_file_dir.id), True)] == []


def test_an_expired_archive_copy_keeps_no_row_and_streams_without_archive_are_unchanged(
    engine
) -> None:
    """With ``archive_days``, a copy archived longer ago is being expired (its objects are
    deleted next), so the budget deletes that recording whole, as for a stream without an
    archive; ``delete_local_files`` re-checks that in its own transaction."""
    db, sample_file_dir, entry_id = engine
    stream = archived_stream(db, retain_bytes=10**9, archive_days=1)
    plain = db.add_camera("back", retain_bytes=10**9).main
    with sample_file_dir.start_syncer() as syncer:
        record(syncer, stream.id, entry_id, 3)
        record(syncer, plain.id, entry_id, 3)
        rows = db.list_recordings(stream.id)
        mark_archived(db, rows[:2])
        db._conn.execute("update recording_archive set archived_time_sec ="
                         " archived_time_sec - 2 * 86400 where composite_id = ?",
                         (rows[0].composite_id,))
        states = [state for _r, _u, state in db.list_oldest_local_recordings(stream.id)]
        assert [s.name for s in states] == ["NOT_ARCHIVED", "ARCHIVED", "NOT_ARCHIVED"]
        db.update_camera("front", retain_bytes=1)
        db.update_camera("back", retain_bytes=1)
        syncer.enforce_retention()
        # The third is older than archive_days by its start (the synthetic clock is 2023):
        # never uploaded, so not waiting for the archive either.
        assert [r.recording_id for r in db.list_recordings(stream.id)] == [2]
        assert archived_only(db) == [rows[1].composite_id]
        assert db.list_recordings(plain.id) == []
    assert [cid for cid, *_ in db.list_archived(db.get_archive("offsite").id)] == [
        rows[0].composite_id, rows[1].composite_id]  # the expiry deletes the first's objects
    # The archive holds the only copy of the archived-only one: it can't be removed.
    db.update_camera("front", archive="")
    with pytest.raises(ArchiveInUseError, match="archive 'offsite' holds the only copy of 1 "
                       "recording [(]their local files were deleted by retention[)]"):
        db.remove_archive("offsite")


def test_a_recording_archived_after_the_floor_listed_it_is_kept_archived_only(
    engine, monkeypatch, caplog
) -> None:
    """The free-space floor lists a recording as waiting for the archive, and its upload
    completes before the deletion commits: it becomes archived-only (``delete_local_files``
    re-checks in its statement), not deleted whole with a "lost for the archive" WARNING."""
    db, sample_file_dir, entry_id = engine
    stream = archived_stream(db, retain_bytes=10**9)
    need: list[int] = []

    def fstatvfs(fd: int) -> FakeStatvfs:
        free = 10**12
        pending = syncer.uncommitted(stream.id)
        if need and pending:
            free = retention.FREE_SPACE_RECORDINGS * pending[-1].sample_file_bytes - need[0]
        return FakeStatvfs(f_bavail=free, f_frsize=1, f_favail=0, f_files=0)

    listed = db.list_oldest_local_recordings
    calls: list[int] = []

    def uploaded_once_listed(stream_id: int):
        """The floor's second listing (of the recordings not archived, after the archived
        ones'): its oldest is uploaded right after the query said it waits."""
        calls.append(stream_id)
        for row, sample_file_uuid, state in listed(stream_id):
            if state is ArchiveState.WAITING and len(calls) == 2:
                mark_archived(db, [row])  # the uploader, meanwhile
            yield row, sample_file_uuid, state

    monkeypatch.setattr("moonfire.storage.syncer.os.fstatvfs", fstatvfs)
    caplog.set_level(logging.WARNING, "moonfire.storage.syncer")
    with sample_file_dir.start_syncer() as syncer:
        record(syncer, stream.id, entry_id, 3)
        rows = db.list_recordings(stream.id)
        monkeypatch.setattr(db, "list_oldest_local_recordings", uploaded_once_listed)
        need.append(1)
        record(syncer, stream.id, entry_id, 1, first=3)
        assert (syncer.stats.lost_for_archive, syncer.stats.made_archived_only) == (0, 1)
    assert [r.recording_id for r in db.list_recordings(stream.id)] == [1, 2, 3, 4]
    assert archived_only(db) == [rows[0].composite_id]
    assert not [r for r in caplog.records if "lost for the archive" in r.message]
    assert [str(v) for v in check(db, db.sample_file_dir(sample_file_dir.id), True)] == []
