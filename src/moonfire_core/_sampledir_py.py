"""Pure-Python twin of ``_sampledir_c``: the sample file directory (brief §1.1, §1.4, §1.6).

This is the readable reference; the compiled twin does the same syscalls over raw libc with
the GIL released.  Every ``OSError`` carries errno, strerror and the *full path* of the file
(``OSError(err, os.strerror(err), path)``), so Python picks ``FileExistsError``,
``FileNotFoundError``… by itself and both twins raise identical types and messages.
"""

import errno
import fcntl
import os

from . import _args, _fault_hook

_hook: _fault_hook.FaultHook | None = None


def _set_hook(hook: _fault_hook.FaultHook | None) -> None:
    global _hook
    _hook = hook


_fault_hook.subscribe(_set_hook)

_DIR_FLAGS = os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def _os_error(err: OSError, path: str | None) -> OSError:
    """Rebuild ``err`` so it names ``path`` (os.* functions name only the relative name)."""
    code = err.errno if err.errno is not None else errno.EIO
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


class SampleDirectory:
    """An open sample file directory, locked exclusively by default.

    The lock (``flock(LOCK_EX|LOCK_NB)`` on the directory itself) keeps two processes from
    writing and deleting in the same directory; it is held until ``close``.  Files are created,
    opened, measured and unlinked relative to the directory fd, so a directory renamed or
    remounted under us can never make us touch another directory's files.

    :param lock: ``"exclusive"`` (the recorder), ``"shared"`` (``moonfire check``: refused
        while a recorder runs, and keeps one from starting) or ``"none"`` (readers such as
        ``moonfire export``, which may run beside a recorder).  Without the exclusive lock the
        directory is read-only: ``create_file`` and ``unlink`` are refused.
    """

    def __init__(self, path: "str | os.PathLike[str]", lock: str = "exclusive") -> None:
        self._fd = -1
        self._path = "?"
        self._lock = _args.lock(lock)
        path = _args.path_arg(path, "sample file directory path")
        self._path = path
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as e:
            raise _os_error(e, path) from None
        if self._lock == "none":
            self._fd = fd
            return
        operation = fcntl.LOCK_EX if self._lock == "exclusive" else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise BlockingIOError(
                    errno.EWOULDBLOCK,
                    f"sample file directory {path} is in use by another process",
                    path,
                ) from None
            raise _os_error(e, path) from None
        self._fd = fd

    @property
    def path(self) -> str:
        """The path the directory was opened with."""
        return self._path

    @property
    def lock(self) -> str:
        """The lock held: ``"exclusive"``, ``"shared"`` or ``"none"``."""
        return self._lock

    def _checked_fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"sample file directory {self._path} is closed")
        return self._fd

    def _writable_fd(self) -> int:
        fd = self._checked_fd()
        if self._lock != "exclusive":
            raise ValueError(
                f"sample file directory {self._path} is open read-only (lock {self._lock!r}); "
                "only the holder of the exclusive lock creates or unlinks sample files"
            )
        return fd

    def fileno(self) -> int:
        """The directory fd (for ``*at`` syscalls and ``os.listdir``)."""
        return self._checked_fd()

    def create_file(self, name: str) -> int:
        """Create ``name`` with ``O_EXCL`` and mode 0600 and return a write-only fd.

        ``EEXIST`` is a hard error: it would mean a UUID was not unique (brief §1.5).
        """
        dirfd = self._writable_fd()
        _args.sample_file_name(name, self._path)
        full = os.path.join(self._path, name)
        if _hook is not None:
            _hook("create", full)
        try:
            return os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dirfd)
        except OSError as e:
            raise _os_error(e, full) from None

    def open_file(self, name: str) -> int:
        """Open ``name`` read-only (for readers) and return the fd."""
        dirfd = self._checked_fd()
        _args.sample_file_name(name, self._path)
        try:
            return os.open(name, _READ_FLAGS, dir_fd=dirfd)
        except OSError as e:
            raise _os_error(e, os.path.join(self._path, name)) from None

    def unlink(self, name: str) -> bool:
        """Unlink ``name``; ``False`` if it was already gone (the caller warns), else ``True``."""
        dirfd = self._writable_fd()
        _args.sample_file_name(name, self._path)
        full = os.path.join(self._path, name)
        if _hook is not None:
            _hook("unlink", full)
        try:
            os.unlink(name, dir_fd=dirfd)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise _os_error(e, full) from None
        return True

    def file_size(self, name: str) -> int:
        """The size in bytes of ``name`` (``fstatat``)."""
        dirfd = self._checked_fd()
        _args.sample_file_name(name, self._path)
        try:
            return os.stat(name, dir_fd=dirfd).st_size
        except OSError as e:
            raise _os_error(e, os.path.join(self._path, name)) from None

    def sync(self) -> None:
        """``fsync`` the directory: makes creations and unlinks durable (brief §1.6 step 4)."""
        dirfd = self._checked_fd()
        if _hook is not None:
            _hook("fsync_dir", self._path)
        try:
            os.fsync(dirfd)
        except OSError as e:
            raise _os_error(e, self._path) from None

    def list_names(self) -> list[str]:
        """Every entry name in the directory except ``.`` and ``..``."""
        dirfd = self._checked_fd()
        try:
            return os.listdir(dirfd)
        except OSError as e:
            raise _os_error(e, self._path) from None

    def close(self) -> None:
        """Close the directory fd, which releases the lock.  Idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "SampleDirectory":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<SampleDirectory {self._path!r} {state}>"


def fsync(fd: int, name: "str | os.PathLike[str]") -> None:
    """``fsync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    name = _args.path_arg(name, "name")
    fd = _args.fd_arg(fd, name)
    if _hook is not None:
        _hook("fsync", name)
    try:
        os.fsync(fd)
    except OSError as e:
        raise _os_error(e, name) from None


def fdatasync(fd: int, name: "str | os.PathLike[str]") -> None:
    """``fdatasync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    name = _args.path_arg(name, "name")
    fd = _args.fd_arg(fd, name)
    if _hook is not None:
        _hook("fdatasync", name)
    try:
        os.fdatasync(fd)
    except OSError as e:
        raise _os_error(e, name) from None


def close_fd(fd: int) -> None:
    """``close(fd)``, never retried: on Linux the fd is released even when close fails."""
    fd = _args.fd_arg(fd, "close_fd")
    try:
        os.close(fd)
    except OSError as e:
        raise _os_error(e, None) from None
