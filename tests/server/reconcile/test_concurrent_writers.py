"""Reconciliation with several ingest writers committing at once (issue 15).

On PostgreSQL a transaction that took lower event ids can commit after one
that took higher ids; a fold that went by id order would step over its
events for ever. These tests hold such transactions open on purpose, run
the folds, let them commit and check that every event is counted in
presence (and camera days) exactly once, and that the retention purge never
deletes an event no fold has read. Also: a database migrated from 0009 keeps
what was already folded (both dialects)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import wire
from server.audit.log import AuditLog
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import camera_days, events, presence
from server.ingest.parse import ParsedBatch
from server.ingest.store import CommitResult, EventStore, GatewayOutcome
from server.retention.purge import purge_before
from server.rules import CityRules
from tests.server.reconcile.test_camera import camera_unit
from tests.server.reconcile.world import World, day

_seq = iter(range(1_000_000, 2_000_000))


@pytest.fixture
def pg_world(postgres_url: str) -> Iterator[World]:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    world = World(engine)
    world.areas()
    yield world
    engine.dispose()


def read_in(conn: sa.Connection, building_id: int, card: str, at: datetime) -> int:
    """A card read inserted on ``conn`` (in its open transaction); its id."""
    return int(conn.execute(sa.insert(events).values(
        gateway_id=f"gw-{building_id}", seq=next(_seq), kind="card_read", device="reader-1", door="door-1",
        occurred_at=at, received_at=at, stored_at=at, credential_format="em4100", credential_value=card,
        data={}).returning(events.c.id)).scalar_one())


def presence_by_person(world: World) -> dict[int, tuple[int, int]]:
    """person -> (events, days_seen) in presence."""
    with world.engine.connect() as conn:
        return {int(p): (int(n), int(d)) for p, n, d in conn.execute(
            sa.select(presence.c.person_id, presence.c.events, presence.c.days_seen))}


def tenant(world: World, unit_id: int, card: str) -> int:
    person = world.person(card)
    world.register(person, unit_id, card=card)
    return person


def test_a_transaction_with_lower_ids_that_commits_after_the_fold_is_folded_next_time(pg_world: World) -> None:
    """A takes the lowest ids and commits last. B began before A (an older
    transaction id) but took higher ids; C began after A. While A is open
    the fold takes B's events only; once A commits, A's and C's, and B's are
    not counted again."""
    world = pg_world
    b, u = camera_unit(world)
    pa, pb, pc = (tenant(world, u, card) for card in ("0A00000001", "0A00000002", "0A00000003"))
    with world.engine.connect() as a, world.engine.connect() as early, world.engine.connect() as c:
        early.begin()
        early.execute(sa.text("SELECT pg_current_xact_id()"))  # B's transaction id, before A has one
        a.begin()
        a_ids = [read_in(a, b, "0A00000001", day(d)) for d in range(3)]
        a.execute(sa.insert(events).values(
            gateway_id=f"gw-{b}", seq=next(_seq), kind="unidentified_entry", device="cam-1", door="unit-door",
            occurred_at=day(1), received_at=day(1), stored_at=day(1), data={"track": 1}))
        b_ids = [read_in(early, b, "0A00000002", day(d)) for d in range(2)]
        early.commit()
        c.begin()
        c_ids = [read_in(c, b, "0A00000003", day(d)) for d in range(4)]
        c.commit()
        assert max(a_ids) < min(b_ids) < min(c_ids)  # A holds the lowest ids

        assert world.reconciler.catch_up(day(5)) == 2
        assert presence_by_person(world) == {pb: (2, 2)}
        assert world.reconciler.held_back  # C's committed events wait behind A
        assert world.reconciler.catch_up(day(5)) == 0  # still behind A: nothing read twice, nothing skipped
        a.commit()

    assert world.reconciler.catch_up(day(5)) == 3 + 4
    assert presence_by_person(world) == {pa: (3, 3), pb: (2, 2), pc: (4, 4)}
    assert not world.reconciler.held_back
    assert world.reconciler.catch_up(day(6)) == 0
    assert presence_by_person(world) == {pa: (3, 3), pb: (2, 2), pc: (4, 4)}
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(camera_days.c.unidentified)).scalars().all() == [1]
    assert world.reconciler.watermark_lag() == 0


def test_every_event_carries_the_id_of_the_transaction_that_stored_it(engine: sa.Engine) -> None:
    """Ingest passes it, and any other insert gets it from the column's
    default (PostgreSQL); SQLite leaves it NULL and goes by id."""
    world = World(engine)
    world.areas()
    b = world.building(gateway="gw-t")
    world.read(b, "0F00000001", day(0))
    payload = wire.batch_json("gw-t", [wire.encode_event(wire.CardRead(
        gw="gw-t", seq=s, device="reader-1", door="door-1", ts=day(1),
        credential=wire.Credential(format="em4100", value="0F00000001"))) for s in (1, 2)])
    EventStore(engine).commit([(wire.events_topic("gw-t"), payload, datetime.now(UTC))])
    with engine.connect() as conn:
        txids = conn.execute(sa.select(events.c.txid).order_by(events.c.id)).scalars().all()
    if engine.dialect.name == "sqlite":
        assert txids == [None, None, None]
    else:
        direct, *ingested = txids
        assert direct is not None and direct > 0
        assert ingested[0] is not None and ingested[0] > direct and ingested == [ingested[0]] * 2


def test_a_rolled_back_transaction_holds_nothing_back(pg_world: World) -> None:
    world = pg_world
    b = world.building()
    u = world.unit(b)
    pb = tenant(world, u, "0B00000001")
    with world.engine.connect() as a:
        a.begin()
        read_in(a, b, "0B00000001", day(0))
        world.read(b, "0B00000001", day(1))
        assert world.reconciler.catch_up(day(2)) == 0
        a.rollback()
    assert world.reconciler.catch_up(day(2)) == 1
    assert presence_by_person(world) == {pb: (1, 1)}


class _SlowCommits(EventStore):
    """EventStore whose transactions stay open a little after their rows
    are in, so that the threads' commits overlap and finish in another order
    than their ids (the race the watermark must survive, made likely)."""

    def _update_gateways(self, conn: sa.Connection, batch: ParsedBatch, max_seq: dict[str, int], now: datetime,
                         result: CommitResult, new_keys: set[tuple[str, int]] | None) -> None:
        super()._update_gateways(conn, batch, max_seq, now, result, new_keys)
        time.sleep(random.uniform(0, 0.02))


def test_threads_committing_batches_while_catch_up_runs_count_every_event_once(pg_world: World) -> None:
    world = pg_world
    writers, batches, per_batch = 4, 12, 25
    people: dict[str, int] = {}
    for i in range(writers):
        b = world.building(f"B{i}", gateway=f"gw-w{i}")
        people[f"gw-w{i}"] = tenant(world, world.unit(b), f"0C0000000{i}")
    store = _SlowCommits(world.engine)
    start = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    failures: list[BaseException] = []
    outcomes: list[GatewayOutcome] = []

    def write(i: int) -> None:
        gw = f"gw-w{i}"
        try:
            for n in range(batches):
                first = n * per_batch + 1
                payload = wire.batch_json(gw, [wire.encode_event(wire.CardRead(
                    gw=gw, seq=s, device="reader-1", door="door-1", ts=start + timedelta(days=s % 5),
                    credential=wire.Credential(format="em4100", value=f"0C0000000{i}")))
                    for s in range(first, first + per_batch)])
                result = store.commit([(wire.events_topic(gw), payload, datetime.now(UTC))])
                outcomes.append(result.gateways[gw])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    folds = 0
    while any(t.is_alive() for t in threads):
        world.reconciler.catch_up(day(10))
        folds += 1
    for t in threads:
        t.join()
    world.reconciler.catch_up(day(10))
    assert not failures
    assert sum(o.events for o in outcomes) == writers * batches * per_batch
    assert folds > 1  # the folds ran while the writers committed
    assert presence_by_person(world) == {p: (batches * per_batch, 5) for p in people.values()}
    assert world.reconciler.totals.events == writers * batches * per_batch
    assert world.reconciler.watermark_lag() == 0


def test_the_purge_never_deletes_an_event_no_fold_has_read(pg_world: World) -> None:
    """An old event of a transaction still open when the folds ran (A, the
    lowest id) stays through a purge, though the folds read events with
    higher ids (B's, an older transaction) and the purge takes those; it
    goes once a fold has read it. By id alone, it would have gone unread."""
    world = pg_world
    b = world.building()
    u = world.unit(b)
    person = tenant(world, u, "0D00000001")
    audit = AuditLog(world.engine)
    with world.engine.connect() as a, world.engine.connect() as early:
        early.begin()
        early.execute(sa.text("SELECT pg_current_xact_id()"))
        a.begin()
        late = read_in(a, b, "0D00000001", day(0))
        read = [read_in(early, b, "0D00000001", day(d)) for d in (1, 2)]
        early.commit()
        world.read(b, "0D00000001", day(60))  # the newest, never purged
        assert world.reconciler.catch_up(day(61)) == 2
        a.commit()
    assert late < min(read)
    report = purge(world, audit)
    assert report.deleted == 2 and late in ids(world) and not set(read) & ids(world)
    assert world.reconciler.catch_up(day(61)) == 2
    report = purge(world, audit)
    assert report.deleted == 1 and late not in ids(world) and len(ids(world)) == 1
    assert presence_by_person(world)[person][0] == 4


def purge(world: World, audit: AuditLog) -> Any:
    return purge_before(world.engine, day(30), zone=world.rules.zone, audit=audit, pause_s=0)


def ids(world: World) -> set[int]:
    with world.engine.connect() as conn:
        return {int(i) for i in conn.execute(sa.select(events.c.id)).scalars()}


def test_a_database_migrated_from_0009_folds_only_what_it_had_not(database_url: str) -> None:
    """Events stored before migration 0010 and a watermark in the middle of
    them: after the migration the fold reads the events after the old
    watermark, once, then new events as usual."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, "0009")
        world = World(engine, CityRules())
        world.areas()
        b = world.building()
        u = world.unit(b)
        person = tenant(world, u, "0E00000001")
        for d in range(5):
            world.read(b, "0E00000001", day(d))
        with engine.begin() as conn:
            third = conn.execute(sa.select(events.c.id).order_by(events.c.id).offset(2).limit(1)).scalar_one()
            conn.execute(sa.text("INSERT INTO reconcile_state (name, last_event_id, updated_at) "
                                 "VALUES ('events', :id, CURRENT_TIMESTAMP)"), {"id": third})
        migrate.upgrade(engine)
        assert world.reconciler.catch_up(day(6)) == 2
        assert presence_by_person(world) == {person: (2, 2)}
        world.read(b, "0E00000001", day(6))
        assert world.reconciler.catch_up(day(7)) == 1
        assert world.reconciler.catch_up(day(7)) == 0
        assert presence_by_person(world) == {person: (3, 3)}
    finally:
        engine.dispose()
