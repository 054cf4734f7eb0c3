"""The storage engine on a fresh data directory, for the tests that drive it in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from moonfire.storage import data_dir as datadir
from moonfire_core._fault_hook import set_fault_hook
from tests.support.synthetic_stream import frames, make_packet

BASE_TIME_90K = 1_700_000_000 * 90000  # a round wall second
ENTRY = bytes(range(90))  # any blob > 86 bytes serves as a sample entry here


@pytest.fixture
def engine(tmp_path) -> Iterator[tuple[Any, Any, int]]:
    """(database, sample file directory, sample entry id); any fault hook is cleared after."""
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    entry_id = db.insert_video_sample_entry(1920, 1080, ENTRY)
    yield db, sample_file_dir, entry_id
    set_fault_hook(None)
    sample_file_dir.close()
    db.close()


def write_frames(writer, camera_id: int, start: int = 0, count: int = 10) -> None:
    """``count`` synthetic frames of ``camera_id`` from frame ``start`` into ``writer``."""
    for f in frames(start, count, BASE_TIME_90K):
        writer.write(make_packet(camera_id, f.number, f.is_key), f.local_time_90k, f.pts_90k,
                     f.is_key)
