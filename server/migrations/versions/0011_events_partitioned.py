"""events partitioned by day of occurred_at on PostgreSQL (docs/postgres-scale.md)

On PostgreSQL the plain ``events`` table becomes one partitioned by range of
``occurred_at``: a partition per local day (Asia/Shanghai, the rules' default
zone; the server's maintenance continues in the city's own zone) over the
days the existing events cover, at most two years back, up to tomorrow (the
server's maintenance step makes the week ahead), and a DEFAULT partition for
the rest. The rows are copied with their ids, the
id sequence keeps counting, and every index is made again. The primary key
becomes (id, occurred_at) and the unique key (gateway_id, seq, occurred_at):
a partitioned table's unique keys must hold the partition key. The foreign
key from event_snapshots to events.id goes (nothing unique is left on id
alone); the purges check snapshots themselves. SQLite: nothing changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of server/db/partitions.py's choices at this revision.
ZONE = ZoneInfo("Asia/Shanghai")
# Today and tomorrow only: the server's maintenance step makes the rest of
# the week ahead when it starts (each partition costs the migration about
# 40 ms with its indexes, and every test database runs it).
DAYS_AHEAD = 1
# Events older than this (a clock far wrong, or a long retention period)
# go to the DEFAULT partition rather than one partition per day back to 1970.
MAX_PAST_DAYS = 731
SNAPSHOT_FK = "fk_event_snapshots_event_id_events"

# The indexes that are not constraints (made again as they were: the ones
# 0001-0010 made, and any other a later revision put there).
_PLAIN_INDEXES = sa.text("""
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = 'events'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY i.indexrelid
""")
_CONSTRAINTS = sa.text("""
SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u', 'f', 'x')
ORDER BY conname
""")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZONE).astimezone(UTC)


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
    for definition in indexes:
        # A partitioned table's own index is printed "ON ONLY": made on the
        # parent alone. Made again here, it must reach every partition.
        conn.exec_driver_sql(definition.replace(" ON ONLY ", " ON "))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or _partitioned(conn):
        return
    conn.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    known = {"pk_events", "uq_events_gateway_id_seq"}
    others = set(conn.execute(_CONSTRAINTS).scalars()) - known
    if others:
        raise RuntimeError(f"events has constraints 0011 does not know how to partition: {sorted(others)}")
    indexes = list(conn.execute(_PLAIN_INDEXES).scalars())
    conn.exec_driver_sql(f"ALTER TABLE event_snapshots DROP CONSTRAINT IF EXISTS {SNAPSHOT_FK}")
    conn.exec_driver_sql("CREATE TABLE events_partitioned (LIKE events INCLUDING DEFAULTS) "
                         "PARTITION BY RANGE (occurred_at)")
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    oldest = conn.execute(sa.text("SELECT min(occurred_at) FROM events WHERE occurred_at >= :floor"),
                          {"floor": now - timedelta(days=MAX_PAST_DAYS)}).scalar()
    first = min(today, oldest.astimezone(ZONE).date()) if oldest is not None else today
    day = first
    while day <= today + timedelta(days=DAYS_AHEAD):
        conn.exec_driver_sql(f"CREATE TABLE events_p{day:%Y%m%d} PARTITION OF events_partitioned FOR VALUES "
                             f"FROM ({_literal(_day_start(day))}) TO ({_literal(_day_start(day + timedelta(days=1)))})")
        day += timedelta(days=1)
    conn.exec_driver_sql("CREATE TABLE events_default PARTITION OF events_partitioned DEFAULT")
    conn.exec_driver_sql("INSERT INTO events_partitioned SELECT * FROM events")
    _swap(conn, "events_partitioned", indexes)
    # Made after the copy: one sort per partition instead of a row-at-a-time insert into each index.
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id, occurred_at)")
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT uq_events_gateway_id_seq_occurred_at "
                         "UNIQUE (gateway_id, seq, occurred_at)")
    conn.exec_driver_sql("ANALYZE events")


def downgrade() -> None:
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
    indexes = list(conn.execute(_PLAIN_INDEXES).scalars())
    conn.exec_driver_sql("CREATE TABLE events_plain (LIKE events INCLUDING DEFAULTS)")
    conn.exec_driver_sql("INSERT INTO events_plain SELECT * FROM events")
    _swap(conn, "events_plain", indexes)
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id)")
    conn.exec_driver_sql("ALTER TABLE events ADD CONSTRAINT uq_events_gateway_id_seq UNIQUE (gateway_id, seq)")
    conn.exec_driver_sql(f"ALTER TABLE event_snapshots ADD CONSTRAINT {SNAPSHOT_FK} "
                         "FOREIGN KEY (event_id) REFERENCES events (id)")
    conn.exec_driver_sql("ANALYZE events")
