"""What both ``video_index`` twins must agree on: limits, input coercion and error messages.

The twins decide *whether* something is wrong with their own (fast) checks; the words that explain
it come from here, so the compiled module and the reference twin raise the very same message for
the same input by construction.

Integer limits (brief §2.2 leaves overflow unchecked; we close that hole):

* Every total must fit int32: ``sample_file_bytes = Σ sizes`` and ``total_duration_90k =
  Σ durations``.  Sizes are positive and durations non-negative, so a single sample's size or
  duration (the decoder's running per-type byte value and running duration) is at most its total;
  checking the totals therefore bounds every running value too.
* The first varint holds ``(zigzag32(Δduration) << 1) | key`` in 32 bits, so a duration may change
  by at least ``-2**30`` and less than ``2**30`` from the previous sample's.  The decoder can only
  produce such deltas, so whatever decodes also re-encodes.
* A composition offset (presentation minus decode time, B-frames) is any int32: it is stored as
  one zigzag32 varint per sample, in version 2 only (see ``_index_py``'s docstring for the bytes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import CorruptIndexError

INT32_MAX = 2**31 - 1
#: ``-DURATION_DELTA_LIMIT <= Δduration < DURATION_DELTA_LIMIT`` (see the module docstring).
DURATION_DELTA_LIMIT = 2**30

#: First byte of a version-2 index (samples with composition offsets).  It is the varint
#: ``(2 << 2) | 0b10``: as a version-1 first record it would have bit 1 set, i.e. a negative first
#: duration, which version 1 refuses; so no version-1 blob starts with it and old indexes keep
#: their bytes and meaning.  (Later versions may take ``(version << 2) | 0b10`` likewise.)
VERSION_2_MARKER = 0x0A
INT32_MIN = -(2**31)

#: Varint reader status codes (negative "end offsets"), shared with the C twin.
VARINT_TRUNCATED = -1
VARINT_OVER_32_BITS = -2
_VARINT_REASONS = {VARINT_TRUNCATED: "truncated", VARINT_OVER_32_BITS: "over 32 bits"}


def as_blob(blob: Any) -> bytes:
    """Return ``blob`` as ``bytes``; any buffer is accepted, anything else is a ``TypeError``."""
    if type(blob) is bytes:
        return blob
    return bytes(memoryview(blob))


def has_composition_offsets(blob: Any) -> bool:
    """The blob is a version-2 index, i.e. some sample has a composition offset (B-frames).

    Reads one byte, so a caller can size a ``ctts`` table without decoding the index; the
    decoder still checks the rest.  One function for both twins: there is nothing to compile.
    """
    view = memoryview(blob)
    return len(view) > 0 and view[0] == VERSION_2_MARKER


# --------------------------------------------------------------------------- encoder input


def sample_problem(
    sample: int,
    duration: int,
    size: int,
    prev_duration: int,
    total_duration: int,
    total_bytes: int,
    composition_offset: int = 0,
) -> str | None:
    """Why the encoder must refuse ``sample`` (0-based), or ``None`` if it may be appended.

    The running state is the encoder's *before* this sample: the previous sample's duration and the
    totals so far.  A refused sample leaves the encoder unchanged.
    """
    if duration < 0:
        problem = f"duration {duration} is negative"
    elif size <= 0:
        problem = f"size {size} is not positive"
    elif sample > 0 and prev_duration == 0:
        problem = f"zero duration only allowed at end; sample {sample - 1} has duration 0"
    elif total_duration + duration > INT32_MAX:
        problem = f"total duration {total_duration + duration} overflows int32"
    elif total_bytes + size > INT32_MAX:
        problem = f"sample file bytes {total_bytes + size} overflow int32"
    elif not -DURATION_DELTA_LIMIT <= duration - prev_duration < DURATION_DELTA_LIMIT:
        problem = (
            f"duration delta {duration - prev_duration} (from {prev_duration} to {duration}) "
            f"is outside the storable range [-2**30, 2**30)"
        )
    elif not INT32_MIN <= composition_offset <= INT32_MAX:
        problem = f"composition offset {composition_offset} does not fit int32"
    else:
        return None
    return f"{problem} (sample {sample})"


def _integer_column(name: str, values: Any) -> npt.NDArray[np.int32] | npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype == np.int32:  # what decode_index returns: use it as is, no copy
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.dtype == np.uint64 and int(array.max()) > np.iinfo(np.int64).max:
        at = int(np.argmax(array > np.iinfo(np.int64).max))
        raise ValueError(f"{name}[{at}] = {int(array[at])} does not fit int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def _bool_column(name: str, values: Any) -> npt.NDArray[np.bool_]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.bool_)
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold booleans, got dtype {array.dtype}")
    return array != 0


def as_columns(
    durations: Any, sizes: Any, is_key: Any, composition_offsets: Any = None
) -> tuple[
    npt.NDArray[np.integer],
    npt.NDArray[np.integer],
    npt.NDArray[np.bool_],
    npt.NDArray[np.int64] | None,
]:
    """Coerce ``encode_index`` arguments to contiguous integer, integer, bool (and int64) columns.

    An int32 column is used as is; any other integer column is widened to int64 (never narrowed)
    so an out-of-range value reaches the per-sample checks and is reported with its sample number,
    exactly as ``SampleIndexEncoder.add_sample`` would report it, instead of wrapping silently.
    ``composition_offsets`` stays ``None`` when not given, and is always int64 when given.
    """
    duration_column = _integer_column("durations", durations)
    size_column = _integer_column("sizes", sizes)
    key_column = _bool_column("is_key", is_key)
    if composition_offsets is None:
        lengths = (len(duration_column), len(size_column), len(key_column))
        if len(set(lengths)) != 1:
            durations_length, sizes_length, keys_length = lengths
            raise ValueError(
                "durations, sizes and is_key must have the same length, got "
                f"{durations_length}, {sizes_length} and {keys_length}"
            )
        return duration_column, size_column, key_column, None
    offset_column = np.ascontiguousarray(
        _integer_column("composition_offsets", composition_offsets), dtype=np.int64
    )
    all_lengths = (len(duration_column), len(size_column), len(key_column), len(offset_column))
    if len(set(all_lengths)) != 1:
        raise ValueError(
            "durations, sizes, is_key and composition_offsets must have the same length, got "
            f"{all_lengths[0]}, {all_lengths[1]}, {all_lengths[2]} and {all_lengths[3]}"
        )
    return duration_column, size_column, key_column, offset_column


# --------------------------------------------------------------------------- decoder errors
#
# Each names the rule (the brief's era-1 wording first, so its error vectors are recognisable)
# and ends with "(sample N at offset R)": the 0-based sample and the offset of its record.


def _corrupt(problem: str, sample: int, record: int) -> CorruptIndexError:
    return CorruptIndexError(f"{problem} (sample {sample} at offset {record})")


def bad_varint(which: int, offset: int, status: int, sample: int, record: int) -> CorruptIndexError:
    """Varint ``which`` (1 or 2) of a record starting at ``offset`` is truncated or too long."""
    reason = _VARINT_REASONS[status]
    return _corrupt(f"bad varint {which} at offset {offset}: {reason}", sample, record)


def negative_duration(duration: int, delta: int, sample: int, record: int) -> CorruptIndexError:
    return _corrupt(f"negative duration {duration} after applying delta {delta}", sample, record)


def duration_overflow(total: int, delta: int, sample: int, record: int) -> CorruptIndexError:
    """The running total duration (which bounds the running duration) exceeds int32."""
    return _corrupt(
        f"total duration {total} overflows int32 after applying delta {delta}", sample, record
    )


def zero_duration_not_last(left: int, sample: int, record: int) -> CorruptIndexError:
    return _corrupt(f"zero duration only allowed at end; have {left} bytes left", sample, record)


def non_positive_bytes(
    size: int, delta: int, is_key: bool, start: int, sample: int, record: int
) -> CorruptIndexError:
    key = "true" if is_key else "false"
    return _corrupt(
        f"non-positive bytes {size} after applying delta {delta} to key={key} frame at ts {start}",
        sample,
        record,
    )


def bytes_overflow(total: int, size: int, sample: int, record: int) -> CorruptIndexError:
    """The running sample file size (which bounds the running per-type size) exceeds int32."""
    return _corrupt(
        f"sample file bytes {total} overflow int32 after a sample of {size} bytes", sample, record
    )


# Version 2 (composition offsets).  Checked before any record, in this order: the sample count,
# the records' extent, each offset, the bytes after them, the offsets not all zero.  Each names
# the offset where the problem is.


def bad_sample_count(status: int) -> CorruptIndexError:
    reason = _VARINT_REASONS[status]
    return CorruptIndexError(f"version 2 index: bad sample count varint at offset 1: {reason}")


def no_samples_declared() -> CorruptIndexError:
    return CorruptIndexError("version 2 index declares 0 samples (count at offset 1)")


def records_too_short(declared: int, room: int, records_start: int) -> CorruptIndexError:
    """Fewer than ``2 * declared`` varints follow the header: the records can't all be there."""
    return CorruptIndexError(
        f"version 2 index declares {declared} samples but the bytes from offset {records_start} "
        f"hold at most {room} records"
    )


def bad_offset_varint(offset: int, status: int, sample: int) -> CorruptIndexError:
    reason = _VARINT_REASONS[status]
    return CorruptIndexError(
        f"bad composition offset varint at offset {offset}: {reason} (sample {sample})"
    )


def bytes_after_offsets(left: int, offset: int) -> CorruptIndexError:
    return CorruptIndexError(
        f"version 2 index has {left} bytes after its last composition offset (offset {offset})"
    )


def offsets_all_zero(offset: int) -> CorruptIndexError:
    """Version 2 is only for recordings that need offsets: all-zero ones must be version 1."""
    return CorruptIndexError(
        f"version 2 index has only zero composition offsets (from offset {offset}); "
        "such an index is stored as version 1"
    )
