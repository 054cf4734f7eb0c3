"""``GET /api/cameras/<uuid>/<stream>/view.mp4``: any stretch of recordings as one ``.mp4``.

The ``s=`` grammar is Moonfire's (web-api.md §2.5)::

    s   = ids [ "@" openId ] [ "." [relStart] "-" [relEnd] ]
    ids = startId [ "-" endId ]

``relStart``/``relEnd`` are wall-time offsets (90 kHz) from the start of
``startId`` and may skip whole recordings.  Several ``s`` are concatenated in
order.  The file is ``moonfire.playback.mp4.build_mp4``'s virtual ``.mp4``,
served through ``moonfire.web.http_entity`` (ranges, conditional requests);
its sample bytes are read on the web side's read pool, never on the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import hdrs, web

from moonfire.db import (
    Camera,
    Database,
    RecordingRow,
    Stream,
    UnknownVideoSampleEntryError,
    VideoSampleEntry,
)
from moonfire.errors import MoonfireError
from moonfire.playback import box_dump, fragment
from moonfire.playback.media_segment import build_m4s, leading_media_duration_90k
from moonfire.playback.mp4 import SampleFileOpener, VirtualFile, build_mp4
from moonfire.playback.segment import ArchivedSampleData, Segment, SegmentError, recording_name
from moonfire.storage.archive_reader import (
    ArchiveReadError,
    ArchiveReaders,
    ArchiveUnavailableError,
)
from moonfire.storage.sample_file_dir import uuid_name
from moonfire.time import server_time_zone
from moonfire.web.api import NO_CACHE, find_stream, plain_error
from moonfire.web.auth import Auth, require_permission
from moonfire.web.context import WebContext
from moonfire.web.http_entity import parse_range, serve_entity
from moonfire.web.recorder import RecorderView
from moonfire.web.unsaved import UnsavedRecording, unsaved_recordings
from moonfire_core.sampledir import SampleDirectory

#: ``Cache-Control`` of media replies (web-api.md §0).
MEDIA_CACHE = "private, max-age=3600"
#: The query parameters view.mp4 understands; any other is a 400.
VIEW_PARAMETERS = frozenset({"s", "ts"})

MAX_RECORDING_ID = 0xFFFF_FFFF
#: Far beyond any real span of recordings, and far from int64 overflow.
MAX_REL_90K = 1 << 60
_S_RE = re.compile(r"(\d+)(?:-(\d+))?(?:@(\d+))?(?:\.(\d*)-(\d*))?")


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One ``s=`` value: recordings ``start_id..end_id`` (inclusive), optionally only if
    committed under ``open_id``, clipped to wall offsets ``[rel_start, rel_end)``."""

    start_id: int
    end_id: int
    open_id: int | None
    rel_start: int
    rel_end: int | None


class BadSpecError(MoonfireError, ValueError):
    """An ``s=`` value that doesn't parse (the handler answers 400 with the message)."""


def parse_s(text: str) -> SegmentSpec:
    """Parse one ``s=`` value; ``BadSpecError`` naming what is wrong."""
    m = _S_RE.fullmatch(text)
    if m is None:
        raise BadSpecError(f"invalid s parameter {text!r}")
    start_id = int(m.group(1))
    end_id = int(m.group(2)) if m.group(2) is not None else start_id
    if end_id > MAX_RECORDING_ID:
        raise BadSpecError(f"s={text}: recording id {end_id} is out of range")
    if end_id < start_id:
        raise BadSpecError(f"s={text}: end id {end_id} is before start id {start_id}")
    open_id = int(m.group(3)) if m.group(3) is not None else None
    rel_start = int(m.group(4)) if m.group(4) else 0
    rel_end = int(m.group(5)) if m.group(5) else None
    if max(rel_start, rel_end or 0) > MAX_REL_90K:
        raise BadSpecError(f"s={text}: relative time out of range")
    if rel_end is not None and rel_end < rel_start:
        raise BadSpecError(f"s={text}: relative end {rel_end} is before relative start {rel_start}")
    return SegmentSpec(start_id, end_id, open_id, rel_start, rel_end)


def segments_for(
    db: Database,
    stream: Stream,
    spec: SegmentSpec,
    names: dict[int, str],
    unsaved: Mapping[int, UnsavedRecording] | None = None,
    archives: ArchiveReaders | None = None,
) -> list[Segment]:
    """The clipped segments one spec names; 404 for a missing recording or another open,
    400 for an end past the recordings.  Adds each segment's sample file name to ``names``
    (by composite id).  ``unsaved`` (by recording id) are the recordings only the
    recorder's memory holds yet (``moonfire.web.unsaved``): read before the database, so
    a committed row found here wins.  With ``archives``, a recording whose local file is
    gone reads its bytes from its archive (``Segment.archived``)."""
    unsaved = unsaved or {}
    rows = {
        r.recording_id: r
        for r in db.list_recordings_by_id(stream.id, spec.start_id, spec.end_id)
    }
    # Composite id -> (sample file uuid, video_index).
    stored = {
        cid: (p.sample_file_uuid, p.video_index)
        for cid, p in db.list_playback_by_id(stream.id, spec.start_id, spec.end_id).items()
    }
    for recording_id, recording in unsaved.items():
        if spec.start_id <= recording_id <= spec.end_id and recording_id not in rows:
            rows[recording_id] = recording.row
            stored[recording.row.composite_id] = (recording.sample_file_uuid, recording.video_index)
    archived = {} if archives is None else archives.archived_files(
        db, stream.id, spec.start_id, spec.end_id,
        {r.composite_id: r.sample_file_bytes for r in rows.values()})
    ordered: list[RecordingRow] = []
    for recording_id in range(spec.start_id, spec.end_id + 1):
        row = rows.get(recording_id)
        if row is None:
            raise plain_error(web.HTTPNotFound, f"no recording {stream.id}/{recording_id}")
        if spec.open_id is not None and (row.open_id or 0) != spec.open_id:
            raise plain_error(
                web.HTTPNotFound,
                f"recording {recording_id} was written under open {row.open_id or 0}, "
                f"not {spec.open_id}",
            )
        ordered.append(row)
    total = sum(r.duration_90k for r in ordered)
    rel_end = total if spec.rel_end is None else spec.rel_end
    if rel_end > total:
        raise plain_error(
            web.HTTPBadRequest,
            f"end time {rel_end} is beyond specified recordings (total {total})",
        )
    segments = []
    offset = 0
    for row in ordered:
        begin, end = offset, offset + row.duration_90k
        offset = end
        lo, hi = max(spec.rel_start, begin), min(rel_end, end)
        if hi < lo or (hi == lo and row.duration_90k > 0):
            continue  # outside [rel_start, rel_end)
        found = stored.get(row.composite_id)
        if found is None:  # deleted between the two reads
            raise plain_error(web.HTTPNotFound, f"no recording {stream.id}/{row.recording_id}")
        sample_file_uuid, video_index = found
        names[row.composite_id] = uuid_name(sample_file_uuid)
        try:
            segments.append(Segment(row, video_index, (lo - begin, hi - begin),
                                    archived.get(row.composite_id)))
        except SegmentError as e:
            raise plain_error(web.HTTPInternalServerError, str(e)) from e
    return segments


def attachment_name(camera: Camera, stream: Stream, start_90k: int) -> str:
    """``YYYYmmddHHMMSS-<shortName>-<main|sub>.mp4`` in the server's local zone."""
    when = datetime.datetime.fromtimestamp(start_90k / 90000).strftime("%Y%m%d%H%M%S")
    safe = re.sub(r'[^A-Za-z0-9._-]', "_", camera.short_name)
    return f"{when}-{safe}-{stream.type}.mp4"


#: The init segments' ``Last-Modified``: they depend on the code that builds them.
SERVER_START = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


class BytesEntity:
    """A small entity held in memory (an init segment), with a strong ETag of its bytes."""

    def __init__(self, data: bytes, content_type: str, last_modified: datetime.datetime) -> None:
        self.data = data
        self.content_type = content_type
        self.last_modified = last_modified
        self.etag = f'"{hashlib.sha1(data).hexdigest()}"'

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


#: Builds the file a request serves from its segments: (file, extra entity headers).
_Maker = Callable[
    [Database, Stream, list[Segment], dict[int, VideoSampleEntry], SampleFileOpener],
    tuple[VirtualFile, dict[str, str]],
]


@dataclass(frozen=True, slots=True)
class _Opened:
    """A built ``view.mp4``/``view.m4s`` and what serving it needs; ``directory`` is open."""

    camera: Camera
    stream: Stream
    file: VirtualFile
    headers: dict[str, str]
    directory: SampleDirectory
    #: It holds a recording not committed yet (so it may not be cached).
    in_memory: bool


class View:
    def __init__(self, ctx: WebContext, auth: Auth, recorder: RecorderView | None = None) -> None:
        self.ctx = ctx
        self.auth = auth
        self.recorder = recorder
        #: Readers of the archives holding recordings whose local file is gone.
        self.archives = ArchiveReaders()
        #: The server's zone: the timestamp subtitles show its local time.
        self.zone = zoneinfo.ZoneInfo(server_time_zone())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/cameras/{uuid}/{stream}/view.mp4", self.view_mp4),
            web.get("/api/cameras/{uuid}/{stream}/view.m4s", self.view_m4s),
            web.get("/api/cameras/{uuid}/{stream}/view.mp4.txt", self.view_mp4_txt),
            web.get("/api/cameras/{uuid}/{stream}/view.m4s.txt", self.view_m4s_txt),
            web.get("/api/init/{id}.mp4", self.init_mp4),
            web.get("/api/init/{id}.mp4.txt", self.init_mp4),
        ]

    async def init_mp4(self, request: web.Request) -> web.StreamResponse:
        """The init segment (``ftyp`` + ``moov``) live fragments of sample entry ``id`` need,
        with ``X-Aspect`` (the UI sizes its live ``<video>`` from it); any caller."""
        await self.auth.caller(request)
        text = request.match_info["id"]
        if not text.isdigit() or len(text) > 18:
            raise plain_error(web.HTTPNotFound, f"no video sample entry {text}")

        def load(db: Database) -> VideoSampleEntry:
            try:
                return db.get_video_sample_entry(int(text))
            except UnknownVideoSampleEntryError:
                raise plain_error(web.HTTPNotFound, f"no video sample entry {text}") from None

        entry = await self.ctx.query(load)
        width, height = fragment.aspect(entry)
        entity = BytesEntity(
            fragment.init_segment(entry), fragment.content_type(entry), SERVER_START
        )
        if request.path.endswith(".txt"):
            lines = [
                f"Content-Type: {entity.content_type}",
                f"ETag: {entity.etag}",
                f"Content-Length: {entity.size}",
                f"X-Aspect: {width}:{height}",
                f"sample entry {entry.id}: {entry.width}x{entry.height}",
                "",
                "boxes (offset, size, type):",
                *box_dump.outline(entity.read, entity.size),
            ]
            return web.Response(
                text="\n".join(lines) + "\n", content_type="text/plain",
                headers={"Cache-Control": MEDIA_CACHE},
            )
        return await serve_entity(
            request,
            entity,
            headers={"Cache-Control": MEDIA_CACHE},
            entity_headers={"X-Aspect": f"{width}:{height}"},
        )

    async def view_mp4(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, await self._open(request, self._mp4_maker(request)))

    async def view_m4s(self, request: web.Request) -> web.StreamResponse:
        """The same recordings as one fMP4 media segment (``moonfire.playback.media_segment``)."""
        return await self._serve(request, await self._open(request, self._m4s_maker(request)))

    async def view_mp4_txt(self, request: web.Request) -> web.StreamResponse:
        return await self._describe(await self._open(request, self._mp4_maker(request)))

    async def view_m4s_txt(self, request: web.Request) -> web.StreamResponse:
        return await self._describe(await self._open(request, self._m4s_maker(request)))

    def _mp4_maker(self, request: web.Request) -> _Maker:
        # Only "true" adds the timestamp subtitles (any other value is off, as in Moonfire).
        timestamps = self.zone if request.query.get("ts") == "true" else None

        def make(
            db: Database, stream: Stream, segments: list[Segment],
            entries: dict[int, VideoSampleEntry], opener: SampleFileOpener,
        ) -> tuple[VirtualFile, dict[str, str]]:
            return build_mp4(segments, entries, opener, timestamps), {}

        return make

    def _m4s_maker(self, request: web.Request) -> _Maker:
        if request.query.get("ts") == "true":
            raise plain_error(
                web.HTTPBadRequest, "view.m4s has no timestamp track; ask view.mp4 for ts=true"
            )

        def make(
            db: Database, stream: Stream, segments: list[Segment],
            entries: dict[int, VideoSampleEntry], opener: SampleFileOpener,
        ) -> tuple[VirtualFile, dict[str, str]]:
            file = build_m4s(segments, entries, opener)
            first = segments[0].row
            run_start_id = first.recording_id - first.run_offset
            earlier = db.list_recordings_by_id(stream.id, run_start_id, first.recording_id - 1)
            runs = db.runs_started_before(stream.id, first.start_time_90k)
            headers = {
                # The X- headers describe the first segment only (web-api.md §3).
                "X-Prev-Media-Duration": str(sum(r.duration_90k for r in earlier)),
                "X-Runs": str(runs + (1 if first.run_offset == 0 else 0)),
            }
            leading = leading_media_duration_90k(segments[0])
            if leading > 0:
                headers["X-Leading-Media-Duration"] = str(leading)
            return file, headers

        return make

    async def _open(self, request: web.Request, make: _Maker) -> _Opened:
        """What ``view.mp4``, ``view.m4s`` and their ``.txt`` forms share: the ``s=``
        parameters and the recordings they name (committed or still in the recorder's
        memory), and the file ``make`` builds from them.  The caller closes its directory."""
        caller = await self.auth.caller(request)
        require_permission(caller, "view_video")
        unknown = sorted(set(request.query) - VIEW_PARAMETERS)
        if unknown:
            raise plain_error(web.HTTPBadRequest, f"parameter {unknown[0]} not understood")
        try:
            specs = [parse_s(value) for value in request.query.getall("s", [])]
        except BadSpecError as e:
            raise plain_error(web.HTTPBadRequest, str(e)) from None
        if not specs:
            raise plain_error(web.HTTPBadRequest, "at least one s parameter is required")

        def build(db: Database) -> _Opened:
            camera, stream = find_stream(
                db, request.match_info["uuid"], request.match_info["stream"]
            )
            # The recorder's state, then the newest committed row, then the rows by id:
            # the order moonfire.web.unsaved needs.
            state = None if self.recorder is None else self.recorder.recorder_state(stream.id)
            unsaved = {} if state is None else {
                u.row.recording_id: u
                for u in unsaved_recordings(state, stream, db.last_recording(stream.id))
            }
            names: dict[int, str] = {}
            segments = [
                seg for spec in specs
                for seg in segments_for(db, stream, spec, names, unsaved, self.archives)
            ]
            if not segments:
                raise plain_error(web.HTTPBadRequest, "the s parameters select no frames")
            entries = {
                i: db.get_video_sample_entry(i)
                for i in {s.row.video_sample_entry_id for s in segments}
            }
            path = db.sample_file_dir(stream.sample_file_dir_id).path
            try:
                directory = SampleDirectory(path, lock="none")
            except OSError as e:
                raise plain_error(
                    web.HTTPInternalServerError, f"can't open sample file directory: {e}"
                ) from None

            def open_sample_file(row: RecordingRow) -> int:
                return directory.open_file(names[row.composite_id])

            try:
                file, headers = make(db, stream, segments, entries, open_sample_file)
            except ValueError as e:
                directory.close()
                raise plain_error(web.HTTPBadRequest, str(e)) from None
            in_memory = any(s.row.recording_id in unsaved for s in segments)
            return _Opened(camera, stream, file, headers, directory, in_memory)

        return await self.ctx.query(build)

    async def _serve(self, request: web.Request, opened: _Opened) -> web.StreamResponse:
        try:
            await self._reach_archive(request, opened.file)
        except BaseException:
            opened.directory.close()
            raise
        headers = dict(opened.headers)
        if request.path.endswith(".mp4"):
            name = attachment_name(
                opened.camera, opened.stream, opened.file.segments[0].row.start_time_90k
            )
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        try:
            return await serve_entity(
                request,
                opened.file,
                # A recording not committed yet may still change (its ETag with it).
                headers={"Cache-Control": NO_CACHE if opened.in_memory else MEDIA_CACHE},
                entity_headers=headers,
            )
        except ArchiveUnavailableError as e:  # the first piece, before the headers went
            raise plain_error(web.HTTPServiceUnavailable, str(e)) from None
        except ArchiveReadError as e:
            raise plain_error(web.HTTPInternalServerError, str(e)) from None
        finally:
            opened.directory.close()  # every read of the response is done

    async def _reach_archive(self, request: web.Request, file: VirtualFile) -> None:
        """When the response reads archived bytes (the requested ranges, or the whole file),
        fetch the first archived byte of each range before any header goes out
        (on the read pool): an archive that can't be reached answers 503 naming it, not a
        200 cut short.  The fetch fills the reader's cache, so the body's first read of it
        costs nothing more."""
        ranges = parse_range(request.headers.get(hdrs.RANGE), file.size)
        wanted = [(r.start, r.length) for r in ranges] if ranges else [(0, file.size)]
        # The first archived byte of each range (the reader's cache makes repeats cheap).
        probes: dict[tuple[int, int], tuple[ArchivedSampleData, int]] = {}
        for offset, length in wanted:
            first = file.first_archived_byte(offset, length)
            if first is not None:
                probes.setdefault((id(first[0]), first[1]), first)
        loop = asyncio.get_running_loop()
        for archived, at in probes.values():
            try:
                await loop.run_in_executor(self.ctx.read_executor, archived.read, at, 1)
            except ArchiveUnavailableError as e:
                raise plain_error(web.HTTPServiceUnavailable, str(e)) from None
            except ArchiveReadError as e:
                raise plain_error(web.HTTPInternalServerError, str(e)) from None

    async def _describe(self, opened: _Opened) -> web.Response:
        """The ``.txt`` form: the headers, the segments and the box outline."""
        file = opened.file
        lines = [
            f"Content-Type: {file.content_type}",
            f"ETag: {file.etag}",
            f"Content-Length: {file.size}",
            *(f"{name}: {value}" for name, value in opened.headers.items()),
            "",
            "segments (recording: desired range, actual range, frames, bytes of its file):",
        ]
        for segment in file.segments:
            start, end = segment.desired_range_90k
            first_byte, last_byte = segment.sample_byte_range
            lines.append(
                f"  {recording_name(segment.row)}: [{start}, {end}), "
                f"[{segment.actual_start_90k}, {segment.actual_end_90k}), {segment.frames} "
                f"frames, bytes {first_byte}-{last_byte}"
            )
        lines += ["", "boxes (offset, size, type):"]
        loop = asyncio.get_running_loop()
        try:
            # Only box headers are read, but some lie in sample tables built on reading.
            boxes = await loop.run_in_executor(
                self.ctx.read_executor, box_dump.outline, file.read, file.size
            )
        finally:
            opened.directory.close()
        return web.Response(
            text="\n".join(lines + boxes) + "\n", content_type="text/plain",
            headers={"Cache-Control": NO_CACHE if opened.in_memory else MEDIA_CACHE},
        )
