"""Creating tasks. Every task starts at 上报 (reported) with the first
step's deadline and its first audit-trail row, whoever creates it:
reconciliation, a public problem report, a patrol or a person."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.models import TASK_SOURCES, buildings, task_events, tasks, units
from server.rules import CityRules


def create_task(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, *, kind: str, source: str,
                summary: str, unit_id: int | None = None, building_id: int | None = None,
                case_id: int | None = None, report_id: int | None = None, patrol_id: int | None = None,
                grid_id: int | None = None) -> int:
    """The new task's id. The building and grid are looked up from the unit
    (or the building) when not given."""
    if source not in TASK_SOURCES:
        raise ValueError(f"unknown task source {source!r}")
    if building_id is None and unit_id is not None:
        building_id = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar_one_or_none()
    if grid_id is None and building_id is not None:
        grid_id = conn.execute(sa.select(buildings.c.grid_id).where(buildings.c.id == building_id)
                               ).scalar_one_or_none()
    due_at = now + timedelta(days=rules.task_step_days["reported"])
    task_id: int = conn.execute(sa.insert(tasks).values(
        kind=kind[:32], state="reported", source=source, created_by=actor[:64], case_id=case_id, grid_id=grid_id,
        building_id=building_id, unit_id=unit_id, report_id=report_id, patrol_id=patrol_id, summary=summary,
        created_at=now, updated_at=now, due_at=due_at,
    ).returning(tasks.c.id)).scalar_one()
    conn.execute(sa.insert(task_events).values(task_id=task_id, at=now, actor=actor[:64], action="reported",
                                               from_state=None, to_state="reported", due_at=due_at))
    return task_id
