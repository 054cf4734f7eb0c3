"""``moonfire user add|list|remove|passwd``: the people (and tools) allowed into the web API.

As soon as one user exists, every ``/api/`` request needs a login (a session cookie, or
HTTP Basic credentials for tools such as curl and ffmpeg; ``moonfire.web.auth``), and
these commands work while ``moonfire run`` is serving: the server reads the users table on
every request.  A plain user may view video and read camera settings; ``--admin`` adds
managing users and updating signals; ``--view-only`` (for a tool's own user) leaves only
viewing video.

Passwords are asked for twice on a terminal (not echoed), or read as one line from
standard input with ``--password-stdin`` (scripts: ``printf %s "$PW" | moonfire user add
NAME --password-stdin``); they never appear on the command line, in output or in errors.
A changed password logs the user's sessions out.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from moonfire.cli.main import CommandError, add_data_dir_argument, command_help
from moonfire.db.users import Users
from moonfire.storage import data_dir as datadir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "user",
        help=command_help("user"),
        description="Manage who may use the web API. Once any user exists, every API "
        "request needs a login.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="add a user",
        description="Add a user who may view video and camera settings (with --admin: "
        "also manage users and update signals). Asks for the password on a terminal.",
    )
    add_data_dir_argument(add)
    add.add_argument("name", help="the username (no ':' and no surrounding spaces)")
    which = add.add_mutually_exclusive_group()
    which.add_argument("--admin", action="store_true",
                       help="all permissions, including managing users")
    which.add_argument("--view-only", action="store_true",
                       help="only viewing video, not camera settings: for tools such as "
                       "ffmpeg or a home-automation system")
    _add_password_stdin(add)
    add.set_defaults(func=add_user)

    ls = actions.add_parser("list", help="list users",
                            description="List each user with their permissions and sessions.")
    add_data_dir_argument(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=list_users)

    remove = actions.add_parser("remove", help="remove a user and end their sessions",
                                description="Remove a user; their sessions end at once.")
    add_data_dir_argument(remove)
    remove.add_argument("name", help="the user to remove")
    remove.set_defaults(func=remove_user)

    passwd = actions.add_parser(
        "passwd",
        help="set a user's password",
        description="Set a user's password (asked for on a terminal); their sessions end.",
    )
    add_data_dir_argument(passwd)
    passwd.add_argument("name", help="the user")
    _add_password_stdin(passwd)
    passwd.set_defaults(func=set_password)


def _add_password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of standard input instead of asking",
    )


def read_password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin (``--password-stdin``), or asked twice with
    ``getpass`` when stdin is a terminal.  Errors never contain it."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise CommandError("no password on standard input (the first line is empty)")
        return password
    if not sys.stdin.isatty():
        raise CommandError("standard input is not a terminal, so there is no one to ask for "
                           "a password; pipe it in with --password-stdin")
    first = getpass.getpass(f"new password for {args.name}: ")
    if not first:
        raise CommandError("empty password; nothing changed")
    if getpass.getpass("the same again: ") != first:
        raise CommandError("the two passwords differ; nothing changed")
    return first


def add_user(args: argparse.Namespace) -> int:
    from moonfire.web.auth import (  # aiohttp: only here
        ALL_PERMISSIONS,
        VIEW_PERMISSIONS,
        Permissions,
    )

    with datadir.open_db(args.data_dir) as db:
        users = Users(db)
        if users.find_user(args.name) is not None:  # before asking for a password in vain
            raise CommandError(f"user {args.name!r} already exists")
        password = read_password(args)
        permissions = (ALL_PERMISSIONS if args.admin else Permissions(view_video=True)
                       if args.view_only else VIEW_PERMISSIONS)
        user = users.add_user(args.name, password=password, permissions=permissions.to_json())
        first = len(users.list_users()) == 1
    print(f"added user {user.username!r} (id {user.id}) with permissions "
          f"{_permission_names(user.permissions)}")
    if first:
        print("from now on every API request needs a login")
    return 0


def _permission_names(permissions: dict[str, bool]) -> str:
    return ", ".join(name for name, granted in permissions.items() if granted) or "none"


def list_users(args: argparse.Namespace) -> int:
    with datadir.open_db(args.data_dir, read_only=True) as db:
        users = Users(db)
        rows: list[dict[str, Any]] = [
            {
                "id": u.id,
                "username": u.username,
                "permissions": u.permissions,
                "password": u.has_password,
                "disabled": u.disabled,
                "sessions": len(users.list_sessions(u.id)),
            }
            for u in users.list_users()
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no users: only clients on this machine may view (add one with "
              "`moonfire user add NAME`)")
        return 0
    header = ("ID", "USERNAME", "PERMISSIONS", "PASSWORD", "DISABLED", "SESSIONS")
    cells = [
        (str(r["id"]), r["username"], _permission_names(r["permissions"]),
         "set" if r["password"] else "none", "yes" if r["disabled"] else "no",
         str(r["sessions"]))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in (header, *cells)) for i in range(len(header))]
    for c in (header, *cells):
        print("  ".join(cell.ljust(w) for cell, w in zip(c, widths, strict=True)).rstrip())
    return 0


def remove_user(args: argparse.Namespace) -> int:
    with datadir.open_db(args.data_dir) as db:
        users = Users(db)
        sessions = len(users.list_sessions(users.get_user(args.name).id))
        user = users.delete_user(args.name)
        left = len(users.list_users())
    print(f"removed user {user.username!r}; {sessions} session(s) ended")
    if not left:
        print("no users left: only clients on this machine may view")
    return 0


def set_password(args: argparse.Namespace) -> int:
    with datadir.open_db(args.data_dir) as db:
        users = Users(db)
        user = users.get_user(args.name)  # before asking for a password in vain
        sessions = len(users.list_sessions(user.id))
        users.update_user(user.id, password=read_password(args))
    print(f"password of {user.username!r} changed; {sessions} session(s) ended")
    return 0
