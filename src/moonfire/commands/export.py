"""``moonfire export CAMERA --start T --end T -o out.mp4``: write a time range to ``.mp4`` files.

Nothing is written until the whole export is planned and every sample file it needs checked
(``moonfire.export.plan_export``).  Each file is then streamed to a temporary file beside its
destination, fsynced, and renamed into place only after *all* of them were written, so a failure
leaves no partial output (the temporaries are removed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable

from tqdm import tqdm

from ..cli import CommandError, add_data_dir_argument
from ..datadir import open_db
from ..export import ExportError, ExportPart, plan_export
from ..sizes import format_size
from ..time import format_duration, format_time, parse_time

_GAP_POLICY = (
    "A .mp4 covers one stretch without gaps: when the range spans gaps between recordings, "
    "the first stretch goes to OUTPUT and the following ones to OUTPUT with -2, -3, ... before "
    "its extension (out.mp4, out-2.mp4, ...); existing files of those names are replaced."
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
    p.add_argument("--start", required=True, help="start of the range (inclusive)")
    p.add_argument("--end", required=True, help="end of the range (exclusive)")
    p.add_argument("-o", "--output", required=True, help="the .mp4 to write (see above for gaps)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start, end = parse_time(args.start), parse_time(args.end)
    with open_db(args.data_dir, read_only=True) as db:
        try:
            parts = plan_export(db, args.camera, start, end)
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
    return 0


def output_paths(output: str, count: int) -> list[str]:
    """``output`` for the first stretch, then ``stem-2.ext``, ``stem-3.ext``, ..."""
    stem, ext = os.path.splitext(output)
    return [output] + [f"{stem}-{n}{ext}" for n in range(2, count + 1)]


def write_atomically(parts: list[ExportPart], paths: list[str]) -> None:
    """Writes every part to a temporary file, then renames them all; removes them on failure."""
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


def _write_temporary(part: ExportPart, path: str, progress: Callable[[int], object]) -> str:
    directory = os.path.dirname(os.path.abspath(path))
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
