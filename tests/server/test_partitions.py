"""PostgreSQL's events partitioned by day of occurred_at (server/db/partitions.py,
migration 0011): a resend is a duplicate whichever partition its first copy
is in, absurd clocks are stored in the DEFAULT partition, the maintenance
step is idempotent and safe when two processes run it at once, and the
migration converts a table holding rows, keeping their ids, without copying
them (the old table becomes one partition, which retention empties by DELETE
and then drops whole), and back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rentgate import wire
from server.audit.log import AuditLog
from server.db import migrate
from server.db import partitions as parts
from server.db.engine import create_engine
from server.db.models import events, metadata
from server.ingest.store import EventStore
from server.retention.job import PurgeJob
from tests.server.helpers import batch, card_read, message
from tests.services import wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
GW = "gw-part-1"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def make_days(engine: sa.Engine, first: date, last: date) -> None:
    """Partitions for the local days first..last (tests' past days: the
    maintenance step makes them only from today on)."""
    with engine.begin() as conn:
        day = first
        while day <= last:
            lo = parts.day_start(day, SHANGHAI)
            parts.create_partition(conn, parts.partition_name(lo, SHANGHAI), lo, parts.next_day_start(lo, SHANGHAI))
            day += timedelta(days=1)


def homes(engine: sa.Engine) -> dict[int, str]:
    """seq -> the partition its event is stored in."""
    with engine.connect() as conn:
        return {int(seq): str(table) for seq, table in conn.execute(
            sa.text("SELECT seq, tableoid::regclass::text FROM events WHERE gateway_id = :gw"), {"gw": GW})}


def local(day: date, hour: float = 10.0) -> datetime:
    return parts.day_start(day, SHANGHAI) + timedelta(hours=hour)


def test_a_resend_whose_first_copy_is_in_an_older_partition_is_still_a_duplicate(pg: sa.Engine) -> None:
    today = datetime.now(UTC).astimezone(SHANGHAI).date()
    old_day = today - timedelta(days=3)
    make_days(pg, old_day, old_day)
    store = EventStore(pg)
    first = store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=local(old_day))]))])
    # Days later the gateway sends it again (its ack was lost) with a new event of today.
    again = store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=local(old_day)),
                                                 card_read(GW, 2, ts=datetime.now(UTC))]))])

    assert (first.inserted, again.inserted, again.duplicates) == (1, 1, 1)
    assert again.gateways[GW].ack() == wire.Ack(committed=[(1, 2)])
    stored = homes(pg)
    assert stored == {1: f"events_p{old_day:%Y%m%d}", 2: f"events_p{today:%Y%m%d}"}


def test_events_with_absurd_clocks_are_stored_in_the_default_partition(pg: sa.Engine) -> None:
    store = EventStore(pg)
    past, future = datetime(1970, 1, 2, tzinfo=UTC), datetime(2199, 12, 31, tzinfo=UTC)
    result = store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=past), card_read(GW, 2, ts=future)]))])
    resent = store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=past), card_read(GW, 2, ts=future)]))])

    assert (result.inserted, resent.inserted, resent.duplicates) == (2, 0, 2)
    assert homes(pg) == {1: parts.DEFAULT_PARTITION, 2: parts.DEFAULT_PARTITION}
    with pg.connect() as conn:
        times = set(conn.execute(sa.select(events.c.occurred_at).where(events.c.gateway_id == GW)).scalars())
    assert times == {past, future}


def test_a_new_partition_takes_over_the_events_the_default_partition_held(pg: sa.Engine) -> None:
    now = datetime.now(UTC)
    ahead = now.astimezone(SHANGHAI).date() + timedelta(days=40)
    store = EventStore(pg)
    store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=local(ahead))]))])
    assert homes(pg) == {1: parts.DEFAULT_PARTITION}
    with pg.connect() as conn:
        before = conn.execute(sa.select(events).where(events.c.gateway_id == GW)).one()

    created = parts.ensure_partitions(pg, SHANGHAI, now=now + timedelta(days=35))

    assert f"events_p{ahead:%Y%m%d}" in created
    assert homes(pg) == {1: f"events_p{ahead:%Y%m%d}"}
    with pg.connect() as conn:
        assert conn.execute(sa.select(events).where(events.c.gateway_id == GW)).one() == before
    # The event in its new partition is still the one a resend duplicates.
    again = store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=local(ahead))]))])
    assert (again.inserted, again.duplicates) == (0, 1)


def test_maintenance_makes_every_day_ahead_once(pg: sa.Engine) -> None:
    now = datetime.now(UTC) + timedelta(days=20)
    created = parts.ensure_partitions(pg, SHANGHAI, now=now)
    assert parts.ensure_partitions(pg, SHANGHAI, now=now) == []
    with pg.connect() as conn:
        found = parts.partitions(conn)
    # Contiguous, a local day each, up to a week after "today".
    assert all(a.hi == b.lo for a, b in zip(found, found[1:], strict=False))
    today = now.astimezone(SHANGHAI).date()
    assert found[-1].hi == parts.day_start(today + timedelta(days=parts.DAYS_AHEAD + 1), SHANGHAI)
    assert created[-1] == f"events_p{today + timedelta(days=parts.DAYS_AHEAD):%Y%m%d}"
    assert all(parts.is_midnight(p.lo, SHANGHAI) for p in found)


def test_two_maintenance_steps_at_once_make_each_partition_once(pg: sa.Engine, postgres_url: str) -> None:
    now = datetime.now(UTC) + timedelta(days=30)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    engines = [create_engine(postgres_url) for _ in range(2)]

    def run(engine: sa.Engine) -> None:
        try:
            results.append(parts.ensure_partitions(engine, SHANGHAI, now=now))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    # Both start while a third holds the lock, so both reach it and wait.
    with pg.begin() as holder:
        holder.execute(sa.select(sa.func.pg_advisory_xact_lock(parts.MAINTENANCE_LOCK_KEY)))
        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        wait_for(lambda: _waiting_on_advisory_lock(pg) == 2, 10, what="both steps waiting for the lock")
    for t in threads:
        t.join(30)
    for e in engines:
        e.dispose()

    assert errors == []
    assert sorted(len(r) for r in results)[0] == 0 and sum(len(r) for r in results) > 0
    with pg.connect() as conn:
        found = parts.partitions(conn)
    names = [p.name for p in found]
    assert len(names) == len(set(names))
    assert all(a.hi == b.lo for a, b in zip(found, found[1:], strict=False))


def _waiting_on_advisory_lock(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                        "AND NOT granted")).scalar_one())


async def test_the_retention_job_makes_the_week_ahead_when_it_runs(pg: sa.Engine) -> None:
    job = PurgeJob(pg, zone=SHANGHAI, retention_days=180, interval_s=3600, audit=lambda: AuditLog(pg))
    await job.run_once()
    with pg.connect() as conn:
        newest = parts.partitions(conn)[-1]
    today = datetime.now(UTC).astimezone(SHANGHAI).date()
    assert newest.name == f"events_p{today + timedelta(days=parts.DAYS_AHEAD):%Y%m%d}"


# ---------------------------------------------------------------- migration 0011

_INSERT_0010 = sa.text("""
INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, received_at, stored_at, credential_format,
                    credential_value, data)
VALUES (:gw, :seq, 'card_read', 'reader-1', 'door-1', :at, :at, :at, 'em4100', :card, '{}'::jsonb) RETURNING id
""")


def _rows(conn: sa.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT id, gateway_id, seq, occurred_at, credential_value, txid FROM events ORDER BY id"))]


def _relkind(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")).scalar_one())


def _snapshot_fk(conn: sa.Connection) -> bool:
    return bool(conn.execute(sa.text("SELECT count(*) FROM pg_constraint WHERE conname = "
                                     "'fk_event_snapshots_event_id_events'")).scalar_one())


def test_migration_0011_converts_a_table_holding_rows_keeping_ids_and_converts_back(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine, "0010")
    now = datetime.now(UTC)
    times = [now - timedelta(days=30), now - timedelta(days=1), now, datetime(1971, 5, 5, tzinfo=UTC),
             now + timedelta(days=3650)]
    with engine.begin() as conn:
        ids = [conn.execute(_INSERT_0010, {"gw": GW, "seq": i + 1, "at": at, "card": f"C{i}"}).scalar_one()
               for i, at in enumerate(times)]
        # A gap in the ids, as rolled-back inserts leave: kept as it is.
        conn.execute(sa.text("SELECT setval('events_id_seq', 100)"))
        ids.append(conn.execute(_INSERT_0010, {"gw": GW, "seq": 9, "at": now, "card": "C9"}).scalar_one())
        conn.execute(sa.text("INSERT INTO event_snapshots (event_id, sha256, size_bytes, stored_at, gateway_id) "
                             "VALUES (:id, :sha, 10, :at, :gw)"), {"id": ids[1], "sha": "0" * 64, "at": now, "gw": GW})
        before = _rows(conn)

    migrate.upgrade(engine)

    with engine.begin() as conn:
        assert _relkind(conn) == "p" and not _snapshot_fk(conn)
        assert _rows(conn) == before
        where = dict(conn.execute(sa.text("SELECT id, tableoid::regclass::text FROM events")).tuples().all())
        # The old rows stay in the old table, now a partition; the one dated
        # years ahead (a clock far wrong) moved to the DEFAULT partition.
        assert {where[i] for i in ids if i != ids[4]} == {parts.LEGACY_PARTITION}
        assert where[ids[4]] == parts.DEFAULT_PARTITION
        # The sequence goes on after the highest id and still belongs to the column.
        fresh = conn.execute(_INSERT_0010, {"gw": GW, "seq": 10, "at": now, "card": "C10"}).scalar_one()
        assert fresh == 102
        assert conn.execute(sa.text("SELECT pg_get_serial_sequence('events', 'id')")).scalar() is not None
        indexes = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")).scalars())
        assert {"pk_events", "uq_events_gateway_id_seq_occurred_at", "ix_events_occurred_at",
                "ix_events_door_occurred_at", "ix_events_credential_value_occurred_at", "ix_events_camera_alerts",
                "ix_events_txid_id"} <= indexes
        diff = compare_metadata(MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": parts.comparison_filter("postgresql")}), metadata)
        assert diff == []
        after = _rows(conn)

    migrate.downgrade(engine, "0010")

    with engine.begin() as conn:
        assert _relkind(conn) == "r" and _snapshot_fk(conn)
        assert _rows(conn) == after
        assert conn.execute(_INSERT_0010, {"gw": GW, "seq": 11, "at": now, "card": "C11"}).scalar_one() == 103
        uniques = set(conn.execute(sa.text("SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass"))
                      .scalars())
        assert {"pk_events", "uq_events_gateway_id_seq"} <= uniques
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert _relkind(conn) == "p" and len(_rows(conn)) == len(after) + 1
    engine.dispose()


def test_migration_0011_leaves_sqlite_as_it_was(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert not parts.is_partitioned(conn)
    assert parts.ensure_partitions(engine, SHANGHAI) == []
    engine.dispose()


def _index_oids(conn: sa.Connection, table: str) -> set[int]:
    return set(conn.execute(sa.text("SELECT indexrelid::bigint FROM pg_index WHERE indrelid = to_regclass(:t)"),
                            {"t": table}).scalars())


def _homes_by_id(conn: sa.Connection) -> dict[int, str]:
    return dict(conn.execute(sa.text("SELECT id, tableoid::regclass::text FROM events")).tuples().all())


@pytest.fixture
def upgraded_history(postgres_url: str) -> Iterator[tuple[sa.Engine, dict[str, Any]]]:
    """A table at 0010 holding events of the last 40 local days, of today
    (before now), two hours ahead and of 2199, then upgraded to the head."""
    engine = create_engine(postgres_url)
    migrate.upgrade(engine, "0010")
    now = datetime.now(UTC)
    today = now.astimezone(SHANGHAI).date()
    times = [local(today - timedelta(days=d), 9) for d in range(40, 0, -1)]
    times += [parts.day_start(today, SHANGHAI), now - timedelta(seconds=1),
              now + timedelta(hours=2), datetime(2199, 1, 1, tzinfo=UTC)]
    with engine.begin() as conn:
        ids = [conn.execute(_INSERT_0010, {"gw": GW, "seq": i + 1, "at": at, "card": f"C{i % 7}"}).scalar_one()
               for i, at in enumerate(times)]
        old = conn.execute(sa.text("SELECT 'events'::regclass::oid::bigint, pg_relation_filenode('events')")).one()
        old_indexes = _index_oids(conn, "events")
        before = _rows(conn)
    migrate.upgrade(engine)
    yield engine, {"now": now, "today": today, "times": times, "ids": ids, "old": tuple(old),
                   "old_indexes": old_indexes, "before": before}
    engine.dispose()


def test_migration_0011_keeps_the_old_table_as_one_partition_without_copying_it(
        upgraded_history: tuple[sa.Engine, dict[str, Any]]) -> None:
    engine, h = upgraded_history
    times, ids = h["times"], h["ids"]
    with engine.connect() as conn:
        assert _rows(conn) == h["before"]
        # The same table, same file (not rewritten), its indexes adopted by the new table's.
        legacy = conn.execute(sa.text("SELECT 'events_legacy'::regclass::oid::bigint, "
                                      "pg_relation_filenode('events_legacy')")).one()
        assert tuple(legacy) == h["old"]
        legacy_indexes = _index_oids(conn, parts.LEGACY_PARTITION)
        kept = h["old_indexes"] & legacy_indexes
        assert len(kept) == len(h["old_indexes"]) - 2  # all but the old two keys, dropped
        adopted = set(conn.execute(sa.text(
            "SELECT i.inhrelid::bigint FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhparent "
            "WHERE x.indrelid = 'events'::regclass")).scalars())
        assert legacy_indexes <= adopted and len(legacy_indexes) == len(_index_oids(conn, "events"))
        assert conn.execute(sa.text("SELECT count(*) FROM pg_constraint WHERE conrelid = 'events_legacy'::regclass "
                                    "AND contype = 'c'")).scalar_one() == 0
        found = parts.partitions(conn)
        homes = _homes_by_id(conn)
    legacy_part, first_day = found[0], found[1]
    assert legacy_part.name == parts.LEGACY_PARTITION
    assert legacy_part.lo == parts.day_start(h["today"] - timedelta(days=40), SHANGHAI)
    assert legacy_part.hi == first_day.lo and h["now"] < legacy_part.hi <= h["now"] + timedelta(minutes=2)
    assert all(a.hi == b.lo for a, b in zip(found, found[1:], strict=False))
    assert first_day.name == parts.partition_name(first_day.lo, SHANGHAI)
    assert first_day.hi == parts.next_day_start(first_day.lo, SHANGHAI)
    # Every event that had happened stays in the old table; the ones dated later moved.
    assert {homes[i] for i in ids[:-2]} == {parts.LEGACY_PARTITION}
    ahead = next(p for p in found if p.lo <= times[-2] < p.hi)
    assert homes[ids[-2]] == ahead.name != parts.LEGACY_PARTITION
    assert homes[ids[-1]] == parts.DEFAULT_PARTITION
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": parts.comparison_filter("postgresql")}), metadata)
    assert diff == []

    store = EventStore(engine)
    # A resend of an old event (its first copy in the legacy partition) is a duplicate ...
    again = store.commit([message(GW, batch(GW, [card_read(GW, 5, ts=times[4], card="C4")]))])
    assert (again.inserted, again.duplicates) == (0, 1)
    with engine.begin() as conn:
        stored = conn.execute(sa.text("INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, "
                                      "received_at, stored_at, data) VALUES (:gw, 41, 'card_read', 'r', 'd', :at, "
                                      ":at, :at, '{}') ON CONFLICT DO NOTHING"), {"gw": GW, "at": times[40]})
        assert stored.rowcount == 0
    # ... and a new event, from the upgrade on, goes to its day's partition and
    # takes the next id of the same sequence.
    fresh = store.commit([message(GW, batch(GW, [card_read(GW, 100, ts=first_day.lo + timedelta(seconds=1))]))])
    assert fresh.inserted == 1
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, tableoid::regclass::text FROM events WHERE seq = 100")).one()
    assert row[1] == first_day.name and row[0] > max(ids)
    # The maintenance step continues from the newest partition, never over the legacy one.
    created = parts.ensure_partitions(engine, SHANGHAI)
    with engine.connect() as conn:
        after = parts.partitions(conn)
    assert created and after[0] == legacy_part
    assert all(a.hi == b.lo for a, b in zip(after, after[1:], strict=False))


def test_retention_deletes_the_legacy_rows_past_the_period_then_drops_the_partition_whole(
        upgraded_history: tuple[sa.Engine, dict[str, Any]]) -> None:
    from server.retention.purge import purge_before  # noqa: PLC0415 - only here
    from tests.server.retention.test_partition_drop import reconciled_upto  # noqa: PLC0415 - only here

    engine, h = upgraded_history
    today, times = h["today"], h["times"]
    with engine.connect() as conn:
        legacy = parts.partitions(conn)[0]
    # The newest event (kept by every purge) lies after the legacy partition.
    EventStore(engine).commit([message(GW, batch(GW, [card_read(GW, 100, ts=legacy.hi + timedelta(seconds=1))]))])
    reconciled_upto(engine)

    # 20 of its 40 past days are past the period: deleted by batches, the partition stays.
    cutoff = local(today - timedelta(days=20), 12)
    first = purge_before(engine, cutoff, zone=SHANGHAI, audit=AuditLog(engine), pause_s=0)
    bound = parts.day_start(today - timedelta(days=20), SHANGHAI)
    with engine.connect() as conn:
        assert parts.partitions(conn)[0] == legacy
        left = conn.execute(sa.text("SELECT occurred_at FROM events_legacy ORDER BY occurred_at")).scalars().all()
    assert (first.deleted, first.held_back, first.complete) == (20, 0, True)
    assert left == [t for t in times if bound <= t < legacy.hi]
    entries = _purge_entries(engine)
    assert len(entries) == first.batches and all("partition" not in e for e in entries)

    # Once its whole range is past, it is dropped whole, its rows counted.
    # Two days on: a purge takes whole local days only, and after 22:00 in
    # Shanghai the event dated two hours ahead lies in tomorrow's day, which
    # a cut-off one day on would leave (rightly) for the next purge.
    second = purge_before(engine, legacy.hi + timedelta(days=2), zone=SHANGHAI, audit=AuditLog(engine), pause_s=0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('events_legacy')")).scalar() is None
        remaining = set(conn.execute(sa.text("SELECT seq FROM events")).scalars())
    dropped = [e for e in _purge_entries(engine) if e.get("partition") == parts.LEGACY_PARTITION]
    assert len(dropped) == 1 and dropped[0]["size"] == len(left)
    # Left: the newest event (held back, with its partition) and the one of 2199.
    assert remaining == {100, len(times)}
    assert second.deleted == len(left) + 1 and second.held_back == 1
    with engine.connect() as conn:
        counted = conn.execute(sa.text("SELECT sum(events) FROM event_daily")).scalar_one()
    assert counted == 20 + len(left) + 1


def test_migration_0011_downgrade_after_keeping_the_legacy_partition_restores_every_row(
        upgraded_history: tuple[sa.Engine, dict[str, Any]]) -> None:
    engine, h = upgraded_history
    migrate.downgrade(engine, "0010")
    with engine.connect() as conn:
        assert _relkind(conn) == "r" and _snapshot_fk(conn)
        assert _rows(conn) == h["before"]
        assert conn.execute(sa.text("SELECT to_regclass('events_legacy')")).scalar() is None


def _purge_entries(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(sa.text("SELECT record FROM audit_log ORDER BY seq")).scalars()]
    return [{**r["detail"], "size": r["size"]} for r in records if r["action"] == "retention.purge"]
