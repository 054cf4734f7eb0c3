"""Who is calling, and what they may do: users, sessions, CSRF and permissions
(web-api.md §1, §2.1, §2.2, §2.8; issue 11 §4).

``Auth.caller(request)`` identifies the caller of an ``/api/`` request, in this order:

1. **Session cookie** ``s`` (§1.2): a live session of an enabled user gives that user's
   current permissions.  A bad, unknown or revoked cookie is only logged, and the next
   rule decides.
2. **HTTP Basic credentials** (``Authorization: Basic``), the credential for tools that
   are not browsers; see below.  Wrong credentials are a 401, never a fall-through.
3. **No users yet**: a loopback client gets ``viewVideo`` and ``readCameraConfigs``; any
   other client gets them only when the server was started with ``allow_unauthenticated``,
   else 401.  A request relayed by a proxy (it carries ``X-Forwarded-For``, ``X-Real-IP``
   or ``Forwarded``) is not a loopback client unless ``trust_forward_headers`` says to
   believe the proxy, and then every address those headers name must be loopback too.
4. Otherwise (some user exists): 401.  Adding the first user (``moonfire user add``, even
   while ``moonfire run`` is serving) closes the loopback door at the next request.

**The non-browser credential: HTTP Basic with the user's own password.**  curl, ffmpeg,
VLC, Prometheus and home-automation systems all speak it without a login step (Moonfire
users ask for exactly this, moonfire-nvr#203 "standard authentication"):

* ``curl -u viewer 'http://nvr:8080/api/cameras/UUID/main/view.mp4?s=1-5' -o clip.mp4``
* ``ffmpeg -i 'http://viewer:PASSWORD@nvr:8080/api/cameras/UUID/main/view.mp4?s=1-5' ...``
  and VLC with the same URL (both send the credentials after the 401's challenge; VLC
  asks for them when the URL has none);
* Prometheus: ``basic_auth: {username: viewer, password_file: ...}`` for ``/metrics``.

Rules that keep it from weakening the browser side:

* Only ``GET`` and ``HEAD`` (and so WebSocket upgrades) accept it.  A browser that once
  saw Basic credentials sends them to the site on its own, even for a form another site
  submits; so changes (logout, users, signals) need a session and its CSRF token.
* A 401 carries ``WWW-Authenticate: Basic realm="moonfire"`` only when the request has no
  ``Sec-Fetch-Mode`` header: browsers always send that header and would otherwise pop up
  their own password dialog over the UI's login form; tools don't, and need the challenge.
* Failures count against the same per-username and per-address limits as logins (429 with
  ``Retry-After``).  A credential that succeeded is remembered for ``BASIC_CACHE_SEC`` so
  that a player's many range requests don't each cost a scrypt; the memo is keyed by an
  HMAC under a per-process random key (it holds no password) and holds only while the
  user's stored hash is unchanged, so a new password or a disabled user ends it at once.
* Give each tool its own user with only ``viewVideo`` (``moonfire user add ffmpeg
  --view-only``): a leaked tool password then can't read camera settings or touch users,
  and ``moonfire user passwd``/``remove`` revokes it.  Over plain HTTP a Basic
  password crosses the network readable; beyond a trusted LAN serve moonfire behind an
  HTTPS proxy (``--trust-forward-headers``).
* Why not a separate API token: a second kind of secret to issue, list and revoke, that
  not every tool can send (VLC and ffmpeg know Basic, not bearer headers); a dedicated user
  gives the same containment with the one mechanism every HTTP client has.

Sessions: ``POST /api/login`` (204 and ``Set-Cookie``, 401 on wrong credentials, 429 when
rate-limited) and ``POST /api/logout`` (204, the clearing cookie).  The cookie is 48 random
bytes in unpadded standard base64, only its SHA-256 is stored; attributes ``HttpOnly``,
``Secure`` (only when ``trust_forward_headers`` and ``X-Forwarded-Proto: https``, or when
the server itself speaks TLS), ``SameSite=Lax``, ``Max-Age=2147483648``, ``Path=/`` in that
order.  Sessions don't expire; they are revoked by logout, by a password change (except
the session that made it) and by disabling the user.

CSRF: a session's token is 24 bytes of HMAC-SHA256 keyed by the session's random seed, as
32 base64 characters (``user.session.csrf`` in ``GET /api/``).  A session caller's mutation
carries it as ``"csrf"`` in its JSON body: missing, 401 "csrf must be supplied"; wrong,
401 "incorrect csrf" (``check_csrf``; logout is stricter: 400).  Compared in constant time.
Mutations must have ``Content-Type: application/json`` (``read_json_body``: 400 otherwise),
which a cross-site form cannot send without a CORS preflight this server never answers.
WebSocket upgrades check ``Origin`` against ``Host`` (``check_origin``, §1.4).

Failed logins are limited per username (``LoginRateLimiter``: 5 in 5 minutes) and per
client address (20 in 5 minutes; an IPv6 address counts as its /64), an attempt counting
as failed from the moment it starts, so parallel guesses can't outrun the count.  The
per-username limit also lets a stranger lock a user out for five minutes at a time; that is
the price of stopping a guesser who has many addresses.

Passwords never reach a log or an error message; usernames that don't exist aren't logged
either (they are often passwords typed into the wrong field).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from moonfire.db import Database
from moonfire.db.users import (
    SESSION_ID_BYTES,
    DuplicateUserError,
    InvalidPasswordHashError,
    InvalidUserError,
    SessionRow,
    UnknownUserError,
    UserRow,
    Users,
    burn_password_check,
)
from moonfire.errors import MoonfireError

log = logging.getLogger(__name__)

T = TypeVar("T")

COOKIE_NAME = "s"
#: Moonfire's cookie lifetime: about 68 years; a session ends by revocation, not by age.
COOKIE_MAX_AGE = 2147483648
CLEAR_COOKIE = "s=; Max-Age=0; SameSite=Lax; Path=/"
CSRF_BYTES = 24
NO_CACHE = {"Cache-Control": "private, no-cache"}
BASIC_REALM = 'Basic realm="moonfire", charset="UTF-8"'
#: How long a verified Basic credential is remembered (see the module docstring).
BASIC_CACHE_SEC = 300.0
BASIC_CACHE_MAX = 1024
#: The only request bodies a mutation may have (web-api.md §0), compared without case.
JSON_CONTENT_TYPES = ("application/json", "application/json; charset=utf-8")
_FORWARD_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


class AuthError(MoonfireError):
    """Base class of this module's errors."""


class InvalidPermissionsError(AuthError, ValueError):
    """A permissions object has a key that isn't a permission, or a value that isn't a bool."""


# ---- permissions and callers ---------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """The four permissions of web-api.md §1.5."""

    view_video: bool = False
    read_camera_configs: bool = False
    update_signals: bool = False
    admin_users: bool = False

    def to_json(self) -> dict[str, bool]:
        """All four keys, as ``GET /api/`` writes them."""
        return {name: getattr(self, attr) for name, attr in _PERMISSION_NAMES.items()}

    @classmethod
    def from_json(cls, obj: object) -> Permissions:
        """From a request body's object: each key optional (false), any other key refused."""
        if not isinstance(obj, Mapping):
            raise InvalidPermissionsError("permissions must be an object")
        values: dict[str, bool] = {}
        for key, value in obj.items():
            if key not in _PERMISSION_NAMES:
                raise InvalidPermissionsError(
                    f"unknown permission {key!r} (known: {', '.join(_PERMISSION_NAMES)})")
            if not isinstance(value, bool):
                raise InvalidPermissionsError(f"permission {key!r} must be true or false")
            values[_PERMISSION_NAMES[key]] = value
        return cls(**values)


_PERMISSION_NAMES = {
    "viewVideo": "view_video",
    "readCameraConfigs": "read_camera_configs",
    "updateSignals": "update_signals",
    "adminUsers": "admin_users",
}
#: What a caller gets without logging in, when no user exists yet (loopback, or anyone with
#: ``allow_unauthenticated``).
VIEW_PERMISSIONS = Permissions(view_video=True, read_camera_configs=True)
ALL_PERMISSIONS = Permissions(True, True, True, True)


def stored_permissions(obj: Mapping[str, Any]) -> Permissions:
    """A user row's permissions; a key this version doesn't know (a newer moonfire wrote
    it) grants nothing rather than failing every request of that user."""
    return Permissions(**{attr: obj.get(name) is True for name, attr in _PERMISSION_NAMES.items()})


@dataclass(frozen=True)
class Caller:
    """Who made a request: their permissions, their user (None when no user exists yet)
    and their session (None for callers without a session cookie: Basic, or no users)."""

    permissions: Permissions
    user: UserRow | None
    session: SessionRow | None


def require_permission(caller: Caller, permission: str) -> None:
    """403 (text/plain) unless the caller has ``permission`` (an attribute name of
    ``Permissions``, e.g. ``"view_video"``)."""
    if not getattr(caller.permissions, permission):
        json_name = next(k for k, v in _PERMISSION_NAMES.items() if v == permission)
        raise web.HTTPForbidden(text=f"requires the {json_name} permission")


# ---- cookies, CSRF, bodies, origins ---------------------------------------------------------


def csrf_token(seed: bytes) -> str:
    """The session's CSRF token: 32 base64 characters derived from its seed."""
    digest = hmac.new(seed, b"moonfire csrf", hashlib.sha256).digest()[:CSRF_BYTES]
    return base64.b64encode(digest).decode("ascii")


def encode_session_id(raw: bytes) -> str:
    """The cookie value: standard base64 without padding (64 characters for 48 bytes)."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def session_id_from_request(request: web.BaseRequest) -> bytes | None:
    """The raw session id in the request's cookie ``s`` (§1.2): every ``Cookie`` header
    split on ``;``, one leading space dropped, the first ``s=`` that decodes to 48 bytes."""
    for header in request.headers.getall("Cookie", ()):
        for item in header.split(";"):
            if item.startswith(" "):
                item = item[1:]
            if not item.startswith(COOKIE_NAME + "="):
                continue
            value = item[len(COOKIE_NAME) + 1:]
            if "=" in value:
                continue
            try:
                raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == SESSION_ID_BYTES:
                return raw
    return None


async def read_json_body(request: web.BaseRequest) -> dict[str, Any]:
    """A mutation's JSON object body: 400 (text/plain) unless the content type is exactly
    ``application/json`` (optionally ``; charset=UTF-8``) and the body a JSON object."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.lower() not in JSON_CONTENT_TYPES:
        raise web.HTTPBadRequest(
            text="expected a request body with Content-Type: application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


def _host_without_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def check_origin(request: web.BaseRequest) -> None:
    """The WebSocket ``Origin`` check of §1.4, before any upgrade: no ``Origin`` passes
    (not a browser); otherwise its hostname must equal the ``Host`` header's, ports and
    paths ignored (403 if not); an unparseable ``Origin`` or a missing ``Host`` is 400."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = request.headers.get("Host")
    if not host:
        raise web.HTTPBadRequest(text="missing Host header")
    try:
        origin_host = urlsplit(origin).hostname
    except ValueError:
        origin_host = None
    if not origin_host:
        raise web.HTTPBadRequest(text="bad Origin header")
    if origin_host.lower() != _host_without_port(host).lower():
        raise web.HTTPForbidden(text="Origin does not match Host: cross-site request refused")


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (an IP address, IPv4-mapped IPv6 included, or ``localhost``) is
    this machine's loopback; anything else, or nothing, is not."""
    if not address:
        return False
    if address.lower() == "localhost" or address.lower().endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _limit_key(address: str) -> str:
    """An address as the rate limiter counts it: IPv6 by its /64 (one machine's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# ---- rate limiting ------------------------------------------------------------------------


class LoginRateLimiter:
    """Failed logins (and Basic credentials) per username and per client address, in a
    sliding window.  Thread-safe: the blocking parts of ``Auth`` run in executor threads.

    ``acquire`` counts an attempt as a failure at once (so concurrent guesses can't all
    pass the check before the first failure is recorded) or says how long to wait;
    ``forgive`` takes a successful attempt back out.
    """

    def __init__(
        self,
        *,
        per_username: int = 5,
        per_address: int = 20,
        window_sec: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.per_username = per_username
        self.per_address = per_address
        self.window_sec = window_sec
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> collections.deque[float]:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = collections.deque()
        while times and times[0] <= now - self.window_sec:
            times.popleft()
        return times

    def acquire(self, username: str, address: str | None) -> int | None:
        """None, having counted this attempt as failed; or the whole seconds to wait (the
        ``Retry-After``), counting nothing."""
        with self._lock:
            now = self.clock()
            keys = [(("user", username), self.per_username)]
            if address:
                keys.append((("addr", _limit_key(address)), self.per_address))
            waits = []
            for key, limit in keys:
                times = self._recent(key, now)
                if len(times) >= limit:
                    waits.append(times[len(times) - limit] + self.window_sec - now)
            if waits:
                return max(1, math.ceil(max(waits)))
            for key, _limit in keys:
                self._failures[key].append(now)
            self._prune(now)
            return None

    def forgive(self, username: str, address: str | None) -> None:
        """The attempt succeeded: the username's failures are forgotten, and this attempt
        no longer counts against the address (its earlier failures still do)."""
        with self._lock:
            self._failures.pop(("user", username), None)
            if address:
                times = self._failures.get(("addr", _limit_key(address)))
                if times:
                    times.pop()

    def _prune(self, now: float) -> None:
        if len(self._failures) <= self.max_keys:
            return
        for key in list(self._failures):
            if not self._recent(key, now):
                del self._failures[key]
        while len(self._failures) > self.max_keys:  # the oldest keys go first
            del self._failures[next(iter(self._failures))]


# ---- Auth ---------------------------------------------------------------------------------


def _too_many(retry_after: int) -> web.HTTPTooManyRequests:
    return web.HTTPTooManyRequests(
        text=f"too many failed logins; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


_SUBSET_KEYS = ("username", "disabled", "preferences", "password", "permissions")


def _parse_subset(obj: object, what: str) -> dict[str, Any]:
    """A ``UserSubset`` (§2.8) from a body: only its five keys, each of its type;
    ``permissions`` becomes a ``Permissions``.  400 otherwise."""
    if not isinstance(obj, dict):
        raise web.HTTPBadRequest(text=f"{what} must be an object")
    for key in obj:
        if key not in _SUBSET_KEYS:
            raise web.HTTPBadRequest(text=f"unknown field {key!r} in {what}")
    subset = dict(obj)
    if "username" in subset and not isinstance(subset["username"], str):
        raise web.HTTPBadRequest(text=f"{what}.username must be a string")
    if "disabled" in subset and not isinstance(subset["disabled"], bool):
        raise web.HTTPBadRequest(text=f"{what}.disabled must be true or false")
    if "preferences" in subset and not isinstance(subset["preferences"], dict):
        raise web.HTTPBadRequest(text=f"{what}.preferences must be an object")
    if "password" in subset and not (subset["password"] is None
                                     or isinstance(subset["password"], str)):
        raise web.HTTPBadRequest(text=f"{what}.password must be a string or null")
    if "permissions" in subset:
        try:
            subset["permissions"] = Permissions.from_json(subset["permissions"])
        except InvalidPermissionsError as e:
            raise web.HTTPBadRequest(text=f"{what}.permissions: {e}") from None
    return subset


def _only_keys(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise web.HTTPBadRequest(text=f"unknown field {key!r} in request body")


def user_subset_json(user: UserRow) -> dict[str, Any]:
    """A user as ``GET /api/users/`` shows them: the password censored (or null)."""
    return {
        "username": user.username,
        "disabled": user.disabled,
        "preferences": user.preferences,
        "password": "(censored)" if user.has_password else None,
        "permissions": stored_permissions(user.permissions).to_json(),
    }


class Auth:
    """Identifies callers and serves login, logout and user management for one database."""

    def __init__(
        self,
        db: Database,
        *,
        trust_forward_headers: bool = False,
        allow_unauthenticated: bool = False,
        limiter: LoginRateLimiter | None = None,
    ) -> None:
        self.users = Users(db)
        self.trust_forward_headers = trust_forward_headers
        self.allow_unauthenticated = allow_unauthenticated
        self.limiter = limiter or LoginRateLimiter()
        self._basic_key = os.urandom(32)
        self._basic_cache: collections.OrderedDict[bytes, tuple[int, str, float]] = (
            collections.OrderedDict())
        self._basic_lock = threading.Lock()

    # ---- helpers ---------------------------------------------------------------------

    @staticmethod
    async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking call (SQLite, scrypt) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def client_address(self, request: web.BaseRequest) -> str | None:
        """The client's address: the peer's, or with ``trust_forward_headers`` the one the
        proxy names (``X-Real-IP``, else the last ``X-Forwarded-For`` entry)."""
        if self.trust_forward_headers:
            real_ip = request.headers.get("X-Real-IP", "").strip()
            if real_ip:
                return real_ip
            forwarded = request.headers.get("X-Forwarded-For", "")
            if forwarded.strip():
                return forwarded.split(",")[-1].strip()
        return request.remote

    def is_loopback_client(self, request: web.BaseRequest) -> bool:
        """Whether the client is on this machine (rule 3 of the module docstring).

        Conservative where ``client_address`` can't be: with ``trust_forward_headers``,
        every address the forwarding headers name must be loopback too, since a proxy that
        sets only one of them passes a client's own value of the other along unchanged.
        """
        if not is_loopback(request.remote):
            return False
        if not self.trust_forward_headers:
            return not any(h in request.headers for h in _FORWARD_HEADERS)
        if "Forwarded" in request.headers:
            return False
        named = [request.headers.get("X-Real-IP", "")]
        named += ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
        return all(is_loopback(a.strip()) for a in named if a.strip())

    def _secure(self, request: web.BaseRequest) -> bool:
        if request.secure:
            return True
        return (self.trust_forward_headers
                and request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https")

    def session_cookie(self, raw: bytes, request: web.BaseRequest) -> str:
        """The ``Set-Cookie`` value for a new session, attributes in Moonfire's order."""
        secure = " Secure;" if self._secure(request) else ""
        return (f"{COOKIE_NAME}={encode_session_id(raw)}; HttpOnly;{secure} SameSite=Lax;"
                f" Max-Age={COOKIE_MAX_AGE}; Path=/")

    @staticmethod
    def _unauthorized(request: web.BaseRequest, message: str) -> web.HTTPUnauthorized:
        headers = {} if "Sec-Fetch-Mode" in request.headers else {"WWW-Authenticate": BASIC_REALM}
        return web.HTTPUnauthorized(text=message, headers=headers)

    # ---- identifying callers -----------------------------------------------------------

    async def caller(self, request: web.BaseRequest) -> Caller:
        """Who made ``request`` (module docstring); raises ``HTTPUnauthorized`` (text/plain),
        ``HTTPBadRequest`` for malformed Basic credentials, ``HTTPTooManyRequests``."""
        raw = session_id_from_request(request)
        basic = self._basic_credentials(request)
        return await self._run(
            self._identify, request, raw, basic, self.client_address(request),
            request.headers.get("User-Agent"), self.is_loopback_client(request),
        )

    def _basic_credentials(self, request: web.BaseRequest) -> tuple[str, str] | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise web.HTTPBadRequest(text="malformed HTTP Basic credentials") from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise web.HTTPBadRequest(text="malformed HTTP Basic credentials")
        return username, password

    def _identify(
        self,
        request: web.BaseRequest,
        raw: bytes | None,
        basic: tuple[str, str] | None,
        address: str | None,
        user_agent: str | None,
        loopback: bool,
    ) -> Caller:
        if raw is not None:
            found = self.users.authenticate_session(raw, peer_addr=address, user_agent=user_agent)
            if found is not None:
                session, user = found
                return Caller(stored_permissions(user.permissions), user, session)
            log.info("request from %s has a session cookie that is unknown, revoked or of a "
                     "disabled user; ignoring it", address)
        if basic is not None:
            return self._basic_caller(request, *basic, address)
        if not self.users.has_users():
            if loopback or self.allow_unauthenticated:
                return Caller(VIEW_PERMISSIONS, None, None)
            raise self._unauthorized(
                request, "no users exist yet, so only clients on this machine may view; "
                "add one with `moonfire user add`")
        raise self._unauthorized(
            request, "log in first (POST /api/login), or send HTTP Basic credentials")

    def _basic_memo_key(self, username: str, password: str) -> bytes:
        message = username.encode("utf-8") + b"\0" + password.encode("utf-8")
        return hmac.new(self._basic_key, message, hashlib.sha256).digest()

    def _basic_caller(self, request: web.BaseRequest, username: str, password: str,
                      address: str | None) -> Caller:
        if request.method not in ("GET", "HEAD"):
            raise self._unauthorized(
                request, "HTTP Basic credentials are accepted for GET and HEAD only; "
                "log in (POST /api/login) to make changes")
        user = self.users.find_user(username)
        memo_key = self._basic_memo_key(username, password)
        now = time.monotonic()
        with self._basic_lock:
            memo = self._basic_cache.get(memo_key)
        if (memo is not None and user is not None and not user.disabled
                and memo[0] == user.id and memo[1] == user.password_hash and memo[2] > now):
            return Caller(stored_permissions(user.permissions), user, None)
        retry_after = self.limiter.acquire(username, address)
        if retry_after is not None:
            raise _too_many(retry_after)
        if not self._password_ok(user, password):
            log.info("HTTP Basic credentials refused from %s%s", address,
                     "" if user is None else f" for user {user.username!r}")
            raise self._unauthorized(request, "incorrect username or password")
        assert user is not None and user.password_hash is not None
        self.limiter.forgive(username, address)
        with self._basic_lock:
            self._basic_cache[memo_key] = (user.id, user.password_hash, now + BASIC_CACHE_SEC)
            self._basic_cache.move_to_end(memo_key)
            while len(self._basic_cache) > BASIC_CACHE_MAX:
                self._basic_cache.popitem(last=False)
        return Caller(stored_permissions(user.permissions), user, None)

    @staticmethod
    def _password_ok(user: UserRow | None, password: str) -> bool:
        """Whether ``user`` may log in with ``password``; as slow when there is no such
        user as when there is (blocking scrypt)."""
        if user is None:
            burn_password_check(password)
            return False
        try:
            ok = user.check_password(password)
        except InvalidPasswordHashError as e:
            log.error("user %r can't log in: %s", user.username, e)
            return False
        return ok and not user.disabled

    @staticmethod
    def check_csrf(caller: Caller, body: Mapping[str, Any]) -> None:
        """A session caller's mutation must carry the session's token as ``body["csrf"]``:
        401 "csrf must be supplied" / "incorrect csrf".  Callers without a session (Basic,
        no users) may leave it out."""
        csrf = body.get("csrf")
        if csrf is not None and not isinstance(csrf, str):
            raise web.HTTPBadRequest(text="csrf must be a string")
        if caller.session is None:
            return
        if csrf is None:
            raise web.HTTPUnauthorized(text="csrf must be supplied")
        if not hmac.compare_digest(csrf.encode("utf-8"),
                                   csrf_token(caller.session.seed).encode("ascii")):
            raise web.HTTPUnauthorized(text="incorrect csrf")

    @staticmethod
    def user_json(caller: Caller) -> dict[str, Any] | None:
        """The ``user`` field of ``GET /api/`` (§2.3): None (leave it out) without a user;
        ``session`` only for a cookie session."""
        if caller.user is None:
            return None
        out: dict[str, Any] = {
            "name": caller.user.username,
            "id": caller.user.id,
            "preferences": caller.user.preferences,
        }
        if caller.session is not None:
            out["session"] = {"csrf": csrf_token(caller.session.seed)}
        return out

    # ---- routes ------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/login", self._login),
            web.route("*", "/api/login", _post_expected),
            web.post("/api/logout", self._logout),
            web.route("*", "/api/logout", _post_expected),
            web.get("/api/users/", self._list_users),
            web.post("/api/users/", self._add_user),
            web.get(r"/api/users/{id:\d+}", self._get_user),
            web.patch(r"/api/users/{id:\d+}", self._patch_user),
            web.delete(r"/api/users/{id:\d+}", self._delete_user),
        ]

    async def _login(self, request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host:
            raise web.HTTPBadRequest(text="missing Host header")
        body = await read_json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise web.HTTPBadRequest(text="login needs a username and a password (strings)")
        address = self.client_address(request)
        retry_after = self.limiter.acquire(username, address)
        if retry_after is not None:
            log.warning("login refused from %s: too many failed logins", address)
            raise _too_many(retry_after)
        user = await self._run(self.users.find_user, username)
        if not await self._run(self._password_ok, user, password):
            log.info("failed login from %s%s", address,
                     "" if user is None else f" as {user.username!r}")
            raise web.HTTPUnauthorized(text="incorrect username or password")
        assert user is not None
        self.limiter.forgive(username, address)
        raw, session = await self._run(
            self.users.create_session, user.id, domain=_host_without_port(host),
            peer_addr=address, user_agent=request.headers.get("User-Agent"),
        )
        log.info("user %r logged in from %s (session %s)", user.username, address,
                 session.short_id)
        response = web.Response(status=204, headers=NO_CACHE)
        response.headers.add("Set-Cookie", self.session_cookie(raw, request))
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_body(request)
        csrf = body.get("csrf")
        if not isinstance(csrf, str):
            raise web.HTTPBadRequest(text="logout needs the session's csrf token in the body")
        response = web.Response(status=204, headers=NO_CACHE)
        raw = session_id_from_request(request)
        if raw is None:
            return response
        address = self.client_address(request)
        user_agent = request.headers.get("User-Agent")
        found = await self._run(self.users.authenticate_session, raw, peer_addr=address,
                                user_agent=user_agent)
        if found is None:
            log.info("logout from %s with an unknown or revoked session", address)
        else:
            session, user = found
            if not hmac.compare_digest(csrf.encode("utf-8"),
                                       csrf_token(session.seed).encode("ascii")):
                raise web.HTTPBadRequest(text="logout with incorrect csrf token")
            await self._run(self.users.revoke_session, session.id_hash, "logged out",
                            peer_addr=address, user_agent=user_agent)
            log.info("user %r logged out (session %s)", user.username, session.short_id)
        response.headers.add("Set-Cookie", CLEAR_COOKIE)
        return response

    async def _list_users(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        _require_admin(caller)
        users = await self._run(self.users.list_users)
        return web.json_response(
            {"users": [{"id": u.id, "user": user_subset_json(u)} for u in users]},
            headers=NO_CACHE,
        )

    async def _add_user(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        _require_admin(caller)
        body = await read_json_body(request)
        _only_keys(body, ("csrf", "user"))
        self.check_csrf(caller, body)
        subset = _parse_subset(body.get("user"), "user")
        if "username" not in subset:
            raise web.HTTPBadRequest(text="user.username is required")
        permissions = subset.get("permissions", Permissions())
        with _user_errors():
            user = await self._run(
                self.users.add_user, subset["username"], password=subset.get("password"),
                permissions=permissions.to_json(), preferences=subset.get("preferences"),
                disabled=subset.get("disabled", False),
            )
        log.info("user %r added by %s", user.username, _who(caller))
        return web.json_response({"id": user.id}, headers=NO_CACHE)

    async def _get_user(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        user_id = int(request.match_info["id"])
        _require_self_or_admin(caller, user_id)
        with _user_errors():
            user = await self._run(self.users.get_user, user_id)
        return web.json_response(user_subset_json(user), headers=NO_CACHE)

    async def _patch_user(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        user_id = int(request.match_info["id"])
        _require_self_or_admin(caller, user_id)
        body = await read_json_body(request)
        _only_keys(body, ("csrf", "update", "precondition"))
        self.check_csrf(caller, body)
        update = _parse_subset(body["update"], "update") if "update" in body else {}
        precondition = (_parse_subset(body["precondition"], "precondition")
                        if "precondition" in body else {})
        with _user_errors():
            user = await self._run(self.users.get_user, user_id)
        admin = caller.permissions.admin_users
        if "password" in update and "password" not in precondition and not admin:
            raise web.HTTPUnauthorized(
                text="to change a password, supply the old one as precondition.password "
                "or have the adminUsers permission")
        if not admin and any(k in update for k in ("username", "permissions", "disabled")):
            raise web.HTTPUnauthorized(
                text="changing username, permissions or disabled needs the adminUsers "
                "permission")
        await self._check_precondition(request, user, precondition)
        changes: dict[str, Any] = {k: v for k, v in update.items() if k != "permissions"}
        if "permissions" in update:
            changes["permissions"] = update["permissions"].to_json()
        if changes:
            keep = caller.session.id_hash if caller.session is not None else None
            with _user_errors():
                await self._run(self.users.update_user, user_id, keep_session=keep, **changes)
            log.info("user %r changed (%s) by %s", user.username, ", ".join(sorted(changes)),
                     _who(caller))
        return web.Response(status=204, headers=NO_CACHE)

    async def _check_precondition(self, request: web.Request, user: UserRow,
                                  precondition: dict[str, Any]) -> None:
        """412 unless each field given matches the user as they are."""
        for key in ("username", "disabled", "preferences"):
            if key in precondition and precondition[key] != getattr(user, key):
                raise web.HTTPPreconditionFailed(text=f"{key} does not match")
        if ("permissions" in precondition
                and precondition["permissions"] != stored_permissions(user.permissions)):
            raise web.HTTPPreconditionFailed(text="permissions do not match")
        if "password" not in precondition:
            return
        password = precondition["password"]
        if password is None:
            if user.has_password:
                raise web.HTTPPreconditionFailed(text="password does not match")
            return
        # A guess at the password, like a login: rate-limited the same way.
        address = self.client_address(request)
        retry_after = self.limiter.acquire(user.username, address)
        if retry_after is not None:
            raise _too_many(retry_after)
        try:
            ok = await self._run(user.check_password, password)
        except InvalidPasswordHashError as e:
            log.error("user %r's password can't be checked: %s", user.username, e)
            ok = False
        if not ok:
            log.info("wrong password in a precondition for user %r from %s", user.username,
                     address)
            raise web.HTTPPreconditionFailed(text="incorrect password")
        self.limiter.forgive(user.username, address)

    async def _delete_user(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        _require_admin(caller)
        body = await read_json_body(request)
        _only_keys(body, ("csrf",))
        self.check_csrf(caller, body)
        with _user_errors():
            user = await self._run(self.users.delete_user, int(request.match_info["id"]))
        log.info("user %r deleted by %s", user.username, _who(caller))
        return web.Response(status=204, headers=NO_CACHE)


async def _post_expected(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMethodNotAllowed(request.method, ["POST"], text="POST expected")


def _require_admin(caller: Caller) -> None:
    # Moonfire answers 401 here (web-api.md §2.8), not 403.
    if not caller.permissions.admin_users:
        raise web.HTTPUnauthorized(text="requires the adminUsers permission")


def _require_self_or_admin(caller: Caller, user_id: int) -> None:
    if not caller.permissions.admin_users and (caller.user is None or caller.user.id != user_id):
        raise web.HTTPUnauthorized(
            text="must be logged in as this user or have the adminUsers permission")


def _who(caller: Caller) -> str:
    return "an unauthenticated caller" if caller.user is None else repr(caller.user.username)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Database errors about users as HTTP errors: unknown 404, invalid or duplicate 400
    (their messages never hold a password)."""
    try:
        yield
    except UnknownUserError as e:
        raise web.HTTPNotFound(text=str(e)) from None
    except (InvalidUserError, DuplicateUserError) as e:
        raise web.HTTPBadRequest(text=str(e)) from None
