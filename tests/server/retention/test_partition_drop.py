"""Retention by whole partitions on PostgreSQL (server/retention/partition_drop.py):
the purge drops exactly the daily partitions past the period, keeps the same
daily counts as deleting their rows one by one, leaves a partition holding
an event reconciliation has not read, and deletes the DEFAULT partition's
old rows as before."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.audit.log import AuditLog
from server.db import migrate
from server.db import partitions as parts
from server.db.engine import create_engine
from server.db.models import audit_log, events
from server.reconcile import marks
from server.reconcile.watermarks import EVERY_FOLD
from server.retention.purge import PurgeReport, purge_before
from tests.server.retention.store import SHANGHAI, Events, local
from tests.server.retention.test_purge import BEFORE, CUTOFF, D1, D2, D3, a_busy_city, expected

# The test's days, and the one before them whose event waits in the DEFAULT partition.
FIRST, LAST = date(2024, 12, 29), date(2025, 1, 3)
STRAY = date(2024, 12, 20)


def make_partitions(engine: sa.Engine, *, aligned: bool) -> list[parts.Partition]:
    """Daily partitions over FIRST..LAST: on local midnights, or on UTC
    midnights (as a time zone changed later leaves them: every local day is
    cut in two)."""
    made = []
    with engine.begin() as conn:
        day = FIRST
        while day <= LAST:
            lo = parts.day_start(day, SHANGHAI) if aligned else datetime(day.year, day.month, day.day, tzinfo=UTC)
            hi = parts.next_day_start(lo, SHANGHAI) if aligned else lo + timedelta(days=1)
            name = parts.partition_name(lo, SHANGHAI)
            parts.create_partition(conn, name, lo, hi)
            made.append(parts.Partition(name, lo, hi))
            day += timedelta(days=1)
    return made


def names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {p.name for p in parts.partitions(conn)}


def reconciled_upto(engine: sa.Engine, event_id: int | None = None) -> None:
    """Every fold has read up to ``event_id`` (the newest event by default)."""
    with engine.begin() as conn:
        top = event_id or int(conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one())
        mark = marks.mark_of_event(conn, top)
        for name in EVERY_FOLD:
            marks.read_mark(conn, name, lock=False)
            marks.write_mark(conn, name, mark)


def by_day(specs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The specs in local-day groups, oldest first: one insert transaction
    per day, so reconciliation can have read some days and not others."""
    groups: dict[date, list[dict[str, Any]]] = {}
    for s in sorted(specs, key=lambda s: s["at"]):
        groups.setdefault(s["at"].astimezone(SHANGHAI).date(), []).append(s)
    return [groups[d] for d in sorted(groups)]


def the_city() -> list[dict[str, Any]]:
    return [*a_busy_city(), {"at": local(STRAY, 3), "card": "OLD", "door": "front"}]


@pytest.fixture
def two_databases(make_postgres_url: Callable[[], str]) -> Iterator[tuple[Events, Events]]:
    """The same events twice: in ``plain`` all in the DEFAULT partition (the
    DELETE path), in ``daily`` in daily partitions too."""
    engines = [create_engine(make_postgres_url()) for _ in range(2)]
    stores = []
    for engine in engines:
        migrate.upgrade(engine)
        store = Events(engine)
        store.gateway("gw-1", building="B1")
        store.gateway("gw-2", building="B2")
        stores.append(store)
    yield stores[0], stores[1]
    for engine in engines:
        engine.dispose()


def purge(store: Events) -> PurgeReport:
    return purge_before(store.engine, CUTOFF, zone=SHANGHAI, audit=AuditLog(store.engine), pause_s=0)


@pytest.mark.parametrize("aligned", [True, False], ids=["local-midnights", "utc-midnights"])
def test_the_partitions_past_the_period_are_dropped_with_the_counts_delete_keeps(
        two_databases: tuple[Events, Events], aligned: bool) -> None:
    plain, daily = two_databases
    made = make_partitions(daily.engine, aligned=aligned)
    specs = the_city()
    for store in (plain, daily):
        for group in by_day(specs):
            store.many(group)
        reconciled_upto(store.engine)

    deleted, dropped = purge(plain), purge(daily)

    gone = {p.name for p in made if p.hi <= BEFORE}
    assert gone and names(daily.engine) & {p.name for p in made} == {p.name for p in made} - gone
    assert daily.daily() == plain.daily()
    assert {k: v[:2] for k, v in daily.daily().items()} == expected(specs)
    with plain.engine.connect() as a, daily.engine.connect() as b:
        kept = sa.select(events.c.gateway_id, events.c.seq).order_by(events.c.gateway_id, events.c.seq)
        assert list(a.execute(kept)) == list(b.execute(kept))
    assert (dropped.deleted, dropped.first_day, dropped.last_day, dropped.days) == (
        deleted.deleted, deleted.first_day, deleted.last_day, deleted.days)
    assert dropped.complete and dropped.held_back == 0
    # One audit entry per partition dropped that held events, naming it; the
    # rest by DELETE batches. An empty one goes without an entry.
    entries = _audit_details(daily.engine)
    held = {p.name for p in made if p.hi <= BEFORE and any(p.lo <= s["at"] < p.hi for s in specs)}
    assert held and {e["partition"] for e in entries if "partition" in e} == held
    assert sum(e["size"] for e in entries) == dropped.deleted
    # The DEFAULT partition's old event went by DELETE.
    assert daily.daily()[(STRAY, "gw-1", "front", "card_read")][:2] == (1, 1)


def test_a_partition_holding_an_event_not_yet_reconciled_stays_until_it_is(two_databases: tuple[Events, Events]
                                                                            ) -> None:
    _plain, daily = two_databases
    made = make_partitions(daily.engine, aligned=True)
    specs = the_city()
    ids: list[int] = []
    for group in by_day(specs):
        ids.extend(daily.many(group))
    # Read up to D1's last event: D2 and D3 (later transactions) are not read yet.
    last_of_d1 = max(i for i, s in zip(ids, sorted(specs, key=lambda s: s["at"]), strict=True)
                     if s["at"].astimezone(SHANGHAI).date() <= D1)
    reconciled_upto(daily.engine, last_of_d1)

    first = purge(daily)

    left = names(daily.engine)
    assert f"events_p{D1:%Y%m%d}" not in left
    assert {f"events_p{D2:%Y%m%d}", f"events_p{D3:%Y%m%d}"} <= left
    assert first.held_back > 0 and first.last_day == D1
    with daily.engine.connect() as conn:
        still = conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.occurred_at >= parts.day_start(D2, SHANGHAI), events.c.occurred_at < BEFORE)).scalar_one()
    assert still == first.held_back

    reconciled_upto(daily.engine)
    second = purge(daily)

    assert {p.name for p in made if p.hi <= BEFORE} & names(daily.engine) == set()
    assert second.held_back == 0
    assert {k: v[:2] for k, v in daily.daily().items()} == expected(specs)


def test_a_second_purge_finds_nothing_to_drop(two_databases: tuple[Events, Events]) -> None:
    _plain, daily = two_databases
    make_partitions(daily.engine, aligned=True)
    specs = the_city()
    daily.many(specs)
    reconciled_upto(daily.engine)
    purge(daily)
    counts, left = daily.daily(), names(daily.engine)
    again = purge(daily)
    assert (again.deleted, again.batches) == (0, 0)
    assert daily.daily() == counts and names(daily.engine) == left


def _audit_details(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(sa.select(audit_log.c.record).order_by(audit_log.c.seq))
                   .scalars()]
    return [{**r["detail"], "size": r["size"]} for r in records if r["action"] == "retention.purge"]
