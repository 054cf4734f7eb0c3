"""moonfire's own API for the web UI's setup and status pages, under ``/api/admin/``.

Moonfire NVR configures cameras from a console tool, so its API has no endpoints for it;
these live under a path it doesn't use (web-api.md: "moonfire may add endpoints under
``/api/`` names Moonfire doesn't use").  Every one needs the ``adminUsers`` permission
(403 otherwise, by ``require_permission``), and a session caller's mutations need its CSRF
token in the body, as Moonfire's user routes do (``Auth.check_csrf``):

* ``GET /api/admin/status``: each stream as the recorder sees it (state, why, frames, the
  age of its last frame, its recent bitrate) and each sample file directory (free space,
  size, the streams on it).
* ``GET /api/admin/cameras``: every camera's settings for the setup form (URLs with their
  passwords redacted, never the camera password itself) and the sample file directories.
* ``POST /api/admin/cameras``: add a camera (``{"camera": {...}}``, the GET's field names);
  with a recorder running here (``moonfire run``) its streams start recording at once.
* ``PATCH /api/admin/cameras/<uuid>``: change some settings; a stream that starts recording
  because of it starts at once; a running stream's new URL takes effect at the next start.
* ``DELETE /api/admin/cameras/<uuid>``: remove a camera without recordings (409 otherwise,
  or while this process records it).
* ``POST /api/admin/probe``: connect to a URL once and report what the stream is
  (``moonfire.ingest.probe.probe_stream``), the setup page's "Test connection".

Database writes go through ``WebContext.query`` (the web side's own connection and thread),
through ``Database.add_camera``/``update_camera``/``delete_camera``, which validate every
setting and name the one that is wrong; those messages become 400s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from moonfire.db import Camera, Database
from moonfire.db.errors import DatabaseError, UnknownCameraError
from moonfire.ingest.sources import redact_url
from moonfire.sizes import SizeError, parse_size
from moonfire.web.api import camera_uuid, find_camera, json_response, plain_error
from moonfire.web.auth import Auth, Caller, read_json_body, require_permission
from moonfire.web.context import WebContext
from moonfire.web.recorder import NOT_RECORDED, RecorderView

log = logging.getLogger(__name__)

TIMESCALE = 90000
#: The recent bitrate is measured over this much of a stream's newest recordings.
RECENT_SEC = 600
#: How long "Test connection" waits for a camera.
PROBE_TIMEOUT_SEC = 10.0

#: The JSON names of a camera's own settings -> ``add_camera``'s keyword names.
_CAMERA_FIELDS = {
    "shortName": "short_name",
    "description": "description",
    "username": "username",
    "password": "password",
    "rotateIntervalSec": "rotate_interval_sec",
}
#: A stream's JSON names -> ``add_camera``'s (``sub_`` prefixed for the sub stream).
_STREAM_FIELDS = {
    "url": "url",
    "retain": "retain_bytes",
    "retainBytes": "retain_bytes",
    "maxAgeDays": "max_age_days",
    "sampleFileDir": "sample_file_dir",
}


def routes(ctx: WebContext, auth: Auth, recorder: RecorderView | None) -> list[web.RouteDef]:
    """The ``/api/admin/`` routes, for ``build_app``."""
    return Admin(ctx, auth, recorder).routes()


def camera_settings_from_json(body: object, *, adding: bool) -> dict[str, Any]:
    """``{"shortName": ..., "streams": {"main": {...}, "sub": {...}}}`` as the keyword
    arguments of ``Database.add_camera``/``update_camera``; 400 naming the field that is
    wrong.  ``retain`` may be bytes or a size such as ``"10GiB"``."""
    if not isinstance(body, Mapping):
        raise plain_error(web.HTTPBadRequest, "camera must be an object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "streams":
            continue
        if key not in _CAMERA_FIELDS:
            raise plain_error(web.HTTPBadRequest, f"camera.{key} is not a camera setting "
                              f"(known: {', '.join([*_CAMERA_FIELDS, 'streams'])})")
        if key in ("username", "password") and value == "":
            value = None
        out[_CAMERA_FIELDS[key]] = value
    streams = body.get("streams", {})
    if not isinstance(streams, Mapping):
        raise plain_error(web.HTTPBadRequest, "camera.streams must be an object")
    for stream_type, settings in streams.items():
        if stream_type not in ("main", "sub"):
            raise plain_error(web.HTTPBadRequest,
                              f"camera.streams.{stream_type}: streams are main and sub")
        if not isinstance(settings, Mapping):
            raise plain_error(web.HTTPBadRequest,
                              f"camera.streams.{stream_type} must be an object")
        prefix = "" if stream_type == "main" else "sub_"
        for key, value in settings.items():
            where = f"camera.streams.{stream_type}.{key}"
            if key not in _STREAM_FIELDS:
                raise plain_error(web.HTTPBadRequest, f"{where} is not a stream setting "
                                  f"(known: url, retain, maxAgeDays, sampleFileDir)")
            if key in ("retain", "retainBytes"):
                value = _bytes(where, value)
            if key == "url" and value is None:
                value = ""
            out[prefix + _STREAM_FIELDS[key]] = value
    if adding:
        if "short_name" not in out:
            raise plain_error(web.HTTPBadRequest, "camera.shortName is required")
        if "sub" in streams and not out.get("sub_url"):
            # add_camera makes a sub stream only for a URL: an empty sub form adds none.
            for key in [k for k in out if k.startswith("sub_")]:
                del out[key]
    return out


def _bytes(where: str, value: object) -> int:
    if isinstance(value, bool):
        raise plain_error(web.HTTPBadRequest, f"{where} must be a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_size(value.strip() or "0")
        except SizeError as e:
            raise plain_error(web.HTTPBadRequest, f"{where}: {e}") from None
    raise plain_error(web.HTTPBadRequest, f"{where} must be a size such as 10GiB, got {value!r}")


def _stream_config(db: Database, stream: Any) -> dict[str, Any]:
    redacted = redact_url(stream.url)
    return {
        "id": stream.id,
        "url": redacted,
        "urlHasPassword": redacted != stream.url,
        "record": stream.record,
        "retainBytes": stream.retain_bytes,
        "maxAgeDays": stream.max_age_days,
        "sampleFileDir": db.sample_file_dir(stream.sample_file_dir_id).name,
    }


def camera_config_json(db: Database, camera: Camera) -> dict[str, Any]:
    """A camera for the setup form: never its password, only whether it has one."""
    return {
        "uuid": camera_uuid(camera),
        "id": camera.id,
        "shortName": camera.short_name,
        "description": camera.description,
        "username": camera.username,
        "hasPassword": camera.password is not None,
        "rotateIntervalSec": camera.rotate_interval_sec,
        "streams": {s.type: _stream_config(db, s) for s in camera.streams},
    }


@functools.cache
def _probe_function() -> Any:
    """``probe_stream``, imported on first use (it may import PyAV and GStreamer); None if
    this moonfire has no probe module."""
    try:
        from moonfire.ingest.probe import probe_stream  # noqa: PLC0415
    except ImportError:
        return None
    return probe_stream


class Admin:
    """The handlers; ``routes()`` lists them."""

    def __init__(self, ctx: WebContext, auth: Auth, recorder: RecorderView | None) -> None:
        self.ctx = ctx
        self.auth = auth
        self.recorder = recorder

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/admin/status", self.status),
            web.get("/api/admin/cameras", self.list_cameras),
            web.post("/api/admin/cameras", self.add_camera),
            web.patch("/api/admin/cameras/{uuid}", self.update_camera),
            web.delete("/api/admin/cameras/{uuid}", self.delete_camera),
            web.post("/api/admin/probe", self.probe),
        ]

    async def _admin(self, request: web.Request) -> Caller:
        caller = await self.auth.caller(request)
        require_permission(caller, "admin_users")
        return caller

    async def _mutation(self, request: web.Request, keys: tuple[str, ...]) -> dict[str, Any]:
        """The admin caller's JSON body, its CSRF token checked, only ``keys`` (and csrf)."""
        caller = await self._admin(request)
        body = await read_json_body(request)
        self.auth.check_csrf(caller, body)
        unknown = sorted(set(body) - {"csrf", *keys})
        if unknown:
            raise plain_error(web.HTTPBadRequest, f"unknown field {unknown[0]!r} "
                              f"(known: {', '.join(keys)})")
        return body

    async def _start_new_streams(self) -> list[str]:
        if self.recorder is None:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.recorder.start_new_streams)

    # ---- status ---------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        await self._admin(request)
        statuses = {} if self.recorder is None else dict(self.recorder.stream_statuses())
        dir_errors = {} if self.recorder is None else dict(self.recorder.dir_errors())
        now_90k = int(time.time() * TIMESCALE)

        def build(db: Database) -> dict[str, Any]:
            streams = []
            by_dir: dict[int, list[str]] = {}
            for camera in db.list_cameras():
                for s in camera.streams:
                    name = f"{camera.short_name}/{s.type}"
                    by_dir.setdefault(s.sample_file_dir_id, []).append(name)
                    rows = db.list_recordings_by_time(s.id, now_90k - RECENT_SEC * TIMESCALE,
                                                      now_90k)
                    seconds = sum(r.end_time_90k - r.start_time_90k for r in rows) / TIMESCALE
                    recent = sum(r.sample_file_bytes for r in rows) / seconds if seconds else None
                    status = statuses.get(s.id)
                    streams.append({
                        "id": s.id, "camera": camera.short_name, "stream": s.type,
                        "state": NOT_RECORDED if status is None else status.state,
                        "reason": None if status is None else status.reason,
                        "frames": None if status is None else status.frames,
                        "errors": None if status is None else status.errors,
                        "lastFrameAgeSec": None if status is None else status.last_frame_age_sec,
                        "recentBytesPerSec": recent,
                    })
            dirs = [
                {"id": d.id, "name": d.name, "path": d.path,
                 "streams": by_dir.get(d.id, []), "error": dir_errors.get(d.id)}
                for d in db.list_sample_file_dirs()
            ]
            return {"streams": streams, "dirs": dirs}

        doc = await self.ctx.query(build)
        loop = asyncio.get_running_loop()
        for d in doc["dirs"]:
            try:
                usage = await loop.run_in_executor(None, shutil.disk_usage, d["path"])
            except OSError as e:
                d["freeBytes"] = d["totalBytes"] = None
                d["error"] = d["error"] or f"can't read its disk usage: {e.strerror or e}"
            else:
                d["freeBytes"], d["totalBytes"] = usage.free, usage.total
        return json_response(doc)

    # ---- cameras --------------------------------------------------------------------------

    async def list_cameras(self, request: web.Request) -> web.Response:
        await self._admin(request)

        def build(db: Database) -> dict[str, Any]:
            return {
                "cameras": [camera_config_json(db, c) for c in db.list_cameras()],
                "dirs": [{"id": d.id, "name": d.name, "path": d.path}
                         for d in db.list_sample_file_dirs()],
            }

        return json_response(await self.ctx.query(build))

    async def add_camera(self, request: web.Request) -> web.Response:
        body = await self._mutation(request, ("camera",))
        settings = camera_settings_from_json(body.get("camera"), adding=True)
        name = settings.pop("short_name")
        with _config_errors():
            camera = await self.ctx.query(lambda db: db.add_camera(name, **settings))
        started = await self._start_new_streams()
        log.info("camera %r added through the web UI", camera.short_name)
        doc = await self.ctx.query(lambda db: camera_config_json(db, db.get_camera(camera.id)))
        return json_response({
            "camera": doc, "started": started,
            "message": _started_message(camera.short_name, "added", started, self.recorder),
        })

    async def update_camera(self, request: web.Request) -> web.Response:
        body = await self._mutation(request, ("camera",))
        changes = camera_settings_from_json(body.get("camera"), adding=False)
        uuid_text = request.match_info["uuid"]

        def update(db: Database) -> Camera:
            camera = find_camera(db, uuid_text)
            return db.update_camera(camera.id, **changes) if changes else camera

        with _config_errors():
            camera = await self.ctx.query(update)
        started = await self._start_new_streams()
        log.info("camera %r changed through the web UI (%s)", camera.short_name,
                 ", ".join(sorted(changes)) or "nothing")
        message = _started_message(camera.short_name, "saved", started, self.recorder)
        if any(k.endswith("url") or k in ("username", "password") for k in changes):
            message += ("; a stream already recording keeps its old connection until "
                        "moonfire run restarts")
        doc = await self.ctx.query(lambda db: camera_config_json(db, db.get_camera(camera.id)))
        return json_response({"camera": doc, "started": started, "message": message})

    async def delete_camera(self, request: web.Request) -> web.StreamResponse:
        await self._mutation(request, ())
        uuid_text = request.match_info["uuid"]
        recording = set() if self.recorder is None else {
            stream_id for stream_id, s in self.recorder.stream_statuses().items()
        }

        def delete(db: Database) -> str:
            camera = find_camera(db, uuid_text)
            if any(s.id in recording for s in camera.streams):
                raise plain_error(web.HTTPConflict, f"camera {camera.short_name!r} is being "
                                  "recorded (or streamed for live view) by this moonfire "
                                  "run; set its URLs empty and "
                                  "restart it, then remove the camera once its recordings "
                                  "are gone")
            try:
                db.delete_camera(camera.id)
            except DatabaseError as e:
                raise plain_error(web.HTTPConflict, str(e)) from None
            return camera.short_name

        name = await self.ctx.query(delete)
        log.info("camera %r removed through the web UI", name)
        return web.Response(status=204, headers={"Cache-Control": "private, no-cache"})

    # ---- test connection ------------------------------------------------------------------

    async def probe(self, request: web.Request) -> web.Response:
        body = await self._mutation(
            request, ("url", "username", "password", "transport", "camera"))
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise plain_error(web.HTTPBadRequest, "url is required (the stream to test)")
        url = url.strip()
        username, password = body.get("username"), body.get("password")
        transport = body.get("transport") or "auto"
        for key, value in (("username", username), ("password", password),
                           ("transport", transport)):
            if value is not None and not isinstance(value, str):
                raise plain_error(web.HTTPBadRequest, f"{key} must be a string")
        camera_name = body.get("camera")
        if camera_name is not None:
            # Testing a saved camera: its stored password (never sent to the page), and its
            # stored URL where the page shows it redacted.
            def stored(db: Database) -> Camera:
                return db.get_camera(str(camera_name))

            try:
                camera = await self.ctx.query(stored)
            except UnknownCameraError as e:
                raise plain_error(web.HTTPNotFound, str(e)) from None
            if password is None:
                password = camera.password
            if username is None:
                username = camera.username
            for s in camera.streams:
                if url == redact_url(s.url):
                    url = s.url
        probe_stream = _probe_function()
        if probe_stream is None:
            raise plain_error(web.HTTPNotImplemented,
                              "this moonfire has no stream probe (moonfire.ingest.probe)")
        loop = asyncio.get_running_loop()
        call = functools.partial(probe_stream, url, username=username or None,
                                 password=password or None, transport=transport,
                                 timeout_sec=PROBE_TIMEOUT_SEC)
        try:
            report = await loop.run_in_executor(None, call)
        except (ValueError, DatabaseError) as e:
            raise plain_error(web.HTTPBadRequest, str(e)) from None
        return json_response(report.as_dict())


def _started_message(name: str, done: str, started: list[str],
                     recorder: RecorderView | None) -> str:
    if started:
        return f"camera {name} {done}; recording {', '.join(started)}"
    if recorder is None:
        return f"camera {name} {done}; it records when moonfire run starts"
    return f"camera {name} {done}"


@contextmanager
def _config_errors() -> Iterator[None]:
    """Database errors about a camera's settings as HTTP errors: unknown 404, the rest 400
    (their messages name the setting and value, never a password)."""
    try:
        yield
    except UnknownCameraError as e:
        raise plain_error(web.HTTPNotFound, str(e)) from None
    except DatabaseError as e:
        raise plain_error(web.HTTPBadRequest, str(e)) from None
