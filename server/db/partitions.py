"""The events table's daily partitions on PostgreSQL (docs/postgres-scale.md).

From migration 0011 on, PostgreSQL's ``events`` is partitioned by range of
``occurred_at``, the gateway's own event time, one partition per local day
of the city's time zone, plus a DEFAULT partition (``events_default``) for
events whose time falls where no partition is (a gateway clock years off).
SQLite keeps one plain table: nothing here does anything there.

Why ``occurred_at``: a partitioned table's unique keys must contain the
partition key, so deduplication is unique on (gateway_id, seq, occurred_at).
A resent event carries the time of its first copy, so it meets that copy in
the same partition and is refused there. ``stored_at`` would put a resend
in today's partition, next to nothing it could conflict with.

Why days: retention goes by whole local days (server/retention/purge.py), so
each day one whole partition falls past the period and is dropped instead of
deleted row by row (server/retention/partition_drop.py).

A table that held events before migration 0011 keeps them where they were:
the old table is the partition ``events_legacy``, one range from its oldest
event's local day up to the minute of the upgrade, and the daily partitions
start there (the first one covers the rest of that day). Retention treats it
as any range partition: its rows past the period go by DELETE batches, and
once its whole range is past, it is dropped whole like a day.

``ensure_partitions`` creates the partitions up to ``DAYS_AHEAD`` days ahead.
It runs when the retention job starts and at each of its runs; it is
idempotent and takes an advisory lock, so several processes may run it at
once: the second waits, then finds the work done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

log = logging.getLogger(__name__)

TABLE = "events"
DEFAULT_PARTITION = "events_default"
# The table of events before migration 0011, kept as one partition of many days.
LEGACY_PARTITION = "events_legacy"
# Partitions made ahead of today: a week of cover should the job be down.
DAYS_AHEAD = 7
# Days missed while no maintenance ran that still get partitions: a
# gateway's outbox keeps events 30 days (max_age_days), and a few more.
BACKFILL_DAYS = 35
# pg_advisory_xact_lock's key for partition maintenance ("evtparts" in ASCII).
MAINTENANCE_LOCK_KEY = 0x6576747061727473
# Creating or dropping a partition takes an ACCESS EXCLUSIVE lock on
# ``events``: ingest waits behind it, and it waits behind every open reader
# of the table. Past this it gives up and the next run tries again, so a long
# report cannot stall ingest behind a queued lock for longer than this.
LOCK_TIMEOUT = "2s"

# A range partition's bounds, read back as timestamptz (the text PostgreSQL
# prints carries its offset, so the session's time zone does not matter).
# Every range partition here has two timestamps as bounds: migration 0011
# gives the legacy partition its oldest event's day as lower bound, not
# MINVALUE (which would read back as NULL here). Partitions do not overlap,
# so the order of their ends is the order of their starts.
_BOUNDS = sa.text(r"""
SELECT c.relname AS name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS lo,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS hi
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(:table) AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
ORDER BY hi
""")


@dataclass(frozen=True)
class Partition:
    """A range partition: events with lo <= occurred_at < hi. One local
    day, part of one (the first after migration 0011, or after the time zone
    changed), or many (``LEGACY_PARTITION``)."""

    name: str
    lo: datetime
    hi: datetime


def is_partitioned(conn: sa.Connection) -> bool:
    """Whether ``events`` is the partitioned table (PostgreSQL after 0011)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": TABLE}).scalar()
    return bool(kind == "p")


def partitions(conn: sa.Connection) -> list[Partition]:
    """The range partitions, oldest first (the DEFAULT partition is not
    one; the legacy partition, when there is one, normally comes first)."""
    return [Partition(row.name, row.lo, row.hi) for row in conn.execute(_BOUNDS, {"table": TABLE})]


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local calendar day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_day_start(at: datetime, zone: ZoneInfo) -> datetime:
    """The first local midnight after ``at``."""
    return day_start(at.astimezone(zone).date() + timedelta(days=1), zone)


def partition_name(lo: datetime, zone: ZoneInfo) -> str:
    """events_pYYYYMMDD after the local day it starts; a partition that does
    not start at local midnight (the time zone changed, or migration 0011's
    were made in its default zone) gets the local hour and minute too."""
    local = lo.astimezone(zone)
    if local.time() == time(0):
        return f"{TABLE}_p{local:%Y%m%d}"
    return f"{TABLE}_p{local:%Y%m%d_%H%M}"


def ensure_partitions(engine: sa.Engine, zone: ZoneInfo, *, now: datetime | None = None,
                      days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Create the daily partitions from today (or the newest one's end) up to
    ``days_ahead`` local days after today; return the names created. Nothing
    on SQLite or on a table not (yet) partitioned. Idempotent, and safe
    when several processes run it at once (one advisory lock)."""
    if engine.dialect.name != "postgresql":
        return []
    now = now or datetime.now(UTC)
    created: list[str] = []
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MAINTENANCE_LOCK_KEY)))
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        existing = partitions(conn)
        today = now.astimezone(zone).date()
        end = day_start(today + timedelta(days=days_ahead + 1), zone)
        # After a stop the days missed get their partitions too (the gateways
        # replay them from their outboxes), back to BACKFILL_DAYS; anything
        # older waits in the DEFAULT partition.
        floor = day_start(today - timedelta(days=BACKFILL_DAYS), zone)
        start = max(existing[-1].hi, floor) if existing else day_start(today, zone)
        while start < end:
            hi = next_day_start(start, zone)
            name = partition_name(start, zone)
            create_partition(conn, name, start, hi)
            created.append(name)
            start = hi
    if created:
        log.info("events: created partitions %s .. %s", created[0], created[-1])
    return created


def create_partition(conn: sa.Connection, name: str, lo: datetime, hi: datetime) -> None:
    """Create ``name`` for [lo, hi). Events of that range already in the
    DEFAULT partition (PostgreSQL refuses a new partition over them) are
    moved into it first, in the same transaction."""
    bounds = {"lo": lo, "hi": hi}
    stray = conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} "
                                 "WHERE occurred_at >= :lo AND occurred_at < :hi)"), bounds).scalar()
    if not stray:
        conn.exec_driver_sql(_literal_ddl(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM ({{lo}}) TO ({{hi}})",
                                          lo, hi))
        return
    conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)"))
    moved = conn.execute(sa.text(f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE occurred_at >= :lo "
                                 f"AND occurred_at < :hi RETURNING *) INSERT INTO {name} SELECT * FROM moved"),
                         bounds).rowcount
    conn.exec_driver_sql(_literal_ddl(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} "
                                      "FOR VALUES FROM ({lo}) TO ({hi})", lo, hi))
    log.info("events: partition %s made with %s events moved from %s", name, moved, DEFAULT_PARTITION)


def detach(conn: sa.Connection, name: str) -> None:
    """Take a partition out of ``events`` in the caller's transaction (it
    is then a table of its own, for the caller to count and drop)."""
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} DETACH PARTITION {checked_name(name)}")


def is_midnight(at: datetime, zone: ZoneInfo) -> bool:
    return at.astimezone(zone).time() == time(0)


def day_floor(at: datetime, zone: ZoneInfo) -> datetime:
    """The local midnight at or before ``at``."""
    return day_start(at.astimezone(zone).date(), zone)


def _literal_ddl(template: str, lo: datetime, hi: datetime) -> str:
    """DDL takes no bind parameters: the bounds as timestamptz literals."""
    def literal(at: datetime) -> str:
        return f"'{at.astimezone(UTC).isoformat()}'::timestamptz"
    return template.format(lo=literal(lo), hi=literal(hi))


def checked_name(name: str) -> str:
    """A partition's name, safe to put in DDL (they take no parameters)."""
    if name == LEGACY_PARTITION:
        return name
    if not (name.startswith(f"{TABLE}_p") and name.replace("_", "").isalnum() and name.isascii()):
        raise ValueError(f"not a partition name: {name!r}")
    return name


def comparison_filter(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for comparing the models with a
    ``dialect`` database: the partitions are PostgreSQL's own tables, not
    models, and a constraint declared for the other database only
    (``ddl_if``) is not missing from this one."""
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and reflected and name is not None and (
                name.startswith(f"{TABLE}_p") or name in (DEFAULT_PARTITION, LEGACY_PARTITION)):
            return False
        ddl_if = getattr(obj, "_ddl_if", None)
        if reflected or ddl_if is None or ddl_if.dialect is None:
            return True
        wanted = (ddl_if.dialect,) if isinstance(ddl_if.dialect, str) else tuple(ddl_if.dialect)
        return dialect in wanted
    return include
