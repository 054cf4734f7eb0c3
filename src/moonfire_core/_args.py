"""Argument checks shared by both twins of ``writer`` and ``sampledir``.

The twins must refuse odd arguments with the very same exception and message
(``tests/test_twin_odd_input.py``), so the checks live here, in one pure-Python
place, and both twins call them.  The compiled twins take a C fast path for the
common case (an exact ``int`` in range) and call these only otherwise, so the hot
loop pays nothing for them.

The rules: integers are ``int`` or have ``__index__`` (NumPy integers), never
``bool`` and never ``float``; values outside 64 bits raise ``OverflowError``;
paths are ``str`` or ``os.PathLike[str]`` (``bytes`` is refused); sample file
names are plain ``str``.
"""

import os
from typing import Any

from .records import PreviousWriter

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
#: Largest ``Writer`` ``buffer_bytes`` (the compiled twin allocates the whole buffer up front).
MAX_BUFFER_BYTES = 1 << 30


def _type_name(value: object) -> str:
    return type(value).__name__


def int64(value: Any, name: str, where: str) -> int:
    """``value`` as a Python ``int`` in the signed 64-bit range.

    :param where: the file the call is about, for the message.
    :raises TypeError: ``value`` is a ``bool`` or not an integer.
    :raises OverflowError: it does not fit in 64 bits.
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, not {_type_name(value)}, for {where}")
    result = value.__index__()
    if not INT64_MIN <= result <= INT64_MAX:
        raise OverflowError(f"{name} {result} does not fit in 64 bits, for {where}")
    return int(result)


def non_negative_int64(value: Any, name: str, where: str) -> int:
    """As ``int64``; a negative value raises ``ValueError``."""
    result = int64(value, name, where)
    if result < 0:
        raise ValueError(f"{name} must not be negative, got {result}, for {where}")
    return result


def fd_arg(value: Any, where: str) -> int:
    """A file descriptor: a non-negative integer in the C ``int`` range."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"fd must be an integer, not {_type_name(value)}, for {where}")
    result = int(value.__index__())
    if result > INT_MAX:
        raise OverflowError(f"fd {result} is out of range, for {where}")
    if result < 0:
        raise ValueError(f"fd must not be negative, got {result}, for {where}")
    return result


def boolean(value: Any, name: str, where: str) -> bool:
    """``value`` if it is a ``bool``; ``is_key=1`` or ``None`` is a programming error."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(value)}, for {where}")
    return value


def path_arg(value: Any, what: str) -> str:
    """A ``str`` or ``os.PathLike[str]`` path as ``str``; ``bytes`` paths are refused."""
    if isinstance(value, str):
        result = value
    elif isinstance(value, os.PathLike):
        result = os.fspath(value)
    else:
        result = None
    if not isinstance(result, str):
        shown = _type_name(value if result is None else result)
        raise TypeError(f"{what} must be str, not {shown}")  # or os.PathLike[str]
    if "\0" in result:  # C would silently cut the path at the NUL
        raise ValueError(f"{what} has an embedded null byte: {result!r}")
    return result


def sample_file_name(value: Any, dir_path: str) -> str:
    """A flat entry name in the directory: refuses names that would leave it."""
    if not isinstance(value, str):
        raise TypeError(f"sample file name must be str, not {_type_name(value)}, in {dir_path}")
    if not value or "/" in value or "\0" in value or value in (".", ".."):
        raise ValueError(f"invalid sample file name {value!r} in {dir_path}")
    return value


#: ``lock`` values of ``SampleDirectory``: the flock taken on the directory.
LOCKS = ("exclusive", "shared", "none")


def lock(value: Any) -> str:
    """A ``SampleDirectory`` lock mode."""
    if not isinstance(value, str):
        raise TypeError(f"lock must be str, not {_type_name(value)}")
    if value not in LOCKS:
        raise ValueError(f"lock must be one of {', '.join(LOCKS)}; got {value!r}")
    return value


def byte_view(packet: Any, path: str) -> memoryview:
    """``packet`` as a flat byte view, without copying when it is already one."""
    try:
        view = memoryview(packet)
    except TypeError:
        raise TypeError(
            f"packet must be a bytes-like object, not {type(packet).__name__}, for {path}"
        ) from None
    if not view.c_contiguous:
        raise BufferError(f"packet for {path} is not a C-contiguous buffer")
    if view.ndim == 1 and view.format == "B":
        return view
    try:
        return view.cast("B")
    except TypeError:  # a struct format cast() refuses: copy the bytes
        return memoryview(view.tobytes())


def writer_init(
    sink: Any,
    fd: Any,
    path: Any,
    sample_file_uuid: Any,
    stream_id: Any,
    video_sample_entry_id: Any,
    prev: Any,
    buffer_bytes: Any,
) -> tuple[str, int, int, int, int]:
    """Check ``Writer``'s arguments (both twins call this); the checked values."""
    path = path_arg(path, "path")
    if not isinstance(sample_file_uuid, bytes):
        raise TypeError(
            f"sample_file_uuid must be bytes, not {type(sample_file_uuid).__name__}, for {path}"
        )
    if len(sample_file_uuid) != 16:
        raise ValueError(
            f"sample_file_uuid must be 16 bytes, got {len(sample_file_uuid)} for {path}"
        )
    buffer_bytes = int64(buffer_bytes, "buffer_bytes", path)
    if buffer_bytes <= 0:
        raise ValueError(f"buffer_bytes must be positive, got {buffer_bytes} for {path}")
    if buffer_bytes > MAX_BUFFER_BYTES:
        raise ValueError(
            f"buffer_bytes must be at most {MAX_BUFFER_BYTES}, got {buffer_bytes} for {path}"
        )
    for method in ("save", "abandon"):
        if not callable(getattr(sink, method, None)):
            raise TypeError(
                f"sink must have save() and abandon() methods, not {type(sink).__name__}, "
                f"for {path}"
            )
    fd = fd_arg(fd, path)
    stream_id = int64(stream_id, "stream_id", path)
    video_sample_entry_id = int64(video_sample_entry_id, "video_sample_entry_id", path)
    if prev is not None:
        if not isinstance(prev, PreviousWriter):
            raise TypeError(
                f"prev must be a PreviousWriter or None, not {type(prev).__name__}, for {path}"
            )
        non_negative_int64(prev.end_time_90k, "prev.end_time_90k", path)
        int64(prev.local_time_delta_90k, "prev.local_time_delta_90k", path)
        run_offset = non_negative_int64(prev.run_offset, "prev.run_offset", path)
        if run_offset == INT64_MAX:
            raise OverflowError(f"prev.run_offset {run_offset} has no successor, for {path}")
    return path, fd, stream_id, video_sample_entry_id, buffer_bytes
