"""The JSON endpoints of Moonfire NVR's API (``web-api.md`` §2.3, §2.4, §3).

``GET /api/`` (cameras, their streams, ``days`` and ``cameraConfigs``),
``GET /api/cameras/<uuid>/``, ``GET /api/cameras/<uuid>/<stream>/recordings``
(coalesced by run, as Moonfire's server does), ``GET /api/signals`` (no signals
exist yet, so empty arrays) and ``GET /api/request``.  Field names, which fields
are left out when empty, and status codes follow Moonfire's code where its doc
differs, because that is what its clients expect.

Every query runs on the web side's database thread (``WebContext.query``), never
on the event loop.
"""

from __future__ import annotations

import datetime
import json
import uuid as uuidlib
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

import moonfire
from moonfire.db import (
    STREAM_TYPES,
    Camera,
    Database,
    RecordingRow,
    Stream,
    UnknownStreamError,
    VideoSampleEntry,
)
from moonfire.ingest.sources import redact_url
from moonfire.playback import fragment
from moonfire.time import server_time_zone
from moonfire.web.auth import Auth, require_permission
from moonfire.web.context import WebContext
from moonfire.web.recorder import NOT_RECORDED, RecorderView, StreamStatus
from moonfire.web.unsaved import UnsavedRecording, unsaved_recordings

#: ``Cache-Control`` of the JSON replies (web-api.md §0).
NO_CACHE = "private, no-cache"
TIMESCALE = 90000


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": NO_CACHE},
    )


def plain_error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    """Moonfire's errors: a human-readable text/plain body the UI shows as it is."""
    return status(text=message, content_type="text/plain")


def days_of(rows: Iterable[RecordingRow], zone: zoneinfo.ZoneInfo) -> dict[str, dict[str, int]]:
    """``days`` of a stream: each calendar day (in ``zone``) its recordings overlap, with
    the day's bounds (23 or 25 hours across DST changes) and the recorded time inside it."""
    days: dict[str, dict[str, int]] = {}
    for row in rows:
        start, end = row.start_time_90k, row.end_time_90k
        while start < end:
            local = datetime.datetime.fromtimestamp(start / TIMESCALE, zone)
            day = local.date()
            day_start = _midnight_90k(day, zone)
            day_end = _midnight_90k(day + datetime.timedelta(days=1), zone)
            piece_end = min(end, day_end)
            entry = days.setdefault(
                day.isoformat(),
                {"startTime90k": day_start, "endTime90k": day_end, "totalDuration90k": 0},
            )
            entry["totalDuration90k"] += piece_end - start
            if piece_end <= start:  # a clock oddity; never loop forever
                break
            start = piece_end
    return days


def _midnight_90k(day: datetime.date, zone: zoneinfo.ZoneInfo) -> int:
    midnight = datetime.datetime.combine(day, datetime.time(), zone)
    return int(midnight.timestamp()) * TIMESCALE


def camera_uuid(camera: Camera) -> str:
    return str(uuidlib.UUID(bytes=camera.uuid))


def _stream_json(
    db: Database,
    camera: Camera,
    stream: Stream,
    days: bool,
    configs: bool,
    zone_name: str,
    statuses: Mapping[int, StreamStatus] | None,
) -> dict[str, Any]:
    # Every recording the API lists and plays, archived-only ones included; ``fsBytes`` is
    # what the local disk holds.
    _count, total_bytes, total_duration = db.stream_usage(stream.id, local_only=False)
    min_start, max_end, fs_bytes = db.stream_time_range(stream.id)
    out: dict[str, Any] = {
        "id": stream.id,
        "retainBytes": stream.retain_bytes,
        "minStartTime90k": min_start,
        "maxEndTime90k": max_end,
        "totalDuration90k": total_duration,
        "totalSampleFileBytes": total_bytes,
        "fsBytes": fs_bytes,
        "record": stream.record,
    }
    if statuses is not None:
        # Moonfire-only: the recorder's state, as `moonfire status` says it.
        status = statuses.get(stream.id)
        out["state"] = NOT_RECORDED if status is None else status.state
        out["stateReason"] = None if status is None else status.reason
    if days:
        out["days"] = days_of(db.list_recordings(stream.id), zoneinfo.ZoneInfo(zone_name))
    if configs:
        out["config"] = {
            "url": redact_url(stream.url),
            "record": stream.record,
            "retainBytes": stream.retain_bytes,
            "maxAgeDays": stream.max_age_days,
            "sampleFileDir": db.sample_file_dir(stream.sample_file_dir_id).name,
        }
    return out


def camera_json(
    db: Database,
    camera: Camera,
    *,
    days: bool,
    configs: bool,
    zone_name: str,
    statuses: Mapping[int, StreamStatus] | None = None,
) -> dict[str, Any]:
    """A camera as ``GET /api/`` lists it; its password never appears.  With the
    recorder's ``statuses`` (``moonfire run``), each stream has ``state`` and
    ``stateReason`` too."""
    out: dict[str, Any] = {
        "uuid": camera_uuid(camera),
        "id": camera.id,
        "shortName": camera.short_name,
        "description": camera.description,
        "streams": {
            s.type: _stream_json(db, camera, s, days, configs, zone_name, statuses)
            for s in camera.streams
        },
    }
    if configs:
        out["config"] = {
            "description": camera.description,
            "username": camera.username,
            "rotateIntervalSec": camera.rotate_interval_sec,
        }
    return out


def find_camera(db: Database, text: str) -> Camera:
    """The camera with this canonical uuid; 404 otherwise."""
    try:
        wanted = uuidlib.UUID(text).bytes
    except ValueError:
        raise plain_error(web.HTTPNotFound, f"no such camera {text}") from None
    for camera in db.list_cameras():
        if camera.uuid == wanted:
            return camera
    raise plain_error(web.HTTPNotFound, f"no such camera {text}")


def find_stream(db: Database, camera_text: str, stream_type: str) -> tuple[Camera, Stream]:
    """The camera's ``main`` or ``sub`` stream; 404 for anything else or a missing one."""
    camera = find_camera(db, camera_text)
    if stream_type not in STREAM_TYPES:
        raise plain_error(web.HTTPNotFound, f"no such stream type {stream_type}")
    try:
        return camera, camera.stream(stream_type)
    except UnknownStreamError:
        raise plain_error(
            web.HTTPNotFound, f"camera {camera.short_name} has no {stream_type} stream"
        ) from None


def coalesce_recordings(
    rows: list[RecordingRow],
    split_90k: int | None,
    uncommitted: Iterable[UnsavedRecording] = (),
) -> list[dict[str, Any]]:
    """Moonfire's ``list_aggregated_recordings``: rows by run, merged while consecutive.

    A recording joins its run's current row only when its id is the row's last + 1, its
    sample entry is the same, the times chain exactly, its open is the same, and the row's
    wall duration with it stays below ``split_90k``.  (Moonfire answers 500 when times or
    opens don't chain; starting a new row instead shows the same recordings.)

    ``uncommitted`` are the recordings still in the recorder's memory
    (``moonfire.web.unsaved``): a row holding one has ``firstUncommitted``, and a row
    ending with the one being written is ``growing``.
    """
    committed = {r.composite_id for r in rows}  # one committed since wins (see unsaved)
    unsaved = {u.row.composite_id: u for u in uncommitted if u.row.composite_id not in committed}
    rows = rows + [u.row for u in unsaved.values()]
    out: list[dict[str, Any]] = []
    current: dict[int, dict[str, Any]] = {}  # run start id -> its open row
    for row in sorted(rows, key=lambda r: r.start_time_90k):
        run_start = row.recording_id - row.run_offset
        agg = current.get(run_start)
        if (
            agg is not None
            and row.recording_id == agg["_last_id"] + 1
            and row.video_sample_entry_id == agg["videoSampleEntryId"]
            and row.start_time_90k == agg["endTime90k"]
            and (row.open_id or 0) == agg["openId"]
            and (split_90k is None or row.end_time_90k - agg["startTime90k"] < split_90k)
        ):
            agg["_last_id"] = row.recording_id
            agg["endId"] = row.recording_id
            agg["endTime90k"] = row.end_time_90k
            agg["videoSamples"] += row.video_samples
            agg["sampleFileBytes"] += row.sample_file_bytes
            agg["_trailing_zero"] = row.has_trailing_zero
            _mark_unsaved(agg, unsaved.get(row.composite_id))
            continue
        agg = {
            "startId": row.recording_id,
            "_last_id": row.recording_id,
            "runStartId": run_start,
            "openId": row.open_id or 0,
            "startTime90k": row.start_time_90k,
            "endTime90k": row.end_time_90k,
            "videoSampleEntryId": row.video_sample_entry_id,
            "videoSamples": row.video_samples,
            "sampleFileBytes": row.sample_file_bytes,
            "_trailing_zero": row.has_trailing_zero,
        }
        _mark_unsaved(agg, unsaved.get(row.composite_id))
        current[run_start] = agg
        out.append(agg)
    for agg in out:
        last = agg.pop("_last_id")
        if last == agg["startId"]:
            agg.pop("endId", None)
        if agg.pop("_trailing_zero"):
            agg["hasTrailingZero"] = True
    return out


def _mark_unsaved(agg: dict[str, Any], recording: UnsavedRecording | None) -> None:
    """``firstUncommitted`` at the row's first uncommitted member; ``growing`` from its newest."""
    if recording is None:
        agg.pop("growing", None)
        return
    agg.setdefault("firstUncommitted", recording.row.recording_id)
    if recording.growing:
        agg["growing"] = True
    else:
        agg.pop("growing", None)


def sample_entry_json(entry: VideoSampleEntry) -> dict[str, int]:
    """Dimensions, pixel aspect (``pasp``; square without one) and the reduced display
    aspect ratio, under the names Moonfire's server emits (``pasp…``, not the doc's)."""
    h_spacing, v_spacing = fragment.pixel_aspect(entry)
    aspect_width, aspect_height = fragment.aspect(entry)
    return {
        "width": entry.width,
        "height": entry.height,
        "paspHSpacing": h_spacing,
        "paspVSpacing": v_spacing,
        "aspectWidth": aspect_width,
        "aspectHeight": aspect_height,
    }


def _int_param(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise plain_error(web.HTTPBadRequest, f"{name} must be an integer, got {text!r}") from None


class Api:
    """The handlers; ``routes()`` lists them for the application."""

    def __init__(
        self, ctx: WebContext, auth: Auth, recorder: RecorderView | None = None
    ) -> None:
        self.ctx = ctx
        self.auth = auth
        self.recorder = recorder
        self.zone_name = server_time_zone()

    def _statuses(self) -> Mapping[int, StreamStatus] | None:
        """The recorder's stream states (in-memory reads: fine on the loop), if it runs here."""
        return None if self.recorder is None else self.recorder.stream_statuses()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/", self.top_level),
            web.get("/api/cameras/{uuid}/", self.one_camera),
            web.get("/api/cameras/{uuid}/{stream}/recordings", self.recordings),
            web.get("/api/signals", self.signals),
            web.get("/api/request", self.request_echo),
        ]

    async def top_level(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        days = request.query.get("days") == "true"
        configs = request.query.get("cameraConfigs") == "true"
        if configs:
            require_permission(caller, "read_camera_configs")

        statuses = self._statuses()

        def build(db: Database) -> list[dict[str, Any]]:
            return [
                camera_json(
                    db, c, days=days, configs=configs, zone_name=self.zone_name,
                    statuses=statuses,
                )
                for c in db.list_cameras()
            ]

        body: dict[str, Any] = {
            "timeZoneName": self.zone_name,
            "serverVersion": moonfire.__version__,
            "cameras": await self.ctx.query(build),
            "permissions": caller.permissions.to_json(),
            "signals": [],
            "signalTypes": [],
        }
        user = self.auth.user_json(caller)
        if user is not None:
            body["user"] = user
        return json_response(body)

    async def one_camera(self, request: web.Request) -> web.Response:
        await self.auth.caller(request)
        statuses = self._statuses()

        def build(db: Database) -> dict[str, Any]:
            camera = find_camera(db, request.match_info["uuid"])
            return camera_json(
                db, camera, days=True, configs=False, zone_name=self.zone_name,
                statuses=statuses,
            )

        return json_response(await self.ctx.query(build))

    async def recordings(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        require_permission(caller, "view_video")
        start = _int_param(request, "startTime90k")
        end = _int_param(request, "endTime90k")
        split = _int_param(request, "split90k")
        low = -(2**62) if start is None else start
        high = 2**62 if end is None else end

        def build(db: Database) -> dict[str, Any]:
            _camera, stream = find_stream(
                db, request.match_info["uuid"], request.match_info["stream"]
            )
            # The recorder's state before the database: see moonfire.web.unsaved.
            state = None if self.recorder is None else self.recorder.recorder_state(stream.id)
            unsaved = []
            if state is not None and low < high:
                unsaved = [
                    u for u in unsaved_recordings(state, stream, db.last_recording(stream.id))
                    if u.row.start_time_90k < high and u.row.end_time_90k > low
                ]
            rows = db.list_recordings_by_time(stream.id, low, high) if low < high else []
            entry_ids = {r.video_sample_entry_id for r in rows}
            entry_ids.update(u.row.video_sample_entry_id for u in unsaved)
            entries = {}
            for entry_id in sorted(entry_ids):
                entries[str(entry_id)] = sample_entry_json(db.get_video_sample_entry(entry_id))
            return {
                "recordings": coalesce_recordings(rows, split, unsaved),
                "videoSampleEntries": entries,
            }

        return json_response(await self.ctx.query(build))

    async def signals(self, request: web.Request) -> web.Response:
        await self.auth.caller(request)
        for name in ("startTime90k", "endTime90k"):
            _int_param(request, name)
        return json_response({"times90k": [], "signalIds": [], "states": []})

    async def request_echo(self, request: web.Request) -> web.Response:
        """A debug echo of how the server sees the caller (no session needed)."""
        peer = request.remote or "?"
        lines = [
            f"host: {request.host}",
            f"addr: {peer}",
            f"user agent: {request.headers.get('User-Agent', '')}",
            f"secure: {request.secure}",
        ]
        return web.Response(
            text="\n".join(lines) + "\n", content_type="text/plain",
            headers={"Cache-Control": NO_CACHE},
        )
