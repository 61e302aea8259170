"""The purge core on SQLite and PostgreSQL: old events go, newer ones stay,
the daily counts are exact whatever the batches, nothing past the
lowest reconciliation watermark (card reads, cameras) goes, every batch is audited, and a run that fails
between or inside batches leaves nothing counted twice or lost."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.audit.entries import AuditEntry
from server.audit.log import AuditLog
from server.db.models import audit_head, audit_log, event_snapshots
from server.reconcile import camera, evidence
from server.reconcile.runner import Reconciler
from server.reconcile.watermarks import advancing
from server.retention.purge import CLI_ACTOR, AuditSink, BatchResult, PurgeReport, purge_before, purge_bound
from server.rules import CityRules
from tests.server.retention.store import NOW, SHANGHAI, Events, local

CUTOFF = NOW - timedelta(days=180)  # 2025-01-02 12:00 in Shanghai
BEFORE = purge_bound(CUTOFF, SHANGHAI)  # 2025-01-02 00:00 in Shanghai
D1, D2, D3 = date(2024, 12, 30), date(2024, 12, 31), date(2025, 1, 1)
Daily = dict[tuple[date, str, str, str], tuple[int, int]]


@pytest.fixture
def store(engine: sa.Engine) -> Events:
    store = Events(engine)
    store.gateway("gw-1", building="B1")
    store.gateway("gw-2", building="B2")
    return store


@pytest.fixture
def audit(engine: sa.Engine) -> AuditLog:
    return AuditLog(engine)


def purge(engine: sa.Engine, *, audit: AuditSink, **options: Any) -> PurgeReport:
    """purge_before with the test's cut-off, without SQLite's pause between batches."""
    return purge_before(engine, CUTOFF, zone=SHANGHAI, audit=audit, pause_s=0, **options)


def expected(specs: list[dict[str, Any]], before: datetime = BEFORE) -> Daily:
    """The daily counts computed from scratch: what any sequence of purges must add up to."""
    counts: dict[tuple[date, str, str, str], list[Any]] = {}
    for s in specs:
        if s["at"] >= before:
            continue
        card = s.get("card", "C1")
        key = (s["at"].astimezone(SHANGHAI).date(), s.get("gateway", "gw-1"), s.get("door", "door-1") or "",
               s.get("kind") or ("card_read" if card is not None else "door_state"))
        entry = counts.setdefault(key, [0, set()])
        entry[0] += 1
        if card is not None:
            entry[1].add(card)
    return {key: (n, len(cards)) for key, (n, cards) in counts.items()}


def counted(store: Events) -> Daily:
    return {key: (n, creds) for key, (n, creds, _building) in store.daily().items()}


def audited(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [json.loads(r) for r in conn.execute(sa.select(audit_log.c.record).order_by(audit_log.c.seq))
                .scalars()]


def a_busy_city() -> list[dict[str, Any]]:
    """Three old local days over two gateways, two doors, door contacts
    without a card or a door, cards read many times a day, and events on
    both sides of the bound."""
    specs: list[dict[str, Any]] = []
    for n, day in enumerate((D1, D2, D3)):
        for i in range(40):
            specs.append({"at": local(day, 0.2 + i * 0.55), "gateway": f"gw-{1 + i % 2}",
                          "door": ("front", "back")[i % 3 == 0], "card": f"C{(i * 7 + n) % 9}"})
        specs.append({"at": local(day, 5), "card": None, "door": None, "kind": "gateway_started"})
        specs.append({"at": local(day, 6), "card": None, "door": "front"})
    # Local midnight is 16:00 UTC: 23:50 and 00:10 local are the same UTC
    # date but two local days.
    specs.append({"at": local(D2, 23 + 50 / 60), "card": "LATE", "door": "front"})
    specs.append({"at": local(D3, 10 / 60), "card": "LATE", "door": "front"})
    # The cut-off's own day, and after it: never purged.
    specs.append({"at": BEFORE, "card": "C1"})
    specs.append({"at": CUTOFF + timedelta(hours=1), "card": "C1"})
    specs.append({"at": NOW - timedelta(days=1), "card": "C2"})
    return specs


def test_old_days_go_into_daily_counts_and_newer_events_stay(engine: sa.Engine, store: Events,
                                                             audit: AuditLog) -> None:
    specs = a_busy_city()
    ids = store.many(specs)
    store.all_reconciled()
    report = purge(engine, audit=audit)
    kept = {i for i, s in zip(ids, specs, strict=True) if s["at"] >= BEFORE}
    assert store.ids() == kept and len(kept) == 3
    assert counted(store) == expected(specs)
    assert (report.deleted, report.first_day, report.last_day, len(report.days)) == (len(specs) - 3, D1, D3, 3)
    assert report.complete and report.held_back == 0 and report.batches == 1
    # The building is the gateway's; the two sides of local midnight are two days.
    daily = store.daily()
    assert {gw: {b for (_d, g, _door, _k), (_n, _c, b) in daily.items() if g == gw} for gw in ("gw-1", "gw-2")} == {
        gw: {store.buildings[gw]} for gw in ("gw-1", "gw-2")}
    assert daily[(D1, "gw-1", "", "gateway_started")][:2] == (1, 0)


def test_the_purge_is_idempotent(engine: sa.Engine, store: Events, audit: AuditLog) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    purge(engine, audit=audit)
    entries = len(audited(engine))
    again = purge(engine, audit=audit)
    assert (again.deleted, again.batches) == (0, 0)
    assert counted(store) == expected(specs)
    assert len(audited(engine)) == entries  # a run that deleted nothing is not audited


@pytest.mark.parametrize("batch", [1, 4, 13])
def test_a_day_spanning_many_batches_counts_each_card_once(engine: sa.Engine, store: Events, audit: AuditLog,
                                                           batch: int) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    seen: list[BatchResult] = []
    report = purge(engine, audit=audit, batch=batch, on_batch=seen.append)
    assert report.batches == len(seen) == -(-report.deleted // batch)
    assert all(r.deleted <= batch for r in seen)
    assert counted(store) == expected(specs)


def test_events_past_the_watermark_stay_until_reconciled_and_then_add_to_their_day(
        engine: sa.Engine, store: Events, audit: AuditLog) -> None:
    # Card K is read on D2 before and after the watermark: counted once in all.
    first = [{"at": local(D2, h), "card": c} for h, c in ((1, "K"), (2, "A"), (3, "K"), (4, "B"))]
    late = [{"at": local(D2, h), "card": c} for h, c in ((5, "K"), (6, "C"), (7, "A"))]
    newest = [{"at": NOW, "card": "Z"}]
    ids = store.many(first + late + newest)
    store.reconciled_upto(ids[len(first) - 1])
    report = purge(engine, audit=audit, batch=2)
    assert report.deleted == len(first) and report.held_back == len(late)
    assert store.ids() == set(ids[len(first):])
    # Counted so far: B only. K and A still have events of D2 waiting, and
    # the batch that deletes their last one counts them.
    assert counted(store)[(D2, "gw-1", "door-1", "card_read")] == (4, 1)
    store.all_reconciled()
    second = purge(engine, audit=audit, batch=2)
    assert second.deleted == len(late)
    assert counted(store) == expected(first + late) == {(D2, "gw-1", "door-1", "card_read"): (7, 4)}


def test_events_the_camera_fold_has_not_read_stay_until_it_has(engine: sa.Engine, store: Events,
                                                               audit: AuditLog) -> None:
    """Card reads reconciled, the unit door cameras' fold behind: the purge
    waits for the lower watermark. A city whose camera fold is off
    (camera_evidence_weight 0) does not wait for a watermark nothing moves."""
    ids = store.many([{"at": local(D1, h)} for h in (1, 2, 3, 4)] + [{"at": NOW}])
    store.reconciled_upto(ids[-1], folds=[evidence.WATERMARK])
    store.reconciled_upto(ids[1], folds=[camera.WATERMARK])
    report = purge(engine, audit=audit, watermarks=advancing(CityRules()))
    assert (report.deleted, report.held_back) == (2, 2) and store.ids() == set(ids[2:])
    report = purge(engine, audit=audit, watermarks=advancing(CityRules(camera_evidence_weight=0)))
    assert (report.deleted, report.held_back) == (2, 0) and store.ids() == {ids[-1]}


def test_once_the_reconciler_has_run_both_folds_have_read_every_event(engine: sa.Engine, store: Events,
                                                                     audit: AuditLog) -> None:
    ids = store.many([{"at": local(D1, h)} for h in (1, 2, 3)] + [{"at": NOW}])
    store.reconciled_upto(ids[-1], folds=[evidence.WATERMARK])
    assert purge(engine, audit=audit).deleted == 0  # the camera fold has not run
    Reconciler(engine, CityRules()).catch_up(NOW)
    report = purge(engine, audit=audit)
    assert (report.deleted, report.held_back) == (3, 0) and store.ids() == {ids[-1]}


def test_an_event_whose_snapshot_is_still_stored_waits_for_the_snapshot_purge(engine: sa.Engine, store: Events,
                                                                             audit: AuditLog) -> None:
    ids = store.many([{"at": local(D1, h)} for h in (1, 2, 3)] + [{"at": NOW}])
    store.all_reconciled()
    with engine.begin() as conn:  # a picture uploaded after this run's snapshot purge
        conn.execute(sa.insert(event_snapshots).values(event_id=ids[1], sha256="a" * 64, size_bytes=1,
                                                       stored_at=NOW, gateway_id="gw-1"))
    report = purge(engine, audit=audit)
    assert (report.deleted, report.held_back) == (2, 1) and store.ids() == {ids[1], ids[-1]}
    with engine.begin() as conn:
        conn.execute(sa.delete(event_snapshots))
    assert purge(engine, audit=audit).deleted == 1 and store.ids() == {ids[-1]}


def test_nothing_goes_before_reconciliation_has_run(engine: sa.Engine, store: Events, audit: AuditLog) -> None:
    store.many([{"at": local(D1)}, {"at": local(D2)}, {"at": NOW}])
    report = purge(engine, audit=audit)
    assert (report.deleted, report.held_back) == (0, 2) and len(store.ids()) == 3


def test_the_newest_event_stays_so_sqlite_never_reuses_an_id(engine: sa.Engine, store: Events,
                                                            audit: AuditLog) -> None:
    """Everything is old and reconciled: the newest row stays, so the next
    event's id is above the watermark and reconciliation reads it."""
    ids = store.many([{"at": local(D1, h)} for h in (1, 2, 3)])
    store.all_reconciled()
    report = purge(engine, audit=audit)
    assert store.ids() == {ids[-1]} and (report.deleted, report.held_back) == (2, 1)
    fresh = store.add(NOW)
    assert fresh > ids[-1]
    reconciler = Reconciler(engine, CityRules())
    reconciler.catch_up(NOW)
    assert reconciler.totals.watermark == fresh


def test_each_batch_is_one_audit_entry_with_what_it_deleted(engine: sa.Engine, store: Events,
                                                            audit: AuditLog) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    report = purge(engine, audit=audit, batch=50, actor=CLI_ACTOR)
    records = audited(engine)
    assert len(records) == report.batches == 3
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert {(r["actor"], r["action"], r["subject"], r["status"]) for r in records} == {
        (CLI_ACTOR, "retention.purge", None, 0)}
    assert sum(r["size"] for r in records) == report.deleted
    first = records[0]["detail"]
    assert first["run"] == report.run and first["batch"] == 1
    assert first["cutoff"] == CUTOFF.isoformat() and first["before"] == BEFORE.isoformat()
    assert (first["first_day"], first["days"]) == (D1.isoformat(), 2) and first["aggregates"] > 0
    assert records[-1]["detail"]["last_day"] == D3.isoformat()
    with engine.connect() as conn:
        assert conn.execute(sa.select(audit_head.c.size)).scalar_one() == 3


class Boom(Exception):
    pass


def test_a_run_stopped_between_batches_leaves_everything_counted_once(engine: sa.Engine, store: Events,
                                                                      audit: AuditLog) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    total = len(store.ids())

    def second_batch_then_die(result: BatchResult) -> None:
        if result.number == 2:
            raise Boom  # after the second commit, as a kill -9 between batches would

    with pytest.raises(Boom):
        purge(engine, audit=audit, batch=9, on_batch=second_batch_then_die)
    assert total - len(store.ids()) == 18 == sum(n for n, _c in counted(store).values())
    assert sum(r["size"] for r in audited(engine)) == 18
    purge(engine, audit=audit, batch=9)
    assert counted(store) == expected(specs)
    assert sum(r["size"] for r in audited(engine)) == total - 3


class AuditFailingAt(AuditLog):
    """The third append fails inside its batch's transaction (after the
    delete and the counts), as a crash before the commit would."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.calls = 0

    def append_in(self, conn: sa.Connection, *entries: AuditEntry, now: datetime | None = None) -> list[int]:
        self.calls += 1
        if self.calls == 3:
            raise Boom
        return super().append_in(conn, *entries, now=now)


def test_a_batch_that_fails_inside_its_transaction_leaves_no_trace(engine: sa.Engine, store: Events) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    total = len(store.ids())
    with pytest.raises(Boom):
        purge(engine, audit=AuditFailingAt(engine), batch=10)
    # Two whole batches: deleted, counted and audited; the third not at all.
    assert total - len(store.ids()) == 20 == sum(n for n, _c in counted(store).values())
    assert [r["size"] for r in audited(engine)] == [10, 10]
    purge(engine, audit=AuditLog(engine), batch=10)
    assert counted(store) == expected(specs)


def test_a_stop_request_ends_the_run_between_batches(engine: sa.Engine, store: Events, audit: AuditLog) -> None:
    specs = a_busy_city()
    store.many(specs)
    store.all_reconciled()
    done: list[BatchResult] = []
    report = purge(engine, audit=audit, batch=10, on_batch=done.append,
                          should_stop=lambda: len(done) == 2)
    assert (report.batches, report.deleted, report.complete) == (2, 20, False)


def test_only_whole_local_days_before_the_cutoff_go(engine: sa.Engine, store: Events, audit: AuditLog) -> None:
    """The cut-off falls at noon: that day's morning stays with its afternoon."""
    morning = store.add(CUTOFF - timedelta(hours=3))
    before_midnight = store.add(BEFORE - timedelta(microseconds=1))
    store.add(NOW)
    store.all_reconciled()
    purge(engine, audit=audit)
    remaining = store.ids()
    assert morning in remaining and before_midnight not in remaining


def test_two_purges_at_once_count_every_card_once(engine: sa.Engine, store: Events) -> None:
    """A server's job and a command line (or two servers) purging together:
    their batches take turns, and the counts are those of one purge."""
    specs = a_busy_city() * 3
    store.many(specs)
    store.all_reconciled()
    reports: list[PurgeReport] = []

    def one() -> None:
        reports.append(purge(engine, audit=AuditLog(engine), batch=3))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 2
    assert sum(r.deleted for r in reports) == len(specs) - 9
    assert counted(store) == expected(specs)
