"""Fault injection for the file layer, shared by both twins of ``sampledir`` and ``writer``.

Tests (and the crash points of ``moonfire.storage.crash_points``) need to make a syscall fail on
demand without a broken disk.  Before each of these syscalls the file layer calls
``hook(op, path)`` if a hook is set (``op`` is one of ``create``, ``write``, ``truncate``,
``fsync``, ``fdatasync``, ``fsync_dir``, ``unlink``); an ``OSError`` the hook raises propagates
exactly as if the syscall itself had failed, so the caller's error handling runs.

The hot paths must not pay for this when no hook is set.  Each module that calls hooks
registers a listener with ``subscribe``; ``set_fault_hook`` pushes the new hook into every
listener, so the compiled twins can keep it in a C-level global and test it with one pointer
comparison per syscall instead of a module attribute lookup.
"""

from collections.abc import Callable

FaultHook = Callable[[str, str], None]

_hook: FaultHook | None = None
_listeners: list[Callable[[FaultHook | None], None]] = []


def set_fault_hook(hook: FaultHook | None) -> None:
    """Install ``hook`` (called as ``hook(op, path)`` before each file-layer syscall).

    ``None`` removes it.  The hook may raise ``OSError`` to make that syscall fail, e.g.
    ``OSError(errno.EIO, "Input/output error (injected)", path)``.
    """
    global _hook
    if hook is not None and not callable(hook):
        raise TypeError(f"fault hook must be callable or None, not {type(hook).__name__}")
    _hook = hook
    for listener in _listeners:
        listener(hook)


def subscribe(listener: Callable[[FaultHook | None], None]) -> None:
    """Call ``listener(hook)`` now and whenever the hook changes (for module-level caches)."""
    _listeners.append(listener)
    listener(_hook)
