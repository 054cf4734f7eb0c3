"""Every route, once, in a table of who may call it; walked against a real server.

``ROUTES`` lists each route the application serves (every ``/api/`` one, and the pages
and ``/metrics`` beside them): its method, its path
template as the router spells it, what the caller needs (nothing, a session, or one of the
four permissions of web-api.md §1.5) and whether a session caller's body must carry the CSRF
token (§1.3).  ``test_the_table_is_the_router`` compares it with the router of the app
``moonfire run`` serves, so a new route can't be added without saying who may call it.

The other tests walk the table against a real ``moonfire run --listen`` recording the
synthetic camera, with users existing (made through ``moonfire.db.users.Users``, one per
permission, each with a session):

* no session: 401 on every route but the open ones (login, logout, ``/api/request``, §1.1
  rule 4), which answer as they do for anyone;
* a session without the permission the route needs: refused (403; Moonfire answers 401
  for a missing ``adminUsers``, §2.8), and a session with exactly that permission: served;
* a mutation from a session without its CSRF token, or with a wrong one: 401 (logout,
  which is stricter: 400), and nothing changes; without the JSON content type: 400;
  with HTTP Basic credentials instead of a session: 401 (Basic is for GET and HEAD).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from moonfire.db import Database
from moonfire.db.users import Users
from moonfire.ingest.live import LiveFeeds
from moonfire.storage import data_dir as datadir
from moonfire.web.app import build_app
from moonfire.web.auth import Auth, csrf_token, encode_session_id
from moonfire.web.context import WebContext
from tests.support.cli import moonfire_process
from tests.support.net import free_port, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_URL = "testsrc://?size=160x120&fps=10&bitrate=50k&gop=10"

#: Needs nothing: answers without a session (web-api.md §1.1 rule 4).
OPEN = "open"
#: Needs a session (any user), no particular permission.
SESSION = "session"
PERMISSIONS = ("view_video", "read_camera_configs", "update_signals", "admin_users")
ADMIN_PASSWORD = "access-walk-admin-pw"


@dataclass(frozen=True)
class Route:
    """One ``/api/`` route and who may call it.

    ``needs``: ``OPEN``, ``SESSION`` or a ``Permissions`` attribute.  ``csrf``: a session
    caller's body must carry the token.  ``denied``: the status for a session lacking
    ``needs``.  ``ok``: the status for a caller that may (for ``OPEN``: anyone).  ``query``
    and ``body`` make the walk's request (``{recording}`` and ``{new}`` are filled in);
    ``*`` routes are Moonfire's "POST expected" catch-alls, walked with GET.  A ``{id}`` of
    a users route is another user's (a user may read and change themself: see
    ``test_users_may_read_and_change_themselves``).
    """

    method: str
    path: str
    needs: str
    csrf: bool = False
    denied: int = 403
    ok: int = 200
    query: str = ""
    body: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    websocket: bool = False


def _new_user(values: dict[str, Any]) -> dict[str, Any]:
    return {"user": {"username": values["new"]}}


ROUTES: tuple[Route, ...] = (
    # web-api.md §2.1, §2.2: open; logout's CSRF failure is a 400.
    Route("POST", "/api/login", OPEN, ok=204,
          body=lambda v: {"username": "admin", "password": ADMIN_PASSWORD}),
    Route("*", "/api/login", OPEN, ok=405),
    # Logout's body must hold a token even without a session (§1.3); with none, any will do.
    Route("POST", "/api/logout", OPEN, csrf=True, ok=204, body=lambda v: {"csrf": "-" * 32}),
    Route("*", "/api/logout", OPEN, ok=405),
    # §2.8: adminUsers (or, for one user, that user), refused with 401 as Moonfire does.
    Route("GET", "/api/users/", "admin_users", denied=401),
    Route("POST", "/api/users/", "admin_users", csrf=True, denied=401, body=_new_user),
    Route("GET", "/api/users/{id}", "admin_users", denied=401),
    Route("PATCH", "/api/users/{id}", "admin_users", csrf=True, denied=401, ok=204,
          body=lambda v: {"update": {"preferences": {"walked": True}}}),
    Route("DELETE", "/api/users/{id}", "admin_users", csrf=True, denied=401, ok=204,
          body=lambda v: {}),
    # §2.3: any session; the camera configs need readCameraConfigs.
    Route("GET", "/api/", "read_camera_configs", query="?days=true&cameraConfigs=true"),
    Route("GET", "/api/cameras/{uuid}/", SESSION),
    Route("GET", "/api/cameras/{uuid}/{stream}/recordings", "view_video"),
    Route("GET", "/api/signals", SESSION),
    Route("GET", "/api/request", OPEN),
    Route("GET", "/api/cameras/{uuid}/{stream}/view.mp4", "view_video", query="?s={recording}"),
    Route("GET", "/api/cameras/{uuid}/{stream}/view.m4s", "view_video", query="?s={recording}"),
    Route("GET", "/api/cameras/{uuid}/{stream}/view.mp4.txt", "view_video",
          query="?s={recording}"),
    Route("GET", "/api/cameras/{uuid}/{stream}/view.m4s.txt", "view_video",
          query="?s={recording}"),
    # §2.6: any authenticated caller.
    Route("GET", "/api/init/{id}.mp4", SESSION),
    Route("GET", "/api/init/{id}.mp4.txt", SESSION),
    # §2.7: after the upgrade, a refusal is an error message and a close.
    Route("GET", "/api/cameras/{uuid}/{stream}/live.m4s", "view_video", websocket=True),
    # Beyond /api/: the pages (open, as Moonfire's UI files are) and the Prometheus metrics
    # (issue 11 §5: like the API, they need a caller).
    Route("GET", "/", OPEN),
    Route("GET", "/player.html", OPEN),
    Route("GET", "/static/{path}", OPEN),
    Route("GET", "/metrics", SESSION),
    # moonfire's own setup and status endpoints (web/admin.py): adminUsers, refused with 403
    # (require_permission); mutations need the CSRF token like the users routes.
    Route("GET", "/api/admin/status", "admin_users"),
    Route("GET", "/api/admin/cameras", "admin_users"),
    Route("POST", "/api/admin/cameras", "admin_users", csrf=True,
          body=lambda v: {"camera": {"shortName": v["new"]}}),
    Route("PATCH", "/api/admin/cameras/{uuid}", "admin_users", csrf=True,
          body=lambda v: {"camera": {"description": "walked"}}),
    # The walk's camera is being recorded, so removing it is refused (409) once allowed.
    Route("DELETE", "/api/admin/cameras/{uuid}", "admin_users", csrf=True, ok=409,
          body=lambda v: {}),
    Route("POST", "/api/admin/probe", "admin_users", csrf=True, body=lambda v: {"url": MAIN_URL}),
)

MUTATIONS = [r for r in ROUTES if r.body is not None and r.needs != OPEN]
CSRF_ROUTES = [r for r in ROUTES if r.csrf]


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def test_the_table_lists_each_route_once():
    keys = [(r.method, r.path) for r in ROUTES]
    assert len(keys) == len(set(keys))
    assert all(r.needs in (OPEN, SESSION, *PERMISSIONS) for r in ROUTES)
    assert all(r.method in ("GET", "POST", "PATCH", "DELETE") or r.method == "*" for r in ROUTES)
    assert all((r.body is not None) == (r.method in ("POST", "PATCH", "DELETE")) for r in ROUTES)


def test_the_table_is_the_router(tmp_path):
    """The app ``moonfire run`` builds (with live feeds) serves exactly ``ROUTES``; a HEAD
    that aiohttp adds beside a GET is that GET."""
    db, sample_file_dir = datadir.init(str(tmp_path / "data"))
    sample_file_dir.close()
    db.close()
    ctx = WebContext.open(str(tmp_path / "data"))
    try:
        app = build_app(ctx, Auth(ctx.db), LiveFeeds())
        served: dict[tuple[str, str], object] = {}
        for route in app.router.routes():
            resource = route.resource
            assert resource is not None, route
            served[(route.method, resource.canonical)] = route.handler
    finally:
        ctx.close()
    for (method, path), handler in list(served.items()):
        if method == "HEAD" and served.get(("GET", path)) is handler:
            del served[(method, path)]
    table = {(r.method, r.path) for r in ROUTES}
    assert not set(served) - table, f"served but not in ROUTES: {sorted(set(served) - table)}"
    assert not table - set(served), f"in ROUTES but not served: {sorted(table - set(served))}"


# ---- the walk against a real server ------------------------------------------------------


@dataclass
class Caller:
    """A user's session: the cookie to send and the token its mutations need."""

    username: str
    user_id: int
    cookie: str
    csrf: str


@dataclass
class Site:
    base: str
    data_dir: str
    db: Database
    camera_uuid: str
    entry_id: int
    recording_id: int
    callers: dict[str, Caller]
    proc: subprocess.Popen
    log_path: str
    counter: list[int] = field(default_factory=lambda: [0])

    def session(self, username: str) -> Caller:
        """A new session for ``username`` (made in the database, as a login would)."""
        users = Users(self.db)
        user = users.get_user(username)
        raw, row = users.create_session(user.id, domain="127.0.0.1")
        return Caller(username, user.id, f"s={encode_session_id(raw)}", csrf_token(row.seed))

    def victim(self) -> int:
        """A new user with no permissions, for a users route to act on."""
        self.counter[0] += 1
        return Users(self.db).add_user(f"victim-{self.counter[0]}").id

    def values(self, route: Route, target: int | None = None) -> dict[str, Any]:
        self.counter[0] += 1
        if route.path.startswith("/api/users/{id}"):
            target = self.victim() if target is None else target
        else:
            target = self.entry_id
        return {
            "uuid": self.camera_uuid, "stream": "main", "id": target,
            "recording": self.recording_id, "new": f"new-{self.counter[0]}", "path": "app.css",
        }

    def url(self, route: Route, values: dict[str, Any]) -> str:
        return self.base + (route.path + route.query).format(**values)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """``moonfire run --listen`` over a data dir with a user per permission (and one with
    none), after its first recording has committed."""
    tmp = tmp_path_factory.mktemp("access")
    data_dir = str(tmp / "data")
    for argv in (
        ("init",),
        ("camera", "add", "front", "--url", MAIN_URL, "--retain", "50MiB",
         "--rotate-seconds", "1"),
    ):
        done = moonfire_process(*argv, "--data-dir", data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    db = datadir.open_db(data_dir)
    users = Users(db)
    users.add_user("nobody")
    users.add_user("viewer", permissions={"viewVideo": True})
    users.add_user("configs", permissions={"readCameraConfigs": True})
    users.add_user("signals", permissions={"updateSignals": True})
    users.add_user("admin", password=ADMIN_PASSWORD, permissions={"adminUsers": True})
    camera = db.get_camera("front")
    port = free_port()
    log_path = str(tmp / "run.log")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonfire", "run", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    site = Site(f"http://127.0.0.1:{port}", data_dir, db, str(uuidlib.UUID(bytes=camera.uuid)),
                0, 0, {}, proc, log_path)
    try:
        deadline = time.monotonic() + 40
        while not (rows := db.list_recordings(camera.main.id)):
            assert proc.poll() is None, site.log()
            assert time.monotonic() < deadline, "nothing recorded:\n" + site.log()
            time.sleep(0.2)
        site.recording_id = rows[0].recording_id
        site.entry_id = rows[0].video_sample_entry_id
        site.callers = {name: site.session(name)
                        for name in ("nobody", "viewer", "configs", "signals", "admin")}
        yield site
    finally:
        stop_process(proc)
        db.close()
    assert proc.returncode == 0, site.log()


@dataclass
class Answer:
    status: int
    text: str
    content_type: str


async def call(
    client: aiohttp.ClientSession,
    site: Site,
    route: Route,
    caller: Caller | None,
    *,
    values: dict[str, Any] | None = None,
    csrf: str | None = "session",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request of ``route`` as ``caller`` (None: no session).  A body gets the caller's
    token unless ``csrf`` says otherwise (None: leave it out; any other text: send that)."""
    values = site.values(route) if values is None else values
    sent = dict(headers or {})
    if caller is not None:
        sent["Cookie"] = caller.cookie
    if route.websocket:
        return await _call_websocket(client, site.url(route, values), sent)
    data = None
    if route.body is not None:
        body = route.body(values)
        if csrf is None:
            body.pop("csrf", None)
        elif csrf != "session":
            body["csrf"] = csrf
        elif caller is not None:
            body["csrf"] = caller.csrf
        data = json.dumps(body)
        sent["Content-Type"] = content_type
    method = "GET" if route.method == "*" else route.method
    async with client.request(method, site.url(route, values), data=data, headers=sent,
                              allow_redirects=False) as response:
        body_bytes = await response.read()
        return Answer(response.status, body_bytes.decode("utf-8", "replace"),
                      response.headers.get("Content-Type", ""))


async def _call_websocket(client: aiohttp.ClientSession, url: str,
                          headers: dict[str, str]) -> Answer:
    """live.m4s: 200 when a video message arrives; a refusal after the upgrade is its error
    message, reported with the status the same refusal has over plain HTTP."""
    async with client.ws_connect(url.replace("http://", "ws://"), headers=headers) as ws:
        message = await asyncio.wait_for(ws.receive(), 20)
    if message.type == aiohttp.WSMsgType.BINARY:
        return Answer(200, "", "video")
    assert message.type == aiohttp.WSMsgType.TEXT, message
    error = json.loads(message.data)
    assert error["type"] == "error", error
    text = error["message"]
    status = 401 if "log in" in text else 403 if "required" in text else 500
    return Answer(status, text, "websocket error")


def new_client() -> aiohttp.ClientSession:
    # No cookie jar: each request carries exactly the session the test gives it.
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=30))


@pytest.mark.asyncio
async def test_without_a_session_every_route_but_the_open_ones_is_401(site):
    async with new_client() as client:
        for route in ROUTES:
            answer = await call(client, site, route, None)
            if route.needs == OPEN:
                assert answer.status == route.ok, (route_id(route), answer)
            else:
                assert answer.status == 401, (route_id(route), answer)
                if not route.websocket:
                    assert answer.content_type.startswith("text/plain"), answer
                assert "log in" in answer.text, (route_id(route), answer)
        # An unknown API path is a 404 with or without a session (web-api.md §0).
        async with client.get(site.base + "/api/no/such/path") as response:
            assert (response.status, await response.text()) == (404, "path not understood")


@pytest.mark.asyncio
async def test_each_permission_opens_its_routes_and_only_those(site):
    """Every user lacking what a route needs is refused; the one with exactly it is served."""
    async with new_client() as client:
        for route in ROUTES:
            if route.needs == OPEN:
                continue
            for name, caller in site.callers.items():
                holds = route.needs == SESSION or name == _holder(route.needs)
                answer = await call(client, site, route, caller)
                expected = route.ok if holds else route.denied
                assert answer.status == expected, (route_id(route), name, answer)


def _holder(permission: str) -> str:
    return {"view_video": "viewer", "read_camera_configs": "configs",
            "update_signals": "signals", "admin_users": "admin"}[permission]


@pytest.mark.asyncio
async def test_the_top_level_needs_only_a_session(site):
    """Without ``cameraConfigs`` (the UI's own call) any session reads ``/api/``, and sees
    its own permissions and CSRF token."""
    async with new_client() as client:
        route = next(r for r in ROUTES if r.path == "/api/")
        async with client.get(site.base + "/api/?days=true",
                              headers={"Cookie": site.callers["nobody"].cookie}) as r:
            assert r.status == 200
            doc = await r.json()
    assert doc["permissions"] == {"viewVideo": False, "readCameraConfigs": False,
                                  "updateSignals": False, "adminUsers": False}
    assert doc["user"]["session"]["csrf"] == site.callers["nobody"].csrf
    assert route.needs == "read_camera_configs"  # only with cameraConfigs=true


@pytest.mark.asyncio
async def test_users_may_read_and_change_themselves(site):
    """``/api/users/{id}`` is open to that user without ``adminUsers`` (§2.8)."""
    me = site.session("viewer")
    get = next(r for r in ROUTES if r.method == "GET" and r.path == "/api/users/{id}")
    patch = next(r for r in ROUTES if r.method == "PATCH" and r.path == "/api/users/{id}")
    async with new_client() as client:
        answer = await call(client, site, get, me, values=site.values(get, me.user_id))
        assert answer.status == 200 and json.loads(answer.text)["username"] == "viewer"
        answer = await call(client, site, patch, me, values=site.values(patch, me.user_id))
        assert answer.status == 204, answer
        answer = await call(client, site, patch, me, values=site.values(patch, me.user_id),
                            csrf=None)
        assert (answer.status, answer.text) == (401, "csrf must be supplied")
    assert Users(site.db).get_user("viewer").preferences == {"walked": True}


@pytest.mark.asyncio
@pytest.mark.parametrize("route", CSRF_ROUTES, ids=route_id)
async def test_mutations_refuse_a_missing_or_wrong_csrf_token(site, route):
    is_logout = route.path == "/api/logout"
    before = [(u.id, u.username, u.preferences) for u in Users(site.db).list_users()]
    async with new_client() as client:
        for csrf, message in ((None, "csrf must be supplied"), ("x" * 32, "incorrect csrf")):
            caller = site.session("admin")
            answer = await call(client, site, route, caller, csrf=csrf)
            if is_logout:
                assert answer.status == 400, answer
                # The session lives on: a wrong token revokes nothing.
                still = await call(client, site, _route("GET", "/api/users/"), caller)
                assert still.status == 200, still
            else:
                assert (answer.status, answer.text) == (401, message), answer
    after = [(u.id, u.username, u.preferences) for u in Users(site.db).list_users()]
    victims = {u[1] for u in after} - {u[1] for u in before}
    assert all(name.startswith("victim-") for name in victims), after  # nothing else added
    assert [u for u in after if u[1] not in victims] == before  # nothing changed or deleted


def _route(method: str, path: str) -> Route:
    return next(r for r in ROUTES if (r.method, r.path) == (method, path))


@pytest.mark.asyncio
async def test_logout_with_the_right_token_ends_the_session(site):
    caller = site.session("admin")
    async with new_client() as client:
        answer = await call(client, site, _route("POST", "/api/logout"), caller)
        assert answer.status == 204, answer
        answer = await call(client, site, _route("GET", "/api/users/"), caller)
        assert answer.status == 401, answer


@pytest.mark.asyncio
@pytest.mark.parametrize("route", [r for r in ROUTES if r.body is not None], ids=route_id)
async def test_mutations_need_the_json_content_type(site, route):
    async with new_client() as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            answer = await call(client, site, route, site.session("admin"),
                                content_type=content_type)
            assert answer.status == 400, (content_type, answer)


@pytest.mark.asyncio
@pytest.mark.parametrize("route", MUTATIONS, ids=route_id)
async def test_basic_credentials_cannot_make_changes(site, route):
    """A browser replays Basic credentials to any form that posts to the site, so they
    are for GET and HEAD only: changes need a session and its token."""
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    async with new_client() as client:
        answer = await call(client, site, route, None,
                            headers={"Authorization": f"Basic {token}"})
        assert answer.status == 401 and "GET and HEAD only" in answer.text, answer
        # The same credentials do read (a tool's way in).
        answer = await call(client, site, _route("GET", "/api/users/"), None,
                            headers={"Authorization": f"Basic {token}"})
        assert answer.status == 200, answer
