"""The sample file directory: locking, O_EXCL creation, unlink, errors and fault injection.

Every test runs against both twins (``impl``); the errors are compared field by field
(errno, filename) because the twins must raise identical exceptions.
"""

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from moonfire_core import _fault_hook


@pytest.fixture
def hook_calls() -> Iterator[list[tuple[str, str]]]:
    """Install a fault hook that records ``(op, path)``; removed after the test."""
    calls: list[tuple[str, str]] = []
    _fault_hook.set_fault_hook(lambda op, path: calls.append((op, path)))
    yield calls
    _fault_hook.set_fault_hook(None)


def fail_on(op_to_fail: str):
    """A fault hook that makes every ``op_to_fail`` syscall fail with EIO."""

    def hook(op: str, path: str) -> None:
        if op == op_to_fail:
            raise OSError(errno.EIO, "Input/output error (injected)", path)

    return hook


@pytest.fixture
def no_hook_after() -> Iterator[None]:
    yield
    _fault_hook.set_fault_hook(None)


def try_lock_in_subprocess(impl, path: Path) -> str:
    code = (
        "import sys\n"
        f"from moonfire_core._sampledir_{'c' if impl.kind == 'c' else 'py'} "
        "import SampleDirectory\n"
        "try:\n"
        "    SampleDirectory(sys.argv[1]).close()\n"
        "    print('locked')\n"
        "except BlockingIOError as e:\n"
        "    print(f'{type(e).__name__} {e.errno} {e.strerror}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_lock_excludes_a_second_process_until_closed(impl, tmp_path: Path) -> None:
    directory = impl.sampledir.SampleDirectory(str(tmp_path))
    try:
        assert try_lock_in_subprocess(impl, tmp_path) == (
            f"BlockingIOError {errno.EWOULDBLOCK} "
            f"sample file directory {tmp_path} is in use by another process"
        )
    finally:
        directory.close()
    assert try_lock_in_subprocess(impl, tmp_path) == "locked"


def test_lock_excludes_a_second_open_in_the_same_process(impl, tmp_path: Path) -> None:
    with impl.sampledir.SampleDirectory(str(tmp_path)):
        with pytest.raises(BlockingIOError) as info:
            impl.sampledir.SampleDirectory(str(tmp_path))
    assert info.value.filename == str(tmp_path)
    assert "is in use by another process" in str(info.value)


def test_missing_directory_is_file_not_found_naming_the_path(impl, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        impl.sampledir.SampleDirectory(str(missing))
    assert (info.value.errno, info.value.filename) == (errno.ENOENT, str(missing))


def test_a_regular_file_is_not_a_directory(impl, tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_bytes(b"")
    with pytest.raises(NotADirectoryError) as info:
        impl.sampledir.SampleDirectory(str(regular))
    assert info.value.filename == str(regular)


def test_create_file_makes_a_private_file_writable_through_the_fd(impl, tmp_path: Path) -> None:
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        fd = directory.create_file("rec")
        try:
            os.write(fd, b"hello")
        finally:
            impl.sampledir.close_fd(fd)
        assert (tmp_path / "rec").read_bytes() == b"hello"
        assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o600
        assert directory.file_size("rec") == 5
        assert directory.list_names() == ["rec"]


def test_create_file_refuses_an_existing_name_naming_the_file(impl, tmp_path: Path) -> None:
    (tmp_path / "rec").write_bytes(b"keep me")
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        with pytest.raises(FileExistsError) as info:
            directory.create_file("rec")
    assert (info.value.errno, info.value.filename) == (errno.EEXIST, str(tmp_path / "rec"))
    assert (tmp_path / "rec").read_bytes() == b"keep me"


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "nul\0byte"])
def test_names_that_leave_the_directory_are_refused(impl, tmp_path: Path, name: str) -> None:
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        for operation in (directory.create_file, directory.unlink, directory.file_size):
            with pytest.raises(ValueError, match="invalid sample file name"):
                operation(name)
    assert list(tmp_path.iterdir()) == []


def test_unlink_reports_whether_the_file_existed(impl, tmp_path: Path) -> None:
    (tmp_path / "rec").write_bytes(b"x")
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        assert directory.unlink("rec") is True
        assert not (tmp_path / "rec").exists()
        assert directory.unlink("rec") is False


def test_unlink_of_a_directory_is_an_error_naming_it(impl, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        with pytest.raises(IsADirectoryError) as info:
            directory.unlink("sub")
    assert info.value.filename == str(tmp_path / "sub")


def test_file_size_of_a_missing_file_names_the_file(impl, tmp_path: Path) -> None:
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        with pytest.raises(FileNotFoundError) as info:
            directory.file_size("gone")
        with pytest.raises(FileNotFoundError) as open_info:
            directory.open_file("gone")
    assert info.value.filename == open_info.value.filename == str(tmp_path / "gone")


def test_open_file_reads_what_was_written(impl, tmp_path: Path) -> None:
    (tmp_path / "rec").write_bytes(b"sample bytes")
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        fd = directory.open_file("rec")
        try:
            assert os.read(fd, 100) == b"sample bytes"
            with pytest.raises(OSError):
                os.write(fd, b"x")
        finally:
            os.close(fd)


def test_sync_errors_carry_errno_and_name(impl, tmp_path: Path) -> None:
    bad_fd = os.open(os.devnull, os.O_RDONLY)
    os.close(bad_fd)
    for sync in (impl.sampledir.fsync, impl.sampledir.fdatasync):
        with pytest.raises(OSError) as info:
            sync(bad_fd, str(tmp_path / "rec"))
        assert (info.value.errno, info.value.filename) == (errno.EBADF, str(tmp_path / "rec"))
    with pytest.raises(OSError) as info:
        impl.sampledir.close_fd(bad_fd)
    assert info.value.errno == errno.EBADF


def test_close_is_idempotent_and_later_use_is_refused(impl, tmp_path: Path) -> None:
    directory = impl.sampledir.SampleDirectory(str(tmp_path))
    directory.close()
    directory.close()
    with pytest.raises(ValueError, match=f"sample file directory {tmp_path} is closed"):
        directory.create_file("rec")
    with pytest.raises(ValueError, match="is closed"):
        directory.fileno()


def test_fault_hook_sees_every_mutating_syscall_with_its_path(
    impl, tmp_path: Path, hook_calls: list[tuple[str, str]]
) -> None:
    rec = str(tmp_path / "rec")
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        fd = directory.create_file("rec")
        impl.sampledir.fsync(fd, rec)
        impl.sampledir.fdatasync(fd, rec)
        impl.sampledir.close_fd(fd)
        directory.sync()
        directory.file_size("rec")
        directory.unlink("rec")
    assert hook_calls == [
        ("create", rec),
        ("fsync", rec),
        ("fdatasync", rec),
        ("fsync_dir", str(tmp_path)),
        ("unlink", rec),
    ]


@pytest.mark.parametrize("op", ["create", "unlink", "fsync_dir", "fsync", "fdatasync"])
def test_fault_hook_error_propagates_as_the_syscall_error(
    impl, tmp_path: Path, no_hook_after: None, op: str
) -> None:
    rec = str(tmp_path / "rec")
    (tmp_path / "existing").write_bytes(b"x")
    with impl.sampledir.SampleDirectory(str(tmp_path)) as directory:
        fd = os.open(tmp_path / "existing", os.O_RDONLY)
        actions = {
            "create": lambda: directory.create_file("rec"),
            "unlink": lambda: directory.unlink("existing"),
            "fsync_dir": directory.sync,
            "fsync": lambda: impl.sampledir.fsync(fd, rec),
            "fdatasync": lambda: impl.sampledir.fdatasync(fd, rec),
        }
        _fault_hook.set_fault_hook(fail_on(op))
        try:
            with pytest.raises(OSError) as info:
                actions[op]()
        finally:
            _fault_hook.set_fault_hook(None)
            os.close(fd)
    assert info.value.errno == errno.EIO
    assert "injected" in str(info.value)
    # The failed syscall did not happen.
    assert not (tmp_path / "rec").exists()
    assert (tmp_path / "existing").exists()


def test_a_path_like_is_accepted_and_reported_as_str(impl, tmp_path: Path) -> None:
    with impl.sampledir.SampleDirectory(tmp_path) as directory:
        assert directory.path == str(tmp_path)
    with pytest.raises(TypeError, match="must be str, not bytes"):
        impl.sampledir.SampleDirectory(bytes(tmp_path))


def test_path_with_a_nul_byte_is_refused_by_both_twins(impl, tmp_path) -> None:
    with pytest.raises(ValueError, match="embedded null byte"):
        impl.sampledir.SampleDirectory(str(tmp_path) + "\0zzz")
