"""The storage engine on a fresh data directory, for the tests that drive it in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moonfire.storage import data_dir as datadir
from moonfire.storage.sample_file_dir import SampleFileDir
from moonfire_core._fault_hook import set_fault_hook
from tests.support.synthetic_stream import frames, make_packet

BASE_TIME_90K = 1_700_000_000 * 90000  # a round wall second
ENTRY = bytes(range(90))  # any blob > 86 bytes serves as a sample entry here


@pytest.fixture
def engine(tmp_path) -> Iterator[tuple[Any, Any, int]]:
    """(database, sample file directory, sample entry id); any fault hook is cleared after.

    The directory is the data directory's first (``default``); a test adds cameras itself
    and names their streams by ``camera.main.id`` (stream ids are not camera ids).
    """
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    yield db, sample_file_dir, entry_id
    set_fault_hook(None)
    sample_file_dir.close()
    db.close()


def add_sample_file_dir(db, name: str, path: str | Path) -> SampleFileDir:
    """Record another sample file directory in ``db`` and bind it (its ``meta``); the
    caller closes it."""
    row = db.add_sample_file_dir(name, str(path))
    return SampleFileDir.create(db, row.id)


def write_frames(
    writer, stream_id: int, start: int = 0, count: int = 10, base_time_90k: int = BASE_TIME_90K
) -> None:
    """``count`` synthetic frames of ``stream_id`` from frame ``start`` into ``writer``; frame
    0 starts at ``base_time_90k``."""
    for f in frames(start, count, base_time_90k):
        writer.write(make_packet(stream_id, f.number, f.is_key), f.local_time_90k, f.pts_90k,
                     f.is_key)

