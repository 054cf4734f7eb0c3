"""The aiohttp application: every route, the error rules, and the page at ``/``.

Every ``/api/`` route needs a caller ``Auth`` accepts (a session, or the
documented exceptions: login, logout, ``/api/request``), and so does ``/metrics``
(``metrics.py``: Prometheus's text format, and the middleware counting every
answer by status, outermost so it sees the final status); an unknown ``/api/``
path is a 404 "path not understood" with or without one, as in Moonfire.
Errors are ``text/plain`` messages the UI shows as they are; an unexpected
exception is logged with its traceback and answered 500 with a short message
(never the traceback, which could carry paths or URLs).  Request bodies are
capped at ``MAX_BODY_BYTES``: the API's bodies are small JSON objects.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from moonfire.ingest.live import LiveFeeds
from moonfire.web import admin
from moonfire.web.api import Api
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.metrics import Metrics
from moonfire.web.recorder import RecorderView
from moonfire.web.view import View

log = logging.getLogger(__name__)

#: Largest request body accepted (login, user edits): far above any real one.
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 404 and request.path.startswith("/api/") and e.text == "404: Not Found":
            raise web.HTTPNotFound(text="path not understood", content_type="text/plain") from None
        raise
    except Exception:  # noqa: BLE001 - a bug: log it, answer 500 without details
        log.exception("internal error serving %s %s", request.method, request.path)
        raise web.HTTPInternalServerError(
            text="internal error (see the server's log)", content_type="text/plain"
        ) from None


def build_app(
    ctx: WebContext,
    auth: Auth,
    feeds: LiveFeeds | None = None,
    recorder: RecorderView | None = None,
) -> web.Application:
    """The whole HTTP API over ``ctx``'s database.

    Live view needs the recorder's ``feeds`` (``recorder.live`` when not given); the
    streams' states in ``GET /api/`` and most of ``/metrics`` need the ``recorder``
    running in this process (``moonfire run`` passes a view of its daemon).
    """
    if feeds is None and recorder is not None:
        feeds = recorder.live
    metrics = Metrics(ctx, auth, recorder)
    app = web.Application(
        middlewares=[metrics.middleware, _errors], client_max_size=MAX_BODY_BYTES
    )
    api = Api(ctx, auth, recorder)
    view = View(ctx, auth, recorder)
    app.add_routes(auth.routes())
    app.add_routes(api.routes())
    app.add_routes(view.routes())
    app.add_routes(metrics.routes())
    app.add_routes(admin.routes(ctx, auth, recorder))
    if feeds is not None:
        from moonfire.web import live  # noqa: PLC0415 - only a recorder has live feeds

        app.add_routes(live.routes(feeds, ctx.db, auth))
    app.add_routes([
        web.get("/", _index),
        web.get("/player.html", _player),
        web.get("/static/{path:.+}", _static),
    ])
    return app


async def _index(request: web.Request) -> web.Response:
    """The web UI (``static/index.html``, which loads ``static/js/app.js``)."""
    return _static_response("index.html", request)


#: The content types of what ``static/`` holds; any other name is a 404.
STATIC_TYPES = {
    ".html": "text/html", ".js": "text/javascript", ".css": "text/css",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain",
}


@functools.cache
def static_file(name: str) -> bytes:
    """A file shipped in ``moonfire/web/static`` (package data), read once: they are small
    and change only with the installed package."""
    static = importlib.resources.files("moonfire.web").joinpath("static")
    return static.joinpath(*name.split("/")).read_bytes()


async def _player(request: web.Request) -> web.Response:
    """The minimal player page (``static/player.html``): ``view.mp4`` in a ``<video>`` and
    ``live.m4s`` through Media Source Extensions, until the web UI exists."""
    return web.Response(
        body=static_file("player.html"), content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "public"},
    )


@functools.cache
def _static_etag(name: str) -> str:
    return '"' + hashlib.blake2b(static_file(name), digest_size=12).hexdigest() + '"'


def _static_response(name: str, request: web.Request) -> web.Response:
    """A shipped file with a strong ETag and ``no-cache``: the browser revalidates (a 304)
    so an upgraded moonfire's UI is used at once, without hashed names or a build step."""
    etag = _static_etag(name)
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    suffix = name[name.rfind("."):]
    return web.Response(
        body=static_file(name), content_type=STATIC_TYPES[suffix],
        charset=None if suffix in (".png", ".ico") else "utf-8", headers=headers,
    )


async def _static(request: web.Request) -> web.Response:
    """``/static/<path>``: the UI's modules and styles, from the installed package."""
    path = request.match_info["path"]
    parts = path.split("/")
    suffix = path[path.rfind("."):] if "." in parts[-1] else ""
    if suffix not in STATIC_TYPES or any(p in ("", ".", "..") or p.startswith(".")
                                         for p in parts):
        raise web.HTTPNotFound(text=f"no static file {path}")
    try:
        static_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise web.HTTPNotFound(text=f"no static file {path}") from None
    return _static_response(path, request)
