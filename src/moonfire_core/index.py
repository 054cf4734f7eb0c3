"""Selector for the ``video_index`` codec (brief §2): compiled or pure-Python twin."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS
from ._index_rules import has_composition_offsets

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._index_py import (
        DecodedIndex,
        Sample,
        SampleIndexEncoder,
        SampleIndexIterator,
        decode_index,
        encode_index,
    )
else:
    try:
        from ._index_c import (
            DecodedIndex,
            Sample,
            SampleIndexEncoder,
            SampleIndexIterator,
            decode_index,
            encode_index,
        )
    except ImportError:
        FALLBACKS.add("index")
        from ._index_py import (
            DecodedIndex,
            Sample,
            SampleIndexEncoder,
            SampleIndexIterator,
            decode_index,
            encode_index,
        )

__all__ = [
    "DecodedIndex",
    "Sample",
    "SampleIndexEncoder",
    "SampleIndexIterator",
    "decode_index",
    "encode_index",
    "has_composition_offsets",
]
