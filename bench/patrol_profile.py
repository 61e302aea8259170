"""Where the unit page's database time goes: ``load_unit_view`` (the page's
one read, server/patrols/unit_view.py) run in this process, one unit after
another with nothing else running, then its statements timed one by one and
grouped: on PostgreSQL by the page's section (the page sends them all in one
pipeline, which hides each one's time, so they are sent again singly); on
SQLite through the engine's cursor events, by the table each reads first.
The slowest instance of each is then run again under EXPLAIN ANALYZE.

No concurrency here on purpose: this separates a slow query from the
waiting (threads, GIL, CPU) that the load phase adds."""

from __future__ import annotations

import cProfile
import os
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.measure import percentile
from bench.patrol_data import progress

_FROM = re.compile(r"\bFROM\s+\(?\s*(?:SELECT\b.*?\bFROM\s+)?\"?(\w+)", re.I | re.S)


def label_of(statement: str) -> str:
    """The table a SELECT reads first, "+union" when it is a UNION (the
    door events' one branch per card)."""
    match = _FROM.search(statement)
    name = match.group(1) if match else statement.split(None, 1)[0].lower()
    return name + ("+union" if re.search(r"\bUNION\b", statement, re.I) else "")


@dataclass
class _Recorder:
    current: list[tuple[str, Any, float]] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)

    def before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self.started[id(cursor)] = time.perf_counter()

    def after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        began = self.started.pop(id(cursor), None)
        if began is not None:
            self.current.append((statement, parameters, (time.perf_counter() - began) * 1000))


def profile_unit_view(engine: sa.Engine, unit_ids: list[int], n: int, rng: random.Random,
                      workdir: Path) -> dict[str, Any]:
    """Per statement kind: count per page and p50/p99 ms; the whole read's
    p50/p99 one page at a time; each kind's slowest instance run again
    under EXPLAIN ANALYZE (plans in ``workdir/explain.txt``; the execution
    time and any sequential scan in the result).

    ``BENCH_PROFILE_VIEW=file.pstats`` also runs the reads under cProfile."""
    from server.patrols.unit_view import load_unit_view, pg_reads
    from server.rules import CityRules

    rules = CityRules()
    recorder = _Recorder()
    per_label: dict[str, list[float]] = defaultdict(list)
    slowest: dict[str, tuple[float, str, Any]] = {}
    pages: list[float] = []
    sample = rng.sample(unit_ids, min(n, len(unit_ids)))
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE_VIEW") else None
    sa.event.listen(engine, "before_cursor_execute", recorder.before)
    sa.event.listen(engine, "after_cursor_execute", recorder.after)
    try:
        # Autocommit, as the server's read pool (server/db/read_pool.py): no
        # rollback between pages to make psycopg forget its prepared statements.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for unit_id in sample:
                recorder.current = []
                started = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                now = datetime.now(UTC)
                load_unit_view(conn, unit_id, now, rules)
                if profiler is not None:
                    profiler.disable()
                pages.append((time.perf_counter() - started) * 1000)
                statements = [(label_of(statement), statement, parameters, ms)
                              for statement, parameters, ms in recorder.current]
                if conn.dialect.name == "postgresql":
                    statements = _singly(conn, pg_reads(conn.dialect, unit_id, now))
                for label, statement, parameters, ms in statements:
                    per_label[label].append(ms)
                    if ms > slowest.get(label, (-1.0, "", None))[0]:
                        slowest[label] = (ms, statement, parameters)
    finally:
        sa.event.remove(engine, "before_cursor_execute", recorder.before)
        sa.event.remove(engine, "after_cursor_execute", recorder.after)
    if profiler is not None:
        profiler.dump_stats(os.environ["BENCH_PROFILE_VIEW"])
    queries: dict[str, Any] = {}
    plans: list[str] = []
    for label, values in sorted(per_label.items(), key=lambda kv: -sum(kv[1])):
        ms, statement, parameters = slowest[label]
        plan = explain(engine, statement, parameters)
        plans.append(f"-- {label}: slowest of {len(values)} took {ms:.2f} ms\n{statement}\n{parameters}\n\n{plan}\n")
        queries[label] = {"per_page": round(len(values) / max(1, len(pages)), 2), "ms_p50": _r(percentile(values, 50)),
                          "ms_p99": _r(percentile(values, 99)), "explain_ms": _execution_ms(plan),
                          "seq_scans": sorted(set(re.findall(r"Seq Scan on (\w+)", plan)))}
    (workdir / "explain.txt").write_text("\n".join(plans), encoding="utf-8")
    out: dict[str, Any] = {"unit_view_sequential_ms_p50": _r(percentile(pages, 50)),
                           "unit_view_sequential_ms_p99": _r(percentile(pages, 99)),
                           "unit_view_statements_per_page": round(sum(map(len, per_label.values())) / max(1, len(pages)),
                                                                  2),
                           "unit_view_queries": queries}
    progress("unit view alone (one page at a time): p50 %s ms, p99 %s ms, %s statements a page",
             out["unit_view_sequential_ms_p50"], out["unit_view_sequential_ms_p99"],
             out["unit_view_statements_per_page"])
    for label, q in queries.items():
        progress("  %-22s x%-5s p50 %7s ms  p99 %7s ms  plan %s ms%s", label, q["per_page"], q["ms_p50"], q["ms_p99"],
                 q["explain_ms"], f"  SEQ SCAN on {', '.join(q['seq_scans'])}" if q["seq_scans"] else "")
    return out


def _singly(conn: sa.Connection, reads: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, Any, float]]:
    """Each of the page's pipelined reads on its own: (section, SQL,
    parameters, ms), one round trip each."""
    timed = []
    for name, sql, parameters in reads:
        started = time.perf_counter()
        conn.exec_driver_sql(sql, parameters).all()
        timed.append((name, sql, parameters, (time.perf_counter() - started) * 1000))
    return timed


def _execution_ms(plan: str) -> float | None:
    match = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(match.group(1)) if match else None


def explain(engine: sa.Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
        conn.rollback()
    return "\n".join(str(r) for r in rows)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
