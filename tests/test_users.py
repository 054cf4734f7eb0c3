"""Users and sessions in the database (``moonfire.db.users``) and ``moonfire user``.

Passwords: stdlib scrypt with a salt per password and the parameters stored beside the
hash, never in a repr, an output line or an error.  Sessions: only the SHA-256 of the
cookie's 48 random bytes is stored; revocation by password change, disabling and
deletion.  The CLI runs in-process (``tests.support.cli.moonfire``) with stdin replaced,
and once as a real process with a piped password.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from moonfire.db import Database, InvalidConfigError
from moonfire.db import users as users_module
from moonfire.db.users import (
    KEEP,
    SESSION_ID_BYTES,
    TOUCH_INTERVAL_SEC,
    DuplicateUserError,
    InvalidPasswordHashError,
    InvalidUserError,
    ScryptParams,
    UnknownUserError,
    Users,
    count_users,
    hash_password,
    parse_password_hash,
    session_id_hash,
    verify_password,
)
from moonfire.errors import MoonfireError
from moonfire.storage import data_dir as datadir
from tests.support.cli import moonfire, moonfire_process
from tests.support.implementations import TESTDATA

CHEAP = ScryptParams(log_n=4, r=8, p=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """Hashes made during a test cost N = 16, not 32768 (the machine is shared); hashes
    keep their own parameters, so verification still runs what the hash says."""
    monkeypatch.setattr(users_module, "DEFAULT_SCRYPT", CHEAP)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path):
    with Database.create(tmp_path / "db", str(tmp_path / "sample")) as db:
        yield db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(db, clock) -> Users:
    return Users(db, clock=clock)


# ---- passwords ----------------------------------------------------------------------------


def test_a_hash_is_a_phc_string_with_its_own_salt_and_parameters():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second  # a fresh salt each time
    for stored in (first, second):
        assert stored.startswith("$scrypt$ln=4,r=8,p=1$")
        params, salt, key = parse_password_hash(stored)
        assert params == CHEAP and len(salt) == 16 and len(key) == 32
        assert key == hashlib.scrypt(PASSWORD.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
        assert PASSWORD not in stored
        assert verify_password(stored, PASSWORD)
        assert not verify_password(stored, PASSWORD + " ")
        assert not verify_password(stored, "")


def test_a_hash_stays_verifiable_when_the_default_cost_changes(monkeypatch):
    old = hash_password(PASSWORD)
    monkeypatch.setattr(users_module, "DEFAULT_SCRYPT", ScryptParams(log_n=5, r=4, p=2))
    new = hash_password(PASSWORD)
    assert new.startswith("$scrypt$ln=5,r=4,p=2$")
    assert verify_password(old, PASSWORD) and verify_password(new, PASSWORD)


def test_the_default_cost_is_the_documented_one():
    assert ScryptParams() == ScryptParams(log_n=15, r=8, p=1)


@pytest.mark.parametrize("stored", [
    "", "plaintext", "$pbkdf2$ln=4,r=8,p=1$c2FsdA$a2V5", "$scrypt$ln=4,r=8$c2FsdA$a2V5",
    "$scrypt$ln=4,r=8,p=1$not base64!$a2V5", "$scrypt$ln=21,r=8,p=1$c2FsdA$a2V5",
    "$scrypt$ln=4,r=8,p=0$c2FsdA$a2V5", "$scrypt$ln=4,r=8,p=1$$a2V5",
])
def test_a_damaged_or_too_costly_hash_is_refused_not_run(stored):
    with pytest.raises(InvalidPasswordHashError) as caught:
        verify_password(stored, PASSWORD)
    assert isinstance(caught.value, MoonfireError)


@pytest.mark.parametrize("password", ["", None, 12345, b"bytes"])
def test_a_bad_password_value_is_refused_without_echoing_it(password):
    with pytest.raises(InvalidUserError) as caught:
        hash_password(password)  # type: ignore[arg-type]
    if password:
        assert str(password) not in str(caught.value)


# ---- users --------------------------------------------------------------------------------


def test_add_get_list_and_count_users(db, users, clock):
    assert not users.has_users() and count_users(db) == 0 and users.list_users() == []
    alice = users.add_user("alice", password=PASSWORD, permissions={"adminUsers": True},
                           preferences={"theme": "dark"})
    bob = users.add_user("bob")
    assert users.has_users() and count_users(db) == 2
    assert [u.username for u in users.list_users()] == ["alice", "bob"]
    assert users.get_user(alice.id) == users.get_user("alice") == alice
    assert users.find_user("carol") is None
    assert alice.permissions == {"adminUsers": True}
    assert alice.preferences == {"theme": "dark"}
    assert alice.creation_time_sec == int(clock.now)
    assert alice.has_password and alice.check_password(PASSWORD)
    assert not alice.check_password("wrong")
    assert not bob.has_password and not bob.check_password("")
    assert bob.permissions == {} and not bob.disabled


def test_reprs_never_show_a_password_or_its_hash(users):
    alice = users.add_user("alice", password=PASSWORD)
    raw, session = users.create_session(alice.id)
    assert alice.password_hash is not None
    text = repr(alice) + repr(session)
    for secret in (PASSWORD, alice.password_hash, parse_password_hash(alice.password_hash)[2].hex(),
                   repr(session.seed), repr(session.id_hash), repr(raw)):
        assert secret not in text
    assert "alice" in repr(alice) and session.short_id == session.id_hash[:4].hex()


def test_users_are_unique_and_named_sensibly(users):
    users.add_user("alice")
    with pytest.raises(DuplicateUserError, match="'alice' already exists"):
        users.add_user("alice")
    for bad in ["", " alice", "bob ", "a:b", "tab\there", "x" * 65, 7]:
        with pytest.raises(InvalidUserError) as caught:
            users.add_user(bad)  # type: ignore[arg-type]
        assert isinstance(caught.value, InvalidConfigError)
    with pytest.raises(InvalidUserError, match="booleans"):
        users.add_user("carol", permissions={"viewVideo": "yes"})  # type: ignore[dict-item]
    with pytest.raises(InvalidUserError, match="plain JSON"):
        users.add_user("carol", preferences={"when": object()})
    assert [u.username for u in users.list_users()] == ["alice"]


def test_unknown_users_are_named_in_the_error(users):
    with pytest.raises(UnknownUserError, match="no user 'zed'"):
        users.get_user("zed")
    with pytest.raises(UnknownUserError, match="no user with id 99"):
        users.delete_user(99)
    with pytest.raises(UnknownUserError):
        users.update_user("zed", disabled=True)


def test_update_user_changes_only_what_is_given(users):
    alice = users.add_user("alice", password=PASSWORD, preferences={"a": 1})
    renamed = users.update_user(alice.id, username="alicia", permissions={"viewVideo": True})
    assert renamed.username == "alicia" and renamed.permissions == {"viewVideo": True}
    assert renamed.password_hash == alice.password_hash and renamed.preferences == {"a": 1}
    users.add_user("bob")
    with pytest.raises(DuplicateUserError):
        users.update_user("alicia", username="bob")
    assert users.update_user("alicia", username="alicia").username == "alicia"  # itself: fine
    cleared = users.update_user("alicia", password=None, preferences={})
    assert not cleared.has_password and cleared.preferences == {}
    assert users.update_user("alicia", password=KEEP) == cleared


# ---- sessions -----------------------------------------------------------------------------


def test_a_session_is_stored_only_as_the_hash_of_its_random_id(db, users, clock):
    alice = users.add_user("alice", password=PASSWORD)
    raw, session = users.create_session(alice.id, domain="nvr.example", peer_addr="127.0.0.1",
                                        user_agent="test/1")
    other, _ = users.create_session(alice.id)
    assert len(raw) == SESSION_ID_BYTES and raw != other
    assert session.id_hash == session_id_hash(raw) == hashlib.sha256(raw).digest()
    assert (session.user_id, session.domain, session.creation_peer_addr) == (
        alice.id, "nvr.example", "127.0.0.1")
    assert session.creation_time_sec == int(clock.now) and not session.revoked
    with closing(sqlite3.connect(db.path)) as conn:
        rows = conn.execute("select * from user_session").fetchall()
    assert len(rows) == 2
    assert not any(raw in bytes(value) for row in rows for value in row
                   if isinstance(value, bytes))
    found = users.authenticate_session(raw)
    assert found is not None and found[0].id_hash == session.id_hash and found[1] == alice
    assert users.authenticate_session(b"\0" * SESSION_ID_BYTES) is None


def test_a_use_is_recorded_at_most_once_a_minute(users, clock):
    alice = users.add_user("alice")
    raw, session = users.create_session(alice.id)
    assert session.use_count == 0 and session.last_use_time_sec is None
    users.authenticate_session(raw, peer_addr="::1", user_agent="curl")
    users.authenticate_session(raw, peer_addr="::2", user_agent="wget")  # too soon: not written
    after = users.get_session(session.id_hash)
    assert after is not None
    assert (after.use_count, after.last_use_time_sec, after.last_use_peer_addr,
            after.last_use_user_agent) == (1, int(clock.now), "::1", "curl")
    clock.now += TOUCH_INTERVAL_SEC
    users.authenticate_session(raw, peer_addr="::2", user_agent="wget")
    later = users.get_session(session.id_hash)
    assert later is not None
    assert (later.use_count, later.last_use_peer_addr) == (2, "::2")


def test_revoked_sessions_and_disabled_users_do_not_authenticate(users, clock):
    alice = users.add_user("alice")
    raw, session = users.create_session(alice.id)
    assert users.revoke_session(session.id_hash, "logged out", peer_addr="127.0.0.1")
    assert not users.revoke_session(session.id_hash, "again")
    assert users.authenticate_session(raw) is None
    revoked = users.get_session(session.id_hash)
    assert revoked is not None and revoked.revoked
    assert (revoked.revocation_reason, revoked.revocation_time_sec) == ("logged out",
                                                                        int(clock.now))
    assert users.list_sessions(alice.id) == []
    assert [s.id_hash for s in users.list_sessions(alice.id, include_revoked=True)] == [
        session.id_hash]

    raw2, _ = users.create_session(alice.id)
    users.update_user(alice.id, disabled=True)
    assert users.authenticate_session(raw2) is None
    users.update_user(alice.id, disabled=False)
    assert users.authenticate_session(raw2) is None, "disabling revoked it for good"


def test_a_new_password_revokes_the_other_sessions(users):
    alice = users.add_user("alice", password=PASSWORD)
    bob = users.add_user("bob", password=PASSWORD)
    mine, my_session = users.create_session(alice.id)
    elsewhere, _ = users.create_session(alice.id)
    bobs, _ = users.create_session(bob.id)
    users.update_user(alice.id, password="new one", keep_session=my_session.id_hash)
    assert users.authenticate_session(mine) is not None
    assert users.authenticate_session(elsewhere) is None
    assert users.authenticate_session(bobs) is not None
    users.update_user(alice.id, preferences={"x": 1})  # not a password change
    assert users.authenticate_session(mine) is not None
    users.update_user(alice.id, password=None)
    assert users.authenticate_session(mine) is None
    assert users.revoke_user_sessions(bob.id, "test") == 1
    assert users.authenticate_session(bobs) is None


def test_deleting_a_user_deletes_their_sessions(db, users):
    alice = users.add_user("alice")
    users.create_session(alice.id)
    users.create_session(alice.id)
    assert users.delete_user("alice") == alice
    with closing(sqlite3.connect(db.path)) as conn:
        assert conn.execute("select count(*) from user_session").fetchone() == (0,)
        assert conn.execute("pragma foreign_key_check").fetchall() == []
    with pytest.raises(UnknownUserError):
        users.create_session(alice.id)


def test_a_read_only_open_lists_users_and_authenticates_without_writing(tmp_path, users, db):
    alice = users.add_user("alice")
    raw, session = users.create_session(alice.id)
    with Database.open(db.path, read_only=True) as reader:
        ro = Users(reader)
        assert [u.username for u in ro.list_users()] == ["alice"]
        assert ro.authenticate_session(raw) is not None
    after = users.get_session(session.id_hash)
    assert after is not None and after.use_count == 0


def test_users_work_in_a_database_upgraded_from_schema_3(tmp_path):
    copy = tmp_path / "v3"
    shutil.copytree(TESTDATA / "schema-v3", copy)
    with Database.open(copy / "db") as db:
        users = Users(db)
        assert not users.has_users()
        alice = users.add_user("alice", password=PASSWORD)
        raw, _ = users.create_session(alice.id)
        assert users.authenticate_session(raw) is not None


# ---- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, capsys) -> str:
    path = str(tmp_path / "data")
    assert moonfire(capsys, "init", "--data-dir", path)[0] == 0
    return path


def with_stdin(monkeypatch, text: str, tty: bool = False) -> None:
    stdin = io.StringIO(text)
    stdin.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", stdin)


def stored_users(data_dir: str) -> dict[str, dict]:
    with datadir.open_db(data_dir, read_only=True) as db:
        return {u.username: {"permissions": u.permissions, "hash": u.password_hash,
                             "user": u} for u in Users(db).list_users()}


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    assert err.startswith("moonfire: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_user_add_with_password_on_stdin(capsys, monkeypatch, data_dir):
    with_stdin(monkeypatch, PASSWORD + "\nignored second line\n")
    code, out, err = moonfire(capsys, "user", "add", "alice", "--admin", "--password-stdin",
                              "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "added user 'alice' (id 1)" in out
    assert "from now on every API request needs a login" in out
    assert PASSWORD not in out
    with_stdin(monkeypatch, "viewer pw\r\n")
    code, out, err = moonfire(capsys, "user", "add", "cam-viewer", "--password-stdin",
                              "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "every API request" not in out
    with_stdin(monkeypatch, "tool pw\n")
    code, out, err = moonfire(capsys, "user", "add", "ffmpeg", "--view-only",
                              "--password-stdin", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "with permissions viewVideo\n" in out
    users = stored_users(data_dir)
    assert users["ffmpeg"]["permissions"] == {
        "viewVideo": True, "readCameraConfigs": False, "updateSignals": False,
        "adminUsers": False}
    assert users["alice"]["permissions"] == {
        "viewVideo": True, "readCameraConfigs": True, "updateSignals": True, "adminUsers": True}
    assert users["cam-viewer"]["permissions"] == {
        "viewVideo": True, "readCameraConfigs": True, "updateSignals": False,
        "adminUsers": False}
    assert users["alice"]["user"].check_password(PASSWORD)
    assert users["cam-viewer"]["user"].check_password("viewer pw")  # CR LF taken off


def test_user_add_prompts_twice_on_a_terminal(capsys, monkeypatch, data_dir):
    prompts: list[str] = []
    answers = iter([PASSWORD, PASSWORD, "first", "second"])

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    with_stdin(monkeypatch, "", tty=True)
    code, out, err = moonfire(capsys, "user", "add", "alice", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert prompts == ["new password for alice: ", "the same again: "]
    assert stored_users(data_dir)["alice"]["user"].check_password(PASSWORD)
    code, out, err = moonfire(capsys, "user", "add", "bob", "--data-dir", data_dir)
    one_line_error(code, err, "the two passwords differ; nothing changed")
    assert "first" not in err and "second" not in err
    assert set(stored_users(data_dir)) == {"alice"}


def test_user_add_without_a_terminal_or_a_password_is_refused(capsys, monkeypatch, data_dir):
    with_stdin(monkeypatch, PASSWORD + "\n", tty=False)
    code, _out, err = moonfire(capsys, "user", "add", "alice", "--data-dir", data_dir)
    one_line_error(code, err, "not a terminal", "--password-stdin")
    with_stdin(monkeypatch, "\n")
    code, _out, err = moonfire(capsys, "user", "add", "alice", "--password-stdin",
                               "--data-dir", data_dir)
    one_line_error(code, err, "no password on standard input")
    assert stored_users(data_dir) == {}


def test_user_add_refuses_duplicates_and_bad_names(capsys, monkeypatch, data_dir):
    with_stdin(monkeypatch, PASSWORD + "\n")
    assert moonfire(capsys, "user", "add", "alice", "--password-stdin",
                    "--data-dir", data_dir)[0] == 0
    with_stdin(monkeypatch, PASSWORD + "\n")
    code, _out, err = moonfire(capsys, "user", "add", "alice", "--password-stdin",
                               "--data-dir", data_dir)
    one_line_error(code, err, "user 'alice' already exists")
    with_stdin(monkeypatch, PASSWORD + "\n")
    code, _out, err = moonfire(capsys, "user", "add", "a:b", "--password-stdin",
                               "--data-dir", data_dir)
    one_line_error(code, err, "may not contain ':'")
    assert PASSWORD not in err


def test_user_list_table_and_json(capsys, monkeypatch, data_dir):
    code, out, err = moonfire(capsys, "user", "list", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "no users: only clients on this machine may view" in out
    with_stdin(monkeypatch, PASSWORD + "\n")
    moonfire(capsys, "user", "add", "alice", "--admin", "--password-stdin", "--data-dir", data_dir)
    with datadir.open_db(data_dir) as db:
        users = Users(db)
        users.add_user("bob", disabled=True)
        users.create_session(users.get_user("alice").id)
    code, out, err = moonfire(capsys, "user", "list", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "USERNAME", "PERMISSIONS", "PASSWORD", "DISABLED",
                                "SESSIONS"]
    assert lines[1].split() == ["1", "alice", "viewVideo,", "readCameraConfigs,",
                                "updateSignals,", "adminUsers", "set", "no", "1"]
    assert lines[2].split() == ["2", "bob", "none", "none", "yes", "0"]
    code, out, err = moonfire(capsys, "user", "list", "--json", "--data-dir", data_dir)
    listed = json.loads(out)
    assert [(u["username"], u["password"], u["disabled"], u["sessions"]) for u in listed] == [
        ("alice", True, False, 1), ("bob", False, True, 0)]
    assert "$scrypt$" not in out and PASSWORD not in out


def test_user_passwd_changes_the_password_and_ends_sessions(capsys, monkeypatch, data_dir):
    with_stdin(monkeypatch, PASSWORD + "\n")
    moonfire(capsys, "user", "add", "alice", "--password-stdin", "--data-dir", data_dir)
    with datadir.open_db(data_dir) as db:
        raw, _ = Users(db).create_session(1)
    with_stdin(monkeypatch, "brand new\n")
    code, out, err = moonfire(capsys, "user", "passwd", "alice", "--password-stdin",
                              "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert out == "password of 'alice' changed; 1 session(s) ended\n"
    alice = stored_users(data_dir)["alice"]["user"]
    assert alice.check_password("brand new") and not alice.check_password(PASSWORD)
    with datadir.open_db(data_dir) as db:
        assert Users(db).authenticate_session(raw) is None
    code, _out, err = moonfire(capsys, "user", "passwd", "zed", "--password-stdin",
                               "--data-dir", data_dir)
    one_line_error(code, err, "no user 'zed'")


def test_user_remove(capsys, monkeypatch, data_dir):
    with_stdin(monkeypatch, PASSWORD + "\n")
    moonfire(capsys, "user", "add", "alice", "--password-stdin", "--data-dir", data_dir)
    with datadir.open_db(data_dir) as db:
        Users(db).create_session(1)
    code, out, err = moonfire(capsys, "user", "remove", "alice", "--data-dir", data_dir)
    assert (code, err) == (0, "")
    assert "removed user 'alice'; 1 session(s) ended" in out
    assert "no users left" in out
    assert stored_users(data_dir) == {}
    code, _out, err = moonfire(capsys, "user", "remove", "alice", "--data-dir", data_dir)
    one_line_error(code, err, "no user 'alice'")


def test_user_add_as_a_real_process_with_a_piped_password(tmp_path):
    """The real command with the real scrypt cost: the password arrives through a pipe and
    shows up nowhere in the output."""
    data_dir = str(tmp_path / "data")
    assert moonfire_process("init", "--data-dir", data_dir).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "moonfire", "user", "add", "alice", "--admin",
         "--password-stdin", "--data-dir", data_dir],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    alice = stored_users(data_dir)["alice"]["user"]
    assert alice.password_hash is not None
    assert alice.password_hash.startswith("$scrypt$ln=15,r=8,p=1$")
    assert alice.check_password(PASSWORD)
