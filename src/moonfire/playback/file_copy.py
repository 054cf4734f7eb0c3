"""Writing a ``VirtualFile`` to a descriptor with the sample data copied in the kernel.

An export is almost all sample data (a 24-hour one is 43 GB of it around a 31 MB ``moov``);
reading it into Python and writing it back out costs a copy each way and kept exports at 0.7x
``cp``.  :func:`copy_to_fd` walks ``VirtualFile.spans`` (the pieces ``view.mp4`` sends): the
boxes and sample tables, in memory, go out with ``os.write``; each ``SampleFileSpan`` goes file
to file with ``os.copy_file_range`` (what ``cp`` uses; on file systems that can, a reflink).

Where the kernel refuses that (across file systems on kernels before 5.3 or for some file
systems, an output opened ``O_APPEND``, a pipe), ``os.sendfile`` is tried, then ``os.pread`` and
``os.write``: each step down is taken once per copy and remembered, so a refusal costs one
failed call, not one per span.  Either way the output is the bytes ``VirtualFile.read`` gives.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from moonfire.errors import MoonfireError
from moonfire.playback.mp4 import SampleFileSpan, VirtualFile

#: Bytes asked of one ``copy_file_range``/``sendfile`` call, and read per ``pread`` fallback:
#: large enough that the per-call cost vanishes, small enough for the progress bar to move.
COPY_CHUNK_BYTES = 8 << 20

#: To a regular file, writeback of what was written is started every this many bytes
#: (``POSIX_FADV_DONTNEED`` starts it on Linux and drops the pages once clean): the disk then
#: writes while the copy goes on, instead of all at the final ``fsync``.  Measured against
#: ``cp`` + ``sync`` of 600 MB here (best rounds, 3 runs each): 0.71-1.18x without,
#: 1.04-1.31x with.
WRITEBACK_BYTES = 32 << 20

#: Errors meaning "not this way for these descriptors": the next way down is tried instead.
_REFUSED = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF,
     errno.ESPIPE}
)

COPY_FILE_RANGE, SENDFILE, READ_WRITE = "copy_file_range", "sendfile", "pread+write"


class SampleFileTooShort(MoonfireError):
    """A sample file ended before a span of it could be copied (it shrank after the plan)."""


class _Copier:
    """Copies spans to ``out`` by the best way the kernel accepts; ``method`` says which."""

    def __init__(self, out: int, progress: Callable[[int], object] | None) -> None:
        self.out = out
        self.progress = progress
        self.method = COPY_FILE_RANGE if hasattr(os, "copy_file_range") else SENDFILE
        self._position = 0  # of ``out``, where regular and writeback is started as it goes
        self._written_back = 0
        self._start_writeback = False
        if hasattr(os, "posix_fadvise") and stat.S_ISREG(os.fstat(out).st_mode):
            self._start_writeback = True
            self._position = self._written_back = os.lseek(out, 0, os.SEEK_CUR)

    def write(self, data: bytes | memoryview) -> None:
        self._write_all(data)
        self._advance(len(data))

    def copy(self, span: SampleFileSpan) -> None:
        fd = span.open()
        try:
            done = 0
            while done < span.length:
                offset = span.offset + done
                n = self._copy_some(fd, offset, min(span.length - done, COPY_CHUNK_BYTES))
                if n == 0 and self.method != READ_WRITE and os.fstat(fd).st_size > offset:
                    # Some file systems answer copy_file_range/sendfile with 0 rather than
                    # an error for what they can't do: the bytes are there, read them.
                    self.method = READ_WRITE
                    continue
                if n == 0:
                    raise SampleFileTooShort(
                        f"{span}: the sample file is too short, it ended "
                        f"{span.length - done} bytes early (did it change after the export "
                        "was planned?)"
                    )
                done += n
                self._advance(n)
        finally:
            os.close(fd)

    def _copy_some(self, fd: int, offset: int, count: int) -> int:
        """Copies up to ``count`` bytes at ``offset``; 0 only at the file's end."""
        if self.method == COPY_FILE_RANGE:
            try:
                return os.copy_file_range(fd, self.out, count, offset)
            except OSError as e:
                if e.errno not in _REFUSED:
                    raise
                self.method = SENDFILE
        if self.method == SENDFILE:
            try:
                return os.sendfile(self.out, fd, offset, count)
            except OSError as e:
                if e.errno not in _REFUSED:
                    raise
                self.method = READ_WRITE
        data = os.pread(fd, count, offset)
        self._write_all(data)
        return len(data)

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self.out, view) :]

    def _advance(self, n: int) -> None:
        if self._start_writeback:
            self._position += n
            if self._position - self._written_back >= WRITEBACK_BYTES:
                self._writeback()
        if self.progress is not None:
            self.progress(n)

    def _writeback(self) -> None:
        try:
            os.posix_fadvise(
                self.out, self._written_back, self._position - self._written_back,
                os.POSIX_FADV_DONTNEED,
            )
        except OSError:  # a hint only; the caller's fsync is what makes the bytes durable
            self._start_writeback = False
        self._written_back = self._position


def copy_to_fd(
    file: VirtualFile, out: int, progress: Callable[[int], object] | None = None
) -> str:
    """Writes all of ``file`` to descriptor ``out`` at its current position; ``progress(n)``
    after each piece (e.g. ``tqdm.update``).  Returns the way the last sample data went
    (``COPY_FILE_RANGE``, ``SENDFILE`` or ``READ_WRITE``), for tests and benchmarks.

    :raises SampleFileTooShort: a sample file ended early (naming the recording and bytes).
    :raises OSError: reading or writing failed (a full disk, a closed pipe).
    """
    copier = _Copier(out, progress)
    for piece in file.spans(0, file.size):
        if isinstance(piece, SampleFileSpan):
            copier.copy(piece)
        else:
            copier.write(piece)
    return copier.method
