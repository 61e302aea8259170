"""``rentgate grid assign|unassign|list``: which coordinators work which
grids, run against the database directly (docs/grid.md, "CLI").

Messages name grids by code and users by username, as the person typed
them: the checks here run before grids.assign's own (whose texts are for the
API, which names users by id)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr

if TYPE_CHECKING:
    import sqlalchemy as sa

from server.cli_support import CommandRefused, level_name, role_name, run_in_transaction
from server.cli_support import action as _action

ACTOR = "cli:grid"


def register(subparsers: Any) -> None:
    grid = subparsers.add_parser("grid", help="coordinators of grids: assign, unassign, list",
                                 description="Which grid coordinators (网格员) work which grids.")
    sub = grid.add_subparsers(dest="grid_command", required=True, metavar="ACTION")
    for name, func, text in (("assign", _assign, "assign a coordinator to a grid"),
                             ("unassign", _unassign, "take a coordinator off a grid")):
        parser = _action(sub, name, func, text)
        parser.add_argument("--grid", required=True, metavar="CODE", help="the grid's area code")
        parser.add_argument("--user", required=True, metavar="NAME", help="the coordinator's username")
    listing = _action(sub, "list", _list, "grids with their coordinators")
    listing.add_argument("--grid", metavar="CODE", help="only this grid")


def _run(args: argparse.Namespace, work: Callable[[sa.Connection, datetime], dict[str, Any]],
         text: Callable[[dict[str, Any]], str]) -> int:
    from server.errors import ServerError

    return run_in_transaction(args, f"grid {args.grid_command}", work, text, (ServerError,))


def _grid(conn: sa.Connection, code: str) -> int:
    from sqlalchemy import select

    from server.db.models import areas

    row = conn.execute(select(areas.c.id, areas.c.level).where(areas.c.code == code)).first()
    if row is None:
        raise CommandRefused(tr(f"没有编码为 {code} 的网格：`rentgate grid list` 列出所有网格的编码",
                                f"there is no grid with the code {code}: `rentgate grid list` shows the grids' codes"))
    if row.level != "grid":
        raise CommandRefused(tr(f"{code} 是{level_name(row.level)}，不是网格：请填网格的编码",
                                f"{code} is {level_name(row.level)}, not a grid: give a grid's code"))
    return int(row.id)


def _coordinator(conn: sa.Connection, username: str) -> int:
    from sqlalchemy import select

    from server.db.models import users

    row = conn.execute(select(users.c.id, users.c.role, users.c.disabled_at)
                       .where(users.c.username == username)).first()
    if row is None:
        raise CommandRefused(tr(f"没有用户 {username}：`rentgate user list` 列出所有用户",
                                f"there is no user {username}: `rentgate user list` shows the users"))
    if row.role != "coordinator":
        raise CommandRefused(tr(f"用户 {username} 是{role_name(row.role)}，只有网格员可以分配到网格",
                                f"{username} is {role_name(row.role)}; only coordinators can be assigned to a grid"))
    if row.disabled_at is not None:
        raise CommandRefused(tr(f"用户 {username} 已停用，不能分配到网格",
                                f"{username} is disabled and cannot be assigned to a grid"))
    return int(row.id)


def _assign(args: argparse.Namespace) -> int:
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id, user_id = _grid(conn, args.grid), _coordinator(conn, args.user)
        created = grids.assign(conn, now, ACTOR, grid_id, user_id)
        return {"grid": args.grid, "grid_id": grid_id, "user": args.user, "user_id": user_id, "created": created}

    def text(d: dict[str, Any]) -> str:
        if d["created"]:
            return tr(f"已把 {d['user']} 分配到网格 {d['grid']}", f"{d['user']} assigned to grid {d['grid']}")
        return tr(f"{d['user']} 已经负责网格 {d['grid']}", f"{d['user']} already works grid {d['grid']}")

    return _run(args, work, text)


def _unassign(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.db.models import grid_coordinators, users
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id = _grid(conn, args.grid)
        found = conn.execute(select(users.c.id).where(users.c.username == args.user)).scalar()
        user_id = None if found is None else int(found)
        works = user_id is not None and conn.execute(select(grid_coordinators.c.user_id).where(
            grid_coordinators.c.grid_id == grid_id, grid_coordinators.c.user_id == user_id)).first() is not None
        if user_id is None or not works:
            raise CommandRefused(tr(f"{args.user} 本来就不负责网格 {args.grid}，没有可取消的分配",
                                    f"{args.user} does not work grid {args.grid}: there is nothing to take off"))
        grids.unassign(conn, now, ACTOR, grid_id, user_id)
        return {"grid": args.grid, "grid_id": grid_id, "user": args.user, "user_id": user_id}

    return _run(args, work, lambda d: tr(f"{d['user']} 不再负责网格 {d['grid']}",
                                         f"{d['user']} no longer works grid {d['grid']}"))


def _list(args: argparse.Namespace) -> int:
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id = _grid(conn, args.grid) if args.grid else None
        return {"grids": grids.list_assignments(conn, grid_id=grid_id)}

    def text(doc: dict[str, Any]) -> str:
        nobody = tr("（还没有网格员）", "(no coordinator yet)")
        lines = [f"{g['code']}  {g['name']}: " + (", ".join(c["username"] for c in g["coordinators"]) or nobody)
                 for g in doc["grids"]]
        return "\n".join(lines) or tr("还没有网格：网格随地址一起导入（rentgate import addresses）",
                                      "no grids yet: grids come with the addresses (rentgate import addresses)")

    return _run(args, work, text)
