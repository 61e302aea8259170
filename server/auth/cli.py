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

    from server.web.errors import InvalidInput

from rentgate.lang import count, tr
from server.cli_support import CommandRefused, role_name, run_in_transaction
from server.cli_support import action as _action

log = logging.getLogger(__name__)

GENERATED_PASSWORD_BYTES = 15  # 20 URL-safe characters, ~120 bits


def register(subparsers: Any) -> None:
    user = subparsers.add_parser("user", help="user accounts and API tokens: add, token, list, disable, revoke",
                                 description="User accounts and API tokens. The first administrator is created "
                                             "here, before anyone can log in.")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = _action(sub, "add", _add, "create a user (prints a generated password once unless --password-stdin)")
    add.add_argument("username", help="the login name: 1-64 letters, digits or _ . @ -")
    add.add_argument("--role", required=True, choices=("admin", "landlord", "coordinator", "police"),
                     help="admin (administrator), landlord, coordinator (grid coordinator) or police")
    add.add_argument("--name", help="display name (default: the username)")
    add.add_argument("--phone", help="phone number, shown to administrators")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")

    token = _action(sub, "token", _token, "print a new bearer token for a user's scripts")
    token.add_argument("username", help="whose token it is")
    token.add_argument("--label", default="cli", help="what the token is for (used by revoke --label)")
    token.add_argument("--days", type=float, default=None, help="expires after N days (default: never)")

    _action(sub, "list", _list, "list users")

    disable = _action(sub, "disable", _disable, "disable a user and end all their sessions and tokens")
    disable.add_argument("username", help="the user to disable")

    revoke = _action(sub, "revoke", _revoke, "revoke a user's bearer tokens (all, or those with --label)")
    revoke.add_argument("username", help="whose tokens to revoke")
    revoke.add_argument("--label", help="only the tokens with this label (default: all of them)")


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"rentgate user {args.user_command}: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, work: Callable[[sa.Connection, datetime], dict[str, Any]],
         text: Callable[[dict[str, Any]], str]) -> int:
    from server.web.errors import InvalidInput, NotFound, RequestError

    def worded(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        # users.py's texts are the API's (field names, English); a person
        # at the terminal gets a sentence that says what to do.
        try:
            return work(conn, now)
        except NotFound as exc:
            raise CommandRefused(tr(f"没有用户 {exc.ident}：`rentgate user list` 列出所有用户",
                                    f"there is no user {exc.ident}: `rentgate user list` shows the users")) from exc
        except InvalidInput as exc:
            raise CommandRefused(_input_problem(exc)) from exc

    return run_in_transaction(args, f"user {args.user_command}", worded, text, (RequestError, ValueError))


def _input_problem(exc: InvalidInput) -> str:
    from server.auth.passwords import MIN_PASSWORD_LENGTH

    if exc.field == "password":
        return tr(f"密码太短：至少要 {MIN_PASSWORD_LENGTH} 个字符", f"the password is too short: it needs at least "
                  f"{MIN_PASSWORD_LENGTH} characters")
    if exc.field == "username":
        return tr("用户名只能用 1 到 64 个字母、数字或 _ . @ -（不能有空格和中文）",
                  "a username is 1 to 64 letters, digits or _ . @ - (no spaces)")
    return tr(f"无法创建：{exc.problem}", f"cannot be done: {exc.problem}")


def _add(args: argparse.Namespace) -> int:
    from server.auth.users import create_user

    generated = not args.password_stdin
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES) if generated else sys.stdin.readline().rstrip("\r\n")

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        from server.auth.users import list_users

        if any(u.username == args.username for u in list_users(conn)):
            raise CommandRefused(tr(f"用户 {args.username} 已经存在：换一个用户名",
                                    f"the user {args.username} exists already: choose another username"))
        user_id = create_user(conn, now, username=args.username, password=password, role=args.role,
                              display_name=args.name or args.username, phone=args.phone)
        log.info("created user %s (id %d, role %s)", args.username, user_id, args.role)
        doc: dict[str, Any] = {"id": user_id, "username": args.username, "role": args.role}
        if generated:
            doc["password"] = password  # shown this once; only its scrypt hash is stored
        return doc

    def text(doc: dict[str, Any]) -> str:
        line = tr(f"已创建用户 {doc['username']}（{role_name(doc['role'])}）",
                  f"created {doc['username']}, {role_name(doc['role'])}")
        if not generated:
            return line
        return line + tr(f"\n密码：{doc['password']}  （只显示这一次，请马上记下）",
                         f"\npassword: {doc['password']}  (shown once; store it now)")

    return _run(args, work, text)


def _token(args: argparse.Namespace) -> int:
    from server.auth.sessions import start_session
    from server.auth.users import get_user

    if args.days is not None and args.days <= 0:
        return _fail(args, tr("--days 必须大于 0（不填则永不过期）", "--days must be more than 0 (leave it out: "
                              "the token never expires)"))

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = get_user(conn, args.username)
        if user.disabled_at is not None:
            raise CommandRefused(tr(f"用户 {args.username} 已停用，不能再发令牌",
                                    f"{args.username} is disabled: no new tokens"))
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
        rows = [f"{u['username']:<24} {role_name(u['role'])}  {u['display_name']}"
                + (tr("  （已停用）", "  (disabled)") if u["disabled_at"] else "") for u in doc["users"]]
        return "\n".join(rows) if rows else tr("还没有用户：用 `rentgate user add 用户名 --role admin` 创建第一个管理员",
                                                "no users yet; create the first administrator with "
                                                "`rentgate user add NAME --role admin`")

    return _run(args, work, text)


def _disable(args: argparse.Namespace) -> int:
    from server.auth.users import disable_user

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = disable_user(conn, now, args.username)
        assert user.disabled_at is not None
        return {"username": user.username, "disabled_at": user.disabled_at.isoformat()}

    return _run(args, work, lambda doc: tr(f"已停用 {doc['username']}，其登录和令牌都已失效",
                                           f"disabled {doc['username']}; their sessions and tokens have ended"))


def _revoke(args: argparse.Namespace) -> int:
    from server.auth.sessions import end_user_sessions
    from server.auth.users import get_user

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        user = get_user(conn, args.username)
        count = end_user_sessions(conn, user.id, kind="token", label=args.label)
        return {"username": user.username, "label": args.label, "revoked": count}

    return _run(args, work, lambda doc: tr(f"已撤销 {doc['username']} 的 {doc['revoked']} 个令牌",
                                           f"revoked {count(doc['revoked'], '', 'token')} of {doc['username']}"))
