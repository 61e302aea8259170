"""``rentgate user add|token|list|disable|revoke``: accounts and API tokens,
run against the database directly (the first administrator is created here,
before anyone can log in)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

from server.cli_support import action as _action
from server.cli_support import run_in_transaction

log = logging.getLogger(__name__)

GENERATED_PASSWORD_BYTES = 15  # 20 URL-safe characters, ~120 bits


def register(subparsers: Any) -> None:
    user = subparsers.add_parser("user", help="user accounts and API tokens: add, token, list, disable, revoke")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = _action(sub, "add", _add, "create a user (prints a generated password once unless --password-stdin)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("admin", "landlord", "coordinator", "police"))
    add.add_argument("--name", help="display name (default: the username)")
    add.add_argument("--phone")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")

    token = _action(sub, "token", _token, "print a new bearer token for a user's scripts")
    token.add_argument("username")
    token.add_argument("--label", default="cli", help="what the token is for (shown by list, used by revoke)")
    token.add_argument("--days", type=float, default=None, help="expires after N days (default: never)")

    _action(sub, "list", _list, "list users")

    disable = _action(sub, "disable", _disable, "disable a user and end all their sessions and tokens")
    disable.add_argument("username")

    revoke = _action(sub, "revoke", _revoke, "revoke a user's bearer tokens (all, or those with --label)")
    revoke.add_argument("username")
    revoke.add_argument("--label")


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"rentgate user {args.user_command}: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, work: Callable[[sa.Connection, datetime], dict[str, Any]],
         text: Callable[[dict[str, Any]], str]) -> int:
    from server.access.errors import AccessError

    return run_in_transaction(args, f"user {args.user_command}", work, text, (AccessError, ValueError))


def _add(args: argparse.Namespace) -> int:
    from server.auth.users import create_user

    generated = not args.password_stdin
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES) if generated else sys.stdin.readline().rstrip("\r\n")

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user_id = create_user(conn, now, username=args.username, password=password, role=args.role,
                              display_name=args.name or args.username, phone=args.phone)
        log.info("created user %s (id %d, role %s)", args.username, user_id, args.role)
        doc: dict[str, Any] = {"id": user_id, "username": args.username, "role": args.role}
        if generated:
            doc["password"] = password  # shown this once; only its scrypt hash is stored
        return doc

    def text(doc: dict[str, Any]) -> str:
        line = f"created {doc['role']} {doc['username']} (id {doc['id']})"
        return line + (f"\npassword: {doc['password']}  (shown once; store it now)" if generated else "")

    return _run(args, work, text)


def _token(args: argparse.Namespace) -> int:
    from server.access.errors import Conflict
    from server.auth.sessions import start_session
    from server.auth.users import get_user

    if args.days is not None and args.days <= 0:
        return _fail(args, "--days must be positive")

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = get_user(conn, args.username)
        if user.disabled_at is not None:
            raise Conflict(f"user {args.username} is disabled")
        ttl = None if args.days is None else timedelta(days=args.days)
        token = start_session(conn, now, user.id, kind="token", ttl=ttl, label=args.label)
        log.info("issued token %r for %s", args.label, args.username)
        return {"username": user.username, "label": args.label, "token": token,
                "expires_at": None if ttl is None else (now + ttl).isoformat()}

    return _run(args, work, lambda doc: str(doc["token"]))


def _list(args: argparse.Namespace) -> int:
    from server.auth.users import list_users

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        return {"users": [{"id": u.id, "username": u.username, "role": u.role, "display_name": u.display_name,
                           "created_at": u.created_at.isoformat(),
                           "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None}
                          for u in list_users(conn)]}

    def text(doc: dict[str, Any]) -> str:
        rows = [f"{u['id']:>5}  {u['username']:<24} {u['role']:<12} {u['display_name']}"
                + ("  (disabled)" if u["disabled_at"] else "") for u in doc["users"]]
        return "\n".join(rows) if rows else "no users; create one with `rentgate user add NAME --role admin`"

    return _run(args, work, text)


def _disable(args: argparse.Namespace) -> int:
    from server.auth.users import disable_user

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = disable_user(conn, now, args.username)
        assert user.disabled_at is not None
        return {"username": user.username, "disabled_at": user.disabled_at.isoformat()}

    return _run(args, work, lambda doc: f"disabled {doc['username']}; its sessions and tokens are ended")


def _revoke(args: argparse.Namespace) -> int:
    from server.auth.sessions import end_user_sessions
    from server.auth.users import get_user

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = get_user(conn, args.username)
        count = end_user_sessions(conn, user.id, kind="token", label=args.label)
        return {"username": user.username, "label": args.label, "revoked": count}

    return _run(args, work, lambda doc: f"revoked {doc['revoked']} token(s) of {doc['username']}")
