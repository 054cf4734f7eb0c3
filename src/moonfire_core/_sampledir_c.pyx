# Compiled twin of _sampledir_py.py (the readable reference): the sample file directory over
# raw libc.  The GIL is released around each blocking syscall; errno is read into a local at
# once; EINTR is retried after running signal handlers, as Python's os module does (PEP 475),
# so both twins behave the same under signals.

import errno as errno_codes
import os

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, ENOENT, errno
from posix.fcntl cimport AT_FDCWD, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_WRONLY, openat
from posix.stat cimport fstatat, struct_stat
from posix.unistd cimport close, fdatasync as c_fdatasync, fsync as c_fsync

from moonfire_core._includes.posix_extra cimport LOCK_EX, LOCK_NB, LOCK_SH, flock, unlinkat

from . import _args, _fault_hook

cdef object _hook = None


def _set_hook(hook):
    global _hook
    _hook = hook


_fault_hook.subscribe(_set_hook)

cdef enum:
    _DIR_FLAGS = O_DIRECTORY | O_RDONLY | O_CLOEXEC
    _CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
    _READ_FLAGS = O_RDONLY | O_CLOEXEC


cdef int _raise_errno(int err, object path) except -1:
    """Raise ``OSError(err, strerror, path)``; Python maps errno to the subclass."""
    if path is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), path)


cdef int _open_at(int dirfd, bytes name, int flags, int mode, str path) except -1:
    """``openat`` with EINTR retry; raises naming ``path``."""
    cdef const char* c_name = name
    cdef int fd, err
    while True:
        with nogil:
            fd = openat(dirfd, c_name, flags, mode)
            err = errno if fd < 0 else 0
        if fd >= 0:
            return fd
        if err != EINTR:
            _raise_errno(err, path)
        PyErr_CheckSignals()


cdef int _fsync_fd(int fd, bint data_only, object path) except -1:
    cdef int ret, err
    while True:
        with nogil:
            ret = c_fdatasync(fd) if data_only else c_fsync(fd)
            err = errno if ret < 0 else 0
        if ret == 0:
            return 0
        if err != EINTR:
            _raise_errno(err, path)
        PyErr_CheckSignals()


cdef class SampleDirectory:
    """An open, exclusively locked sample file directory (see ``_sampledir_py``)."""

    cdef int _fd
    cdef str _path
    cdef str _lock

    def __cinit__(self):
        self._fd = -1
        self._path = "?"
        self._lock = "exclusive"

    def __init__(self, path, lock="exclusive"):
        cdef int fd, ret, err, operation
        self._lock = _args.lock(lock)
        path = _args.path_arg(path, "sample file directory path")
        cdef bytes c_path = os.fsencode(path)
        self._path = path
        fd = _open_at(AT_FDCWD, c_path, _DIR_FLAGS, 0, path)
        if self._lock == "none":
            self._fd = fd
            return
        operation = (LOCK_EX if self._lock == "exclusive" else LOCK_SH) | LOCK_NB
        while True:
            with nogil:
                ret = flock(fd, operation)
                err = errno if ret < 0 else 0
            if ret == 0:
                break
            if err == EINTR:
                try:
                    PyErr_CheckSignals()
                except BaseException:
                    close(fd)
                    raise
                continue
            close(fd)
            if err == EAGAIN:  # == EWOULDBLOCK on Linux
                raise BlockingIOError(
                    errno_codes.EWOULDBLOCK,
                    f"sample file directory {path} is in use by another process",
                    path,
                )
            _raise_errno(err, path)
        self._fd = fd

    @property
    def path(self) -> str:
        """The path the directory was opened with."""
        return self._path

    @property
    def lock(self) -> str:
        """The lock held: ``"exclusive"``, ``"shared"`` or ``"none"``."""
        return self._lock

    cdef int _checked_fd(self) except -1:
        if self._fd < 0:
            raise ValueError(f"sample file directory {self._path} is closed")
        return self._fd

    cdef int _writable_fd(self) except -1:
        cdef int fd = self._checked_fd()
        if self._lock != "exclusive":
            raise ValueError(
                f"sample file directory {self._path} is open read-only (lock {self._lock!r}); "
                "only the holder of the exclusive lock creates or unlinks sample files"
            )
        return fd

    def fileno(self) -> int:
        """The directory fd (for ``*at`` syscalls and ``os.listdir``)."""
        return self._checked_fd()

    def create_file(self, name) -> int:
        """Create ``name`` with ``O_EXCL`` and mode 0600 and return a write-only fd."""
        cdef int dirfd = self._writable_fd()
        _args.sample_file_name(name, self._path)
        full = os.path.join(self._path, name)
        if _hook is not None:
            _hook("create", full)
        return _open_at(dirfd, os.fsencode(name), _CREATE_FLAGS, 0o600, full)

    def open_file(self, name) -> int:
        """Open ``name`` read-only (for readers) and return the fd."""
        cdef int dirfd = self._checked_fd()
        _args.sample_file_name(name, self._path)
        return _open_at(dirfd, os.fsencode(name), _READ_FLAGS, 0,
                        os.path.join(self._path, name))

    def unlink(self, name) -> bool:
        """Unlink ``name``; ``False`` if it was already gone (the caller warns), else ``True``."""
        cdef int dirfd = self._writable_fd()
        cdef int ret, err
        _args.sample_file_name(name, self._path)
        full = os.path.join(self._path, name)
        if _hook is not None:
            _hook("unlink", full)
        cdef bytes b_name = os.fsencode(name)
        cdef const char* c_name = b_name
        while True:
            with nogil:
                ret = unlinkat(dirfd, c_name, 0)
                err = errno if ret < 0 else 0
            if ret == 0:
                return True
            if err == ENOENT:
                return False
            if err != EINTR:
                _raise_errno(err, full)
            PyErr_CheckSignals()

    def file_size(self, name) -> int:
        """The size in bytes of ``name`` (``fstatat``)."""
        cdef int dirfd = self._checked_fd()
        cdef int ret, err
        cdef struct_stat st
        _args.sample_file_name(name, self._path)
        cdef bytes b_name = os.fsencode(name)
        cdef const char* c_name = b_name
        while True:
            with nogil:
                ret = fstatat(dirfd, c_name, &st, 0)
                err = errno if ret < 0 else 0
            if ret == 0:
                return st.st_size
            if err != EINTR:
                _raise_errno(err, os.path.join(self._path, name))
            PyErr_CheckSignals()

    def sync(self) -> None:
        """``fsync`` the directory: makes creations and unlinks durable (brief §1.6 step 4)."""
        cdef int dirfd = self._checked_fd()
        if _hook is not None:
            _hook("fsync_dir", self._path)
        _fsync_fd(dirfd, False, self._path)

    def list_names(self) -> list:
        """Every entry name in the directory except ``.`` and ``..``."""
        cdef int dirfd = self._checked_fd()
        try:
            return os.listdir(dirfd)
        except OSError as e:
            _raise_errno(e.errno if e.errno is not None else errno_codes.EIO, self._path)

    def close(self) -> None:
        """Close the directory fd, which releases the lock.  Idempotent."""
        cdef int fd = self._fd
        self._fd = -1
        if fd >= 0:
            # Like os.close: no EINTR retry (Linux releases the fd even then).
            if close(fd) < 0:
                _raise_errno(errno, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __dealloc__(self):
        if self._fd >= 0:
            close(self._fd)

    def __repr__(self):
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<SampleDirectory {self._path!r} {state}>"


def fsync(fd, name) -> None:
    """``fsync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    name = _args.path_arg(name, "name")
    cdef int c_fd = _args.fd_arg(fd, name)
    if _hook is not None:
        _hook("fsync", name)
    _fsync_fd(c_fd, False, name)


def fdatasync(fd, name) -> None:
    """``fdatasync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    name = _args.path_arg(name, "name")
    cdef int c_fd = _args.fd_arg(fd, name)
    if _hook is not None:
        _hook("fdatasync", name)
    _fsync_fd(c_fd, True, name)


def close_fd(fd) -> None:
    """``close(fd)``, never retried: on Linux the fd is released even when close fails."""
    cdef int c_fd = _args.fd_arg(fd, "close_fd")
    cdef int ret, err
    with nogil:
        ret = close(c_fd)
        err = errno if ret < 0 else 0
    if ret < 0:
        _raise_errno(err, None)
