"""Which recordings to delete: pure functions over rows, budgets and free space.

Nothing here touches the disk, the database or a clock; the syncer asks the
questions (a stream's usage and budget, the bytes free, the rows oldest
first) and carries out the answer durably.  Every rule deletes a stream's
*oldest* recordings first and stops as soon as enough bytes are freed:

* **budget** (``to_fit_budget``): the stream's bytes, plus a recording about
  to be committed, must fit its ``retain_bytes``;
* **maximum age** (``to_fit_max_age``): with a ``max_age_days``, recordings
  that ended longer ago go even within the budget; the syncer takes whichever
  of the budget and the age deletes more (``stream_deletion``);
* **free space** (``for_free_space``): a save keeps room on the disk for
  ``FREE_SPACE_RECORDINGS`` recordings the size of the one saved, because
  budgets are set by hand and the disk may be shared;
* **free inodes** (``for_free_inodes``): each recording is one file, so a
  filesystem with few inodes fills up by count before bytes; a save keeps
  ``FREE_INODES_PER_STREAM`` inodes free per stream;
* both floors are met once per transaction, however many streams it saves:
  the syncer reads ``statvfs`` once, passes every row already chosen in that
  transaction (they count as freed: their files are unlinked right after the
  commit) and the saving streams' rows merged oldest first
  (``oldest_across_streams``), so the floor deletes what's missing once, not
  once per stream;
* **full disk** (``to_make_room``): a write failed with ENOSPC; at least one
  recording and at least the bytes the lost recording had reached go.

``rows_oldest_first`` may be a lazy iterator (``Database.list_oldest_recordings``
is one): it is read only as far as needed.

The rules see only recordings with a local file, and for a stream with an archive the
syncer decides which rows each rule is offered and what deleting one means (schema 7):
the budget and the age are not offered recordings waiting for the archive (the stream
overruns its budget until they are uploaded), the floors and a full disk are offered every
local row, and an archived recording "deleted" loses only its local file, its row staying
archived-only (``Syncer._delete_in``).  Freed bytes are local bytes either way.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

#: Free space a transaction keeps in the sample file directory, in recordings
#: the size of the largest one it saves.  Its deletions are unlinked right
#: after the commit, but every stream's next recording is already being
#: written and grows until the next save plans again (possibly a longer
#: recording, several streams at once, another program on the same disk), so
#: one is not enough.
FREE_SPACE_RECORDINGS = 3

#: Free inodes a transaction keeps in the sample file directory, per stream.
#: Its deletions are unlinked right after the commit, and each stream's next
#: file already exists (the pool's files are made ahead), but after the
#: commit the pool is refilled by up to about one new file per stream plus
#: ``syncer.POOL_MARGIN_MIN``, and a stream may rotate again, or a writer fall
#: back to creating its own file, before the next save plans; four per stream
#: covers that with room to spare.
FREE_INODES_PER_STREAM = 4


class Row(Protocol):
    """What retention needs of a recording (``moonfire.db.RecordingRow`` has it)."""

    @property
    def composite_id(self) -> int: ...

    @property
    def stream_id(self) -> int: ...

    @property
    def sample_file_bytes(self) -> int: ...

    @property
    def start_time_90k(self) -> int: ...

    @property
    def duration_90k(self) -> int: ...


R = TypeVar("R", bound=Row)


@dataclass(frozen=True, slots=True)
class Deletion(Generic[R]):
    """The oldest rows chosen to free ``bytes_needed`` (nothing when that is ≤ 0)."""

    rows: list[R] = field(default_factory=list)
    #: Bytes the rule asked for; ≤ 0 means nothing had to go.
    bytes_needed: int = 0

    @property
    def bytes_freed(self) -> int:
        return sum(r.sample_file_bytes for r in self.rows)

    @property
    def needed(self) -> bool:
        """The rule asked for something to be deleted."""
        return self.bytes_needed > 0

    @property
    def short(self) -> bool:
        """Deleting every row offered still frees less than asked."""
        return self.bytes_freed < self.bytes_needed


def oldest_first(
    rows_oldest_first: Iterable[R], bytes_needed: int, skip: Collection[int] = ()
) -> list[R]:
    """The shortest prefix of the rows (less those in ``skip``) freeing ``bytes_needed``.

    ``skip`` holds composite ids already chosen by another rule.  Nothing when
    ``bytes_needed`` ≤ 0; every row when even all of them free too little.
    """
    chosen: list[R] = []
    freed = 0
    for row in rows_oldest_first:
        if freed >= bytes_needed:
            break
        if row.composite_id in skip:
            continue
        chosen.append(row)
        freed += row.sample_file_bytes
    return chosen


def oldest_across_streams(rows_oldest_first_by_stream: Iterable[Iterable[R]]) -> Iterator[R]:
    """Several streams' rows (each oldest first) merged into one, oldest start first.

    The floors take the oldest recordings of the streams being saved, wherever
    they are: the stream holding the oldest footage, the one whose budget is
    the largest for the disk, loses it first.  Lazy, like its inputs: each
    stream's rows are read only as far as the merge needs them (at least its
    first once the merge is read at all); ties go to the stream listed first.
    """
    return heapq.merge(*rows_oldest_first_by_stream, key=lambda row: row.start_time_90k)


def to_fit_budget(
    rows_oldest_first: Iterable[R], usage_bytes: int, retain_bytes: int, incoming_bytes: int = 0
) -> Deletion[R]:
    """Oldest rows to delete so ``usage_bytes + incoming_bytes`` fits ``retain_bytes``."""
    needed = usage_bytes + incoming_bytes - retain_bytes
    if needed <= 0:
        return Deletion([], needed)
    return Deletion(oldest_first(rows_oldest_first, needed), needed)


#: 90 kHz units in a day.
DAY_90K = 24 * 3600 * 90000


def budget_holds_90k(retain_bytes: int, usage_bytes: int, duration_90k: int) -> int | None:
    """How much video (90 kHz) the budget keeps at the bitrate recorded so far; None before
    any recording.  ``moonfire camera list`` shows it and ``/metrics`` exports it in days
    (``retention_forecast_days``), so both say the same."""
    if usage_bytes <= 0 or duration_90k <= 0:
        return None
    return retain_bytes * duration_90k // usage_bytes


def forecast_days(retain_bytes: int, usage_bytes: int, duration_90k: int) -> float | None:
    """``budget_holds_90k`` in days; None before any recording."""
    holds = budget_holds_90k(retain_bytes, usage_bytes, duration_90k)
    return None if holds is None else holds / DAY_90K


def to_fit_max_age(rows_oldest_first: Iterable[R], max_age_days: int, now_90k: int) -> Deletion[R]:
    """Oldest rows that ended more than ``max_age_days`` before ``now_90k``.

    Read oldest first and stopped at the first one young enough, so a clock set back
    (or a camera's clock ahead) keeps footage rather than losing it.
    """
    cutoff = now_90k - max_age_days * DAY_90K
    chosen: list[R] = []
    for row in rows_oldest_first:
        if row.start_time_90k + row.duration_90k >= cutoff:
            break
        chosen.append(row)
    freed = sum(r.sample_file_bytes for r in chosen)
    return Deletion(chosen, freed)


def stream_deletion(
    rows_oldest_first: Callable[[], Iterable[R]],
    usage_bytes: int,
    retain_bytes: int,
    max_age_days: int | None,
    now_90k: int,
    incoming_bytes: int = 0,
) -> tuple[Deletion[R], Deletion[R] | None]:
    """A stream's own rules: (the budget's deletion, the age's or None without a maximum).

    Both are prefixes of the same oldest-first rows, so the longer one holds the
    other: the caller deletes that one ("whichever deletes more wins").
    ``rows_oldest_first`` is called once per rule (each reads only as far as it needs).
    """
    budget = to_fit_budget(rows_oldest_first(), usage_bytes, retain_bytes, incoming_bytes)
    if max_age_days is None:
        return budget, None
    return budget, to_fit_max_age(rows_oldest_first(), max_age_days, now_90k)


@dataclass(frozen=True, slots=True)
class FreeSpaceDeletion(Deletion[R]):
    #: Bytes that will be free once the budget's deletions are done too.
    free_bytes: int = 0


def for_free_space(
    rows_oldest_first: Iterable[R],
    free_bytes: int,
    recording_bytes: int,
    already_chosen: Collection[R] = (),
) -> FreeSpaceDeletion[R]:
    """More oldest rows when the disk would keep less than ``FREE_SPACE_RECORDINGS`` free.

    ``free_bytes`` is what the filesystem reports; the rows ``already_chosen``
    (by the budget, for every stream of the transaction) count as freed and
    are not chosen again.  The syncer asks once per transaction, with the
    largest recording it saves as ``recording_bytes``.
    """
    free = free_bytes + sum(r.sample_file_bytes for r in already_chosen)
    needed = FREE_SPACE_RECORDINGS * recording_bytes - free
    if needed <= 0:
        return FreeSpaceDeletion([], needed, free)
    skip = {r.composite_id for r in already_chosen}
    return FreeSpaceDeletion(oldest_first(rows_oldest_first, needed, skip), needed, free)


def to_make_room(rows_oldest_first: Iterable[R], bytes_wanted: int) -> Deletion[R]:
    """After ENOSPC: at least one row, and at least ``bytes_wanted`` bytes of them."""
    needed = max(bytes_wanted, 1)
    return Deletion(oldest_first(rows_oldest_first, needed), needed)


@dataclass(frozen=True, slots=True)
class InodeDeletion(Generic[R]):
    """The oldest rows chosen to free ``inodes_needed`` files (nothing when that is ≤ 0)."""

    rows: list[R] = field(default_factory=list)
    inodes_needed: int = 0
    #: Inodes that will be free once the rows already chosen are unlinked too.
    free_inodes: int = 0

    @property
    def needed(self) -> bool:
        return self.inodes_needed > 0

    @property
    def short(self) -> bool:
        return len(self.rows) < self.inodes_needed

    @property
    def bytes_freed(self) -> int:
        return sum(r.sample_file_bytes for r in self.rows)


def for_free_inodes(
    rows_oldest_first: Iterable[R],
    free_inodes: int,
    total_inodes: int,
    streams: int,
    already_chosen: Collection[R] = (),
) -> InodeDeletion[R]:
    """Oldest rows to delete so ``FREE_INODES_PER_STREAM`` inodes per stream stay free.

    ``free_inodes`` and ``total_inodes`` are ``statvfs``'s ``f_favail`` and
    ``f_files``; a filesystem reporting no inodes at all (``f_files`` 0, as
    btrfs does) has no such limit.  ``streams`` is every stream of the
    directory (the floor is per stream, the reading one for the whole
    directory), so the syncer asks once per transaction, not once per stream
    saved.  The rows ``already_chosen`` (by the other rules, for every stream
    of the transaction) count as freed, one inode each, and are not chosen
    again: the syncer unlinks their files right after the commit, before
    planning the next transaction and before refilling its pool of files.
    """
    if total_inodes <= 0:
        return InodeDeletion([], 0, free_inodes)
    free = free_inodes + len(already_chosen)
    needed = FREE_INODES_PER_STREAM * max(streams, 1) - free
    if needed <= 0:
        return InodeDeletion([], needed, free)
    skip = {r.composite_id for r in already_chosen}
    chosen: list[R] = []
    for row in rows_oldest_first:
        if len(chosen) >= needed:
            break
        if row.composite_id not in skip:
            chosen.append(row)
    return InodeDeletion(chosen, needed, free)
