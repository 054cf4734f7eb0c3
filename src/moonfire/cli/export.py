"""``moonfire export CAMERA --start T --end T -o out.mp4``: write a time range to ``.mp4`` files.

Nothing is written until the whole export is planned and every sample file it needs checked
(``moonfire.playback.export_plan.plan_export``). Each file is then streamed to a temporary file
beside its destination, fsynced, and renamed into place only after *all* of them were written,
so a failure leaves no partial output (the temporaries are removed).  The sample data goes
file to file in the kernel (``moonfire.playback.file_copy``), not through Python; that of a
recording only an archive holds is fetched whole and checked against its SHA-1 (a mismatch
fails the export naming the recording and the object's key).

Destinations are checked before anything is written, so the renames don't stop halfway and
nothing is clobbered by surprise: a directory, symbolic link, device (``/dev/full``), FIFO or
socket is refused (a rename would replace the node itself), and an existing regular file, or a
part left by an earlier export with more stretches, only with ``--force``. After the renames,
those stale parts are deleted and the directory is fsynced. ``-o -`` streams one stretch to
standard output instead (the summary goes to standard error).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import tempfile
import zoneinfo
from collections.abc import Callable

from tqdm import tqdm

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.codec import playback_note
from moonfire.db import MAIN, STREAM_TYPES
from moonfire.playback.export_plan import ExportError, ExportPart, plan_export
from moonfire.playback.file_copy import copy_to_fd
from moonfire.sizes import format_size
from moonfire.storage.data_dir import open_db
from moonfire.time import format_duration, format_time, parse_time, server_time_zone

_GAP_POLICY = (
    "A .mp4 covers one stretch without gaps: when the range spans gaps between recordings, "
    "the first stretch goes to OUTPUT and the following ones to OUTPUT with -2, -3, ... before "
    "its extension (out.mp4, out-2.mp4, ...). Existing files of those names are replaced only "
    "with --force, which also deletes regular files named like further stretches (OUTPUT-N "
    "with N beyond this export's count, e.g. left by an earlier, longer export) so they can't "
    "pass for part of this one. A destination that is not a regular file (a directory, "
    "symbolic link, device or FIFO) is always refused, before anything is written. "
    "-o - writes a single stretch to standard output."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help=command_help("export"),
        description="Write CAMERA's recordings in [--start, --end) to .mp4. Times are 90 kHz "
        "units or YYYY-MM-DDTHH:MM:SS[:FFFFF][Z|+hh:mm], local time without a zone. A range "
        "starting mid-GOP includes the frames from the preceding key frame, hidden by an edit "
        "list. " + _GAP_POLICY,
    )
    add_data_dir_argument(p)
    p.add_argument("camera", help="the camera's short name")
    p.add_argument(
        "--stream", choices=STREAM_TYPES, default=MAIN, help="which stream (default: main)"
    )
    p.add_argument("--start", required=True, help="start of the range (inclusive)")
    p.add_argument("--end", required=True, help="end of the range (exclusive)")
    p.add_argument(
        "-o", "--output", required=True,
        help="the .mp4 to write (see above for gaps), or - for standard output",
    )
    p.add_argument(
        "--force", action="store_true",
        help="replace existing files (and delete stale parts of an earlier export)",
    )
    p.add_argument(
        "--timestamps", action="store_true",
        help="add a subtitle track showing the wall-clock time of each second, in the "
        "server's time zone (VLC, mpv and ffmpeg show it; the video is not re-encoded)",
    )
    p.set_defaults(func=run)


#: ``-o`` value meaning standard output.
STDOUT = "-"


def run(args: argparse.Namespace) -> int:
    start, end = parse_time(args.start), parse_time(args.end)
    with open_db(args.data_dir, read_only=True) as db:
        try:
            zone = zoneinfo.ZoneInfo(server_time_zone()) if args.timestamps else None
            parts = plan_export(db, args.camera, start, end, args.stream, zone)
        except ExportError as e:
            raise CommandError(str(e)) from e
        if args.output == STDOUT:
            write_to_stdout(parts)
            paths = ["standard output"]
        else:
            paths = output_paths(args.output, len(parts))
            has_directory = os.path.isdir(_directory_of(args.output))
            stale = stale_part_paths(args.output, len(parts)) if has_directory else []
            check_destinations(paths, stale, force=args.force)
            write_atomically(parts, paths)
    summary = sys.stderr if args.output == STDOUT else sys.stdout
    for part, path in zip(parts, paths, strict=True):
        print(
            f"wrote {path}: {format_size(part.file.size)}, {format_duration(part.duration_90k)} "
            f"({format_time(part.start_90k)} .. {format_time(part.end_90k)}), "
            f"{part.frames} frames", file=summary,
        )
        note = playback_note(part.file.content_type.partition('codecs="')[2].rstrip('"'))
        if note:
            print(f"note: {path} is {note}", file=sys.stderr)
    if args.output == STDOUT:
        return 0
    stale = remove_stale_parts(args.output, len(parts))
    for path in stale:
        print(f"removed {path}: left by an earlier export with more stretches")
    if stale:
        _fsync_directory(_directory_of(args.output))
    return 0


def output_paths(output: str, count: int) -> list[str]:
    """``output`` for the first stretch, then ``stem-2.ext``, ``stem-3.ext``, ..."""
    stem, ext = os.path.splitext(output)
    return [output] + [f"{stem}-{n}{ext}" for n in range(2, count + 1)]


def stale_part_paths(output: str, count: int) -> list[str]:
    """Regular files ``stem-N.ext`` beside ``output`` with N > ``count``, as ``output_paths``
    would name them (no leading zeros), in N order."""
    stem, ext = os.path.splitext(output)
    directory = os.path.dirname(stem) or "."
    pattern = re.compile(re.escape(os.path.basename(stem)) + r"-([1-9][0-9]*)" + re.escape(ext))
    found: list[tuple[int, str]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and int(match[1]) > max(count, 1) and entry.is_file(follow_symlinks=False):
                found.append((int(match[1]), f"{stem}-{match[1]}{ext}"))
    return [path for _, path in sorted(found)]


def remove_stale_parts(output: str, count: int) -> list[str]:
    """Delete the ``stale_part_paths``: they would look like stretches of this export."""
    paths = stale_part_paths(output, count)
    for path in paths:
        _remove_quietly(path)
    return paths


def write_to_stdout(parts: list[ExportPart]) -> None:
    """The one stretch of ``parts`` to standard output (a pipe or a redirected file)."""
    if len(parts) != 1:
        raise CommandError(
            f"the range spans {len(parts)} stretches separated by gaps, and standard output "
            "(-o -) takes only one .mp4: narrow the range, or write to a file"
        )
    if sys.stdout.isatty():
        raise CommandError(
            "standard output is a terminal; redirect it (-o - > out.mp4, or into a pipe) "
            "or give a file name"
        )
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.flush()
    (part,) = parts
    try:
        fd: int | None = out.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        fd = None  # a Python object standing in for stdout (an embedding, a test's capture)
    with tqdm(
        total=part.file.size, unit="B", unit_scale=True, desc="export", file=sys.stderr,
        disable=None,
    ) as bar:
        if fd is None:
            part.file.write_to(out, bar.update)
        else:
            copy_to_fd(part.file, fd, bar.update)
    out.flush()


def check_destinations(paths: list[str], stale: list[str], *, force: bool) -> None:
    """Refuse what must not be written to (always) or replaced (without ``force``), before
    anything is written: what isn't a regular file first, as ``--force`` doesn't help there.
    ``stale`` are the parts of an earlier export that would be deleted."""
    existing: list[str] = []
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            raise CommandError(f"{path} is a directory; can't write the export there")
        if stat.S_ISLNK(mode):
            raise CommandError(
                f"{path} is a symbolic link; the export won't replace it or write through it "
                "(give the real path, or remove the link)"
            )
        if not stat.S_ISREG(mode):
            raise CommandError(
                f"{path} is not a regular file (a device, FIFO or socket); the export writes "
                "only regular files (use -o - to write to standard output)"
            )
        existing.append(path)
    if force:
        return
    if existing:
        raise CommandError(
            f"{existing[0]} exists{f' (and {len(existing) - 1} more)' if existing[1:] else ''};"
            " give --force to replace it"
        )
    if stale:
        raise CommandError(
            f"{stale[0]} looks like a part of an earlier export with more stretches and would "
            "be deleted so it can't pass for part of this one; give --force to delete it"
        )


def write_atomically(parts: list[ExportPart], paths: list[str]) -> None:
    """Writes every part to a temporary file, then renames them all; removes them on failure.

    Every destination is checked first (``check_destinations`` with ``force``: the caller
    decides about replacing), so no rename fails after another succeeded for a reason known
    in advance (a directory in the way).
    """
    check_destinations(paths, [], force=True)
    temporaries: list[str] = []
    total = sum(part.file.size for part in parts)
    try:
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="export", file=sys.stderr, disable=None
        ) as bar:
            for part, path in zip(parts, paths, strict=True):
                temporaries.append(_write_temporary(part, path, bar.update))
        for temporary, path in zip(temporaries, paths, strict=True):
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            _remove_quietly(temporary)
        raise
    for directory in sorted({_directory_of(path) for path in paths}):
        _fsync_directory(directory)


def _directory_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _fsync_directory(directory: str) -> None:
    """Make the renames (and deletions) durable: they live in the directory's entries."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(part: ExportPart, path: str, progress: Callable[[int], object]) -> str:
    directory = _directory_of(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=directory
    )
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # as open() would, not mkstemp's 0600
            copy_to_fd(part.file, fd, progress)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove_quietly(temporary)
        raise
    return temporary


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
