"""``moonfire export CAMERA --start T --end T -o out.mp4``: write a time range to ``.mp4`` files.

Nothing is written until the whole export is planned and every sample file it needs checked
(``moonfire.playback.export_plan.plan_export``). Each file is then streamed to a temporary file
beside its destination, fsynced, and renamed into place only after *all* of them were written,
so a failure leaves no partial output (the temporaries are removed). A destination that is a
directory is refused before anything is written, so the renames don't stop halfway; after them,
parts left by an earlier export to the same name with more stretches are deleted and the
directory is fsynced.
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

from moonfire.cli.main import CommandError, add_data_dir_argument
from moonfire.db import MAIN, STREAM_TYPES
from moonfire.playback.export_plan import ExportError, ExportPart, plan_export
from moonfire.sizes import format_size
from moonfire.storage.data_dir import open_db
from moonfire.time import format_duration, format_time, parse_time, server_time_zone

_GAP_POLICY = (
    "A .mp4 covers one stretch without gaps: when the range spans gaps between recordings, "
    "the first stretch goes to OUTPUT and the following ones to OUTPUT with -2, -3, ... before "
    "its extension (out.mp4, out-2.mp4, ...); existing files of those names are replaced. "
    "Regular files named like further stretches (OUTPUT-N with N beyond this export's count, "
    "e.g. left by an earlier, longer export) are deleted so they can't pass for part of this "
    "one. A destination that is a directory is refused before anything is written."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a camera's recordings in a time range to .mp4",
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
    p.add_argument("-o", "--output", required=True, help="the .mp4 to write (see above for gaps)")
    p.add_argument(
        "--timestamps", action="store_true",
        help="add a subtitle track showing the wall-clock time of each second, in the "
        "server's time zone (VLC, mpv and ffmpeg show it; the video is not re-encoded)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start, end = parse_time(args.start), parse_time(args.end)
    with open_db(args.data_dir, read_only=True) as db:
        try:
            zone = zoneinfo.ZoneInfo(server_time_zone()) if args.timestamps else None
            parts = plan_export(db, args.camera, start, end, args.stream, zone)
        except ExportError as e:
            raise CommandError(str(e)) from e
        paths = output_paths(args.output, len(parts))
        write_atomically(parts, paths)
    for part, path in zip(parts, paths, strict=True):
        print(
            f"wrote {path}: {format_size(part.file.size)}, {format_duration(part.duration_90k)} "
            f"({format_time(part.start_90k)} .. {format_time(part.end_90k)}), "
            f"{part.frames} frames"
        )
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


def write_atomically(parts: list[ExportPart], paths: list[str]) -> None:
    """Writes every part to a temporary file, then renames them all; removes them on failure.

    Every destination is checked first, so no rename fails after another succeeded for
    a reason known in advance (a directory in the way).
    """
    _check_destinations(paths)
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


def _check_destinations(paths: list[str]) -> None:
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            raise CommandError(f"{path} is a directory; can't write the export there")


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
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # as open() would, not mkstemp's 0600
            part.file.write_to(f, progress)
            f.flush()
            os.fsync(f.fileno())
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
