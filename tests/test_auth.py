"""``moonfire.web.auth`` over real HTTP: a tiny aiohttp app mounting ``Auth.routes()`` plus
routes defined here (a protected ``GET /api/``, a CSRF-checked mutation, a WebSocket),
served on loopback and driven by aiohttp's test client with cookies handled by hand.

What is checked: who gets in without a login (loopback, and only while no user exists),
the cookie's exact form, CSRF rules and status codes (web-api.md §1.3), the JSON content
type rule, login/logout (§2.1, §2.2), the users endpoints (§2.8), rate limiting with
``Retry-After``, the WebSocket ``Origin`` check (§1.4), HTTP Basic for tools, and that no
password reaches the log.  Non-loopback clients are simulated with forwarding headers: the
tests listen on loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import re

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from moonfire.db import Database
from moonfire.db import users as users_module
from moonfire.db.users import ScryptParams, Users
from moonfire.errors import MoonfireError
from moonfire.web.auth import (
    ALL_PERMISSIONS,
    CLEAR_COOKIE,
    VIEW_PERMISSIONS,
    Auth,
    Caller,
    InvalidPermissionsError,
    LoginRateLimiter,
    Permissions,
    check_origin,
    csrf_token,
    is_loopback,
    read_json_body,
    require_permission,
    session_id_from_request,
)

PASSWORD = "s3cret-horse"
COOKIE_RE = re.compile(
    r"^s=([A-Za-z0-9+/]{64}); HttpOnly;( Secure;)? SameSite=Lax; Max-Age=2147483648; Path=/$")
BROWSER = {"Sec-Fetch-Mode": "cors"}


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """N = 16 instead of 32768 for hashes made here (the machine is shared)."""
    monkeypatch.setattr(users_module, "DEFAULT_SCRYPT", ScryptParams(log_n=4, r=8, p=1))


@pytest.fixture
def db(tmp_path):
    with Database.create(tmp_path / "db", str(tmp_path / "sample")) as db:
        yield db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build_app(auth: Auth, clip: bytes = b"") -> web.Application:
    """``Auth.routes()`` and routes of this test's own (``clip`` is served as a video)."""

    async def top(request: web.Request) -> web.Response:
        caller = await auth.caller(request)
        out = {"permissions": caller.permissions.to_json()}
        user = auth.user_json(caller)
        if user is not None:
            out["user"] = user
        return web.json_response(out)

    async def mutate(request: web.Request) -> web.Response:
        caller = await auth.caller(request)
        body = await read_json_body(request)
        auth.check_csrf(caller, body)
        require_permission(caller, "update_signals")
        return web.json_response({"ok": True})

    async def socket(request: web.Request) -> web.StreamResponse:
        check_origin(request)
        await auth.caller(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello")
        await ws.close()
        return ws

    async def video(request: web.Request) -> web.Response:
        require_permission(await auth.caller(request), "view_video")
        return web.Response(body=clip, content_type="video/mp4")

    app = web.Application()
    app.add_routes(auth.routes())
    app.router.add_get("/api/clip.mp4", video)
    app.router.add_get("/api/", top)
    app.router.add_post("/api/mutate", mutate)
    app.router.add_get("/api/socket", socket)
    return app


@pytest.fixture
def make_client(aiohttp_client, db):
    async def make(clip: bytes = b"", **auth_kwargs):
        auth = Auth(db, **auth_kwargs)
        client = await aiohttp_client(build_app(auth, clip), cookie_jar=aiohttp.DummyCookieJar())
        client.auth_under_test = auth
        return client

    return make


@pytest.fixture
def users(db) -> Users:
    return Users(db)


def add_admin(users: Users, name: str = "admin"):
    return users.add_user(name, password=PASSWORD, permissions=ALL_PERMISSIONS.to_json())


def add_viewer(users: Users, name: str = "viewer"):
    return users.add_user(name, password=PASSWORD, permissions=VIEW_PERMISSIONS.to_json())


async def login(client, username: str = "admin", password: str = PASSWORD, **headers):
    """Log in; returns the ``Cookie`` header value for the new session."""
    resp = await client.post("/api/login", json={"username": username, "password": password},
                             headers=headers)
    assert resp.status == 204, await resp.text()
    (set_cookie,) = resp.headers.getall("Set-Cookie")
    match = COOKIE_RE.match(set_cookie)
    assert match, set_cookie
    return f"s={match.group(1)}"


def basic(username: str, password: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header, as curl -u sends it."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def top(client, cookie: str | None = None, **headers):
    if cookie is not None:
        headers["Cookie"] = cookie
    return await client.get("/api/", headers=headers)


async def csrf_of(client, cookie: str) -> str:
    resp = await top(client, cookie)
    assert resp.status == 200
    return (await resp.json())["user"]["session"]["csrf"]


# ---- permissions ----------------------------------------------------------------------------


def test_permissions_json_round_trip_and_unknown_keys():
    assert Permissions().to_json() == {
        "viewVideo": False, "readCameraConfigs": False, "updateSignals": False,
        "adminUsers": False}
    assert Permissions.from_json({}) == Permissions()
    assert Permissions.from_json({"adminUsers": True}) == Permissions(admin_users=True)
    assert Permissions.from_json(ALL_PERMISSIONS.to_json()) == ALL_PERMISSIONS
    with pytest.raises(InvalidPermissionsError, match="'deleteEverything'") as caught:
        Permissions.from_json({"viewVideo": True, "deleteEverything": True})
    assert isinstance(caught.value, MoonfireError) and isinstance(caught.value, ValueError)
    with pytest.raises(InvalidPermissionsError, match="'viewVideo' must be true or false"):
        Permissions.from_json({"viewVideo": 1})
    with pytest.raises(InvalidPermissionsError):
        Permissions.from_json(["viewVideo"])


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("localhost", True), ("192.0.2.1", False), ("0.0.0.0", False), ("::", False),
    ("10.0.0.1", False), ("nvr.example", False), ("", False), (None, False),
])
def test_is_loopback(address, expected):
    assert is_loopback(address) is expected


# ---- who gets in without logging in --------------------------------------------------------


@pytest.mark.asyncio
async def test_with_no_users_loopback_clients_may_view(make_client):
    client = await make_client()
    resp = await top(client)
    assert resp.status == 200
    assert await resp.json() == {"permissions": VIEW_PERMISSIONS.to_json()}
    # Viewing, not changing: the mutation route needs updateSignals.
    resp = await client.post("/api/mutate", json={})
    assert resp.status == 403 and await resp.text() == "requires the updateSignals permission"


@pytest.mark.asyncio
async def test_with_no_users_others_need_allow_unauthenticated(make_client):
    relayed = {"X-Forwarded-For": "192.0.2.7"}
    client = await make_client()
    resp = await top(client, **relayed)  # a proxy on loopback relaying a stranger
    assert resp.status == 401
    assert resp.content_type == "text/plain"
    assert "only clients on this machine may view" in await resp.text()
    client = await make_client(trust_forward_headers=True)
    assert (await top(client, **relayed)).status == 401
    assert (await top(client, **{"X-Real-IP": "192.0.2.7"})).status == 401
    # A proxy that sets one header passes a stranger's own value of the other along.
    assert (await top(client, **{"X-Real-IP": "127.0.0.1", **relayed})).status == 401
    assert (await top(client, **{"X-Forwarded-For": "192.0.2.7, 127.0.0.1"})).status == 401
    assert (await top(client, **{"Forwarded": "for=192.0.2.7"})).status == 401
    assert (await top(client, **{"X-Forwarded-For": "127.0.0.1"})).status == 200
    client = await make_client(trust_forward_headers=True, allow_unauthenticated=True)
    resp = await top(client, **relayed)
    assert resp.status == 200
    assert (await resp.json())["permissions"] == VIEW_PERMISSIONS.to_json()


@pytest.mark.asyncio
async def test_once_a_user_exists_every_request_needs_a_login(make_client, users):
    client = await make_client(allow_unauthenticated=True)
    assert (await top(client)).status == 200
    users.add_user("nobody")  # even one without a password, added while serving
    resp = await top(client)
    assert resp.status == 401 and resp.content_type == "text/plain"
    assert "log in first" in await resp.text()
    # Tools get the Basic challenge; browsers (Sec-Fetch-Mode) don't, or they'd pop up a
    # dialog over the UI's own login form.
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="moonfire", charset="UTF-8"'
    resp = await top(client, **BROWSER)
    assert resp.status == 401 and "WWW-Authenticate" not in resp.headers


# ---- login and the cookie -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_login_sets_the_session_cookie_stored_only_hashed(make_client, users, db):
    admin = add_admin(users)
    client = await make_client()
    resp = await client.post("/api/login", json={"username": "admin", "password": PASSWORD})
    assert resp.status == 204 and await resp.read() == b""
    assert resp.headers["Cache-Control"] == "private, no-cache"
    (set_cookie,) = resp.headers.getall("Set-Cookie")
    match = COOKIE_RE.match(set_cookie)
    assert match and match.group(2) is None, set_cookie  # no Secure without the proxy's word
    raw = base64.b64decode(match.group(1))
    assert len(raw) == 48
    (session,) = users.list_sessions(admin.id)
    assert session.id_hash == hashlib.sha256(raw).digest()
    assert session.creation_peer_addr == "127.0.0.1" and session.domain == "127.0.0.1"

    resp = await top(client, f"s={match.group(1)}")
    assert resp.status == 200
    body = await resp.json()
    assert body["permissions"] == ALL_PERMISSIONS.to_json()
    csrf = body["user"]["session"]["csrf"]
    assert body["user"] == {"name": "admin", "id": admin.id, "preferences": {},
                            "session": {"csrf": csrf}}
    assert len(csrf) == 32 and len(base64.b64decode(csrf)) == 24
    assert csrf == csrf_token(session.seed)


@pytest.mark.asyncio
async def test_secure_only_behind_a_trusted_https_proxy(make_client, users):
    add_admin(users)
    https = {"X-Forwarded-Proto": "https"}
    plain = await make_client()
    resp = await plain.post("/api/login", json={"username": "admin", "password": PASSWORD},
                            headers=https)
    assert "Secure" not in resp.headers["Set-Cookie"]
    proxied = await make_client(trust_forward_headers=True)
    resp = await proxied.post("/api/login", json={"username": "admin", "password": PASSWORD},
                              headers=https)
    match = COOKIE_RE.match(resp.headers["Set-Cookie"])
    assert match and match.group(2) == " Secure;"
    assert resp.headers["Set-Cookie"].index("HttpOnly") < resp.headers["Set-Cookie"].index(
        "Secure") < resp.headers["Set-Cookie"].index("SameSite")
    resp = await proxied.post("/api/login", json={"username": "admin", "password": PASSWORD},
                              headers={"X-Forwarded-Proto": "http"})
    assert "Secure" not in resp.headers["Set-Cookie"]


@pytest.mark.asyncio
async def test_wrong_credentials_are_401_and_alike(make_client, users):
    add_admin(users)
    users.add_user("disabled", password=PASSWORD, disabled=True)
    users.add_user("nopassword")
    client = await make_client()
    bodies = set()
    for username, password in [("admin", "wrong"), ("nobody", PASSWORD),
                               ("disabled", PASSWORD), ("nopassword", "")]:
        resp = await client.post("/api/login", json={"username": username, "password": password})
        assert resp.status == 401 and resp.content_type == "text/plain"
        assert "Set-Cookie" not in resp.headers
        bodies.add(await resp.text())
    assert bodies == {"incorrect username or password"}


@pytest.mark.asyncio
async def test_login_request_rules(make_client, users):
    add_admin(users)
    client = await make_client()
    good = json.dumps({"username": "admin", "password": PASSWORD})
    resp = await client.post("/api/login", data=good, headers={"Content-Type": "text/plain"})
    assert resp.status == 400 and "application/json" in await resp.text()
    resp = await client.post("/api/login", data=good,
                             headers={"Content-Type": "application/json; charset=UTF-8"})
    assert resp.status == 204
    resp = await client.post("/api/login", data="{not json",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400 and await resp.text() == "request body is not valid JSON"
    resp = await client.post("/api/login", json={"username": "admin"})
    assert resp.status == 400
    resp = await client.get("/api/login")
    assert resp.status == 405 and await resp.text() == "POST expected"


@pytest.mark.asyncio
async def test_login_without_a_host_header_is_400(make_client, users):
    add_admin(users)
    client = await make_client()
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /api/login HTTP/1.0\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply
    assert b"missing Host header" in reply
    assert users.list_sessions(users.get_user("admin").id) == []


def test_the_session_cookie_parse_rules():
    raw = bytes(range(48))
    value = base64.b64encode(raw).decode()

    def parse(*cookies: str):
        headers = [("Cookie", c) for c in cookies]
        return session_id_from_request(make_mocked_request("GET", "/", headers=headers))

    assert parse(f"s={value}") == raw
    assert parse(f"a=1; s={value}; b=2") == raw
    assert parse("s=garbage!", f"s={value}") == raw  # the first one that decodes
    assert parse(f"s={value[:-4]}") is None  # decodes, but not to 48 bytes
    assert parse(f"xs={value}", f"ss={value}") is None
    assert parse(f";  s={value}") is None  # only one leading space is dropped
    assert parse() is None


# ---- logout -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_logout_revokes_with_the_right_csrf_and_clears_the_cookie(make_client, users):
    add_admin(users)
    client = await make_client()
    cookie = await login(client)
    csrf = await csrf_of(client, cookie)

    resp = await client.post("/api/logout", json={}, headers={"Cookie": cookie})
    assert resp.status == 400, "csrf is a required field of logout"
    resp = await client.post("/api/logout", json={"csrf": "A" * 32}, headers={"Cookie": cookie})
    assert resp.status == 400 and "Set-Cookie" not in resp.headers
    assert (await top(client, cookie)).status == 200, "a wrong csrf revokes nothing"

    resp = await client.post("/api/logout", json={"csrf": csrf}, headers={"Cookie": cookie})
    assert resp.status == 204 and await resp.read() == b""
    assert resp.headers.getall("Set-Cookie") == [CLEAR_COOKIE]
    assert CLEAR_COOKIE == "s=; Max-Age=0; SameSite=Lax; Path=/"
    assert (await top(client, cookie)).status == 401
    (session,) = users.list_sessions(users.get_user("admin").id, include_revoked=True)
    assert session.revocation_reason == "logged out"

    # Again with the dead cookie: nothing to revoke, but the cookie is still cleared.
    resp = await client.post("/api/logout", json={"csrf": csrf}, headers={"Cookie": cookie})
    assert resp.status == 204 and resp.headers.getall("Set-Cookie") == [CLEAR_COOKIE]
    resp = await client.post("/api/logout", json={"csrf": csrf})
    assert resp.status == 204 and "Set-Cookie" not in resp.headers


# ---- CSRF and mutations -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_csrf_rules_for_session_callers(make_client, users):
    add_admin(users)
    client = await make_client()
    cookie = await login(client)
    csrf = await csrf_of(client, cookie)
    headers = {"Cookie": cookie}
    resp = await client.post("/api/mutate", json={}, headers=headers)
    assert resp.status == 401 and await resp.text() == "csrf must be supplied"
    resp = await client.post("/api/mutate", json={"csrf": csrf[:-1] + "x"}, headers=headers)
    assert resp.status == 401 and await resp.text() == "incorrect csrf"
    resp = await client.post("/api/mutate", json={"csrf": 5}, headers=headers)
    assert resp.status == 400
    resp = await client.post("/api/mutate", json={"csrf": csrf}, headers=headers)
    assert resp.status == 200 and await resp.json() == {"ok": True}
    other = await login(client)
    resp = await client.post("/api/mutate", json={"csrf": csrf}, headers={"Cookie": other})
    assert resp.status == 401, "each session has its own token"
    resp = await client.post("/api/mutate", data=json.dumps({"csrf": csrf}), headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400, "a form post from another site can't pass the content type rule"


@pytest.mark.asyncio
async def test_callers_without_a_session_may_leave_csrf_out(make_client, db):
    client = await make_client()
    auth: Auth = client.auth_under_test
    caller = Caller(ALL_PERMISSIONS, None, None)
    auth.check_csrf(caller, {})  # no exception
    assert auth.user_json(caller) is None
    resp = await client.post("/api/mutate", json={})  # loopback, no users: 403, not 401
    assert resp.status == 403


# ---- HTTP Basic for tools -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_basic_credentials_for_get_and_head(make_client, users):
    viewer = add_viewer(users)
    client = await make_client()
    resp = await client.get("/api/", headers=basic("viewer", PASSWORD))
    assert resp.status == 200
    assert await resp.json() == {
        "permissions": VIEW_PERMISSIONS.to_json(),
        "user": {"name": "viewer", "id": viewer.id, "preferences": {}},  # no session
    }
    assert (await client.head("/api/", headers=basic("viewer", PASSWORD))).status == 200
    resp = await client.get("/api/", headers=basic("viewer", "wrong"))
    assert resp.status == 401 and await resp.text() == "incorrect username or password"
    assert "WWW-Authenticate" in resp.headers
    resp = await client.get("/api/", headers={"Authorization": "Basic !!!"})
    assert resp.status == 400
    resp = await client.get("/api/", headers={
        "Authorization": "Basic " + base64.b64encode(b"no colon").decode()})
    assert resp.status == 400
    # Changes need a session: a browser would attach remembered Basic credentials to a
    # request another site makes.
    resp = await client.post("/api/mutate", json={}, headers=basic("viewer", PASSWORD))
    assert resp.status == 401 and "GET and HEAD only" in await resp.text()
    assert users.list_sessions(viewer.id) == []


def tiny_mp4(frames: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), i * 20, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


@pytest.mark.asyncio
async def test_ffmpeg_fetches_video_with_the_credentials_in_its_url(make_client, users):
    """libavformat's HTTP client (through PyAV), as ffmpeg and VLC-like players use it:
    it sends nothing until challenged, so the 401 must carry ``WWW-Authenticate``."""
    add_viewer(users)
    client = await make_client(clip=tiny_mp4(7))
    url = f"http://viewer:{PASSWORD}@127.0.0.1:{client.port}/api/clip.mp4"

    def decode() -> int:
        with av.open(url) as container:
            return sum(1 for _ in container.decode(video=0))

    assert await asyncio.get_running_loop().run_in_executor(None, decode) == 7
    with pytest.raises(av.error.HTTPUnauthorizedError):
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: av.open(url.replace(PASSWORD, "wrong")))


@pytest.mark.asyncio
async def test_basic_credentials_are_verified_once_until_the_password_changes(
        make_client, users, monkeypatch):
    viewer = add_viewer(users)
    calls = []
    real = users_module.verify_password

    def counting(stored, password):
        calls.append(1)
        return real(stored, password)

    monkeypatch.setattr(users_module, "verify_password", counting)
    client = await make_client()
    creds = basic("viewer", PASSWORD)
    for _ in range(5):
        assert (await client.get("/api/", headers=creds)).status == 200
    assert len(calls) == 1, "a player's many range requests cost one scrypt"
    users.update_user(viewer.id, password="changed")
    assert (await client.get("/api/", headers=creds)).status == 401
    assert (await client.get("/api/", headers=basic("viewer", "changed"))).status == 200
    users.update_user(viewer.id, disabled=True)
    assert (await client.get("/api/", headers=basic("viewer", "changed"))).status == 401


@pytest.mark.asyncio
async def test_a_session_cookie_wins_over_basic_and_a_dead_one_falls_through(make_client, users):
    add_admin(users)
    add_viewer(users)
    client = await make_client()
    cookie = await login(client)
    both = {**basic("viewer", PASSWORD), "Cookie": cookie}
    resp = await client.get("/api/", headers=both)
    assert (await resp.json())["user"]["name"] == "admin"
    users.update_user("admin", disabled=True)
    resp = await client.get("/api/", headers=both)
    assert resp.status == 200 and (await resp.json())["user"]["name"] == "viewer"
    assert (await top(client, cookie)).status == 401


# ---- rate limiting ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_failed_logins_are_limited_per_username(make_client, users):
    add_admin(users)
    clock = Clock()
    client = await make_client(limiter=LoginRateLimiter(clock=clock))
    for _ in range(5):
        resp = await client.post("/api/login", json={"username": "admin", "password": "guess"})
        assert resp.status == 401
        clock.now += 10
    resp = await client.post("/api/login", json={"username": "admin", "password": PASSWORD})
    assert resp.status == 429, "even the right password, once limited"
    # At t=50 s: the first failure (t=0) leaves the 300 s window at t=300.
    assert resp.headers["Retry-After"] == "250"
    assert "too many failed logins" in await resp.text()
    clock.now += 249
    resp = await client.post("/api/login", json={"username": "admin", "password": PASSWORD})
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    clock.now += 1
    await login(client)
    # A success forgives the username's failures.
    for _ in range(4):
        await client.post("/api/login", json={"username": "admin", "password": "guess"})
    await login(client)


@pytest.mark.asyncio
async def test_failed_logins_are_limited_per_address(make_client, users):
    add_admin(users)
    clock = Clock()
    client = await make_client(trust_forward_headers=True,
                               limiter=LoginRateLimiter(per_address=4, clock=clock))
    stranger = {"X-Forwarded-For": "192.0.2.9"}
    for name in ("a", "b", "c", "d"):
        resp = await client.post("/api/login", json={"username": name, "password": "x"},
                                 headers=stranger)
        assert resp.status == 401
    resp = await client.post("/api/login", json={"username": "admin", "password": PASSWORD},
                             headers=stranger)
    assert resp.status == 429 and resp.headers["Retry-After"] == "300"
    await login(client, **{"X-Forwarded-For": "192.0.2.10"})  # another address is fine
    # ... and many addresses don't help guess one username.
    for n in range(5):
        await client.post("/api/login", json={"username": "admin", "password": "x"},
                          headers={"X-Forwarded-For": f"198.51.100.{n}"})
    resp = await client.post("/api/login", json={"username": "admin", "password": PASSWORD},
                             headers={"X-Forwarded-For": "198.51.100.99"})
    assert resp.status == 429


@pytest.mark.asyncio
async def test_basic_failures_count_as_failed_logins(make_client, users):
    add_viewer(users)
    clock = Clock()
    client = await make_client(limiter=LoginRateLimiter(per_username=2, clock=clock))
    for _ in range(2):
        assert (await client.get("/api/", headers=basic("viewer", "x"))).status == 401
    resp = await client.get("/api/", headers=basic("viewer", PASSWORD))
    assert resp.status == 429 and "Retry-After" in resp.headers
    resp = await client.post("/api/login", json={"username": "viewer", "password": PASSWORD})
    assert resp.status == 429


@pytest.mark.asyncio
async def test_right_basic_credentials_forgive_the_usernames_failures(make_client, users):
    add_viewer(users)
    client = await make_client(limiter=LoginRateLimiter(per_username=3, clock=Clock()))
    for password in ("x", "y", PASSWORD, "z", "w"):
        resp = await client.get("/api/", headers=basic("viewer", password))
        assert resp.status == (200 if password == PASSWORD else 401)
    await login(client, "viewer")  # two failures since the success: one attempt left


def test_the_limiter_counts_an_attempt_before_it_is_decided():
    clock = Clock()
    limiter = LoginRateLimiter(per_username=3, per_address=100, window_sec=60, clock=clock)
    assert [limiter.acquire("u", "192.0.2.1") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("u", "192.0.2.1") == 60  # three in flight: the fourth waits
    limiter.forgive("u", "192.0.2.1")
    assert limiter.acquire("u", "192.0.2.1") is None
    clock.now += 61
    assert limiter.acquire("u", None) is None


def test_the_limiter_counts_ipv6_clients_by_their_slash_64():
    limiter = LoginRateLimiter(per_address=2, clock=Clock())
    assert limiter.acquire("a", "2001:db8:1:2::1") is None
    assert limiter.acquire("b", "2001:db8:1:2:ffff::9") is None
    assert limiter.acquire("c", "2001:db8:1:2::77") == 300
    assert limiter.acquire("d", "2001:db8:1:3::1") is None
    assert limiter.acquire("e", "192.0.2.1") is None


def test_the_limiter_forgets_old_keys_beyond_its_size():
    clock = Clock()
    limiter = LoginRateLimiter(per_username=1, window_sec=10, clock=clock, max_keys=50)
    for n in range(200):
        limiter.acquire(f"user{n}", None)
        clock.now += 1
    assert len(limiter._failures) <= 50


# ---- users endpoints ----------------------------------------------------------------------


async def as_admin(client, users):
    add_admin(users)
    cookie = await login(client)
    return {"Cookie": cookie}, await csrf_of(client, cookie)


@pytest.mark.asyncio
async def test_list_users_needs_admin_and_censors_passwords(make_client, users):
    client = await make_client()
    headers, _csrf = await as_admin(client, users)
    users.add_user("nopw", preferences={"k": [1]})
    resp = await client.get("/api/users/", headers=headers)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "private, no-cache"
    listed = (await resp.json())["users"]
    assert listed == [
        {"id": 1, "user": {"username": "admin", "disabled": False, "preferences": {},
                           "password": "(censored)", "permissions": ALL_PERMISSIONS.to_json()}},
        {"id": 2, "user": {"username": "nopw", "disabled": False, "preferences": {"k": [1]},
                           "password": None, "permissions": Permissions().to_json()}},
    ]
    add_viewer(users)
    viewer = {"Cookie": await login(client, "viewer")}
    assert (await client.get("/api/users/", headers=viewer)).status == 401
    assert (await client.get("/api/users/")).status == 401
    assert (await client.get("/api/users")).status == 404, "the trailing slash is required"


@pytest.mark.asyncio
async def test_add_user(make_client, users):
    client = await make_client()
    headers, csrf = await as_admin(client, users)
    body = {"csrf": csrf, "user": {"username": "bob", "password": "bobpw",
                                   "permissions": {"viewVideo": True}}}
    resp = await client.post("/api/users/", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    new_id = (await resp.json())["id"]
    bob = users.get_user(new_id)
    assert bob.username == "bob" and bob.permissions == Permissions(view_video=True).to_json()
    await login(client, "bob", "bobpw")
    resp = await client.post("/api/users/", json=body, headers=headers)
    assert resp.status == 400 and "already exists" in await resp.text()
    for bad, fragment in [
        ({"csrf": csrf, "user": {"password": "x"}}, "username is required"),
        ({"csrf": csrf, "user": {"username": "c", "admin": True}}, "unknown field 'admin'"),
        ({"csrf": csrf, "user": {"username": "c", "permissions": {"root": True}}}, "'root'"),
        ({"csrf": csrf, "user": {"username": "c"}, "extra": 1}, "unknown field 'extra'"),
        ({"csrf": csrf, "user": {"username": "c", "password": ""}}, "must not be empty"),
        ({"csrf": csrf, "user": "c"}, "user must be an object"),
    ]:
        resp = await client.post("/api/users/", json=bad, headers=headers)
        assert resp.status == 400 and fragment in await resp.text(), bad
    resp = await client.post("/api/users/", json={"user": {"username": "c"}}, headers=headers)
    assert resp.status == 401 and await resp.text() == "csrf must be supplied"
    viewer = {"Cookie": await login(client, "bob", "bobpw")}
    resp = await client.post("/api/users/", json={"user": {"username": "c"}}, headers=viewer)
    assert resp.status == 401
    assert [u.username for u in users.list_users()] == ["admin", "bob"]


@pytest.mark.asyncio
async def test_get_user_is_for_oneself_or_an_admin(make_client, users):
    client = await make_client()
    headers, _ = await as_admin(client, users)
    viewer = add_viewer(users)
    other = users.add_user("other")
    mine = {"Cookie": await login(client, "viewer")}
    resp = await client.get(f"/api/users/{viewer.id}", headers=mine)
    assert resp.status == 200 and (await resp.json())["username"] == "viewer"
    assert (await resp.json())["password"] == "(censored)"
    assert (await client.get(f"/api/users/{other.id}", headers=mine)).status == 401
    assert (await client.get(f"/api/users/{other.id}", headers=headers)).status == 200
    resp = await client.get("/api/users/999", headers=headers)
    assert resp.status == 404 and "no user with id 999" in await resp.text()
    assert (await client.get("/api/users/abc", headers=headers)).status == 404


@pytest.mark.asyncio
async def test_changing_ones_own_password_needs_the_old_one(make_client, users):
    client = await make_client()
    viewer = add_viewer(users)
    cookie = await login(client, "viewer")
    elsewhere = await login(client, "viewer")
    csrf = await csrf_of(client, cookie)
    url = f"/api/users/{viewer.id}"
    headers = {"Cookie": cookie}

    resp = await client.patch(url, json={"csrf": csrf, "update": {"password": "new"}},
                              headers=headers)
    assert resp.status == 401 and "precondition.password" in await resp.text()
    resp = await client.patch(url, json={"csrf": csrf, "precondition": {"password": "wrong"},
                                         "update": {"password": "new"}}, headers=headers)
    assert resp.status == 412 and await resp.text() == "incorrect password"
    resp = await client.patch(url, json={"precondition": {"password": PASSWORD},
                                         "update": {"password": "new"}}, headers=headers)
    assert resp.status == 401, "csrf"
    resp = await client.patch(url, json={"csrf": csrf, "precondition": {"password": PASSWORD},
                                         "update": {"password": "new"}}, headers=headers)
    assert resp.status == 204 and await resp.read() == b""
    assert (await top(client, cookie)).status == 200, "the session that changed it stays"
    assert (await top(client, elsewhere)).status == 401, "the others are logged out"
    resp = await client.post("/api/login", json={"username": "viewer", "password": PASSWORD})
    assert resp.status == 401
    await login(client, "viewer", "new")

    for update in ({"permissions": {"adminUsers": True}}, {"username": "boss"},
                   {"disabled": True}):
        resp = await client.patch(url, json={"csrf": csrf, "update": update}, headers=headers)
        assert resp.status == 401 and "adminUsers" in await resp.text(), update
    resp = await client.patch(url, json={"csrf": csrf, "update": {"preferences": {"a": 1}}},
                              headers=headers)
    assert resp.status == 204
    assert users.get_user(viewer.id).preferences == {"a": 1}
    assert users.get_user(viewer.id).permissions == VIEW_PERMISSIONS.to_json()


@pytest.mark.asyncio
async def test_admin_edits_users_with_preconditions(make_client, users):
    client = await make_client()
    headers, csrf = await as_admin(client, users)
    viewer = add_viewer(users)
    url = f"/api/users/{viewer.id}"

    async def patch(body):
        return await client.patch(url, json={"csrf": csrf, **body}, headers=headers)

    resp = await patch({"update": {"username": "watcher", "permissions": {"viewVideo": True},
                                   "password": "set-by-admin"}})
    assert resp.status == 204
    watcher = users.get_user(viewer.id)
    assert watcher.username == "watcher"
    assert watcher.permissions == Permissions(view_video=True).to_json()
    assert watcher.check_password("set-by-admin")
    resp = await patch({"precondition": {"username": "viewer"}, "update": {"disabled": True}})
    assert resp.status == 412 and "username" in await resp.text()
    resp = await patch({"precondition": {"password": None}, "update": {"disabled": True}})
    assert resp.status == 412, "null means 'has no password', and this user has one"
    resp = await patch({"precondition": {"permissions": {"viewVideo": True},
                                         "disabled": False}, "update": {"password": None}})
    assert resp.status == 204
    assert not users.get_user(viewer.id).has_password
    resp = await patch({"precondition": {"password": None}, "update": {"password": "again"}})
    assert resp.status == 204
    resp = await patch({"update": {"colour": "red"}})
    assert resp.status == 400 and "unknown field 'colour' in update" in await resp.text()
    resp = await patch({"update": {"password": 5}})
    assert resp.status == 400
    resp = await client.patch("/api/users/999", json={"csrf": csrf, "update": {}},
                              headers=headers)
    assert resp.status == 404


@pytest.mark.asyncio
async def test_delete_user(make_client, users):
    client = await make_client()
    headers, csrf = await as_admin(client, users)
    viewer = add_viewer(users)
    their_cookie = await login(client, "viewer")
    url = f"/api/users/{viewer.id}"
    resp = await client.delete(url, headers=headers)
    assert resp.status == 400, "a JSON body is required"
    resp = await client.delete(url, json={}, headers=headers)
    assert resp.status == 401 and await resp.text() == "csrf must be supplied"
    resp = await client.delete(url, json={"csrf": await csrf_of(client, their_cookie)},
                               headers={"Cookie": their_cookie})
    assert resp.status == 401, "only admins delete"
    resp = await client.delete(url, json={"csrf": csrf}, headers=headers)
    assert resp.status == 204
    assert users.find_user("viewer") is None
    assert (await top(client, their_cookie)).status == 401
    resp = await client.delete(url, json={"csrf": csrf}, headers=headers)
    assert resp.status == 404


@pytest.mark.asyncio
async def test_a_wrong_precondition_password_counts_as_a_failed_login(make_client, users):
    viewer = add_viewer(users)
    clock = Clock()
    client = await make_client(limiter=LoginRateLimiter(per_username=3, clock=clock))
    cookie = await login(client, "viewer")
    csrf = await csrf_of(client, cookie)
    body = {"csrf": csrf, "precondition": {"password": "guess"}, "update": {"password": "x"}}
    for _ in range(3):
        resp = await client.patch(f"/api/users/{viewer.id}", json=body,
                                  headers={"Cookie": cookie})
        assert resp.status == 412
    resp = await client.patch(f"/api/users/{viewer.id}", json=body, headers={"Cookie": cookie})
    assert resp.status == 429


# ---- WebSocket origin ---------------------------------------------------------------------


@pytest.mark.parametrize("headers, status", [
    ({"Host": "nvr.example:8080"}, None),
    ({"Host": "nvr.example:8080", "Origin": "http://nvr.example:8080"}, None),
    ({"Host": "nvr.example:8080", "Origin": "https://NVR.example"}, None),
    ({"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:18080/"}, None),  # Vite's proxy
    ({"Host": "[::1]:8080", "Origin": "http://[::1]:5173"}, None),
    ({"Host": "nvr.example", "Origin": "http://nvr.example/some/path"}, None),
    ({"Host": "nvr.example:8080", "Origin": "http://evil.example:8080"}, 403),
    ({"Host": "nvr.example", "Origin": "http://nvr.example.evil.example"}, 403),
    ({"Host": "[::1]:8080", "Origin": "http://127.0.0.1:8080"}, 403),
    ({"Host": "nvr.example", "Origin": "null"}, 400),
    ({"Host": "nvr.example", "Origin": "http://"}, 400),
    ({"Origin": "http://nvr.example"}, 400),
])
def test_check_origin(headers, status):
    request = make_mocked_request("GET", "/api/socket", headers=headers)
    if status is None:
        check_origin(request)
        return
    with pytest.raises(web.HTTPException) as caught:
        check_origin(request)
    assert caught.value.status == status


@pytest.mark.asyncio
async def test_a_cross_site_websocket_is_refused_before_the_upgrade(make_client):
    client = await make_client()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/api/socket", headers={"Origin": "http://evil.example"})
    assert caught.value.status == 403
    ws = await client.ws_connect("/api/socket", headers={
        "Origin": f"http://127.0.0.1:{client.port + 1}"})
    assert (await ws.receive_str()) == "hello"
    await ws.close()
    ws = await client.ws_connect("/api/socket")  # no Origin: not a browser
    assert (await ws.receive_str()) == "hello"
    await ws.close()


# ---- no password in the log ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_passwords_and_mistyped_usernames_never_reach_the_log(make_client, users, caplog):
    add_admin(users)
    client = await make_client()
    caplog.set_level(logging.DEBUG)
    typed_in_the_wrong_field = "hunter2-typed-as-username"
    await client.post("/api/login", json={"username": "admin", "password": "wrong-guess-1"})
    await client.post("/api/login",
                      json={"username": typed_in_the_wrong_field, "password": "whatever-2"})
    await client.get("/api/", headers=basic("admin", "basic-guess-3"))
    cookie = await login(client)
    await client.post("/api/logout", json={"csrf": await csrf_of(client, cookie)},
                      headers={"Cookie": cookie})
    text = caplog.text
    assert "failed login from 127.0.0.1 as 'admin'" in text
    assert "user 'admin' logged in" in text and "user 'admin' logged out" in text
    for secret in (PASSWORD, "wrong-guess-1", "whatever-2", "basic-guess-3",
                   typed_in_the_wrong_field, cookie[2:]):
        assert secret not in text
