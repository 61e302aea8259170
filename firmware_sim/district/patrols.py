"""Grid coordinators on patrol in the simulated district.

Each grid has its coordinator, who visits every unit of the grid as often as
its grade asks (every 21 / 14 / 7 / 3 days by default), mostly a little early,
sometimes late. Without patrols every unit of a demo would be overdue by the
whole length of the run, and the patrol pages would tell nothing true; with
them the overdue list holds the few units a coordinator fell behind on.

Patrols change nothing that reconciliation is scored on, so they are off
unless asked for (``rentgate sim district --patrols``; the demo asks)."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.auth.users import create_user
from server.db.models import areas, buildings, units
from server.grid import grids
from server.grid.schedule import interval_days
from server.patrols.service import PatrolInput, record_patrol
from server.rules import CityRules

ACTOR = "sim:coordinator"
# Of every patrol, the share done late, and by how many days at most.
LATE_SHARE = 0.2
LATE_DAYS_MAX = 10.0
_NAMES = ("陈晓燕", "黄志明", "林秀英", "梁建华", "何丽娟", "罗文杰", "郑海燕", "谢国强")

Schedule = Callable[[datetime, str, Callable[[sa.Connection, datetime], object]], None]


class Coordinators:
    """One coordinator per grid and the patrols they make."""

    def __init__(self, rules: CityRules, seed: int, schedule: Schedule) -> None:
        self.rules = rules
        self.rng = random.Random(f"{seed}:patrols")
        self.schedule = schedule
        self.user_of_grid: dict[int, int] = {}
        self.patrols = 0

    def setup(self, conn: sa.Connection, now: datetime, unit_ids: list[int]) -> None:
        """Coordinators for every grid (users ``coord-<grid code>``, with
        random passwords: nobody logs in as them) and each unit's first
        patrol, spread over its first interval."""
        rows = conn.execute(sa.select(areas.c.id, areas.c.code).where(areas.c.level == "grid").order_by(areas.c.id))
        for i, (grid_id, code) in enumerate(rows):
            name = _NAMES[i % len(_NAMES)] + (f"{i // len(_NAMES) + 1}" if i >= len(_NAMES) else "")
            user_id = create_user(conn, now, username=f"coord-{code}".lower(), password=secrets.token_urlsafe(16),
                                  role="coordinator", display_name=name)
            grids.assign(conn, now, ACTOR, grid_id, user_id)
            self.user_of_grid[grid_id] = user_id
        for unit_id in unit_ids:
            first = now + timedelta(days=self.rng.uniform(0.5, interval_days(self.rules, None)))
            self.schedule(first, "patrol", self._step(unit_id))

    def _step(self, unit_id: int) -> Callable[[sa.Connection, datetime], object]:
        return lambda conn, when: self.patrol(conn, when, unit_id)

    def patrol(self, conn: sa.Connection, when: datetime, unit_id: int) -> None:
        """Visit the unit, then plan the next visit by its grade now."""
        row = conn.execute(sa.select(units.c.grade, buildings.c.grid_id)
                           .join(buildings, buildings.c.id == units.c.building_id)
                           .where(units.c.id == unit_id)).one()
        user_id = self.user_of_grid.get(row.grid_id)
        if user_id is not None:
            record_patrol(conn, when, user_id, ACTOR, self.rules, unit_id,
                          PatrolInput(occupants_observed=None, seen_person_ids=(), checklist={}, notes=None),
                          store=None)
            self.patrols += 1
        days = interval_days(self.rules, row.grade)
        if self.rng.random() < LATE_SHARE:
            gap = days + self.rng.uniform(1.0, LATE_DAYS_MAX)
        else:
            gap = days * self.rng.uniform(0.7, 0.98)
        self.schedule(when + timedelta(days=gap), "patrol", self._step(unit_id))
