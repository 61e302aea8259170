"""The background service: an ingest commit wakes reconciliation, a sweep
runs at start, and a failure is retried rather than ending the task."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access.allowlists import Change
from server.db.models import presence
from server.ingest.store import CommitResult
from server.reconcile.runner import Reconciler
from server.reconcile.service import ReconcileService
from tests.server.reconcile.world import World, day


async def test_a_commit_wakes_the_incremental_task(world: World) -> None:
    b = world.building()
    world.card(world.unit(b), "W1", person_id=world.person())
    published: list[list[Change]] = []

    async def publish(changes: list[Change]) -> bool:
        published.append(changes)
        return True

    service = ReconcileService(world.reconciler, sweep_interval_s=3600, publish=publish)
    service.start()
    try:
        await asyncio.wait_for(service.swept.wait(), 30)
        await asyncio.wait_for(service.caught_up.wait(), 30)
        service.caught_up.clear()
        world.read(b, "W1", day(0))
        service.on_commit(CommitResult(inserted=1))
        await asyncio.wait_for(service.caught_up.wait(), 30)
        with world.engine.connect() as conn:
            assert conn.execute(sa.select(presence.c.events)).scalar_one() == 1
    finally:
        await service.stop()


class Flaky(Reconciler):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    def catch_up(self, now: datetime) -> int:
        self.calls += 1
        if self.calls == 1:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("database went away"))
        return super().catch_up(now)


async def test_a_failure_is_retried_not_fatal(world: World) -> None:
    flaky = Flaky(world.engine, world.rules)
    service = ReconcileService(flaky, sweep_interval_s=3600, publish=None)
    service.start()
    try:
        await asyncio.wait_for(service.caught_up.wait(), 30)
        assert service.failures >= 1 and flaky.calls >= 2
    finally:
        await service.stop()
