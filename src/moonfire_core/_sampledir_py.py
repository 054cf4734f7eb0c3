"""Pure-Python twin of ``_sampledir_c``: the sample file directory (brief §1.1, §1.4, §1.6).

This is the readable reference; the compiled twin does the same syscalls over raw libc with
the GIL released.  Every ``OSError`` carries errno, strerror and the *full path* of the file
(``OSError(err, os.strerror(err), path)``), so Python picks ``FileExistsError``,
``FileNotFoundError``… by itself and both twins raise identical types and messages.
"""

import errno
import fcntl
import os

from . import _fault_hook

_hook: _fault_hook.FaultHook | None = None


def _set_hook(hook: _fault_hook.FaultHook | None) -> None:
    global _hook
    _hook = hook


_fault_hook.subscribe(_set_hook)

_DIR_FLAGS = os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def _os_error(err: OSError, path: str) -> OSError:
    """Rebuild ``err`` so it names ``path`` (os.* functions name only the relative name)."""
    return OSError(err.errno, os.strerror(err.errno), path)


def _check_name(dir_path: str, name: str) -> None:
    """Refuse names that would leave the directory: a sample file is one flat entry."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"invalid sample file name {name!r} in {dir_path}")


class SampleDirectory:
    """An open, exclusively locked sample file directory.

    The lock (``flock(LOCK_EX|LOCK_NB)`` on the directory itself) keeps two processes from
    writing and deleting in the same directory; it is held until ``close``.  Files are created,
    opened, measured and unlinked relative to the directory fd, so a directory renamed or
    remounted under us can never make us touch another directory's files.
    """

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self._fd = -1
        path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"sample file directory path must be str, not {type(path).__name__}")
        if "\0" in path:  # C would silently cut the path at the NUL
            raise ValueError(f"sample file directory path has an embedded null byte: {path!r}")
        self._path = path
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as e:
            raise _os_error(e, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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

    def _checked_fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"sample file directory {self._path} is closed")
        return self._fd

    def fileno(self) -> int:
        """The directory fd (for ``*at`` syscalls and ``os.listdir``)."""
        return self._checked_fd()

    def create_file(self, name: str) -> int:
        """Create ``name`` with ``O_EXCL`` and mode 0600 and return a write-only fd.

        ``EEXIST`` is a hard error: it would mean a UUID was not unique (brief §1.5).
        """
        dirfd = self._checked_fd()
        _check_name(self._path, name)
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
        _check_name(self._path, name)
        try:
            return os.open(name, _READ_FLAGS, dir_fd=dirfd)
        except OSError as e:
            raise _os_error(e, os.path.join(self._path, name)) from None

    def unlink(self, name: str) -> bool:
        """Unlink ``name``; ``False`` if it was already gone (the caller warns), else ``True``."""
        dirfd = self._checked_fd()
        _check_name(self._path, name)
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
        _check_name(self._path, name)
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


def fsync(fd: int, name: str) -> None:
    """``fsync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    if _hook is not None:
        _hook("fsync", name)
    try:
        os.fsync(fd)
    except OSError as e:
        raise _os_error(e, name) from None


def fdatasync(fd: int, name: str) -> None:
    """``fdatasync(fd)``; ``name`` (the file's path) is only for the hook and error messages."""
    if _hook is not None:
        _hook("fdatasync", name)
    try:
        os.fdatasync(fd)
    except OSError as e:
        raise _os_error(e, name) from None


def close_fd(fd: int) -> None:
    """``close(fd)``, never retried: on Linux the fd is released even when close fails."""
    try:
        os.close(fd)
    except OSError as e:
        raise OSError(e.errno, os.strerror(e.errno)) from None
