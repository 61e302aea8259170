"""Reconciliation benchmark on PostgreSQL: a city of 1,000,000 registrations
and 10,000,000 card reads, then a full sweep, the incremental path's latency
per ingested event, and the four rates for every area.

``python bench/reconcile.py --json``; ``--quick`` for a smoke test of a few
seconds. Progress goes to stderr, one JSON object is the last stdout line.

What is generated (server-side SQL, INSERT ... SELECT generate_series):
areas (1 district, 10 streets, 50 communities, 500 grids), 15,000 buildings
(90 % rentals, 75 % of them with a pledge), 300,000 units (capacity 4; every
50th has capacity 2, so some are overcrowded), 1,000,000 active
registrations of as many persons, a card for 95 % of them, 20,000
unregistered occupants holding cards handed to a unit, and 10,000,000 reads:
every card on about ten days over eight weeks, except the 3 % of registered
tenants who left (their last read is over 35 days old) and 1 % of reads from
cards nobody issued.

What is measured:
- backfill_s: presence built by one set-based statement from all but the last
  ``--tail`` events (how an existing city would be loaded; not a target);
- catchup_events_per_s: the incremental path over the remaining tail;
- sweep_s: a full sweep (every rule, grades for every unit, the rate
  snapshot) right after that, when it opens the city's cases; sweep_again_s:
  the next one, in steady state;
- incremental_ms_p99: ingest-sized batches (``--batch`` reads, default 100)
  are inserted into events, then ``Reconciler.catch_up`` runs; each batch's
  wall time divided by its size is one sample, p99 over ``--rounds``;
  incremental_single_ms_p99: the same with one read per call (one
  transaction per read: mostly commit and round-trip cost);
- rates_s: compute_rates for every area (all four levels).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.measure import percentile, print_result
from bench.stack import daily_partitions, throwaway_postgres

log = logging.getLogger("bench.reconcile")


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    registrations: int
    units: int
    buildings: int
    grids: int
    communities: int
    streets: int
    unregistered: int
    events: int


FULL = Sizes(1_000_000, 300_000, 15_000, 500, 50, 10, 20_000, 10_000_000)
QUICK = Sizes(20_000, 6_000, 300, 10, 5, 2, 400, 200_000)


def scaled(sizes: Sizes, factor: float) -> Sizes:
    """Every count times ``factor`` (at least 1), so the city keeps its shape."""
    if not 0 < factor <= 1:
        raise ValueError(f"--scale must be in (0, 1], not {factor}")
    return Sizes(*(max(1, round(n * factor)) for n in (
        sizes.registrations, sizes.units, sizes.buildings, sizes.grids, sizes.communities, sizes.streets,
        sizes.unregistered, sizes.events)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--scale", type=float, default=1.0,
                   help="a fraction of the full city (e.g. 0.1: 100,000 registrations, 1,000,000 reads), "
                        "to iterate on a slow machine; the published figures are at 1")
    p.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    p.add_argument("--tail", type=int, default=None, help="events left to the incremental path")
    p.add_argument("--batch", type=int, default=100, help="reads per incremental call")
    p.add_argument("--rounds", type=int, default=200, help="incremental calls measured")
    return p.parse_args(argv)


def _timed(conn: sa.Connection, what: str, sql: str, **params: Any) -> float:
    started = time.perf_counter()
    conn.execute(sa.text(sql), params)
    seconds = time.perf_counter() - started
    progress("%s: %.1fs", what, seconds)
    return seconds


def generate(engine: sa.Engine, s: Sizes, now: datetime) -> None:
    """The city, by server-side SQL. Ids come out 1..n in order on the fresh database."""
    per_building = s.units // s.buildings
    with engine.begin() as conn:
        t = dict(now=now)
        _timed(conn, "areas", """
INSERT INTO areas (level, code, name, parent_id, created_at) VALUES ('district', 'D', 'District', NULL, :now);
""", **t)
        conn.execute(sa.text("""
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'street', 'S' || i, 'Street ' || i, (SELECT id FROM areas WHERE code = 'D'), :now
FROM generate_series(1, :n) i"""), {"now": now, "n": s.streets})
        conn.execute(sa.text("""
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'community', 'C' || i, 'Community ' || i, a.id, :now
FROM generate_series(1, :n) i JOIN areas a ON a.code = 'S' || ((i - 1) % :up + 1)"""),
                     {"now": now, "n": s.communities, "up": s.streets})
        conn.execute(sa.text("""
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'grid', 'G' || i, 'Grid ' || i, a.id, :now
FROM generate_series(1, :n) i JOIN areas a ON a.code = 'C' || ((i - 1) % :up + 1) ORDER BY i"""),
                     {"now": now, "n": s.grids, "up": s.communities})
        _timed(conn, "buildings", """
INSERT INTO buildings (name, created_at, code, grid_id, is_rental, pledge_signed_at, rooms)
SELECT 'B' || b, :now, 'B' || b, a.id, b % 10 <> 0, CASE WHEN b % 4 = 0 THEN NULL ELSE :now END, :per
FROM generate_series(1, :n) b JOIN areas a ON a.code = 'G' || ((b - 1) % :grids + 1) ORDER BY b""",
               now=now, n=s.buildings, grids=s.grids, per=per_building)
        conn.execute(sa.text("""
INSERT INTO gateways (id, first_seen, last_seen, max_seq, building_id)
SELECT 'gw-' || b, :now, :now, 0, b FROM generate_series(1, :n) b"""), {"now": now, "n": s.buildings})
        _timed(conn, "units", """
INSERT INTO units (building_id, number, area_m2, rooms, capacity, created_at)
SELECT (u - 1) / :per + 1, 'U' || u, 20, 2, CASE WHEN u % 50 = 0 THEN 2 ELSE 4 END, :now
FROM generate_series(1, :n) u ORDER BY u""", now=now, n=s.units, per=per_building)
        _timed(conn, "persons", """
INSERT INTO persons (display_name, created_at) SELECT 'P' || p, :now FROM generate_series(1, :n) p ORDER BY p""",
               now=now, n=s.registrations + s.unregistered)
        _timed(conn, "registrations", """
INSERT INTO registrations (person_id, building_id, unit_id, valid_from, created_at, status, source)
SELECT r, ((r - 1) % :units) / :per + 1, (r - 1) % :units + 1, :arrived, :arrived, 'active', 'import'
FROM generate_series(1, :n) r ORDER BY r""",
               n=s.registrations, units=s.units, per=per_building, arrived=now - timedelta(days=200))
        _timed(conn, "credentials", """
INSERT INTO credentials (person_id, registration_id, building_id, unit_id, format, value, doors, issued_at)
SELECT r, r, ((r - 1) % :units) / :per + 1, (r - 1) % :units + 1, 'em4100', 'R' || r, '[]', :issued
FROM generate_series(1, :n) r WHERE r % 20 <> 0 ORDER BY r""",
               n=s.registrations, units=s.units, per=per_building, issued=now - timedelta(days=200))
        conn.execute(sa.text("""
INSERT INTO credentials (person_id, registration_id, building_id, unit_id, format, value, doors, issued_at)
SELECT :reg + x, NULL, ((x * 7) % :units) / :per + 1, (x * 7) % :units + 1, 'em4100', 'X' || x, '[]', :issued
FROM generate_series(1, :n) x ORDER BY x"""),
                     {"reg": s.registrations, "n": s.unregistered, "units": s.units, "per": per_building,
                      "issued": now - timedelta(days=20)})
        conn.execute(sa.text("ANALYZE"))
    daily_partitions(engine, now, days_back=DAYS_OF_READS)
    creds = s.registrations - s.registrations // 20 + s.unregistered
    rounds = max(1, s.events // creds)
    chunk = 2_000_000
    for lo in range(1, s.events + 1, chunk):
        hi = min(s.events, lo + chunk - 1)
        with engine.begin() as conn:
            # Round k of reads of card c: registered cards every ~5.5 days over
            # eight weeks; the departed (person % 33 = 0) only before day -35;
            # the unregistered on the last days; every 100th read a stranger's card.
            _timed(conn, f"events {lo:,}..{hi:,}", """
INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, received_at, stored_at,
                    credential_format, credential_value, data)
SELECT 'gw-' || CASE WHEN i % 100 = 0 THEN (i / 100) % :buildings + 1 ELSE c.building_id END, i, 'card_read',
       'reader-1', 'door-1', t.at, t.at, t.at, 'em4100',
       CASE WHEN i % 100 = 0 THEN 'U' || (i % 5000) ELSE c.value END, '{}'
FROM generate_series(:lo, :hi) i
JOIN credentials c ON c.id = i % :creds + 1
CROSS JOIN LATERAL (SELECT :now - make_interval(secs => (
    CASE WHEN c.registration_id IS NULL THEN (i / :creds % 4) * 86400.0
         WHEN c.person_id % 33 = 0 THEN (36 + (i / :creds) * 2) * 86400.0
         ELSE ((i / :creds) * 55.0 / :rounds) * 86400.0 END + (i % 997) * 37.0)) AS at) t""",
                   lo=lo, hi=hi, creds=creds, rounds=rounds, now=now, buildings=s.buildings)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


# The reads span about eight weeks (the departed's oldest are ~57 days back).
DAYS_OF_READS = 60


_LOCAL_DAY = "((e.occurred_at AT TIME ZONE :zone)::date - DATE '0001-01-01' + 1)"


def backfill(engine: sa.Engine, upto: int, now: datetime, zone: str) -> float:
    """Presence, unknown credentials, credentials.last_seen_at and the
    watermark from events 1..upto, as the incremental path would leave them."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("""
CREATE TEMP TABLE reads ON COMMIT DROP AS
SELECT e.occurred_at, e.credential_format AS fmt, e.credential_value AS value, g.building_id, c.id AS cid,
       COALESCE(c.unit_id, r.unit_id) AS unit_id, COALESCE(c.person_id, r.person_id) AS person_id,
       """ + _LOCAL_DAY + """ AS day
FROM events e JOIN gateways g ON g.id = e.gateway_id
LEFT JOIN credentials c ON c.building_id = g.building_id AND c.format = e.credential_format
     AND c.value = e.credential_value AND c.issued_at <= e.occurred_at
     AND (c.revoked_at IS NULL OR c.revoked_at > e.occurred_at)
LEFT JOIN registrations r ON r.id = c.registration_id
WHERE e.id <= :upto AND e.kind = 'card_read'"""), {"upto": upto, "zone": zone})
        conn.execute(sa.text("""
INSERT INTO presence (unit_id, building_id, subject, person_id, credential_id, first_seen_at, last_seen_at,
                      last_day, days_seen, events)
SELECT unit_id, MIN(building_id), CASE WHEN person_id IS NOT NULL THEN 'p' || person_id ELSE 'c' || MIN(cid) END,
       person_id, MAX(cid), MIN(occurred_at), MAX(occurred_at), MAX(day), COUNT(DISTINCT day), COUNT(*)
FROM reads WHERE cid IS NOT NULL AND unit_id IS NOT NULL
GROUP BY unit_id, person_id, CASE WHEN person_id IS NULL THEN cid END"""))
        conn.execute(sa.text("""
INSERT INTO unknown_credentials (building_id, format, value, first_seen_at, last_seen_at, last_day, days_seen,
                                 events)
SELECT building_id, fmt, value, MIN(occurred_at), MAX(occurred_at), MAX(day), COUNT(DISTINCT day), COUNT(*)
FROM reads WHERE cid IS NULL AND building_id IS NOT NULL GROUP BY building_id, fmt, value"""))
        conn.execute(sa.text("""
UPDATE credentials c SET last_seen_at = x.seen
FROM (SELECT cid, MAX(occurred_at) AS seen FROM reads WHERE cid IS NOT NULL GROUP BY cid) x
WHERE c.id = x.cid"""))
        # The fold's mark at event upto, (its txid, upto) (server/reconcile/marks.py):
        # the events went in one transaction after another, so that is events 1..upto.
        conn.execute(sa.text("""
INSERT INTO reconcile_state (name, last_txid, last_event_id, updated_at)
SELECT 'events', txid, id, :now FROM events WHERE id = :upto
ON CONFLICT (name) DO UPDATE SET last_txid = excluded.last_txid, last_event_id = excluded.last_event_id"""),
                     {"upto": upto, "now": now})
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def incremental(engine: sa.Engine, reconciler: Any, now: datetime, *, batch: int, rounds: int,
                first_seq: int) -> list[float]:
    """Per-event milliseconds of ``rounds`` catch-ups of ``batch`` fresh reads each."""
    samples: list[float] = []
    seq = first_seq
    with engine.connect() as conn:
        cards = conn.execute(sa.text(
            "SELECT 'gw-' || building_id, value FROM credentials WHERE revoked_at IS NULL ORDER BY id LIMIT 5000")).all()
    for n in range(rounds):
        at = now + timedelta(seconds=n)
        rows = []
        for k in range(batch):
            gw, value = cards[(n * batch + k) % len(cards)]
            seq += 1
            rows.append({"gateway_id": gw, "seq": seq, "kind": "card_read", "device": "reader-1", "door": "door-1",
                         "occurred_at": at, "received_at": at, "stored_at": at, "credential_format": "em4100",
                         "credential_value": value, "data": {}})
        from server.db.models import events

        with engine.begin() as conn:
            conn.execute(sa.insert(events), rows)
        started = time.perf_counter()
        done = reconciler.catch_up(at)
        elapsed = time.perf_counter() - started
        if done != batch:
            raise RuntimeError(f"catch_up processed {done} reads, expected {batch}")
        samples.append(elapsed * 1000 / batch)
    return samples


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from server.db import migrate
    from server.db.engine import create_engine
    from server.reconcile.rates import compute_rates
    from server.reconcile.runner import Reconciler
    from server.rules import CityRules

    sizes = QUICK if args.quick else scaled(FULL, args.scale)
    tail = args.tail if args.tail is not None else (20_000 if args.quick else max(1, round(200_000 * args.scale)))
    engine = create_engine(url)
    migrate.upgrade(engine)
    rules = CityRules()
    now = datetime.now(UTC).replace(microsecond=0)
    out: dict[str, Any] = {"scale": None if args.quick else args.scale, "registrations": sizes.registrations,
                           "units": sizes.units, "buildings": sizes.buildings, "grids": sizes.grids,
                           "events": sizes.events}
    started = time.perf_counter()
    generate(engine, sizes, now)
    out["generate_s"] = round(time.perf_counter() - started, 1)
    with engine.connect() as conn:
        max_id = int(conn.execute(sa.text("SELECT MAX(id) FROM events")).scalar_one())
    out["backfill_s"] = round(backfill(engine, max_id - tail, now, rules.timezone), 2)
    progress("backfill of %s events: %ss", max_id - tail, out["backfill_s"])
    reconciler = Reconciler(engine, rules)
    started = time.perf_counter()
    caught = reconciler.catch_up(now)
    seconds = time.perf_counter() - started
    out["catchup_events"], out["catchup_events_per_s"] = caught, round(caught / seconds)
    progress("catch-up of %s events: %.1fs", caught, seconds)
    result = reconciler.sweep(now)
    out["sweep_s"] = round(result.seconds, 2)
    out["sweep_opened"] = result.opened
    out["sweep_regraded"] = result.regraded
    out["sweep_steps_s"] = result.timings
    progress("sweep: %.1fs, opened %s, steps %s", result.seconds, result.opened, result.timings)
    result = reconciler.sweep(now + timedelta(minutes=1))
    out["sweep_again_s"] = round(result.seconds, 2)
    out["sweep_again_steps_s"] = result.timings
    progress("second sweep: %.1fs, steps %s", result.seconds, result.timings)
    samples = incremental(engine, reconciler, now + timedelta(minutes=2), batch=args.batch, rounds=args.rounds,
                          first_seq=sizes.events * 10)
    out["incremental_batch"] = args.batch
    out["incremental_ms_p50"] = round(percentile(samples, 50) or 0, 4)
    out["incremental_ms_p99"] = round(percentile(samples, 99) or 0, 4)
    singles = incremental(engine, reconciler, now + timedelta(hours=1), batch=1, rounds=args.rounds,
                          first_seq=sizes.events * 20)
    out["incremental_single_ms_p50"] = round(percentile(singles, 50) or 0, 3)
    out["incremental_single_ms_p99"] = round(percentile(singles, 99) or 0, 3)
    progress("incremental: %s ms/event p99 in batches of %s, %s ms p99 one by one", out["incremental_ms_p99"],
             args.batch, out["incremental_single_ms_p99"])
    started = time.perf_counter()
    with engine.connect() as conn:
        rates = compute_rates(conn, rules, now)
    out["rates_s"] = round(time.perf_counter() - started, 3)
    out["rate_areas"] = len(rates)
    district = rates["D"]
    out["district_rates"] = {k: round(getattr(district, k).value or 0, 4)
                             for k in ("registration", "rental", "consistency", "pledge")}
    progress("rates for %s areas: %.2fs", len(rates), out["rates_s"])
    with engine.connect() as conn:
        out["open_cases"] = dict(conn.execute(sa.text(
            "SELECT kind, COUNT(*) FROM cases WHERE state IN ('open', 'acknowledged') GROUP BY kind")).tuples().all())
    engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with throwaway_postgres(args.database_url, "bench") as url:
            result = run(args, url)
    except Exception as exc:  # noqa: BLE001 - a bench reports its failure as JSON too
        log.exception("bench failed")
        if args.json:
            print(json.dumps({"error": str(exc)}))
        return 1
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
