"""events partitioned by day of occurred_at on PostgreSQL (docs/postgres-scale.md)

On PostgreSQL the plain ``events`` table becomes one partitioned by range of
``occurred_at``: a partition per local day (Asia/Shanghai, the rules' default
zone; the server's maintenance continues in the city's own zone) from the
upgrade on, a DEFAULT partition for times no partition covers, and the old
table itself, kept where it is, as the partition ``events_legacy`` of
everything before the upgrade. The primary key becomes (id, occurred_at) and
the unique key (gateway_id, seq, occurred_at): a partitioned table's unique
keys must hold the partition key. The foreign key from event_snapshots to
events.id goes (nothing unique is left on id alone); the purges check
snapshots themselves. SQLite: nothing changes.

Upgrade of a table holding events, without copying it (one transaction,
under an ACCESS EXCLUSIVE lock on ``events`` throughout, as a lock taken
weaker first and raised later could deadlock with an ingest transaction that
has read the table and is about to write it):

1. the two unique indexes the partitioned keys need, (id, occurred_at) and
   (gateway_id, seq, occurred_at), are built on the old table, which then
   drops its own two keys and takes these as its keys (the work that grows
   with the table: two index builds);
2. the old table is renamed ``events_legacy``, its other indexes too, and
   the new partitioned ``events`` is made (LIKE it, so every column and
   default comes along) with its partitions and with every index the old
   table had, under the old names; the id sequence now belongs to the new
   table's id, so ids continue;
3. the legacy partition's range is [the local day of its oldest event, the
   upgrade's next whole minute): every event that has happened is in it, and
   the events that happen from the upgrade on go to a partition of their own
   day, the first of which covers the rest of today (``events_pYYYYMMDD_HHMM``)
   and tomorrow's. The few rows dated after that bound (gateway clocks ahead)
   are moved to the new table (its daily or DEFAULT partition);
4. a CHECK constraint equal to the range is added NOT VALID and validated
   (one sequential scan of the old table), so the ATTACH that follows finds
   the range proven and does not scan; it finds each index it needs already
   built with the same definition and attaches it instead of building one.
   The CHECK is dropped after.

An empty table is simply replaced by a partitioned one (today's and
tomorrow's partitions and the DEFAULT one).

Downgrade: copies every row into a new plain table, with the old keys and
the snapshot foreign key (time and lock as the whole table's copy); it
refuses while two events share a (gateway_id, seq) or a snapshot names an
event no longer stored.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from __future__ import annotations

import logging
import time as clock
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

# Frozen copies of server/db/partitions.py's choices at this revision.
ZONE = ZoneInfo("Asia/Shanghai")
# Today and tomorrow only: the server's maintenance step makes the rest of
# the week ahead when it starts (each partition costs the migration about
# 40 ms with its indexes, and every test database runs it).
DAYS_AHEAD = 1
LEGACY = "events_legacy"
SNAPSHOT_FK = "fk_event_snapshots_event_id_events"
# The old table's keys, built before it becomes a partition (the names the
# constraints take when they adopt them); the CHECK proving its range.
LEGACY_PK = "pk_events_legacy"
LEGACY_UNIQUE = "uq_events_legacy_gateway_id_seq_occurred_at"
LEGACY_RANGE = "ck_events_legacy_range"

# The indexes that are not constraints (made again as they were: the ones
# 0001-0010 made, and any other a later revision put there).
_PLAIN_INDEXES = sa.text("""
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'events'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY i.indexrelid
""")
_CONSTRAINTS = sa.text("""
SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u', 'f', 'x')
ORDER BY conname
""")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZONE).astimezone(UTC)


def _next_day_start(at: datetime) -> datetime:
    return _day_start(at.astimezone(ZONE).date() + timedelta(days=1))


def _partition_name(lo: datetime) -> str:
    local = lo.astimezone(ZONE)
    return f"events_p{local:%Y%m%d}" if local.time() == time(0) else f"events_p{local:%Y%m%d_%H%M}"


def _literal(at: datetime) -> str:
    return f"'{at.astimezone(UTC).isoformat()}'::timestamptz"


def _partitioned(conn: sa.Connection) -> bool:
    return bool(conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")).scalar() == "p")


def _swap(conn: sa.Connection, new: str, indexes: list[str]) -> None:
    """Replace ``events`` by ``new``, keeping the id sequence (it belongs to
    events.id and would be dropped with the old table)."""
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence('events', 'id')")).scalar()
    if sequence is not None:
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    conn.exec_driver_sql("DROP TABLE events")
    conn.exec_driver_sql(f"ALTER TABLE {new} RENAME TO events")
    if sequence is not None:
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY events.id")
    _make_indexes(conn, indexes)


def _make_indexes(conn: sa.Connection, indexes: list[str]) -> None:
    for definition in indexes:
        # A partitioned table's own index is printed "ON ONLY": made on the
        # parent alone. Made again here, it must reach every partition.
        conn.exec_driver_sql(definition.replace(" ON ONLY ", " ON "))


def _make_partitions(conn: sa.Connection, table: str, start: datetime, today: date) -> None:
    """Partitions of ``table`` from ``start`` (a local midnight, or the
    legacy partition's end) up to the end of today + DAYS_AHEAD, and the
    DEFAULT partition."""
    end = _day_start(today + timedelta(days=DAYS_AHEAD + 1))
    while start < end:
        hi = _next_day_start(start)
        conn.exec_driver_sql(f"CREATE TABLE {_partition_name(start)} PARTITION OF {table} FOR VALUES "
                             f"FROM ({_literal(start)}) TO ({_literal(hi)})")
        start = hi
    conn.exec_driver_sql(f"CREATE TABLE events_default PARTITION OF {table} DEFAULT")


def _add_keys(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id, occurred_at)")
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT uq_events_gateway_id_seq_occurred_at "
                         "UNIQUE (gateway_id, seq, occurred_at)")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or _partitioned(conn):
        return
    conn.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    known = {"pk_events", "uq_events_gateway_id_seq"}
    others = set(conn.execute(_CONSTRAINTS).scalars()) - known
    if others:
        raise RuntimeError(f"events has constraints 0011 does not know how to partition: {sorted(others)}")
    indexes = [(str(row.name), str(row.definition)) for row in conn.execute(_PLAIN_INDEXES)]
    conn.exec_driver_sql(f"ALTER TABLE event_snapshots DROP CONSTRAINT IF EXISTS {SNAPSHOT_FK}")
    if conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM events)")).scalar():
        _attach_legacy(conn, indexes)
    else:
        _replace_empty(conn, [definition for _name, definition in indexes])


def _replace_empty(conn: sa.Connection, indexes: list[str]) -> None:
    conn.exec_driver_sql("CREATE TABLE events_partitioned (LIKE events INCLUDING DEFAULTS) "
                         "PARTITION BY RANGE (occurred_at)")
    today = datetime.now(UTC).astimezone(ZONE).date()
    _make_partitions(conn, "events_partitioned", _day_start(today), today)
    _swap(conn, "events_partitioned", indexes)
    _add_keys(conn)
    conn.exec_driver_sql("ANALYZE events")


def _attach_legacy(conn: sa.Connection, indexes: list[tuple[str, str]]) -> None:
    started = clock.perf_counter()
    now = datetime.now(UTC)
    # The legacy partition ends at the next whole minute: every event that
    # has happened is before it, and a partition name has minutes, no seconds.
    hi = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    oldest = conn.execute(sa.text("SELECT min(occurred_at) FROM events")).scalar() or now
    lo = _day_start(min(oldest, now).astimezone(ZONE).date())

    # 1. The keys a partition of the new table needs, built on the old rows
    # (the unique key with occurred_at holds: (gateway_id, seq) alone is unique).
    conn.exec_driver_sql(f"CREATE UNIQUE INDEX {LEGACY_PK} ON events (id, occurred_at)")
    conn.exec_driver_sql(f"CREATE UNIQUE INDEX {LEGACY_UNIQUE} ON events (gateway_id, seq, occurred_at)")
    conn.exec_driver_sql(f"ALTER TABLE events DROP CONSTRAINT pk_events, DROP CONSTRAINT uq_events_gateway_id_seq, "
                         f"ADD CONSTRAINT {LEGACY_PK} PRIMARY KEY USING INDEX {LEGACY_PK}, "
                         f"ADD CONSTRAINT {LEGACY_UNIQUE} UNIQUE USING INDEX {LEGACY_UNIQUE}")
    built = clock.perf_counter()

    # 2. The old table steps aside with its indexes; the new one takes the names.
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence('events', 'id')")).scalar()
    conn.exec_driver_sql(f"ALTER TABLE events RENAME TO {LEGACY}")
    for name, _definition in indexes:
        renamed = name.replace("events_", f"{LEGACY}_", 1) if "events_" in name else f"{LEGACY}_{name}"
        conn.exec_driver_sql(f'ALTER INDEX "{name}" RENAME TO "{renamed[:63]}"')
    conn.exec_driver_sql(f"CREATE TABLE events (LIKE {LEGACY} INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)")
    if sequence is not None:
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY events.id")
    _make_partitions(conn, "events", hi, now.astimezone(ZONE).date())
    _make_indexes(conn, [definition for _name, definition in indexes])
    _add_keys(conn)

    # 3. Rows dated at or after the bound (clocks ahead; or without a time,
    # should the column allow it) go to the new table's own partitions.
    moved = conn.execute(sa.text(f"WITH moved AS (DELETE FROM {LEGACY} WHERE occurred_at >= :hi "
                                 "OR occurred_at IS NULL RETURNING *) INSERT INTO events SELECT * FROM moved"),
                         {"hi": hi}).rowcount

    # 4. The range proven by a CHECK, so ATTACH does not scan; it adopts the
    # indexes built in 1 and kept in 2 (same definitions) instead of building.
    bound = f"occurred_at IS NOT NULL AND occurred_at >= {_literal(lo)} AND occurred_at < {_literal(hi)}"
    conn.exec_driver_sql(f"ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY_RANGE} CHECK ({bound}) NOT VALID")
    conn.exec_driver_sql(f"ALTER TABLE {LEGACY} VALIDATE CONSTRAINT {LEGACY_RANGE}")
    checked = clock.perf_counter()
    conn.exec_driver_sql(f"ALTER TABLE events ATTACH PARTITION {LEGACY} "
                         f"FOR VALUES FROM ({_literal(lo)}) TO ({_literal(hi)})")
    conn.exec_driver_sql(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {LEGACY_RANGE}")
    attached = clock.perf_counter()
    # Statistics for the new parent (autovacuum never gathers a partitioned
    # table's own); PostgreSQL 15 has no ANALYZE ONLY, so the partitions are
    # sampled again too.
    conn.exec_driver_sql("ANALYZE events")
    log.info("0011: events kept as partition %s for [%s, %s); %s rows dated later moved; keys built in %.1fs, "
             "range checked in %.1fs, attached in %.2fs, analyzed in %.1fs, %.1fs in all", LEGACY, lo.isoformat(),
             hi.isoformat(), moved, built - started, checked - built, attached - checked,
             clock.perf_counter() - attached, clock.perf_counter() - started)


def downgrade() -> None:
    """Back to a plain table: a copy of every row (ACCESS EXCLUSIVE throughout)."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not _partitioned(conn):
        return
    conn.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    doubled = conn.execute(sa.text("SELECT count(*) FROM (SELECT 1 FROM events GROUP BY gateway_id, seq "
                                   "HAVING count(*) > 1) d")).scalar_one()
    if doubled:
        raise RuntimeError(f"{doubled} (gateway_id, seq) pairs are stored with different event times, which the "
                           "plain table's unique key refuses; remove the copies you do not want first")
    orphans = conn.execute(sa.text("SELECT count(*) FROM event_snapshots s WHERE NOT EXISTS "
                                   "(SELECT 1 FROM events e WHERE e.id = s.event_id)")).scalar_one()
    if orphans:
        raise RuntimeError(f"{orphans} event_snapshots rows name events no longer stored; the foreign key "
                           "would refuse them: delete those rows first")
    indexes = [str(row.definition) for row in conn.execute(_PLAIN_INDEXES)]
    conn.exec_driver_sql("CREATE TABLE events_plain (LIKE events INCLUDING DEFAULTS)")
    conn.exec_driver_sql("INSERT INTO events_plain SELECT * FROM events")
    _swap(conn, "events_plain", indexes)
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id)")
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT uq_events_gateway_id_seq UNIQUE (gateway_id, seq)")
    conn.exec_driver_sql(f"ALTER TABLE event_snapshots ADD CONSTRAINT {SNAPSHOT_FK} "
                         "FOREIGN KEY (event_id) REFERENCES events (id)")
    conn.exec_driver_sql("ANALYZE events")
