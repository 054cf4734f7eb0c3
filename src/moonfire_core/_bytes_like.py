"""How the pure-Python twins take a bytes-like argument (``_includes/buffers.pxd`` is the
compiled side's): a contiguous byte view, or the errors both sides raise for anything else."""

from typing import Any

__all__ = ["byte_view"]


def byte_view(data: Any) -> memoryview:
    """A byte view of ``data``, or the errors both twins raise for non-buffers and strided ones."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if not view.c_contiguous:
        raise BufferError(f"a contiguous buffer is required, not a strided '{type(data).__name__}'")
    return view.cast("B")
