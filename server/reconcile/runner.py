"""The reconciliation engine's entry points: ``catch_up`` (incremental, after
each ingest commit) and ``sweep`` (time-driven rules, grades, rate snapshots).
Both are synchronous and thread-safe; the service runs them in threads."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import sqlalchemy as sa

from rentgate.outage import Outage
from server.access.allowlists import Change
from server.reconcile import camera, camera_rules, evidence, grades, marks, rates, sweep, watermarks
from server.rules import CityRules
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

CHUNK_EVENTS = 5000
# What a lost connection or an unreachable server raises, through SQLAlchemy
# or straight from the driver.
_UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, psycopg.OperationalError,
                psycopg.InterfaceError)


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, _UNREACHABLE) or bool(getattr(exc, "connection_invalidated", False))


@dataclass
class SweepResult:
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    ended_registrations: list[int] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    regraded: int = 0
    events: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Totals:
    """Running figures for /metrics."""

    events: int = 0
    unknown: int = 0
    no_building: int = 0
    watermark: int = 0
    camera_events: int = 0
    last_sweep_s: float | None = None
    last_sweep_at: datetime | None = None


# Above this many units a catch-up regrades every unit: one pass over the
# city costs less than restricting each part of the scores to a long list.
FULL_REGRADE_UNITS = 50_000


class Reconciler:
    def __init__(self, engine: sa.Engine, rules: CityRules, *, chunk_events: int = CHUNK_EVENTS) -> None:
        self.engine = engine
        self.rules = rules
        self.chunk_events = chunk_events
        self.totals = Totals()
        # One reconciler at a time in this process; across processes the
        # watermark row (PostgreSQL) or BEGIN IMMEDIATE (SQLite) serialises.
        self._lock = threading.Lock()
        # A database outage is logged when it starts and when it ends, not
        # as a traceback per retry (the service retries: database_away).
        self.outage = Outage(log, "the database, for reconciliation")
        # After the last catch-up: committed events wait beyond the horizon
        # (an older transaction was still open, server/reconcile/marks.py),
        # so another catch-up is due soon even if no commit wakes it.
        self.held_back = False

    def database_away(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database cannot be reached (then the
        outage is noted, quietly after its first report): True for an error
        worth retrying without a traceback."""
        if not _unreachable(exc):
            return False
        self.outage.failed(exc)
        return True

    def catch_up(self, now: datetime) -> int:
        """Apply every stored event after the watermark; returns how many card
        reads were processed. Each chunk commits with its watermark."""
        done = 0
        regrade_units: set[int] = set()
        regrade_buildings: set[int] = set()
        with self._lock:
            while True:
                with write_transaction(self.engine) as conn:
                    stats = evidence.apply_chunk(conn, now, self.rules, limit=self.chunk_events)
                regrade_units |= stats.regrade_units
                regrade_buildings |= stats.regrade_buildings
                done += stats.events
                self.totals.events += stats.events
                self.totals.unknown += stats.unknown
                self.totals.no_building += stats.no_building
                self.totals.watermark = stats.watermark
                if stats.done:
                    self.held_back = stats.waiting
                    break
            if regrade_units or regrade_buildings:
                self._regrade(now, regrade_units, regrade_buildings)
            if camera_rules.enabled(self.rules):  # the purge's watermarks follow this too (watermarks.py)
                self._catch_up_cameras()
            self.outage.ok()
            return done

    def _regrade(self, now: datetime, unit_ids: set[int], building_ids: set[int]) -> None:
        """The grades the catch-up's case changes touched, once after all its
        chunks: a backlog's chunks open unknown-credential cases in the same
        buildings again and again, and regrading their units per chunk took
        most of a catch-up's time. Grades are derived; should this fail or
        the process die first, the next sweep regrades every unit anyway."""
        with write_transaction(self.engine) as conn:
            units = unit_ids | grades.units_of(conn, building_ids)
            grades.regrade(conn, now, self.rules, None if len(units) > FULL_REGRADE_UNITS else units)

    def _catch_up_cameras(self) -> None:
        """Unit door cameras' crossings into camera_days (their own
        watermark and chunks: server/reconcile/camera.py)."""
        while True:
            with write_transaction(self.engine) as conn:
                stats = camera.apply_chunk(conn, self.rules, limit=self.chunk_events)
            self.totals.camera_events += stats.events
            if stats.done:
                return

    def sweep(self, now: datetime) -> SweepResult:
        """Catch up, then every time-driven rule, the grades and today's rate
        snapshot, in one transaction."""
        started = time.perf_counter()
        events = self.catch_up(now)
        with self._lock, write_transaction(self.engine) as conn:
            counts = sweep.RuleCounts()
            if conn.dialect.name == "postgresql":
                # Fresh statistics first: the last sweep may have opened a
                # hundred thousand cases that autovacuum has not counted yet,
                # and a planner that believes `cases` is empty picks nested
                # loops that made the next sweep 4-5x slower (116 s vs 25 s at
                # a million registrations). ANALYZE samples; it takes ~0.2 s.
                step = time.perf_counter()
                conn.execute(sa.text("ANALYZE cases, presence"))
                counts.timings["analyze"] = round(time.perf_counter() - step, 3)
            sweep.run_rules(conn, now, self.rules, counts)
            camera.purge_old_days(conn, self.rules, now)
            step = time.perf_counter()
            sweep.expire_departures(conn, now, counts, self.rules)
            counts.timings["expire"] = round(time.perf_counter() - step, 3)
            step = time.perf_counter()
            regraded = grades.regrade(conn, now, self.rules)
            counts.timings["grades"] = round(time.perf_counter() - step, 3)
            step = time.perf_counter()
            rates.write_snapshots(conn, self.rules, now, rates.compute_rates(conn, self.rules, now))
            counts.timings["rates"] = round(time.perf_counter() - step, 3)
        self.outage.ok()
        seconds = time.perf_counter() - started
        self.totals.last_sweep_s, self.totals.last_sweep_at = seconds, now
        result = SweepResult(counts.opened, counts.closed, counts.ended_registrations, counts.changes, seconds,
                             regraded, events, counts.timings)
        log.info("sweep: %s events, opened %s, closed %s, %s registrations ended, %s grades changed in %.2fs (%s)",
                 events, result.opened, result.closed, len(result.ended_registrations), regraded, seconds,
                 result.timings)
        return result

    def watermark_lag(self) -> int:
        """Stored events not yet reconciled (all kinds; at most marks.LAG_CAP).
        On PostgreSQL this includes committed events a fold may not read yet
        because an older transaction is still open (marks.py: the horizon)."""
        with self.engine.connect() as conn:
            return marks.lag(conn, watermarks.lowest(conn, [evidence.WATERMARK]))

    def open_cases(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT kind, COUNT(*) FROM cases WHERE state IN ('open', 'acknowledged') "
                                        "GROUP BY kind")).all()
        return {kind: int(n) for kind, n in rows}
