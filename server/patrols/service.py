"""Recording a patrol: the patrols row, the unit's last_patrol_at, the
history trail, the photos, and a task for every checklist item marked
"problem" (unless the unit already has an open task of that kind, so a
coordinator who finds the same fire hazard twice does not get two tasks).

Runs in the caller's write transaction; photos are already checked
(server/media/photos.process) and are stored with the coordinator as actor
and the patrol's moment as created_at, which is how GET /media/{id} finds
the patrol a photo belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from server.db.models import buildings, patrols, registrations, tasks, units
from server.grid.tasks import create_task
from server.media.limits import MAX_PHOTOS_PER_FORM
from server.media.photos import Photo
from server.media.store import MediaStore, add_attachment
from server.patrols.errors import PatrolInvalid, UnitNotFound
from server.registry import history as trail
from server.rules import CityRules

CHECKLIST_ITEMS = ("fire_safety", "overcrowding", "unregistered", "pledge")
CHECK_VALUES = ("ok", "problem", "n/a")
MAX_PHOTOS = MAX_PHOTOS_PER_FORM
MAX_NOTES = 2000
MAX_OCCUPANTS_OBSERVED = 200
ITEM_NAMES = {"fire_safety": "消防安全", "overcrowding": "群租", "unregistered": "未登记人员", "pledge": "治安责任书"}


@dataclass(frozen=True)
class PatrolInput:
    occupants_observed: int | None
    seen_person_ids: Sequence[int]
    checklist: Mapping[str, str]
    notes: str | None
    photos: Sequence[Photo] = field(default_factory=tuple)


@dataclass(frozen=True)
class PatrolOutcome:
    patrol_id: int
    task_ids: list[int]
    attachment_ids: list[int]


def check_input(data: PatrolInput) -> None:
    """PatrolInvalid for the first field that cannot be used."""
    if data.occupants_observed is not None and not 0 <= data.occupants_observed <= MAX_OCCUPANTS_OBSERVED:
        raise PatrolInvalid("occupants_observed", "range")
    unknown = set(data.checklist) - set(CHECKLIST_ITEMS)
    if unknown:
        raise PatrolInvalid("checklist", "unknown")
    for item, value in data.checklist.items():
        if value not in CHECK_VALUES:
            raise PatrolInvalid(item, "unknown")
    if data.notes is not None and len(data.notes) > MAX_NOTES:
        raise PatrolInvalid("notes", "too_long")
    if len(data.photos) > MAX_PHOTOS:
        raise PatrolInvalid("photos", "too_many")


def record_patrol(conn: sa.Connection, now: datetime, user_id: int, actor: str, rules: CityRules, unit_id: int,
                  data: PatrolInput, store: MediaStore | None) -> PatrolOutcome:
    check_input(data)
    u, b = units.c, buildings.c
    unit = conn.execute(sa.select(u.building_id, b.grid_id).join(buildings, b.id == u.building_id)
                        .where(u.id == unit_id)).first()
    if unit is None:
        raise UnitNotFound(f"no unit {unit_id}")
    seen = sorted(set(data.seen_person_ids))
    if seen:
        r = registrations.c
        here = set(conn.execute(sa.select(r.person_id).where(r.unit_id == unit_id, r.status == "active",
                                                             r.person_id.in_(seen))).scalars())
        if set(seen) - here:
            raise PatrolInvalid("seen", "not_registered")
    if data.photos and store is None:
        raise ValueError("photos need a media store")
    attachment_ids = [add_attachment(conn, store, now, actor, photo) for photo in data.photos if store is not None]
    checklist = {item: data.checklist.get(item, "ok") for item in CHECKLIST_ITEMS}
    patrol_id: int = conn.execute(sa.insert(patrols).values(
        unit_id=unit_id, building_id=unit.building_id, grid_id=unit.grid_id, user_id=user_id, at=now,
        occupants_observed=data.occupants_observed, seen_person_ids=seen, checklist=checklist,
        notes=data.notes or None, attachment_ids=attachment_ids,
    ).returning(patrols.c.id)).scalar_one()
    # Never move the date back (a patrol recorded late after a newer one).
    conn.execute(sa.update(units).where(u.id == unit_id, sa.or_(u.last_patrol_at.is_(None), u.last_patrol_at < now))
                 .values(last_patrol_at=now))
    trail.record(conn, now, actor, "patrol", patrol_id, "recorded",
                 {"unit_id": unit_id, "occupants_observed": data.occupants_observed, "seen_person_ids": seen,
                  "checklist": checklist, "attachments": attachment_ids})
    task_ids = []
    for item in CHECKLIST_ITEMS:
        if checklist[item] != "problem":
            continue
        kind = f"patrol_{item}"
        open_task = conn.execute(sa.select(tasks.c.id).where(tasks.c.unit_id == unit_id, tasks.c.kind == kind,
                                                             tasks.c.state != "archived").limit(1)).scalar()
        if open_task is not None:
            continue
        summary = f"巡查发现问题：{ITEM_NAMES[item]}" + (f"。{data.notes[:200]}" if data.notes else "")
        task_ids.append(create_task(conn, now, actor, rules, kind=kind, source="patrol", summary=summary,
                                    unit_id=unit_id, building_id=unit.building_id, grid_id=unit.grid_id,
                                    patrol_id=patrol_id))
    return PatrolOutcome(patrol_id=patrol_id, task_ids=task_ids, attachment_ids=attachment_ids)
