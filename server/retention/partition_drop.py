"""Retention by whole partitions on PostgreSQL (docs/postgres-scale.md).

A daily partition of ``events`` (server/db/partitions.py) that ends at or
before the purge's bound holds only events the purge would delete, day by
day. Instead of deleting its rows one by one (each one a dead tuple in five
indexes, for vacuum to clean), one transaction per partition:

1. takes the purge's advisory lock (the DELETE batches' own, so the two
   never count the same day at once);
2. checks that every event in it may be removed: read by every
   reconciliation fold (``may_purge``, the purge's own rule) and without
   a camera snapshot still stored; if one may not, the partition stays and
   the DELETE batches take what may go;
3. detaches it from ``events``;
4. adds its per-day counts to ``event_daily`` exactly as the DELETE batches
   would: a card value counts for its day in the partition that holds its
   last event of that day, so only the days cut by the partition's edges
   (a partition not aligned on local midnights) look at what is left;
5. appends the audit entry (``retention.purge``, with ``partition``);
6. drops it.

All or nothing: a kill at any point leaves the partition attached and
uncounted, or gone and counted once. The DEFAULT partition is never
dropped: its old rows go by DELETE, as SQLite's do.

The legacy partition (``events_legacy``: the table of events before
migration 0011, one range of many days ending at the minute of the upgrade)
is a range partition like the others: until its end passes the bound, the
DELETE batches take its rows past the bound, day by day; once its whole
range lies past the bound it is dropped whole under the same rules (read by
every fold, no snapshot stored), with what is left in it counted, usually
its last day. Nothing here assumes a partition is one day long: the counts
group by local day, and only the edges cut a day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import sqlalchemy as sa

from server.audit.entries import AuditEntry
from server.db import partitions as parts
from server.db.models import event_snapshots, events
from server.reconcile.watermarks import EVERY_FOLD
from server.retention.purge import ACTION, PG_LOCK_KEY, AuditSink, BatchResult, PurgeReport, may_purge
from server.web.errors import Unavailable

log = logging.getLogger(__name__)


class PartitionBusy(Unavailable):
    """Readers of ``events`` kept the lock a detach needs past its timeout."""


# After the detach, the partition is a table of its own and ``events`` holds
# everything else. {p} is the partition's name (checked by partitions._ident).
_COUNT = """
WITH agg AS MATERIALIZED (
  SELECT (p.occurred_at AT TIME ZONE :zone)::date AS day, p.gateway_id, coalesce(p.door, '') AS door, p.kind,
         count(*) AS n, max(p.occurred_at) AS last,
         count(DISTINCT p.credential_value) FILTER (WHERE p.credential_value IS NOT NULL AND NOT (
           (p.occurred_at < :lo_edge OR p.occurred_at >= :hi_edge) AND EXISTS (
             SELECT 1 FROM events e
             WHERE e.credential_value = p.credential_value AND e.gateway_id = p.gateway_id AND e.kind = p.kind
               AND coalesce(e.door, '') = coalesce(p.door, '')
               AND e.occurred_at >= ((p.occurred_at AT TIME ZONE :zone)::date::timestamp AT TIME ZONE :zone)
               AND e.occurred_at < (((p.occurred_at AT TIME ZONE :zone)::date + 1)::timestamp AT TIME ZONE :zone))
         )) AS creds
  FROM {p} p GROUP BY 1, 2, 3, 4
), ins AS (
  INSERT INTO event_daily AS d (day, gateway_id, door, kind, building_id, events, credentials)
  SELECT a.day, a.gateway_id, a.door, a.kind, g.building_id, a.n, a.creds
  FROM agg a LEFT JOIN gateways g ON g.id = a.gateway_id
  ON CONFLICT (day, gateway_id, door, kind) DO UPDATE SET
    events = d.events + excluded.events, credentials = d.credentials + excluded.credentials,
    -- the gateway's building when its day was first purged, as the DELETE batches keep it
    building_id = coalesce(d.building_id, excluded.building_id)
)
SELECT count(*) AS keys, coalesce(sum(n), 0) AS events, min(day) AS first_day, max(day) AS last_day,
       max(last) AS last, array_agg(DISTINCT day) AS days
FROM agg
"""


def drop_due_partitions(engine: sa.Engine, report: PurgeReport, *, zone: ZoneInfo, audit: AuditSink, actor: str,
                        watermarks: Sequence[str] = EVERY_FOLD,
                        on_batch: Callable[[BatchResult], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> None:
    """Drop every partition that ends at or before ``report.before`` and
    holds nothing held back; each one counts as a batch of ``report``.
    Nothing on SQLite or on a table that is not partitioned."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        if not parts.is_partitioned(conn):
            return
        due = [p for p in parts.partitions(conn) if p.hi <= report.before]
    for partition in due:
        if should_stop is not None and should_stop():
            return
        try:
            with engine.begin() as conn:
                step = _drop(conn, partition, report, zone, audit, actor, watermarks)
        except sa.exc.OperationalError as exc:
            if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise PartitionBusy(f"events partition {partition.name} not dropped: the table was busy for "
                                    f"{parts.LOCK_TIMEOUT}; the next run tries again") from exc
            raise
        if step is None:
            continue
        result, days = step
        report.add(result, days)
        if on_batch is not None:
            on_batch(result)


def _drop(conn: sa.Connection, partition: parts.Partition, report: PurgeReport, zone: ZoneInfo, audit: AuditSink,
          actor: str, watermarks: Sequence[str]) -> tuple[BatchResult, set[date]] | None:
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
    name = parts.checked_name(partition.name)
    if not _still_attached(conn, name):
        return None  # another process dropped it meanwhile
    if _held_back(conn, partition, watermarks):
        return None
    parts.detach(conn, name)
    lo_edge = partition.lo if parts.is_midnight(partition.lo, zone) else parts.next_day_start(partition.lo, zone)
    hi_edge = partition.hi if parts.is_midnight(partition.hi, zone) else parts.day_floor(partition.hi, zone)
    row = conn.execute(sa.text(_COUNT.format(p=name)),
                       {"zone": zone.key, "lo_edge": lo_edge, "hi_edge": hi_edge}).one()
    conn.exec_driver_sql(f"DROP TABLE {name}")
    if not row.events:
        return None
    days: set[date] = set(row.days)
    last: datetime = row.last
    result = BatchResult(report.batches + 1, int(row.events), int(row.keys), row.first_day, row.last_day, last)
    audit.append_in(conn, AuditEntry(actor=actor, action=ACTION, size=result.deleted, detail={
        "run": report.run, "batch": result.number, "cutoff": report.cutoff.isoformat(),
        "before": report.before.isoformat(), "first_day": result.first_day.isoformat(),
        "last_day": result.last_day.isoformat(), "days": len(days), "aggregates": result.aggregates,
        "partition": name}))
    log.info("retention: dropped partition %s (%s events of %s..%s)", name, result.deleted, result.first_day,
             result.last_day)
    return result, days


def _still_attached(conn: sa.Connection, name: str) -> bool:
    return any(p.name == name for p in parts.partitions(conn))


def _held_back(conn: sa.Connection, partition: parts.Partition, watermarks: Sequence[str]) -> bool:
    """Whether the partition holds an event the purge may not remove yet.
    The rule is the DELETE batches' own (``may_purge``: read by every fold,
    not the newest row), asked of the partition's range of ``events`` as a
    whole, plus their snapshot rule."""
    allowed = may_purge(conn, watermarks)
    e = events.c
    within = sa.and_(e.occurred_at >= partition.lo, e.occurred_at < partition.hi)
    if allowed is None:
        return bool(conn.execute(sa.select(sa.exists().where(within))).scalar())
    refused = sa.select(sa.exists().where(within, sa.not_(sa.func.coalesce(allowed, sa.false()))))
    pictured = sa.select(sa.exists().where(within, event_snapshots.c.event_id == e.id))
    return bool(conn.execute(refused).scalar()) or bool(conn.execute(pictured).scalar())
