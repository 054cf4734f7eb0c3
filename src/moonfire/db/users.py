"""Users of the web API and their login sessions: tables ``user`` and ``user_session``.

A user has a unique username, an optional password, a ``disabled`` flag and two JSON
objects the database stores without interpreting beyond their shape: ``permissions``
(booleans; ``moonfire.web.auth.Permissions`` knows their names) and ``preferences``
(anything the UI keeps there, web-api.md §2.8).

Passwords are hashed with the standard library's ``hashlib.scrypt`` and a random salt per
password; the parameters are stored with the hash (a PHC string,
``$scrypt$ln=15,r=8,p=1$<salt>$<key>``), so raising ``DEFAULT_SCRYPT`` later leaves old
hashes verifiable.  A password never appears in a repr, a log line or an error message:
errors about one say what is wrong with it, never what it is.

A session is what ``POST /api/login`` hands out: 48 random bytes (the cookie) of which only
the SHA-256 is stored, so a copy of the database can't be turned into logged-in cookies,
and a random ``seed`` from which the CSRF token is derived.  Sessions are revoked, not
deleted (logout, a changed password, a disabled user), so the table keeps the record of
who logged in from where; deleting a user deletes theirs.

Writes go through ``Database.transaction()``; reads take the database's own lock, as its
own reads do, so they work on a read-only open too (``moonfire user list``).  Everything
here is blocking SQLite (and, for passwords, about 0.1 s of scrypt): the web side calls it
from an executor.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .database import Database
from .errors import DatabaseError, InvalidConfigError

# ---- passwords ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptParams:
    """scrypt's cost: N = 2**log_n, block size r, parallelism p (memory is 128*r*N bytes)."""

    log_n: int = 15
    r: int = 8
    p: int = 1


#: 32 MiB and about 0.15 s per hash on a 2020s x86 core: slow enough to make a stolen
#: database expensive to guess at, cheap enough for a Raspberry Pi to log a user in.
DEFAULT_SCRYPT = ScryptParams()
#: A stored hash asking for more than this is refused rather than run (a damaged or planted
#: row must not make one login take gigabytes of memory).
MAX_SCRYPT = ScryptParams(log_n=20, r=32, p=16)
SALT_BYTES = 16
KEY_BYTES = 32
_SCHEME = "scrypt"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    n = 1 << params.log_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=params.r, p=params.p,
        maxmem=128 * params.r * (n + params.p + 2) + 4096, dklen=KEY_BYTES,
    )


def _check_password_value(password: object) -> str:
    """The password, if it is one; the error never shows it."""
    if not isinstance(password, str):
        raise InvalidUserError(f"a password must be a string, not {type(password).__name__}")
    if not password:
        raise InvalidUserError("a password must not be empty")
    return password


def hash_password(password: str, params: ScryptParams | None = None) -> str:
    """A PHC string for ``password``: a new random salt, ``params`` (default
    ``DEFAULT_SCRYPT``, read at call time) and the derived key."""
    _check_password_value(password)
    params = params or DEFAULT_SCRYPT
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(password, salt, params)
    return (f"${_SCHEME}$ln={params.log_n},r={params.r},p={params.p}"
            f"${_b64(salt)}${_b64(key)}")


def parse_password_hash(stored: str) -> tuple[ScryptParams, bytes, bytes]:
    """(parameters, salt, key) of a stored hash; ``InvalidPasswordHashError`` if it isn't
    one this module wrote or its cost is beyond ``MAX_SCRYPT``."""
    try:
        empty, scheme, param_text, salt_text, key_text = stored.split("$")
        if empty or scheme != _SCHEME:
            raise ValueError
        values = dict(item.split("=", 1) for item in param_text.split(","))
        if set(values) != {"ln", "r", "p"}:
            raise ValueError
        params = ScryptParams(int(values["ln"]), int(values["r"]), int(values["p"]))
        salt, key = _unb64(salt_text), _unb64(key_text)
    except (ValueError, binascii.Error):
        raise InvalidPasswordHashError("stored password hash is not a scrypt PHC string") from None
    if not (1 <= params.log_n <= MAX_SCRYPT.log_n and 1 <= params.r <= MAX_SCRYPT.r
            and 1 <= params.p <= MAX_SCRYPT.p) or not salt or not key:
        raise InvalidPasswordHashError(f"stored password hash has unusable parameters {params}")
    return params, salt, key


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare)."""
    params, salt, key = parse_password_hash(stored)
    if not isinstance(password, str):
        return False
    return hmac.compare_digest(_scrypt(password, salt, params), key)


_dummy_hashes: dict[ScryptParams, str] = {}


def burn_password_check(password: str) -> None:
    """Spend the time one ``verify_password`` would, for a user that doesn't exist or has no
    password, so a login's timing doesn't tell which usernames exist."""
    params = DEFAULT_SCRYPT
    if params not in _dummy_hashes:
        _dummy_hashes[params] = hash_password("not a password anyone has", params)
    verify_password(_dummy_hashes[params], password if isinstance(password, str) else "")


# ---- errors and rows -----------------------------------------------------------------------


class UnknownUserError(DatabaseError, LookupError):
    """No user has this id or username."""


class DuplicateUserError(DatabaseError):
    """A user with this username already exists."""


class InvalidUserError(InvalidConfigError):
    """A username, password, permissions or preferences value is unusable."""


class InvalidPasswordHashError(DatabaseError):
    """A stored password hash is not one this moonfire can verify (the row is damaged)."""


@dataclass(frozen=True)
class UserRow:
    """A row of ``user``; ``permissions`` and ``preferences`` are the stored JSON objects."""

    id: int
    username: str
    disabled: bool
    permissions: dict[str, bool]
    preferences: dict[str, Any]
    creation_time_sec: int
    #: The PHC string, or None: no password, so no login.  Never shown in a repr.
    password_hash: str | None = field(repr=False)

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's (False if they have none); blocking scrypt."""
        if self.password_hash is None:
            burn_password_check(password)
            return False
        return verify_password(self.password_hash, password)


_USER_COLUMNS = ("id, username, disabled, permissions, preferences, creation_time_sec,"
                 " password_hash")


def _user_from_row(row: tuple[Any, ...]) -> UserRow:
    uid, username, disabled, permissions, preferences, created, password_hash = row
    return UserRow(uid, username, bool(disabled), json.loads(permissions),
                   json.loads(preferences), created, password_hash)


@dataclass(frozen=True)
class SessionRow:
    """A row of ``user_session``.  The hash and the seed are secrets' relatives: left out
    of the repr (``short_id`` names the session in logs)."""

    id_hash: bytes = field(repr=False)
    user_id: int
    seed: bytes = field(repr=False)
    #: The ``Host`` the login came to, without its port.
    domain: str | None
    creation_time_sec: int
    creation_peer_addr: str | None
    creation_user_agent: str | None
    last_use_time_sec: int | None
    last_use_peer_addr: str | None
    last_use_user_agent: str | None
    use_count: int
    revocation_time_sec: int | None
    revocation_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revocation_time_sec is not None

    @property
    def short_id(self) -> str:
        """Eight hex digits of the hash: enough to tell sessions apart in a log."""
        return self.id_hash[:4].hex()


_SESSION_COLUMNS = (
    "session_id_hash, user_id, seed, domain, creation_time_sec, creation_peer_addr,"
    " creation_user_agent, last_use_time_sec, last_use_peer_addr, last_use_user_agent,"
    " use_count, revocation_time_sec, revocation_reason"
)

#: Random bytes in a session id (the cookie ``s``, web-api.md §1.2) and in a CSRF seed.
SESSION_ID_BYTES = 48
SEED_BYTES = 32
#: A user agent longer than this is stored cut short.
MAX_USER_AGENT = 512
MAX_USERNAME = 64
#: How stale a session's recorded last use may get before a use writes it again: a write
#: per request would cost an fsync per video range request.
TOUCH_INTERVAL_SEC = 60


def session_id_hash(raw_session_id: bytes) -> bytes:
    """What ``user_session`` stores of a session id: its SHA-256."""
    return hashlib.sha256(raw_session_id).digest()


class _Keep(enum.Enum):
    KEEP = "keep"


#: ``update_user``'s "leave this as it is" (None means "no password" for ``password``).
KEEP = _Keep.KEEP


def validate_username(username: object) -> str:
    """A username: 1 to 64 characters, no surrounding spaces, no control characters and no
    ``:`` (HTTP Basic credentials are ``username:password``)."""
    if not isinstance(username, str):
        raise InvalidUserError(f"a username must be a string, not {type(username).__name__}")
    if not username or username != username.strip() or len(username) > MAX_USERNAME:
        raise InvalidUserError(f"a username must be 1 to {MAX_USERNAME} characters without "
                               f"surrounding spaces, got {username!r}")
    if ":" in username or any(ord(c) < 32 or ord(c) == 127 for c in username):
        raise InvalidUserError(f"a username may not contain ':' or control characters, "
                               f"got {username!r}")
    return username


def _permissions_text(permissions: Mapping[str, bool]) -> str:
    if not isinstance(permissions, Mapping) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in permissions.items()
    ):
        raise InvalidUserError("permissions must be an object of booleans")
    return json.dumps(dict(permissions))


def _preferences_text(preferences: Mapping[str, Any]) -> str:
    if not isinstance(preferences, Mapping):
        raise InvalidUserError("preferences must be an object")
    try:
        return json.dumps(dict(preferences), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidUserError(f"preferences must be plain JSON: {e}") from None


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_USER_AGENT]


# ---- the queries ---------------------------------------------------------------------------


def count_users(db: Database) -> int:
    """How many users exist (disabled ones included); 0 leaves the API to loopback."""
    return Users(db).count()



class Users:
    """The users and sessions of one ``Database``."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The database's connection under its lock, as ``Database``'s own reads use it."""
        with self.db._lock:
            yield self.db._conn

    # ---- users ---------------------------------------------------------------------------

    def has_users(self) -> bool:
        """Whether any user exists (disabled ones count): then every API caller needs one."""
        with self._read() as conn:
            return conn.execute("select exists (select 1 from user)").fetchone()[0] == 1

    def count(self) -> int:
        """How many users exist, disabled ones included."""
        with self._read() as conn:
            return int(conn.execute("select count(*) from user").fetchone()[0])

    def list_users(self) -> list[UserRow]:
        """All users, by id."""
        with self._read() as conn:
            rows = conn.execute(f"select {_USER_COLUMNS} from user order by id").fetchall()
        return [_user_from_row(row) for row in rows]

    def get_user(self, id_or_name: int | str) -> UserRow:
        """The user with this id (``int``) or username (``str``)."""
        with self._read() as conn:
            return _lookup_user(conn, id_or_name)

    def find_user(self, username: str) -> UserRow | None:
        """The user with this username, or None."""
        with self._read() as conn:
            row = conn.execute(f"select {_USER_COLUMNS} from user where username = ?",
                               (username,)).fetchone()
        return None if row is None else _user_from_row(row)

    def add_user(
        self,
        username: str,
        *,
        password: str | None = None,
        permissions: Mapping[str, bool] | None = None,
        preferences: Mapping[str, Any] | None = None,
        disabled: bool = False,
    ) -> UserRow:
        """A new user; without a password they can't log in until one is set."""
        validate_username(username)
        permissions_text = _permissions_text(permissions or {})
        preferences_text = _preferences_text(preferences or {})
        if not isinstance(disabled, bool):
            raise InvalidUserError("disabled must be true or false")
        password_hash = None if password is None else hash_password(password)  # no lock held
        with self.db.transaction() as tx:
            _refuse_duplicate_username(tx.conn, username, except_id=None)
            cursor = tx.conn.execute(
                "insert into user (username, password_hash, disabled, permissions,"
                " preferences, creation_time_sec) values (?, ?, ?, ?, ?, ?)",
                (username, password_hash, int(disabled), permissions_text, preferences_text,
                 self._now()),
            )
            user_id = cursor.lastrowid
        assert user_id is not None
        return self.get_user(user_id)

    def update_user(
        self,
        id_or_name: int | str,
        *,
        username: str | _Keep = KEEP,
        password: str | None | _Keep = KEEP,
        permissions: Mapping[str, bool] | _Keep = KEEP,
        preferences: Mapping[str, Any] | _Keep = KEEP,
        disabled: bool | _Keep = KEEP,
        keep_session: bytes | None = None,
    ) -> UserRow:
        """Change what is given (``password=None`` removes the password).

        A new (or removed) password revokes the user's sessions but ``keep_session`` (the
        hash of the session that made the change, so changing your own password doesn't
        log you out); disabling a user revokes all of them.
        """
        changes: dict[str, Any] = {}
        if username is not KEEP:
            changes["username"] = validate_username(username)
        if permissions is not KEEP:
            changes["permissions"] = _permissions_text(permissions)
        if preferences is not KEEP:
            changes["preferences"] = _preferences_text(preferences)
        if disabled is not KEEP:
            if not isinstance(disabled, bool):
                raise InvalidUserError("disabled must be true or false")
            changes["disabled"] = int(disabled)
        if password is not KEEP:
            changes["password_hash"] = None if password is None else hash_password(password)
        with self.db.transaction() as tx:
            user = _lookup_user(tx.conn, id_or_name)
            if "username" in changes:
                _refuse_duplicate_username(tx.conn, changes["username"], except_id=user.id)
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                tx.conn.execute(f"update user set {assignments} where id = ?",
                                (*changes.values(), user.id))
            now = self._now()
            if disabled is True:
                _revoke_user_sessions(tx.conn, user.id, "user disabled", now, except_hash=None)
            elif password is not KEEP:
                _revoke_user_sessions(tx.conn, user.id, "password changed", now,
                                      except_hash=keep_session)
        return self.get_user(user.id)

    def delete_user(self, id_or_name: int | str) -> UserRow:
        """Remove a user and every session they had."""
        with self.db.transaction() as tx:
            user = _lookup_user(tx.conn, id_or_name)
            tx.conn.execute("delete from user_session where user_id = ?", (user.id,))
            tx.conn.execute("delete from user where id = ?", (user.id,))
        return user

    # ---- sessions ------------------------------------------------------------------------

    def create_session(
        self,
        user_id: int,
        *,
        domain: str | None = None,
        peer_addr: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[bytes, SessionRow]:
        """A new session for the user: (the raw 48-byte session id for the cookie, the row).

        The raw id is returned once and stored nowhere."""
        raw = os.urandom(SESSION_ID_BYTES)
        id_hash = session_id_hash(raw)
        with self.db.transaction() as tx:
            _lookup_user(tx.conn, user_id)
            tx.conn.execute(
                "insert into user_session (session_id_hash, user_id, seed, domain,"
                " creation_time_sec, creation_peer_addr, creation_user_agent)"
                " values (?, ?, ?, ?, ?, ?, ?)",
                (id_hash, user_id, os.urandom(SEED_BYTES), domain, self._now(), peer_addr,
                 _clip(user_agent)),
            )
        session = self.get_session(id_hash)
        assert session is not None
        return raw, session

    def get_session(self, id_hash: bytes) -> SessionRow | None:
        """The session with this hash, revoked or not; None if there is none."""
        with self._read() as conn:
            row = conn.execute(
                f"select {_SESSION_COLUMNS} from user_session where session_id_hash = ?",
                (id_hash,),
            ).fetchone()
        return None if row is None else SessionRow(*row)

    def authenticate_session(
        self,
        raw_session_id: bytes,
        *,
        peer_addr: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[SessionRow, UserRow] | None:
        """The live session with this raw id and its user, or None if it is unknown,
        revoked or its user disabled.  Records the use (at most once a ``TOUCH_INTERVAL_SEC``
        per session, and not on a read-only database)."""
        id_hash = session_id_hash(raw_session_id)
        with self._read() as conn:
            row = conn.execute(
                f"select {', '.join('s.' + c.strip() for c in _SESSION_COLUMNS.split(','))},"
                f" {', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))}"
                " from user_session s join user u on u.id = s.user_id"
                " where s.session_id_hash = ?",
                (id_hash,),
            ).fetchone()
        if row is None:
            return None
        n = len(_SESSION_COLUMNS.split(","))
        session, user = SessionRow(*row[:n]), _user_from_row(row[n:])
        if session.revoked or user.disabled:
            return None
        now = self._now()
        last = session.last_use_time_sec
        if not self.db.read_only and (last is None or now - last >= TOUCH_INTERVAL_SEC):
            with self.db.transaction() as tx:
                tx.conn.execute(
                    "update user_session set last_use_time_sec = ?, last_use_peer_addr = ?,"
                    " last_use_user_agent = ?, use_count = use_count + 1"
                    " where session_id_hash = ?",
                    (now, peer_addr, _clip(user_agent), id_hash),
                )
        return session, user

    def revoke_session(
        self,
        id_hash: bytes,
        reason: str,
        *,
        peer_addr: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Revoke one session; False if it doesn't exist or already was."""
        with self.db.transaction() as tx:
            count = tx.conn.execute(
                "update user_session set revocation_time_sec = ?, revocation_reason = ?,"
                " revocation_peer_addr = ?, revocation_user_agent = ?"
                " where session_id_hash = ? and revocation_time_sec is null",
                (self._now(), reason, peer_addr, _clip(user_agent), id_hash),
            ).rowcount
        return count == 1

    def revoke_user_sessions(self, user_id: int, reason: str, *,
                             except_hash: bytes | None = None) -> int:
        """Revoke every live session of the user (but ``except_hash``); how many."""
        with self.db.transaction() as tx:
            return _revoke_user_sessions(tx.conn, user_id, reason, self._now(), except_hash)

    def list_sessions(self, user_id: int, *, include_revoked: bool = False) -> list[SessionRow]:
        """The user's sessions (live ones only, unless told), oldest first."""
        live = "" if include_revoked else " and revocation_time_sec is null"
        with self._read() as conn:
            rows = conn.execute(
                f"select {_SESSION_COLUMNS} from user_session where user_id = ?{live}"
                " order by creation_time_sec, session_id_hash",
                (user_id,),
            ).fetchall()
        return [SessionRow(*row) for row in rows]


def _lookup_user(conn: sqlite3.Connection, id_or_name: int | str) -> UserRow:
    if isinstance(id_or_name, str):
        column, missing = "username", f"no user {id_or_name!r}"
    elif isinstance(id_or_name, int) and not isinstance(id_or_name, bool):
        column, missing = "id", f"no user with id {id_or_name}"
    else:
        raise TypeError(f"a user is named by id (int) or username (str), not {id_or_name!r}")
    row = conn.execute(f"select {_USER_COLUMNS} from user where {column} = ?",
                       (id_or_name,)).fetchone()
    if row is None:
        raise UnknownUserError(missing)
    return _user_from_row(row)


def _refuse_duplicate_username(conn: sqlite3.Connection, username: str,
                               except_id: int | None) -> None:
    row = conn.execute("select id from user where username = ?", (username,)).fetchone()
    if row is not None and row[0] != except_id:
        raise DuplicateUserError(f"user {username!r} already exists")


def _revoke_user_sessions(conn: sqlite3.Connection, user_id: int, reason: str, now: int,
                          except_hash: bytes | None) -> int:
    return conn.execute(
        "update user_session set revocation_time_sec = ?, revocation_reason = ?"
        " where user_id = ? and revocation_time_sec is null and session_id_hash is not ?",
        (now, reason, user_id, except_hash),
    ).rowcount
