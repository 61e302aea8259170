"""What ``rentgate retention status`` reports, and what a purge would delete:
a few index range counts, no scan of the whole events table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.db.models import event_daily, events
from server.reconcile.watermarks import EVERY_FOLD
from server.retention.purge import cutoff_for, may_purge, purge_bound


@dataclass(frozen=True)
class RetentionStatus:
    retention_days: int
    cutoff: datetime
    before: datetime
    oldest_event_at: datetime | None
    # Events of whole local days before ``before``: what a purge would take.
    past_period: int
    # Of those, the ones a purge must leave for now (not reconciled yet, or
    # the newest event).
    held_back: int
    aggregate_rows: int
    aggregate_events: int
    first_aggregate_day: date | None
    last_aggregate_day: date | None

    @property
    def purgeable(self) -> int:
        return self.past_period - self.held_back

    def as_json(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "cutoff": self.cutoff.isoformat(),
                "before": self.before.isoformat(),
                "oldest_event_at": self.oldest_event_at.isoformat() if self.oldest_event_at else None,
                "past_period": self.past_period, "held_back": self.held_back, "purgeable": self.purgeable,
                "aggregate_rows": self.aggregate_rows, "aggregate_events": self.aggregate_events,
                "first_aggregate_day": _iso(self.first_aggregate_day),
                "last_aggregate_day": _iso(self.last_aggregate_day)}


def retention_status(conn: sa.Connection, now: datetime, retention_days: int, zone: ZoneInfo,
                     watermarks: Sequence[str] = EVERY_FOLD) -> RetentionStatus:
    """``watermarks``: the reconciliation folds that must have read an event
    before a purge takes it (as purge_before's)."""
    cutoff = cutoff_for(now, retention_days)
    before = purge_bound(cutoff, zone)
    e = events.c
    oldest = conn.execute(sa.select(sa.func.min(e.occurred_at))).scalar()
    past = sa.select(sa.func.count()).select_from(events).where(e.occurred_at < before)
    past_period = int(conn.execute(past).scalar_one())
    allowed = may_purge(conn, watermarks)
    held_back = past_period if allowed is None else int(conn.execute(past.where(sa.not_(allowed))).scalar_one())
    d = event_daily.c
    rows, total, first, last = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(d.events), 0),
                                                      sa.func.min(d.day), sa.func.max(d.day))).one()
    return RetentionStatus(retention_days=retention_days, cutoff=cutoff, before=before,
                           oldest_event_at=_aware(oldest), past_period=past_period, held_back=held_back,
                           aggregate_rows=int(rows), aggregate_events=int(total), first_aggregate_day=first,
                           last_aggregate_day=last)


def _aware(value: datetime | None) -> datetime | None:
    # MIN() loses the column's type on SQLite: the text comes back as it is stored (naive UTC).
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
