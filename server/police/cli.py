"""``rentgate police client add|rotate|revoke|list`` and ``rentgate police
officer set``: who may use the police API, with which scopes, rate,
quota, jurisdiction and webhook (docs/police.md). Run against the
database directly, by an administrator; each change is audited."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.cli_support import CommandRefused, run_in_transaction
from server.cli_support import action as _action

if TYPE_CHECKING:
    import sqlalchemy as sa

ACTOR = "cli:police"
SCOPES_HELP = ("lookup (match-style person and address checks), detail (history, open cases, full identity "
               "numbers), events (last seen, door events), batch, watch; comma or space separated")


def register(subparsers: Any) -> None:
    police = subparsers.add_parser(
        "police", help="police API clients and officers: add, rotate, revoke, list",
        description="Who may use the public-security cross-check API (docs/police.md).")
    sub = police.add_subparsers(dest="police_command", required=True, metavar="WHAT")
    client = sub.add_parser("client", help="integrating systems (OAuth2 client credentials)",
                            description="Integrating systems of public security (OAuth2 client credentials).")
    csub = client.add_subparsers(dest="client_command", required=True, metavar="ACTION")
    add = _action(csub, "add", _add, "register a client; prints its id and secret once")
    add.add_argument("name", help="who the client is, e.g. 天河分局治安系统")
    add.add_argument("--scopes", required=True, help=SCOPES_HELP)
    add.add_argument("--rate", type=int, default=600, help="requests per minute")
    add.add_argument("--quota", type=int, default=200_000, help="identity numbers checked per day")
    add.add_argument("--jurisdiction", metavar="AREA_CODE", help="only buildings in this area (default: all)")
    add.add_argument("--webhook", metavar="URL", help="where watch alerts are delivered (needed for watches)")
    rotate = _action(csub, "rotate", _rotate, "give a client a new secret; the old one works for the overlap")
    rotate.add_argument("client_id", help="the client's id (pc_...), as `rentgate police client list` shows it")
    rotate.add_argument("--overlap-hours", type=float, default=24.0,
                        help="how long the old secret keeps working (0: not at all)")
    revoke = _action(csub, "revoke", _revoke, "cut a client off at once: tokens, secrets and watches end")
    revoke.add_argument("client_id", help="the client's id (pc_...), as `rentgate police client list` shows it")
    revoke.add_argument("--yes", action="store_true", help="confirm: the client stops working immediately")
    _action(csub, "list", _list, "the clients, their scopes, limits and state")
    officer = sub.add_parser("officer", help="officers who log in (role police)",
                             description="Scopes and limits of an officer's login (a user of role police).")
    osub = officer.add_subparsers(dest="officer_command", required=True, metavar="ACTION")
    oset = _action(osub, "set", _officer, "set an officer's scopes, limits and jurisdiction")
    oset.add_argument("username", help="the officer's username (`rentgate user add NAME --role police`)")
    oset.add_argument("--scopes", required=True, help=SCOPES_HELP)
    oset.add_argument("--rate", type=int, default=20, help="requests per minute")
    oset.add_argument("--quota", type=int, default=300, help="identity numbers checked per day")
    oset.add_argument("--jurisdiction", metavar="AREA_CODE", help="only buildings in this area (default: all)")


def _run(args: argparse.Namespace, work: Callable[[sa.Connection, datetime], dict[str, Any]],
         text: Callable[[dict[str, Any]], str]) -> int:
    from server.errors import ServerError

    name = f"police {getattr(args, 'client_command', None) or getattr(args, 'officer_command', '')}"
    return run_in_transaction(args, name.strip(), work, text, (ServerError,))


def _audit(conn: sa.Connection, now: datetime, action: str, subject: str, detail: dict[str, Any]) -> None:
    from server.audit import store
    from server.audit.entries import AuditEntry

    store.append_in(conn, [AuditEntry(actor=ACTOR, action=action, subject=subject, detail=detail)], now)


def _add(args: argparse.Namespace) -> int:
    from server.police.clients import add_client

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        client_id, secret = add_client(conn, now, name=args.name, scopes=args.scopes, rate_per_min=args.rate,
                                       daily_quota=args.quota, jurisdiction=args.jurisdiction,
                                       webhook_url=args.webhook)
        _audit(conn, now, "police.client_add", f"client:{client_id}",
               {"scopes": args.scopes, "rate": args.rate, "quota": args.quota, "jurisdiction": args.jurisdiction,
                "webhook": bool(args.webhook)})
        return {"client_id": client_id, "client_secret": secret, "name": args.name}

    return _run(args, work, lambda d: tr(
        f"已登记客户端 {d['name']}\nclient_id: {d['client_id']}\nclient_secret: {d['client_secret']}\n"
        "密钥只显示这一次：请通过安全渠道交给对方，然后用 POST /api/v1/police/token 换取令牌（docs/police.md）",
        f"client {d['name']} registered\nclient_id: {d['client_id']}\nclient_secret: {d['client_secret']}\n"
        "the secret is shown only now: hand it over securely; it is exchanged for tokens at "
        "POST /api/v1/police/token (docs/police.md)"))


def _rotate(args: argparse.Namespace) -> int:
    from server.police.clients import rotate_secret

    if not 0 <= args.overlap_hours <= 24 * 30:
        print(tr("rentgate police rotate：--overlap-hours 应在 0 到 720 之间",
                 "rentgate police rotate: --overlap-hours must be 0 to 720"))
        return 2

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        secret = rotate_secret(conn, now, args.client_id, overlap=timedelta(hours=args.overlap_hours))
        until = now + timedelta(hours=args.overlap_hours)
        _audit(conn, now, "police.client_rotate", f"client:{args.client_id}", {"overlap_hours": args.overlap_hours})
        return {"client_id": args.client_id, "client_secret": secret, "old_secrets_until": until.isoformat()}

    return _run(args, work, lambda d: tr(
        f"新密钥：{d['client_secret']}\n旧密钥在 {d['old_secrets_until']} 之前仍然有效；请在此之前换上新密钥",
        f"new secret: {d['client_secret']}\nthe old secret works until {d['old_secrets_until']}; switch before then"))


def _revoke(args: argparse.Namespace) -> int:
    from server.police.clients import revoke_client

    if not args.yes:
        print(tr(f"将立即停用客户端 {args.client_id}：令牌、密钥和布控全部失效。确认请加 --yes",
                 f"this cuts client {args.client_id} off at once: its tokens, secrets and watches end. "
                 "Add --yes to confirm"))
        return 2

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        ended = revoke_client(conn, now, args.client_id)
        _audit(conn, now, "police.client_revoke", f"client:{args.client_id}", {"watches_ended": ended})
        return {"client_id": args.client_id, "watches_ended": ended}

    return _run(args, work, lambda d: tr(f"客户端 {d['client_id']} 已停用，结束了 {d['watches_ended']} 个布控",
                                         f"client {d['client_id']} revoked; {d['watches_ended']} watches ended"))


def _list(args: argparse.Namespace) -> int:
    from server.police.clients import list_clients

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        return {"clients": [{"client_id": c.client_id, "name": c.name, "scopes": c.scopes,
                             "rate_per_min": c.rate_per_min, "daily_quota": c.daily_quota,
                             "jurisdiction": c.jurisdiction, "webhook": c.webhook_url,
                             "created_at": c.created_at.isoformat(),
                             "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                             "live_secrets": c.secrets_live} for c in list_clients(conn, now)]}

    def text(d: dict[str, Any]) -> str:
        if not d["clients"]:
            return tr("还没有客户端：用 `rentgate police client add` 登记", "no clients yet: "
                      "`rentgate police client add` registers one")
        rows = []
        for c in d["clients"]:
            state = tr("已停用", "revoked") if c["revoked_at"] else tr("有效", "active")
            rows.append(f"{c['client_id']}  {c['name']}  {','.join(c['scopes'])}  {c['rate_per_min']}/min  "
                        f"{c['daily_quota']}/day  {c['jurisdiction'] or tr('全市', 'all')}  {state}")
        return "\n".join(rows)

    return _run(args, work, text)


def _officer(args: argparse.Namespace) -> int:
    from server.police.clients import set_officer

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        try:
            set_officer(conn, now, args.username, scopes=args.scopes, rate_per_min=args.rate,
                        daily_quota=args.quota, jurisdiction=args.jurisdiction)
        except LookupError:
            raise CommandRefused(tr(f"没有公安用户 {args.username}：先用 `rentgate user add {args.username} --role police`",
                                    f"there is no police user {args.username}: first "
                                    f"`rentgate user add {args.username} --role police`")) from None
        _audit(conn, now, "police.officer_set", f"officer:{args.username}",
               {"scopes": args.scopes, "rate": args.rate, "quota": args.quota, "jurisdiction": args.jurisdiction})
        return {"username": args.username, "scopes": args.scopes}

    return _run(args, work, lambda d: tr(f"已设置民警 {d['username']} 的权限：{d['scopes']}",
                                         f"officer {d['username']} may now: {d['scopes']}"))
