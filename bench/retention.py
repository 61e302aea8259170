"""Retention benchmark: purge 1,000,000 raw events on PostgreSQL and on
SQLite while a writer keeps ingesting, and check the daily counts exactly.

``python bench/retention.py --json``; ``--quick`` for a smoke test (50,000
events); ``--database postgresql|sqlite`` for one of the two. Progress goes
to stderr, one JSON object is the last stdout line.

What is generated (server-side SQL, on a freshly migrated database): one
gateway per 5,000 events (200 for a million), each in its own building;
``--events`` events spread evenly over the 30 local days before the
retention bound (about 170 a day per gateway; ids in time order, as ingest
makes them), 70 % card reads of 40 cards per gateway, 30 % door contacts
without a card, on two doors; 10,000 events of the last day (never purged);
the reconciliation watermark at the newest event.

What is measured:
- purge_s, events_per_s: ``purge_before`` with ``--batch`` events per
  transaction and ``--pause`` between them (default: the purge's own, 10,000
  and none on PostgreSQL, 1,000 and 0.03 s on SQLite), the whole run;
- batches: transactions it took;
- exact: the event_daily rows equal the counts computed beforehand by one
  GROUP BY over the raw events (count and COUNT(DISTINCT credential) per
  local day, gateway, door and kind);
- ingest_commit_ms_p50/p99/max: meanwhile, a writer thread commits 100 new
  events every 50 ms (as the ingest service would): how long each commit
  took, i.e. how long the purge made ingest wait (on SQLite, for the single
  write lock);
- ingest_commits: how many such commits happened during the purge.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.measure import percentile, print_result
from bench.stack import throwaway_postgres

log = logging.getLogger("bench.retention")

ZONE = ZoneInfo("Asia/Shanghai")
# One gateway per 5,000 events: about 170 events a day each, as a building
# of some forty tenants makes.
EVENTS_PER_GATEWAY = 5_000
CARDS_PER_GATEWAY = 40
DAYS = 30
FRESH = 10_000
RETENTION_DAYS = 180


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--quick", action="store_true", help="50,000 events, for a smoke test")
    p.add_argument("--events", type=int, default=None, help="old events to purge (default 1,000,000)")
    p.add_argument("--batch", type=int, default=None, help="events per purge transaction (default: the purge's, "
                   "10,000 on PostgreSQL, 1,000 on SQLite)")
    p.add_argument("--pause", type=float, default=None, help="seconds between batches (default: the purge's, "
                   "0 on PostgreSQL, 0.03 on SQLite)")
    p.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both",
                   help="which database to measure")
    p.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    return p.parse_args(argv)


# Event i of n: evenly over DAYS days from :start, in id order; 70 % card
# reads of the gateway's 40 cards, 30 % door contacts.
_PG_EVENTS = """
INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, received_at, stored_at,
                    credential_format, credential_value, data)
SELECT 'gw-' || (i % :gateways), i,
       CASE WHEN i % 10 < 7 THEN 'card_read' ELSE 'door_state' END, 'reader-1', 'door-' || (i / 7 % 2), t.at, t.at,
       t.at, CASE WHEN i % 10 < 7 THEN 'em4100' END,
       CASE WHEN i % 10 < 7 THEN 'c-' || (i % :gateways) || '-' || ((i % 10007) * 7919 % :cards) END, '{}'
FROM generate_series(:lo, :hi) i
CROSS JOIN LATERAL (SELECT :start + make_interval(secs => (i - 1) * :step) AS at) t
"""
_SQLITE_EVENTS = """
WITH RECURSIVE n(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i < :hi)
INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, received_at, stored_at,
                    credential_format, credential_value, data)
SELECT 'gw-' || (i % :gateways), i,
       CASE WHEN i % 10 < 7 THEN 'card_read' ELSE 'door_state' END, 'reader-1', 'door-' || (i / 7 % 2), at, at, at,
       CASE WHEN i % 10 < 7 THEN 'em4100' END,
       CASE WHEN i % 10 < 7 THEN 'c-' || (i % :gateways) || '-' || ((i % 10007) * 7919 % :cards) END, '{}'
FROM (SELECT i, strftime('%Y-%m-%d %H:%M:%S', :start, '+' || CAST((i - 1) * :step AS INTEGER) || ' seconds')
             || '.000000' AS at FROM n)
"""
# What event_daily must hold afterwards, from the raw events.
_PG_EXPECTED = """
SELECT (occurred_at AT TIME ZONE 'Asia/Shanghai')::date AS day, gateway_id, COALESCE(door, ''), kind, COUNT(*),
       COUNT(DISTINCT credential_value)
FROM events WHERE occurred_at < :before GROUP BY 1, 2, 3, 4
"""
# Shanghai has had no daylight saving since 1991: a fixed +8 hours.
_SQLITE_EXPECTED = """
SELECT date(occurred_at, '+8 hours') AS day, gateway_id, COALESCE(door, ''), kind, COUNT(*),
       COUNT(DISTINCT credential_value)
FROM events WHERE occurred_at < :before GROUP BY 1, 2, 3, 4
"""


def generate(engine: sa.Engine, events: int, before: datetime, now: datetime) -> None:
    postgresql = engine.dialect.name == "postgresql"
    gateways = max(1, events // EVENTS_PER_GATEWAY)
    start = before - timedelta(days=DAYS)
    step = DAYS * 86400 / events
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO buildings (name, created_at) SELECT 'B' || g, :now FROM "
                             + ("generate_series(0, :n - 1) g" if postgresql else
                                "(WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g < :n - 1) "
                                "SELECT g FROM s)")), {"now": _param(now, postgresql), "n": gateways})
        conn.execute(sa.text("INSERT INTO gateways (id, first_seen, last_seen, max_seq, building_id) "
                             "SELECT 'gw-' || (id - 1), :now, :now, 0, id FROM buildings"),
                     {"now": _param(now, postgresql)})
    chunk = 250_000
    for lo in range(1, events + 1, chunk):
        hi = min(events, lo + chunk - 1)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(_PG_EVENTS if postgresql else _SQLITE_EVENTS),
                         {"lo": lo, "hi": hi, "gateways": gateways, "cards": CARDS_PER_GATEWAY,
                          "start": _param(start, postgresql), "step": step})
        progress("events %s..%s: %.1fs", f"{lo:,}", f"{hi:,}", time.perf_counter() - started)
    with engine.begin() as conn:
        # FRESH events over the last day: never purged. Event i is at
        # start + (i - 1) * step, and these are numbered from events + 1.
        fresh_step = 86400 / FRESH
        fresh_start = now - timedelta(days=1) - timedelta(seconds=events * fresh_step)
        conn.execute(sa.text(_PG_EVENTS if postgresql else _SQLITE_EVENTS),
                     {"lo": events + 1, "hi": events + FRESH, "gateways": gateways, "cards": CARDS_PER_GATEWAY,
                      "start": _param(fresh_start, postgresql), "step": fresh_step})
        # Every reconciliation fold (card reads, cameras) has read them all:
        # a (txid, id) mark at or above every event (server/reconcile/marks.py).
        from server.reconcile.watermarks import EVERY_FOLD

        for fold in EVERY_FOLD:
            conn.execute(sa.text("INSERT INTO reconcile_state (name, last_txid, last_event_id, updated_at) "
                                 "SELECT :fold, COALESCE(MAX(txid), 0), MAX(id), :now FROM events"),
                         {"fold": fold, "now": _param(now, postgresql)})
        conn.execute(sa.text("ANALYZE"))


def _param(at: datetime, postgresql: bool) -> Any:
    """A time as each database's raw SQL takes it (SQLite: naive UTC text)."""
    return at if postgresql else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def expected_daily(engine: sa.Engine, before: datetime) -> set[tuple[str, str, str, str, int, int]]:
    postgresql = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_PG_EXPECTED if postgresql else _SQLITE_EXPECTED),
                            {"before": before if postgresql else before.astimezone(UTC).strftime(
                                "%Y-%m-%d %H:%M:%S.%f")}).all()
    return {(str(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows}


def stored_daily(engine: sa.Engine) -> set[tuple[str, str, str, str, int, int]]:
    from server.db.models import event_daily

    with engine.connect() as conn:
        return {(str(r.day), r.gateway_id, r.door, r.kind, int(r.events), int(r.credentials))
                for r in conn.execute(sa.select(event_daily))}


class Writer(threading.Thread):
    """Commits 100 fresh events every 50 ms, as ingest would, timing each commit."""

    def __init__(self, engine: sa.Engine, first_seq: int) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.engine = engine
        self.seq = first_seq
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from server.db.models import events

        try:
            while not self.stop.is_set():
                now = datetime.now(UTC)
                rows = [{"gateway_id": "gw-live", "seq": self.seq + k, "kind": "card_read", "device": "reader-1",
                         "door": "door-0", "occurred_at": now, "received_at": now, "stored_at": now,
                         "credential_format": "em4100", "credential_value": f"live-{k}", "data": {}}
                        for k in range(100)]
                self.seq += 100
                started = time.perf_counter()
                with self.engine.begin() as conn:
                    conn.execute(events.insert(), rows)
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.stop.wait(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the bench
            self.error = exc


def measure(url: str, events: int, batch: int | None, pause: float | None) -> dict[str, Any]:
    from server.audit.log import AuditLog
    from server.db import migrate
    from server.db.engine import create_engine
    from server.retention.purge import cutoff_for, purge_before, purge_bound

    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        cutoff = cutoff_for(now, RETENTION_DAYS)
        before = purge_bound(cutoff, ZONE)
        started = time.perf_counter()
        generate(engine, events, before, now)
        generate_s = time.perf_counter() - started
        progress("%s: %s events generated in %.1fs", engine.dialect.name, f"{events + FRESH:,}", generate_s)
        expected = expected_daily(engine, before)
        writer = Writer(engine, events + FRESH + 1)
        writer.start()
        # Its first commit opens its connection: not a wait the purge caused.
        while not writer.latencies_ms and writer.error is None:
            time.sleep(0.01)
        writer.latencies_ms.clear()
        started = time.perf_counter()
        report = purge_before(engine, cutoff, zone=ZONE, audit=AuditLog(engine), batch=batch,
                              pause_s=pause)
        purge_s = time.perf_counter() - started
        writer.stop.set()
        writer.join()
        if writer.error is not None:
            raise RuntimeError(f"the concurrent writer failed: {writer.error}")
        exact = stored_daily(engine) == expected and report.deleted == events
        progress("%s: purged %s events in %.1fs (%s batches), exact: %s", engine.dialect.name,
                 f"{report.deleted:,}", purge_s, report.batches, exact)
        lat = writer.latencies_ms
        return {"events": report.deleted, "purge_s": round(purge_s, 2),
                "events_per_s": round(report.deleted / purge_s) if purge_s else None, "batches": report.batches,
                "aggregate_rows": len(expected), "exact": exact, "generate_s": round(generate_s, 1),
                "ingest_commits": len(lat), "ingest_commit_ms_p50": _round(percentile(lat, 50)),
                "ingest_commit_ms_p99": _round(percentile(lat, 99)),
                "ingest_commit_ms_max": _round(max(lat, default=0))}
    finally:
        engine.dispose()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    events = args.events or (50_000 if args.quick else 1_000_000)
    result: dict[str, Any] = {"events": events, "batch": args.batch}
    if args.database in ("postgresql", "both"):
        with throwaway_postgres(args.database_url, "bench_retention") as url:
            result["postgresql"] = measure(url, events, args.batch, args.pause)
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-retention-") as folder:
            result["sqlite"] = measure(f"sqlite:///{folder}/bench.db", events, args.batch, args.pause)
    result["exact"] = all(part["exact"] for key, part in result.items() if key in ("postgresql", "sqlite"))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - a bench reports its failure as JSON too
        log.exception("bench failed")
        if args.json:
            print(json.dumps({"error": str(exc)}))
        return 1
    print_result(result, as_json=args.json)
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
