"""moonfire_core: the compiled hot paths of moonfire (bytes and syscalls only).

Each compiled module ``_x_c`` has a pure-Python twin ``_x_py`` with the same
public names, signatures and exceptions; ``x`` selects one of them.  Set
``MOONFIRE_NO_EXTENSIONS=1`` to force the twins.
"""

from . import annexb, clock, index, rtp, sampledir, writer
from ._compat import FALLBACKS, NO_EXTENSIONS
from ._errors import CorruptIndexError, RecordingAbandonedError
from ._fault_hook import set_fault_hook
from .annexb import annex_b_to_avc, is_annex_b, split_annex_b
from .clock import ClockAdjuster
from .index import (
    DecodedIndex,
    Sample,
    SampleIndexEncoder,
    SampleIndexIterator,
    decode_index,
    encode_index,
)
from .records import PreviousWriter, RecordingToSave, WriterSnapshot
from .sampledir import SampleDirectory
from .writer import Writer

#: ``"cython"`` when every compiled module is in use, else ``"python"``.
IMPLEMENTATION: str = "python" if (NO_EXTENSIONS or FALLBACKS) else "cython"

__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "ClockAdjuster",
    "CorruptIndexError",
    "DecodedIndex",
    "Sample",
    "SampleIndexEncoder",
    "SampleIndexIterator",
    "annex_b_to_avc",
    "annexb",
    "is_annex_b",
    "split_annex_b",
    "clock",
    "decode_index",
    "encode_index",
    "index",
    "rtp",
    "PreviousWriter",
    "RecordingAbandonedError",
    "RecordingToSave",
    "SampleDirectory",
    "Writer",
    "WriterSnapshot",
    "sampledir",
    "set_fault_hook",
    "writer",
]
