"""Grid coordinators working their task queue in the simulated district.

Reconciliation turns cases into tasks at 上报 (docs/grid.md). In a district
where coordinators patrol but nobody ever touched a task, every task would
sit at 上报 for months and the demo's queue would be a wall of red. Here the
grid's coordinator claims most new tasks within a day or two and handles
them; the street's dispatcher (an administrator, so never the one who
handled it: four-eyes) verifies, evaluates and archives. One task in ten is
left waiting, as in any real queue. Every step goes through the same
``apply_action`` the pages and the API use, each in a savepoint: a task
whose case closed meanwhile (and was archived with it) simply ends its run.

Part of ``rentgate sim district --patrols``."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.auth.policy import AuthUser
from server.auth.users import create_user
from server.db.models import tasks
from server.grid.errors import GridError
from server.grid.service import ActionInput, apply_action
from server.rules import CityRules

log = logging.getLogger(__name__)

Step = Callable[[sa.Connection, datetime], object]
Schedule = Callable[[datetime, str, Step], None]
# The share of new tasks nobody picks up (yet), and how long each step takes.
LEFT_WAITING = 0.1
_DAYS = {"claim": (0.2, 2.0), "handle": (0.5, 3.0), "verify": (0.3, 2.0), "evaluate": (0.3, 2.0),
         "archive": (0.1, 1.0)}
_NEXT = {"claim": "handle", "handle": "verify", "verify": "evaluate", "evaluate": "archive"}
_NOTES = {"handle": "已上门核实并处理", "verify": "已电话回访核实", "evaluate": "处理及时", "archive": None}


class TaskDesk:
    """The street's dispatcher and the grids' coordinators at their queue."""

    def __init__(self, rules: CityRules, seed: int, schedule: Schedule) -> None:
        self.rules = rules
        self.rng = random.Random(f"{seed}:tasks")
        self.schedule = schedule
        self.coordinator_of_grid: dict[int, AuthUser] = {}
        self.dispatcher: AuthUser | None = None
        self.last_task_id = 0
        self.steps = 0

    def setup(self, conn: sa.Connection, now: datetime, coordinators: dict[int, int]) -> None:
        """The dispatcher (``street-dispatch``, an administrator nobody logs
        in as) and the grids' coordinators, by grid id."""
        name = "街道指挥中心"
        user_id = create_user(conn, now, username="street-dispatch", password=secrets.token_urlsafe(16),
                              role="admin", display_name=name)
        self.dispatcher = AuthUser(user_id, "street-dispatch", "admin", name)
        for grid_id, coordinator_id in coordinators.items():
            self.coordinator_of_grid[grid_id] = AuthUser(coordinator_id, f"coordinator-{coordinator_id}",
                                                         "coordinator", "")

    def new_tasks(self, conn: sa.Connection, now: datetime) -> None:
        """Plan the work on tasks created since the last call."""
        rows = conn.execute(sa.select(tasks.c.id, tasks.c.grid_id).where(tasks.c.id > self.last_task_id)
                            .order_by(tasks.c.id)).all()
        for task_id, grid_id in rows:
            self.last_task_id = task_id
            coordinator = self.coordinator_of_grid.get(grid_id) if grid_id is not None else None
            if coordinator is None or self.rng.random() < LEFT_WAITING:
                continue
            self._plan(now, task_id, "claim", coordinator)

    def _plan(self, after: datetime, task_id: int, action: str, coordinator: AuthUser) -> None:
        lo, hi = _DAYS[action]
        when = after + timedelta(days=self.rng.uniform(lo, hi))
        self.schedule(when, f"task {action}",
                      lambda conn, at: self._act(conn, at, task_id, action, coordinator))

    def _act(self, conn: sa.Connection, now: datetime, task_id: int, action: str, coordinator: AuthUser) -> None:
        actor = coordinator if action in ("claim", "handle") else self.dispatcher
        assert actor is not None
        given = ActionInput(note=_NOTES.get(action), evaluation="good" if action == "evaluate" else None)
        savepoint = conn.begin_nested()
        try:
            apply_action(conn, now, self.rules, actor, task_id, action, given)
        except GridError as exc:
            # Archived with its case, or taken over: nothing left to do.
            savepoint.rollback()
            log.debug("task %d: %s not taken: %s", task_id, action, exc)
            return
        savepoint.commit()
        self.steps += 1
        if action in _NEXT:
            self._plan(now, task_id, _NEXT[action], coordinator)
