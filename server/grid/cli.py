"""``rentgate grid assign|unassign|list``: which coordinators work which
grids, run against the database directly (docs/grid.md, "CLI")."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

from server.cli_support import action as _action
from server.cli_support import run_in_transaction

ACTOR = "cli:grid"


def register(subparsers: Any) -> None:
    grid = subparsers.add_parser("grid", help="coordinators of grids: assign, unassign, list")
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


def _assign(args: argparse.Namespace) -> int:
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id, user_id = grids.grid_by_code(conn, args.grid), grids.user_by_name(conn, args.user)
        created = grids.assign(conn, now, ACTOR, grid_id, user_id)
        return {"grid": args.grid, "grid_id": grid_id, "user": args.user, "user_id": user_id, "created": created}

    return _run(args, work, lambda d: f"{d['user']} {'assigned to' if d['created'] else 'already works'} "
                                      f"grid {d['grid']}")


def _unassign(args: argparse.Namespace) -> int:
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id, user_id = grids.grid_by_code(conn, args.grid), grids.user_by_name(conn, args.user)
        grids.unassign(conn, now, ACTOR, grid_id, user_id)
        return {"grid": args.grid, "grid_id": grid_id, "user": args.user, "user_id": user_id}

    return _run(args, work, lambda d: f"{d['user']} no longer works grid {d['grid']}")


def _list(args: argparse.Namespace) -> int:
    from server.grid import grids

    def work(conn: sa.Connection, now: datetime) -> dict[str, Any]:
        grid_id = grids.grid_by_code(conn, args.grid) if args.grid else None
        return {"grids": grids.list_assignments(conn, grid_id=grid_id)}

    def text(doc: dict[str, Any]) -> str:
        lines = [f"{g['code']}  {g['name']}: " + (", ".join(c["username"] for c in g["coordinators"]) or "-")
                 for g in doc["grids"]]
        return "\n".join(lines) or "no grids"

    return _run(args, work, text)
