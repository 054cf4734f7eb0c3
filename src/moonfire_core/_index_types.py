"""Records returned by the ``video_index`` codec, shared by both twins.

Both ``_index_c`` and ``_index_py`` import these very classes, so ``isinstance`` checks and
equality of ``Sample`` tuples hold across implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Sample(NamedTuple):
    """One video sample as the index describes it (brief §2.4).

    ``pos`` and ``start_90k`` are derived while walking the index (the blob stores only deltas):
    the byte offset of the sample in its sample file and its 90 kHz offset from the recording start.
    """

    pos: int
    start_90k: int
    duration_90k: int
    bytes: int
    is_key: bool
    #: Presentation minus decode time (90 kHz), non-zero only for B-frame streams.  Samples are
    #: stored in decode order, so ``start_90k`` is the decode time; the frame is shown at
    #: ``start_90k + composition_offset_90k``.
    composition_offset_90k: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class DecodedIndex:
    """A whole ``video_index`` decoded into columns, plus the totals the recording row stores.

    The arrays are read-only so the record stays what ``frozen`` promises; copy one to change it.
    ``eq=False`` because elementwise array comparison has no single truth value; compare fields.
    """

    durations: npt.NDArray[np.int32]
    sizes: npt.NDArray[np.int32]
    is_key: npt.NDArray[np.bool_]
    #: Byte offset of each sample in the sample file (running sum of the sizes before it).
    positions: npt.NDArray[np.int64]
    #: 90 kHz offset of each sample from the recording start (running sum of durations before it).
    starts: npt.NDArray[np.int64]
    #: Presentation minus decode time of each sample (90 kHz); all zero for a version-1 index.
    composition_offsets: npt.NDArray[np.int32]
    sample_file_bytes: int
    total_duration_90k: int
    video_samples: int
    video_sync_samples: int
    #: The last sample has duration 0: the stream ended before its length was known (flags bit 1).
    has_trailing_zero: bool

    @property
    def has_composition_offsets(self) -> bool:
        """Some sample is shown at another time than it is decoded (a version-2 index)."""
        return bool(self.composition_offsets.any())
