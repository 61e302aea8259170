"""Creating tasks and writing their audit trail. Every task starts at 上报
(reported) with the first step's deadline and its first audit-trail row,
whoever creates it: reconciliation, a public problem report, a patrol, an
escalated case or a person."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.models import TASK_SOURCES, buildings, task_events, tasks, units
from server.grid.errors import GridInputError
from server.rules import CityRules

NOTE_MAX = 2000
# Case kinds and the sentence a task made from such a case starts with. The
# pages show the kind in the reader's language; the summary is the record.
CASE_TASK_SUMMARY = {
    "unregistered_occupant": "Someone lives here without a residence registration: visit and register or clear.",
    "address_mismatch": "A tenant registered at another unit lives here: visit and correct the registration.",
    "overcrowding": "More occupants than the unit's capacity (群租): visit and check.",
    "unknown_credential": "A card nobody issued opens this building's door: find its holder.",
    "credential_unused": "A registered tenant's card has never been used: check that they live here.",
    "presumed_departure": "A registered tenant has not been seen for a long time: check whether they left.",
}


def clean_note(value: str | None, *, field: str = "note", required: bool = False) -> str | None:
    """A note as stored: stripped, at most NOTE_MAX characters, None when empty."""
    text = (value or "").strip()
    if not text:
        if required:
            raise GridInputError(field, "is required")
        return None
    if len(text) > NOTE_MAX:
        raise GridInputError(field, f"at most {NOTE_MAX} characters")
    return text


def step_due(rules: CityRules, state: str, now: datetime) -> datetime | None:
    """The deadline of the step a task enters at ``now``; archived has none."""
    days = rules.task_step_days.get(state)
    return now + timedelta(days=days) if days is not None else None


def add_event(conn: sa.Connection, now: datetime, actor: str, task_id: int, action: str, *,
              from_state: str | None, to_state: str | None, assignee_user_id: int | None = None,
              note: str | None = None, due_at: datetime | None = None) -> None:
    conn.execute(sa.insert(task_events).values(
        task_id=task_id, at=now, actor=actor[:64], action=action[:24], from_state=from_state, to_state=to_state,
        assignee_user_id=assignee_user_id, note=note, due_at=due_at))


def create_task(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, *, kind: str, source: str,
                summary: str, unit_id: int | None = None, building_id: int | None = None,
                case_id: int | None = None, report_id: int | None = None, patrol_id: int | None = None,
                grid_id: int | None = None, note: str | None = None) -> int:
    """The new task's id. The building and grid are looked up from the unit
    (or the building) when not given. A case has at most one task that is
    not archived (unique index uq_tasks_open_case_id): a second one for the
    same case raises IntegrityError; escalate_case reuses the open one."""
    if source not in TASK_SOURCES:
        raise ValueError(f"unknown task source {source!r}")
    if building_id is None and unit_id is not None:
        building_id = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar_one_or_none()
    if grid_id is None and building_id is not None:
        grid_id = conn.execute(sa.select(buildings.c.grid_id).where(buildings.c.id == building_id)
                               ).scalar_one_or_none()
    due_at = step_due(rules, "reported", now)
    task_id: int = conn.execute(sa.insert(tasks).values(
        kind=kind[:32], state="reported", source=source, created_by=actor[:64], case_id=case_id, grid_id=grid_id,
        building_id=building_id, unit_id=unit_id, report_id=report_id, patrol_id=patrol_id, summary=summary,
        created_at=now, updated_at=now, due_at=due_at,
    ).returning(tasks.c.id)).scalar_one()
    add_event(conn, now, actor, task_id, "reported", from_state=None, to_state="reported", note=note, due_at=due_at)
    return task_id
