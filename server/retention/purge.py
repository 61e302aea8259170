"""The purge of raw door events past the retention period (docs/retention.md).

``purge_before(engine, cutoff, zone=..., audit=...)`` deletes the events of
whole local days (the city's time zone) before ``cutoff`` and folds them into
``event_daily``, in batches of at most ``batch`` events. Each batch is one
transaction holding the delete, the aggregates it adds and its audit entry,
so a run that is killed at any point leaves every event either still in
``events`` or counted exactly once in ``event_daily`` and audited.

How each batch stays exact:

* **The same rows.** The batch is ``DELETE ... RETURNING``: the aggregates
  are computed in Python from exactly the rows the database deleted, so no
  row can be counted without being deleted or deleted without being counted,
  whatever ingest writes meanwhile.
* **Distinct credentials across batches.** A day of a busy city spans many
  batches, and a card read in two of them must count once. A credential
  value is counted for its (day, gateway, door, kind) by the batch that
  deletes its *last remaining* event of that day: after the delete, in the
  same transaction, the batch looks for other events of the same value, day,
  gateway, door and kind still in the table, and counts only the values with
  none left. Whatever the order and size of batches, exactly one batch
  leaves none (see the limit below).
* **Never past a reconciliation watermark.** Events above the lowest
  watermark of the folds that run (card reads' "events", the unit door
  cameras' "camera": server/reconcile/watermarks.py; a watermark is a
  (txid, id) mark, server/reconcile/marks.py) have not been read by every
  fold yet; they stay until reconciliation has read them, then the next run
  takes them. That includes events of an ingest transaction still open when
  the fold ran, whatever their ids: ``may_purge``.
* **Never an event with a stored snapshot.** Its ``event_snapshots`` row
  refers to it; the snapshot purge (server/snapshots/purge.py) runs first in
  each run and takes the snapshots of the events due, so only a picture that
  arrived in between waits, until the next run.
* **Never the newest event.** SQLite (no AUTOINCREMENT) gives a new row the
  highest id plus one: deleting the row with the highest id would let the
  next event reuse an id at or below the watermark, and reconciliation would
  never read it. The row with the highest id is always kept (on PostgreSQL
  too, for one rule everywhere; it costs one event).

Limit: an event that reaches the server after every other event of its day,
gateway, door, kind and credential was purged (a duplicate replayed, or a
gateway clock far wrong) is counted again when it is purged, so
``credentials`` of that day can be one too high. Gateways drop events older
than their outbox's ``max_age_days`` (30) and only resend unacknowledged
ones, so with the retention period above that this does not happen in
practice. ``events`` is always exact.
"""

from __future__ import annotations

import logging
import time as monotonic
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.audit.entries import AuditEntry
from server.db.models import event_daily, event_snapshots, events, gateways
from server.reconcile.watermarks import EVERY_FOLD, read_by_every_fold
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

ACTION = "retention.purge"
JOB_ACTOR = "system:retention"
CLI_ACTOR = "cli:retention"
# Events per transaction. PostgreSQL: ingest inserts new rows that no purge
# lock touches, so a batch can be large (a million events in a hundred
# transactions, 70,000 events/s: bench/retention.py). SQLite has one write
# lock for everything, and a batch holds it for about 50 us per event (five
# b-trees to update per row), so batches stay small there (about 50 ms), and
# the purge pauses between them: SQLite's busy handler lets a waiting
# writer sleep 1, 2, 5, 10, 15, 20, 25, 25 ... ms between tries, so a writer
# that waited through one batch tries again within a 30 ms pause. Measured
# with a million events: ingest commits wait 68-95 ms at p99 (185 ms with
# 2,000 events and 100 ms), the purge runs at 12,000-13,000 events/s.
DEFAULT_BATCH = 10_000
SQLITE_BATCH = 1_000
SQLITE_PAUSE_S = 0.03
# Values per IN (...) when looking for a batch's credentials still present:
# below SQLite's and psycopg's parameter limits with room to spare.
_VALUES_PER_QUERY = 900
# pg_advisory_xact_lock's key for purge batches ("rtnpurge" in ASCII).
PG_LOCK_KEY = 0x72746E7075726765


class AuditSink(Protocol):
    """What the purge needs of the audit log (server/audit/log.py AuditLog):
    appending inside the caller's open write transaction."""

    def append_in(self, conn: sa.Connection, *entries: AuditEntry, now: datetime | None = None) -> Any: ...


# (local day, gateway, door or "", kind): the key of an event_daily row.
DayKey = tuple[date, str, str, str]


@dataclass(frozen=True)
class BatchResult:
    """One committed batch."""

    number: int
    deleted: int
    aggregates: int
    first_day: date
    last_day: date
    # The greatest occurred_at deleted: the next batch starts there.
    last_occurred_at: datetime


@dataclass
class PurgeReport:
    cutoff: datetime
    # The effective bound: the start of the local day the cut-off falls in,
    # so only whole days are purged and nothing at or after ``cutoff`` is.
    before: datetime
    run: str
    deleted: int = 0
    # event_daily rows created or added to, summed over the batches.
    aggregates: int = 0
    batches: int = 0
    first_day: date | None = None
    last_day: date | None = None
    # Events before ``before`` still there after a complete run: not
    # reconciled yet, or the newest event (see the module's docstring).
    held_back: int = 0
    # False when the run was asked to stop between batches.
    complete: bool = False
    seconds: float = 0.0
    days: set[date] = field(default_factory=set, repr=False)

    def add(self, result: BatchResult, days: set[date]) -> None:
        self.batches += 1
        self.deleted += result.deleted
        self.aggregates += result.aggregates
        self.days |= days
        self.first_day = min(self.first_day or result.first_day, result.first_day)
        self.last_day = max(self.last_day or result.last_day, result.last_day)

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run, "cutoff": self.cutoff.isoformat(), "before": self.before.isoformat(),
                "deleted": self.deleted, "aggregates": self.aggregates, "batches": self.batches,
                "days": len(self.days), "first_day": _iso(self.first_day), "last_day": _iso(self.last_day),
                "held_back": self.held_back, "complete": self.complete, "seconds": round(self.seconds, 3)}


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local calendar day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def purge_bound(cutoff: datetime, zone: ZoneInfo) -> datetime:
    """The start of the local day ``cutoff`` falls in: events before it
    belong to whole days that ended at or before the cut-off."""
    return day_start(cutoff.astimezone(zone).date(), zone)


def cutoff_for(now: datetime, retention_days: int) -> datetime:
    return now - timedelta(days=retention_days)


def purge_before(engine: sa.Engine, cutoff: datetime, *, zone: ZoneInfo, audit: AuditSink,
                 actor: str = JOB_ACTOR, batch: int | None = None, pause_s: float | None = None,
                 on_batch: Callable[[BatchResult], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 watermarks: Sequence[str] = EVERY_FOLD) -> PurgeReport:
    """Purge the events of whole local days before ``cutoff`` (blocking: run
    it in a thread). ``batch`` and ``pause_s`` (between batches) default by
    database (see DEFAULT_BATCH). ``on_batch`` is called after each commit
    (the job's metrics; tests inject failures there); ``should_stop`` is
    asked before each batch, so a shutdown waits for one batch at most.
    ``watermarks``: the reconciliation folds that must have read an event
    before it goes (watermarks.advancing(rules); by default every fold)."""
    on_sqlite = engine.dialect.name == "sqlite"
    if batch is None:
        batch = SQLITE_BATCH if on_sqlite else DEFAULT_BATCH
    if pause_s is None:
        pause_s = SQLITE_PAUSE_S if on_sqlite else 0.0
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = monotonic.perf_counter()
    report = PurgeReport(cutoff=cutoff, before=purge_bound(cutoff, zone), run=uuid.uuid4().hex[:12])
    if not on_sqlite:
        # Whole daily partitions past the bound go first, dropped instead of
        # deleted (server/retention/partition_drop.py); the batches below take
        # the rest: the DEFAULT partition's and whatever was held back.
        from server.retention.partition_drop import drop_due_partitions  # noqa: PLC0415 - it imports this module
        drop_due_partitions(engine, report, zone=zone, audit=audit, actor=actor, watermarks=watermarks,
                            on_batch=on_batch, should_stop=should_stop)
    # Batches walk the occurred_at index forward from here: restarting from
    # the beginning each time would make PostgreSQL step over the dead index
    # entries of every batch before (until vacuum), quadratic in the purge.
    since: datetime | None = None
    while True:
        if should_stop is not None and should_stop():
            break
        with write_transaction(engine) as conn:
            step = _purge_batch(conn, report, since, zone, audit, actor, batch, watermarks)
        if step is None:
            report.complete = True
            break
        result, days = step
        report.add(result, days)
        since = result.last_occurred_at
        if on_batch is not None:
            on_batch(result)
        if pause_s and result.deleted == batch:  # a full batch: more may follow
            monotonic.sleep(pause_s)
    if report.complete:
        with engine.connect() as conn:
            report.held_back = int(conn.execute(sa.select(sa.func.count()).select_from(events)
                                                .where(events.c.occurred_at < report.before)).scalar_one())
    report.seconds = monotonic.perf_counter() - started
    if report.deleted:
        log.info("retention: purged %s events of %s days (%s..%s) before %s in %s batches, %s aggregates, "
                 "%s held back, %.1fs", report.deleted, len(report.days), report.first_day, report.last_day,
                 report.before.isoformat(), report.batches, report.aggregates, report.held_back, report.seconds)
    return report


def may_purge(conn: sa.Connection, watermarks: Sequence[str] = EVERY_FOLD) -> sa.ColumnElement[bool] | None:
    """The events a purge may delete, as a condition on ``events``: read by
    every fold named (at or below the lowest of their (txid, id) marks:
    server/reconcile/marks.py) and not the newest row. None when nothing may go."""
    read = read_by_every_fold(conn, watermarks)
    newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar()
    if read is None or newest is None:
        return None
    return sa.and_(read, events.c.id < int(newest))


def _purge_batch(conn: sa.Connection, report: PurgeReport, since: datetime | None, zone: ZoneInfo,
                 audit: AuditSink, actor: str, batch: int,
                 watermarks: Sequence[str]) -> tuple[BatchResult, set[date]] | None:
    """One batch in the caller's write transaction; None when nothing is left."""
    if conn.dialect.name == "postgresql":
        # One purge batch at a time across every process (two servers, or a
        # server and the command line): two batches deleting events of the
        # same card and day at once would each still see the other's events
        # and neither would count the card. SQLite's BEGIN IMMEDIATE already
        # serialises them.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
    allowed = may_purge(conn, watermarks)
    if allowed is None:
        return None
    e = events.c
    # An event whose camera snapshot is still stored waits: the row refers to
    # it, and the snapshot purge, which runs first, takes it by the next run
    # (one uploaded between the two purges of a run would otherwise fail the batch).
    chosen = sa.select(e.id).where(e.occurred_at < report.before, allowed,
                                   ~sa.exists().where(event_snapshots.c.event_id == e.id))
    if since is not None:
        chosen = chosen.where(e.occurred_at >= since)
    chosen = chosen.order_by(e.occurred_at).limit(batch)
    # The chosen rows' time bounds again on the delete itself: on PostgreSQL's
    # partitioned events it then looks for the ids in the partitions of that
    # range only (the legacy one of migration 0011, the DEFAULT one, days held
    # back), not in every partition's key.
    within = [e.occurred_at < report.before] + ([e.occurred_at >= since] if since is not None else [])
    deleted = conn.execute(sa.delete(events).where(*within, e.id.in_(chosen.scalar_subquery()))
                           .returning(e.gateway_id, e.door, e.kind, e.occurred_at, e.credential_value)).all()
    if not deleted:
        return None
    counts: dict[DayKey, int] = {}
    values: set[tuple[date, str, str, str, str]] = set()
    last = deleted[0].occurred_at
    for gateway_id, door, kind, occurred_at, value in deleted:
        day = occurred_at.astimezone(zone).date()
        key = (day, gateway_id, door or "", kind)
        counts[key] = counts.get(key, 0) + 1
        if value is not None:
            values.add((*key, value))
        last = max(last, occurred_at)
    days = {key[0] for key in counts}
    first_day, last_day = min(days), max(days)
    # After the delete: a value with events of its day still in the table is
    # counted by the batch that deletes the last of them.
    still_there = _remaining(conn, values, zone)
    credentials: dict[DayKey, int] = {}
    for item in values - still_there:
        key = item[:4]
        credentials[key] = credentials.get(key, 0) + 1
    _add_to_daily(conn, counts, credentials)
    result = BatchResult(report.batches + 1, len(deleted), len(counts), first_day, last_day, last)
    audit.append_in(conn, AuditEntry(actor=actor, action=ACTION, size=len(deleted), detail={
        "run": report.run, "batch": result.number, "cutoff": report.cutoff.isoformat(),
        "before": report.before.isoformat(), "first_day": first_day.isoformat(), "last_day": last_day.isoformat(),
        "days": len(days), "aggregates": len(counts)}))
    return result, days


def _remaining(conn: sa.Connection, values: set[tuple[date, str, str, str, str]],
               zone: ZoneInfo) -> set[tuple[date, str, str, str, str]]:
    """Which of ``values`` (day, gateway, door, kind, credential value) still
    have events in the table: per local day, one DISTINCT query over the
    partial index on (credential_value, occurred_at) for that day's values."""
    by_day: dict[date, set[str]] = {}
    for day, _gw, _door, _kind, value in values:
        by_day.setdefault(day, set()).add(value)
    e = events.c
    found: set[tuple[date, str, str, str, str]] = set()
    for day, day_values in by_day.items():
        ordered = sorted(day_values)
        for i in range(0, len(ordered), _VALUES_PER_QUERY):
            query = sa.select(e.gateway_id, e.door, e.kind, e.credential_value).distinct().where(
                e.credential_value.is_not(None), e.credential_value.in_(ordered[i:i + _VALUES_PER_QUERY]),
                e.occurred_at >= day_start(day, zone), e.occurred_at < day_start(day + timedelta(days=1), zone))
            found.update((day, gateway_id, door or "", kind, value)
                         for gateway_id, door, kind, value in conn.execute(query))
    return found & values


def _add_to_daily(conn: sa.Connection, counts: Mapping[DayKey, int], credentials: Mapping[DayKey, int]) -> None:
    """Add to event_daily: a day partly purged before (a late event, or the
    events held back until reconciled) gets the new counts added."""
    buildings = _buildings(conn, {key[1] for key in counts})
    rows = [{"day": day, "gateway_id": gw, "door": door, "kind": kind, "building_id": buildings.get(gw),
             "events": n, "credentials": credentials.get((day, gw, door, kind), 0)}
            for (day, gw, door, kind), n in sorted(counts.items())]
    insert = postgresql.insert(event_daily) if conn.dialect.name == "postgresql" else sqlite.insert(event_daily)
    t = event_daily.c
    conn.execute(insert.on_conflict_do_update(
        index_elements=[t.day, t.gateway_id, t.door, t.kind],
        # The building is the gateway's when its day was first purged: a
        # gateway moved later does not move its past.
        set_={"events": t.events + insert.excluded.events,
              "credentials": t.credentials + insert.excluded.credentials,
              "building_id": sa.func.coalesce(t.building_id, insert.excluded.building_id)}), rows)


def _buildings(conn: sa.Connection, gateway_ids: Iterable[str]) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    ordered = sorted(gateway_ids)
    for i in range(0, len(ordered), _VALUES_PER_QUERY):
        query = sa.select(gateways.c.id, gateways.c.building_id).where(
            gateways.c.id.in_(ordered[i:i + _VALUES_PER_QUERY]))
        for gateway_id, building_id in conn.execute(query):
            found[gateway_id] = building_id
    return found


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
