"""Runs the Reconciler inside the server: "reconcile-incremental" wakes after
each ingest commit (never polls), "reconcile-sweep" runs at start and every
``reconcile_sweep_interval_s``. Both are supervised: a failure is logged and
retried with backoff; it never stops the server. Allowlist changes from
registrations the sweep ended are published through the access service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from rentgate.aio import wait_event
from rentgate.mqtt import backoff_delays
from server.access.allowlists import Change
from server.ingest.store import CommitResult
from server.reconcile.runner import Reconciler, SweepResult

log = logging.getLogger(__name__)

Publish = Callable[[list[Change]], Awaitable[bool]]
RETRY_MAX_S = 60.0
# While the database is away, each loop tries again this often at most.
OUTAGE_RETRY_S = 2.0
# A catch-up that left committed events behind an open transaction
# (Reconciler.held_back) runs again this soon.
HELD_BACK_RETRY_S = 0.5


class ReconcileService:
    def __init__(self, reconciler: Reconciler, *, sweep_interval_s: float, publish: Publish | None) -> None:
        self.reconciler = reconciler
        self.sweep_interval_s = sweep_interval_s
        self.publish = publish
        self.last_sweep: SweepResult | None = None
        self.failures = 0
        # Set after every catch-up and sweep: lets callers (tests, the
        # simulator) await progress instead of sleeping.
        self.caught_up = asyncio.Event()
        self.swept = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def on_commit(self, result: CommitResult) -> None:
        """The ingest commit callback (on the event loop): just a wake-up."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(self._incremental), name="reconcile-incremental"),
                       asyncio.create_task(self._supervise(self._sweeps), name="reconcile-sweep")]
        self._wake.set()  # catch up with whatever arrived while the server was down

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _supervise(self, loop: Callable[[], Awaitable[None]]) -> None:
        delays = backoff_delays(1.0, RETRY_MAX_S)
        while not self._stopping.is_set():
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - supervised: log, back off, go on
                self.failures += 1
                # A database away: once when it goes, once when it is back
                # (runner.Reconciler.outage), and retried soon, not after a long backoff.
                away = self.reconciler.database_away(exc)
                delay = min(OUTAGE_RETRY_S, next(delays)) if away else next(delays)
                if not away:
                    log.exception("reconciliation failed; retrying in %.1fs", delay)
                await self._pause(delay)

    async def _incremental(self) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            try:
                await asyncio.to_thread(self.reconciler.catch_up, datetime.now(UTC))
            except Exception:
                self._wake.set()  # the events are still there: try again after the backoff
                raise
            if self.reconciler.held_back:  # committed events behind an open transaction: look again soon
                asyncio.get_running_loop().call_later(HELD_BACK_RETRY_S, self._wake.set)
            self.caught_up.set()

    async def _sweeps(self) -> None:
        while not self._stopping.is_set():
            result = await asyncio.to_thread(self.reconciler.sweep, datetime.now(UTC))
            self.last_sweep = result
            self.swept.set()
            if result.changes and self.publish is not None:
                await self.publish(result.changes)
            await self._pause(self.sweep_interval_s)

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)
