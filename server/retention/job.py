"""The scheduled purge inside the server: task "retention-purge" runs
``purge_before`` in a worker thread shortly after start (a minute, or the
interval if shorter, so that reconciliation catches up and start-up work is
done first) and then every ``purge_interval_s``. On PostgreSQL it makes the
events table's partitions for the days ahead at start and at every run
(server/db/partitions.py).

Supervised like reconciliation (server/reconcile/service.py): a failed run
is retried with jittered backoff (1 s ... 5 min) and never stops the server.
A database or audit log that cannot be reached is one WARNING line per
failure, without a traceback (an outage is not a bug); anything else is
logged with its traceback. On shutdown the running purge finishes the batch
it is in (well under a second) and stops; the next start goes on from there,
since every committed batch is complete in itself."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from rentgate.aio import wait_event
from rentgate.mqtt import backoff_delays
from server.audit.log import one_line
from server.db.partitions import ensure_partitions
from server.ingest.consumer import is_transient
from server.media.store import MediaStore
from server.reconcile.watermarks import EVERY_FOLD
from server.retention.purge import (
    JOB_ACTOR,
    AuditSink,
    BatchResult,
    PurgeReport,
    cutoff_for,
    purge_before,
    purge_bound,
)
from server.snapshots.purge import SnapshotPurgeReport, purge_snapshots
from server.web.errors import Unavailable

log = logging.getLogger(__name__)

RETRY_MAX_S = 300.0
STARTUP_DELAY_S = 60.0
TASK_NAME = "retention-purge"


@dataclass
class PurgeMetrics:
    """Running figures for /metrics (this process's runs)."""

    purged_total: int = 0
    runs: int = 0
    failures: int = 0
    last_run_at: datetime | None = None
    last_purge_at: datetime | None = None
    # Camera snapshots deleted (server/snapshots/purge.py).
    snapshots_purged_total: int = 0


class PurgeJob:
    def __init__(self, engine: sa.Engine, *, zone: ZoneInfo, retention_days: int, interval_s: float,
                 audit: Callable[[], AuditSink], batch: int | None = None,
                 first_run_after_s: float | None = None, snapshot_retention_days: int | None = None,
                 snapshot_files: Callable[[], MediaStore | None] | None = None,
                 watermarks: Sequence[str] = EVERY_FOLD) -> None:
        self.engine = engine
        self.zone = zone
        self.retention_days = retention_days
        self.interval_s = interval_s
        # Looked up at each run: the audit slice may set its log up after
        # this job is built, and a missing log must fail the run, not purge
        # without an audit trail.
        self.audit = audit
        self.batch = batch  # None: the database's default (server/retention/purge.py)
        # The reconciliation folds an event must have been read by before it goes.
        self.watermarks = tuple(watermarks)
        self.first_run_after_s = min(interval_s, STARTUP_DELAY_S) if first_run_after_s is None else first_run_after_s
        self.metrics = PurgeMetrics()
        self.last_report: PurgeReport | None = None
        # None: this job purges no snapshots. ``snapshot_files`` is asked at
        # each run (None: no media folder configured).
        self.snapshot_retention_days = snapshot_retention_days
        self.snapshot_files = snapshot_files
        self.last_snapshot_report: SnapshotPurgeReport | None = None
        # Set after every completed run: lets callers (tests) await a run
        # instead of sleeping.
        self.ran = asyncio.Event()
        self._stopping = asyncio.Event()
        # The worker thread cannot see an asyncio.Event safely.
        self._halt = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=TASK_NAME)

    async def stop(self) -> None:
        self._stopping.set()
        self._halt.set()
        if self._task is None:
            return
        # Not cancelled at once: a cancelled to_thread leaves its thread
        # running; waiting lets the batch in progress commit and the thread end.
        done, _ = await asyncio.wait({self._task}, timeout=30.0)
        if not done:
            log.error("retention purge did not stop within 30s; cancelling it")
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def run_once(self, now: datetime | None = None) -> PurgeReport:
        """One purge with the configured period (also what the loop runs)."""
        now = now or datetime.now(UTC)
        cutoff = cutoff_for(now, self.retention_days)
        # The days ahead get their partitions (PostgreSQL; docs/postgres-scale.md).
        await asyncio.to_thread(ensure_partitions, self.engine, self.zone, now=now)
        audit = self.audit()
        if self.snapshot_retention_days is not None:
            # First: a snapshot's row refers to its event, so it must be gone
            # before the event purge takes the event.
            files = self.snapshot_files() if self.snapshot_files is not None else None
            snapshots = await asyncio.to_thread(
                purge_snapshots, self.engine, files, cutoff_for(now, self.snapshot_retention_days), audit=audit,
                actor=JOB_ACTOR, event_before=purge_bound(cutoff, self.zone), should_stop=self._halt.is_set)
            self.metrics.snapshots_purged_total += snapshots.deleted
            self.last_snapshot_report = snapshots
        report = await asyncio.to_thread(purge_before, self.engine, cutoff, zone=self.zone, audit=audit,
                                         actor=JOB_ACTOR, batch=self.batch, on_batch=self._counted,
                                         should_stop=self._halt.is_set, watermarks=self.watermarks)
        self.metrics.runs += 1
        self.metrics.last_run_at = datetime.now(UTC)
        self.last_report = report
        return report

    def _counted(self, result: BatchResult) -> None:
        # In the worker thread, after each commit. Only that thread writes
        # these; a reader on the loop may see a figure one batch behind.
        self.metrics.purged_total += result.deleted
        self.metrics.last_purge_at = datetime.now(UTC)

    async def _supervise(self) -> None:
        # Partitions at once, not after the first run's delay: a fresh
        # database's events would wait in the DEFAULT partition meanwhile.
        try:
            await asyncio.to_thread(ensure_partitions, self.engine, self.zone)
        except Exception as exc:  # noqa: BLE001 - each run tries again
            log.warning("events partitions not made at start, the first purge run tries again: %s", one_line(exc))
        await self._pause(self.first_run_after_s)
        delays = backoff_delays(1.0, RETRY_MAX_S)
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - supervised: log, back off, go on
                self.metrics.failures += 1
                delay = next(delays)
                if is_transient(exc) or isinstance(exc, Unavailable):
                    log.warning("retention purge failed (database or audit log unavailable), retrying in %.1fs: %s",
                                delay, one_line(exc))
                else:
                    log.error("retention purge failed, retrying in %.1fs: %r", delay, exc, exc_info=exc)
                await self._pause(delay)
                continue
            delays = backoff_delays(1.0, RETRY_MAX_S)
            self.ran.set()
            await self._pause(self.interval_s)

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)
