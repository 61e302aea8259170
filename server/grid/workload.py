"""Workload against the staffing ratio (one coordinator per
``rules.residents_per_coordinator`` residents, 500 by default).

Per grid: residents (active registrations at the grid's units), the
coordinators assigned, how many it needs (ceil(residents / ratio)), residents
per coordinator against the ratio, open tasks (and how many of them nobody
has yet), overdue tasks, overdue patrols.

Per coordinator: their grids; their share of the residents (each grid's
residents split evenly among its coordinators) against the ratio; open and
overdue tasks assigned to them; overdue patrols in their grids.

``status``: "unstaffed" (residents but no coordinator), "over" (more
residents per coordinator than the ratio), "ok". Each figure is one grouped
statement over the whole city, not a query per grid."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import areas, buildings, grid_coordinators, registrations, tasks, units, users
from server.grid.schedule import overdue_by_grid
from server.rules import CityRules

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Staffing:
    residents: float
    coordinators: int
    ratio: int

    @property
    def needed(self) -> int:
        return math.ceil(self.residents / self.ratio) if self.residents > 0 else 0

    @property
    def per_coordinator(self) -> float | None:
        return round(self.residents / self.coordinators, 1) if self.coordinators else None

    @property
    def load(self) -> float | None:
        """Residents per coordinator as a share of the ratio (1.0 = exactly at it)."""
        per = self.per_coordinator
        return round(per / self.ratio, 3) if per is not None else None

    @property
    def status(self) -> str:
        if self.coordinators == 0:
            return "unstaffed" if self.residents > 0 else "ok"
        return "over" if self.residents > self.coordinators * self.ratio else "ok"


def _grouped(conn: sa.Connection, query: sa.Select[Any]) -> dict[int, int]:
    return {int(k): int(n) for k, n in conn.execute(query).tuples() if k is not None}


def _in(column: sa.ColumnElement[Any], ids: list[int] | None) -> sa.ColumnElement[bool]:
    return column.in_(ids) if ids is not None else sa.true()


def grid_workload(conn: sa.Connection, now: datetime, rules: CityRules,
                  grid_ids: Iterable[int] | None = None) -> list[JsonObj]:
    """One row per grid (``grid_ids``: only those), by grid code."""
    ids = sorted(grid_ids) if grid_ids is not None else None
    a, b, r, t, g = areas.c, buildings.c, registrations.c, tasks.c, grid_coordinators.c
    grids = conn.execute(sa.select(a.id, a.code, a.name).where(a.level == "grid", _in(a.id, ids))
                         .order_by(a.code)).mappings().all()
    residents = _grouped(conn, sa.select(b.grid_id, sa.func.count())
                         .select_from(registrations.join(units, units.c.id == r.unit_id)
                                      .join(buildings, b.id == units.c.building_id))
                         .where(r.status == "active", _in(b.grid_id, ids)).group_by(b.grid_id))
    staff = _grouped(conn, sa.select(g.grid_id, sa.func.count())
                     .select_from(grid_coordinators.join(users, users.c.id == g.user_id))
                     .where(users.c.disabled_at.is_(None), _in(g.grid_id, ids)).group_by(g.grid_id))
    open_rows = conn.execute(
        sa.select(t.grid_id, sa.func.count(), sa.func.sum(sa.case((t.assignee_user_id.is_(None), 1), else_=0)),
                  sa.func.sum(sa.case((t.due_at < now, 1), else_=0)))
        .where(t.state != "archived", _in(t.grid_id, ids)).group_by(t.grid_id)).tuples().all()
    tasks_by_grid = {int(k): (int(n), int(free or 0), int(late or 0)) for k, n, free, late in open_rows
                     if k is not None}
    patrols = overdue_by_grid(conn, now, rules, ids)
    out = []
    for grid in grids:
        gid = int(grid["id"])
        s = Staffing(residents.get(gid, 0), staff.get(gid, 0), rules.residents_per_coordinator)
        open_n, unassigned, late = tasks_by_grid.get(gid, (0, 0, 0))
        out.append({"grid_id": gid, "code": grid["code"], "name": grid["name"], "residents": int(s.residents),
                    "coordinators": s.coordinators, "needed": s.needed, "shortfall": max(0, s.needed - s.coordinators),
                    "residents_per_coordinator": s.per_coordinator, "load": s.load, "status": s.status,
                    "open_tasks": open_n, "unassigned_tasks": unassigned, "overdue_tasks": late,
                    "overdue_patrols": patrols.get(gid, 0)})
    return out


def coordinator_workload(conn: sa.Connection, now: datetime, rules: CityRules, by_grid: list[JsonObj],
                         user_ids: Iterable[int] | None = None) -> list[JsonObj]:
    """One row per coordinator who is not disabled (``user_ids``: only
    those), from the per-grid rows of ``grid_workload``."""
    ids = sorted(user_ids) if user_ids is not None else None
    u, g, t = users.c, grid_coordinators.c, tasks.c
    people = conn.execute(sa.select(u.id, u.username, u.display_name)
                          .where(u.role == "coordinator", u.disabled_at.is_(None), _in(u.id, ids))
                          .order_by(u.display_name, u.id)).mappings().all()
    grids_of: dict[int, list[int]] = defaultdict(list)
    for user_id, grid_id in conn.execute(sa.select(g.user_id, g.grid_id).where(_in(g.user_id, ids))).tuples():
        grids_of[int(user_id)].append(int(grid_id))
    open_rows = conn.execute(
        sa.select(t.assignee_user_id, sa.func.count(), sa.func.sum(sa.case((t.due_at < now, 1), else_=0)))
        .where(t.state != "archived", t.assignee_user_id.is_not(None), _in(t.assignee_user_id, ids))
        .group_by(t.assignee_user_id)).tuples().all()
    assigned = {int(k): (int(n), int(late or 0)) for k, n, late in open_rows}
    grid_rows = {row["grid_id"]: row for row in by_grid}
    out = []
    for person in people:
        uid = int(person["id"])
        mine = [grid_rows[gid] for gid in sorted(grids_of.get(uid, [])) if gid in grid_rows]
        share = sum(row["residents"] / max(1, row["coordinators"]) for row in mine)
        s = Staffing(share, 1, rules.residents_per_coordinator)
        open_n, late = assigned.get(uid, (0, 0))
        out.append({"user_id": uid, "username": person["username"], "display_name": person["display_name"],
                    "grids": [row["code"] for row in mine], "residents": round(share, 1), "load": s.load,
                    "status": s.status if mine else "no_grid", "open_tasks": open_n, "overdue_tasks": late,
                    "overdue_patrols": sum(row["overdue_patrols"] for row in mine)})
    return out


def workload(conn: sa.Connection, now: datetime, rules: CityRules, *, grid_ids: Iterable[int] | None = None
             ) -> JsonObj:
    """Both tables. ``grid_ids``: a coordinator's grids (they see those grids
    and the coordinators assigned to them); None: the whole city."""
    by_grid = grid_workload(conn, now, rules, grid_ids)
    user_ids = None
    if grid_ids is not None:
        ids = sorted(grid_ids)
        user_ids = [int(x) for x in conn.execute(sa.select(grid_coordinators.c.user_id).distinct()
                                                 .where(grid_coordinators.c.grid_id.in_(ids))).scalars()]
    return {"ratio": rules.residents_per_coordinator, "grids": by_grid,
            "coordinators": coordinator_workload(conn, now, rules, by_grid, user_ids)}
