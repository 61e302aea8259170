"""A problem report from a plate: checked fields, the rate limits (checked
again under a lock on the unit, so two reports at once cannot both slip
under a limit), the optional photo, the report row and its task, in one
transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from server.db.models import REPORT_CATEGORIES, problem_reports, units
from server.grid.tasks import create_task
from server.media.photos import Photo
from server.media.store import MediaStore, add_attachment
from server.registry import history as trail
from server.reports import limits
from server.reports.errors import ReportInvalid
from server.rules import CityRules

MAX_DESCRIPTION = 1000
# Mainland mobile numbers, and landlines with their area code.
_PHONE = re.compile(r"1[3-9]\d{9}|0\d{2,3}-?\d{7,8}")
CATEGORY_NAMES = {"hazard": "安全隐患", "overcrowding": "群租", "suspicious": "可疑情况", "other": "其他"}


@dataclass(frozen=True)
class ReportFields:
    category: str
    description: str
    contact_phone: str | None


@dataclass(frozen=True)
class ReportOutcome:
    report_id: int
    task_id: int
    reference: str


def reference(report_id: int) -> str:
    """What the sender is told to quote: short, and says nothing else."""
    return f"R{report_id:06d}"


def check_fields(category: str, description: str, phone: str) -> ReportFields:
    """The report's fields, or ReportInvalid for the first that is wrong."""
    if category not in REPORT_CATEGORIES:
        raise ReportInvalid("category", "required" if not category else "unknown")
    text = description.strip()
    if not text:
        raise ReportInvalid("description", "required")
    if len(text) > MAX_DESCRIPTION:
        raise ReportInvalid("description", "too_long")
    number = re.sub(r"[\s()]", "", phone)
    if number.startswith("+86"):
        number = number[3:]
    if number and not _PHONE.fullmatch(number):
        raise ReportInvalid("phone", "phone")
    return ReportFields(category=category, description=text, contact_phone=number or None)


def submit_report(conn: sa.Connection, now: datetime, rules: CityRules, fields: ReportFields, *, unit_id: int,
                  plate_id: int | None, client_digest: str | None, photo: Photo | None,
                  store: MediaStore | None) -> ReportOutcome:
    """In the caller's write transaction. RateLimited when over a limit."""
    query = sa.select(units.c.building_id).where(units.c.id == unit_id)
    if conn.dialect.name == "postgresql":
        # One report at a time per unit, so the counts below are exact.
        query = query.with_for_update()
    building_id = conn.execute(query).scalar_one()
    limits.check(conn, now, unit_id, client_digest)
    actor = f"public:{plate_id}" if plate_id is not None else "public"
    attachment_id = None
    if photo is not None:
        if store is None:
            raise ValueError("a photo needs a media store")
        attachment_id = add_attachment(conn, store, now, actor, photo)
    report_id: int = conn.execute(sa.insert(problem_reports).values(
        unit_id=unit_id, building_id=building_id, plate_id=plate_id, category=fields.category,
        description=fields.description, contact_phone=fields.contact_phone, attachment_id=attachment_id,
        client_digest=client_digest, created_at=now,
    ).returning(problem_reports.c.id)).scalar_one()
    summary = f"{CATEGORY_NAMES[fields.category]}：{fields.description[:200]}"
    task_id = create_task(conn, now, actor, rules, kind=f"report_{fields.category}", source="report",
                          summary=summary, unit_id=unit_id, building_id=building_id, report_id=report_id)
    conn.execute(sa.update(problem_reports).where(problem_reports.c.id == report_id).values(task_id=task_id))
    trail.record(conn, now, actor, "report", report_id, "reported",
                 {"unit_id": unit_id, "category": fields.category, "task_id": task_id,
                  "attachment_id": attachment_id})
    return ReportOutcome(report_id=report_id, task_id=task_id, reference=reference(report_id))
