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
import html
import importlib.resources
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

import moonfire
from moonfire.ingest.live import LiveFeeds
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
    if feeds is not None:
        from moonfire.web import live  # noqa: PLC0415 - only a recorder has live feeds

        app.add_routes(live.routes(feeds, ctx.db, auth))
    app.add_routes([web.get("/", _index), web.get("/player.html", _player)])
    return app


async def _index(request: web.Request) -> web.Response:
    """Until the web UI exists: what is running, and where the API is."""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moonfire</title></head>
<body>
<h1>moonfire {html.escape(moonfire.__version__)}</h1>
<p>The recorder is running. Its HTTP API is Moonfire NVR's: start at
<a href="/api/?days=true"><code>/api/?days=true</code></a>.</p>
<p>Watch the cameras, live or recorded, in the minimal
<a href="/player.html">player</a>.</p>
</body></html>
"""
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "public"})


@functools.cache
def static_file(name: str) -> bytes:
    """A file shipped in ``moonfire/web/static`` (package data), read once: they are small
    and change only with the installed package."""
    return importlib.resources.files("moonfire.web").joinpath("static").joinpath(name).read_bytes()


async def _player(request: web.Request) -> web.Response:
    """The minimal player page (``static/player.html``): ``view.mp4`` in a ``<video>`` and
    ``live.m4s`` through Media Source Extensions, until the web UI exists."""
    return web.Response(
        body=static_file("player.html"), content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "public"},
    )
