"""How ingest should write events on PostgreSQL: COPY straight into events,
COPY into a staging table and INSERT ... SELECT ... ON CONFLICT, or a
batched INSERT ... ON CONFLICT (executemany, one multi-row VALUES, unnest of
arrays), measured on the table as migrated (partitioned by day since 0011).

``python bench/ingest_methods.py --json``; ``--quick`` for a smoke test.
Progress goes to stderr, one JSON object is the last stdout line.

Each method stores ``--events`` events in transactions of ``--batch`` events
(one ingest commit each: the events of 100 gateways, today's time), starting
from an empty table (TRUNCATE) each round, with ``--past-days`` daily
partitions before today (180, as the default retention keeps); the rounds alternate the methods'
order and the median is kept. Two cases:

- ``new``: every event new, the usual case (store.py knows it from each
  gateway's max_seq and COPYs straight in);
- ``resend``: half of each batch already stored (a gateway replaying what
  was not acknowledged); COPY straight in is not possible there.

Figures: ``new`` and ``resend`` map each method to events/s; ``fastest_new``,
``fastest_resend``; ``partitioned`` and ``partitions`` describe the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import sqlalchemy as sa

from bench.measure import print_result
from bench.stack import throwaway_postgres
from server.db import migrate
from server.db import partitions as parts
from server.db.engine import create_engine
from server.ingest.parse import EVENT_COLUMNS, EventRow
from server.rules import CityRules

GATEWAYS = 100
_COLS = ", ".join(EVENT_COLUMNS)
# Each column's type for the unnest() form (arrays of one type each).
_ARRAY_TYPES = ("text", "bigint", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "jsonb")
_STAGING = ("CREATE TEMP TABLE IF NOT EXISTS events_in (gateway_id text, seq bigint, kind text, device text, "
            "door text, occurred_at timestamptz, received_at timestamptz, credential_format text, "
            "credential_value text, data jsonb) ON COMMIT DELETE ROWS")

Method = Callable[[psycopg.Connection[Any], list[EventRow], datetime, "Extra"], int]


class Extra:
    """The columns a method adds to each row beside EVENT_COLUMNS: stored_at,
    and txid when the table has it (ingest passes it in: a volatile default
    would make COPY insert row by row)."""

    def __init__(self, txid: bool) -> None:
        self.txid = txid
        self.names = ", stored_at, txid" if txid else ", stored_at"

    def values(self, cur: psycopg.Cursor[Any], stored_at: datetime) -> tuple[Any, ...]:
        if not self.txid:
            return (stored_at,)
        row = cur.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert row is not None
        return (stored_at, row[0])


def copy_direct(conn: psycopg.Connection[Any], rows: list[EventRow], stored_at: datetime, extra: Extra) -> int:
    with conn.cursor() as cur:
        more = extra.values(cur, stored_at)
        with cur.copy(f"COPY events ({_COLS}{extra.names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, *more))
    return len(rows)


def copy_staging(conn: psycopg.Connection[Any], rows: list[EventRow], stored_at: datetime, extra: Extra) -> int:
    with conn.cursor() as cur:
        more = extra.values(cur, stored_at)
        cur.execute(_STAGING)
        with cur.copy(f"COPY events_in ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        marks = ", ".join(["%s"] * len(more))
        cur.execute(f"INSERT INTO events ({_COLS}{extra.names}) SELECT {_COLS}, {marks} FROM events_in "
                    "ON CONFLICT DO NOTHING", more)
        return cur.rowcount


def executemany(conn: psycopg.Connection[Any], rows: list[EventRow], stored_at: datetime, extra: Extra) -> int:
    with conn.cursor() as cur:
        more = extra.values(cur, stored_at)
        marks = ", ".join(["%s"] * (len(EVENT_COLUMNS) + len(more)))
        # psycopg 3 sends these in pipeline mode: one round trip, one statement per row.
        cur.executemany(f"INSERT INTO events ({_COLS}{extra.names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                        [(*row, *more) for row in rows])
        return cur.rowcount


def values_insert(conn: psycopg.Connection[Any], rows: list[EventRow], stored_at: datetime, extra: Extra) -> int:
    with conn.cursor() as cur:
        more = extra.values(cur, stored_at)
        one = "(" + ", ".join(["%s"] * (len(EVENT_COLUMNS) + len(more))) + ")"
        params = [value for row in rows for value in (*row, *more)]
        cur.execute(f"INSERT INTO events ({_COLS}{extra.names}) VALUES {', '.join([one] * len(rows))} "
                    "ON CONFLICT DO NOTHING", params)
        return cur.rowcount


def unnest_insert(conn: psycopg.Connection[Any], rows: list[EventRow], stored_at: datetime, extra: Extra) -> int:
    with conn.cursor() as cur:
        more = extra.values(cur, stored_at)
        columns = [list(col) for col in zip(*rows, strict=True)]
        arrays = ", ".join(f"%s::{t}[]" for t in _ARRAY_TYPES)
        marks = ", ".join(["%s"] * len(more))
        cur.execute(f"INSERT INTO events ({_COLS}{extra.names}) SELECT *, {marks} FROM unnest({arrays}) "
                    "ON CONFLICT DO NOTHING", [*more, *columns])
        return cur.rowcount


METHODS: dict[str, Method] = {"copy_direct": copy_direct, "copy_staging": copy_staging,
                              "executemany": executemany, "values": values_insert, "unnest": unnest_insert}


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--quick", action="store_true", help="20,000 events, one round: a smoke test")
    p.add_argument("--events", type=int, default=200_000, help="events per method and round (default 200,000)")
    p.add_argument("--batch", type=int, default=1_000, help="events per transaction (default 1,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each method once per round (default 3)")
    p.add_argument("--past-days", type=int, default=180,
                   help="daily partitions made before today, as a table kept 180 days has (default 180)")
    p.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 20_000, 1
    if args.events < 1 or args.batch < 2 or args.rounds < 1 or args.past_days < 0:
        p.error("--events must be at least 1, --batch at least 2, --rounds at least 1, --past-days at least 0")
    return args


def make_past_days(engine: sa.Engine, zone: ZoneInfo, days: int) -> None:
    """Partitions for the ``days`` local days before the oldest one, so that
    rows are routed among as many partitions as in production."""
    with engine.begin() as conn:
        if not parts.is_partitioned(conn):
            return
        oldest = parts.partitions(conn)[0].lo
        for _ in range(days):
            lo = parts.day_start((oldest - timedelta(hours=1)).astimezone(zone).date(), zone)
            parts.create_partition(conn, parts.partition_name(lo, zone), lo, oldest)
            oldest = lo
    progress("%d partitions made before today", days)


def make_rows(n: int, now: datetime) -> list[EventRow]:
    """n card reads of GATEWAYS gateways, interleaved as a broker delivers them."""
    rows: list[EventRow] = []
    for i in range(n):
        gw, seq = f"gw-{i % GATEWAYS:04d}", i // GATEWAYS + 1
        at = now - timedelta(seconds=(n - i) * 0.01)
        rows.append((gw, seq, "card_read", "reader-1", f"door-{i % 2 + 1}", at, at, "em4100",
                     f"{(i * 7919) % 100_000:010X}", '{"decision": "granted"}'))
    return rows


def run_method(raw: psycopg.Connection[Any], method: Method, rows: list[EventRow], batch: int, extra: Extra, *,
               resend: bool) -> float:
    """events/s over ``rows`` in transactions of ``batch``; with ``resend``
    each batch's first half was stored before (by COPY, not timed)."""
    raw.execute("TRUNCATE event_snapshots, events")
    raw.commit()
    elapsed, stored = 0.0, 0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        if resend:
            copy_direct(raw, chunk[:len(chunk) // 2], datetime.now(UTC), extra)
            raw.commit()
        started = time.perf_counter()
        stored += method(raw, chunk, datetime.now(UTC), extra)
        raw.commit()
        elapsed += time.perf_counter() - started
    expected = len(rows) - (sum(len(rows[i:i + batch]) // 2 for i in range(0, len(rows), batch)) if resend else 0)
    if stored != expected:
        raise RuntimeError(f"{method.__name__}: {stored} events stored, {expected} expected")
    return len(rows) / elapsed


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    zone = CityRules().zone
    parts.ensure_partitions(engine, zone, now=now)
    make_past_days(engine, zone, args.past_days)
    with engine.connect() as conn:
        partitioned = parts.is_partitioned(conn)
        count = len(parts.partitions(conn)) if partitioned else 0
        txid = "txid" in {c["name"] for c in sa.inspect(conn).get_columns("events")}
    engine.dispose()
    extra = Extra(txid)
    rows = make_rows(args.events, now)
    results: dict[str, dict[str, list[float]]] = {"new": {}, "resend": {}}
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as raw:
        for round_ in range(args.rounds):
            names = list(METHODS) if round_ % 2 == 0 else list(reversed(METHODS))
            for case in ("new", "resend"):
                for name in names:
                    if case == "resend" and name == "copy_direct":
                        continue  # a duplicate fails the whole COPY
                    rate = run_method(raw, METHODS[name], rows, args.batch, extra, resend=case == "resend")
                    results[case].setdefault(name, []).append(rate)
                    progress("round %d %s %s: %.0f events/s", round_ + 1, case, name, rate)
    medians = {case: {name: round(statistics.median(rates)) for name, rates in by.items()}
               for case, by in results.items()}
    return {"events": args.events, "batch": args.batch, "rounds": args.rounds, "partitioned": partitioned,
            "partitions": count, "txid": txid, **medians,
            "fastest_new": max(medians["new"], key=lambda n: medians["new"][n]),
            "fastest_resend": max(medians["resend"], key=lambda n: medians["resend"][n])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with throwaway_postgres(args.database_url, "bench_ingest_methods") as url:
        result = measure(url, args)
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
