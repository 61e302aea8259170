"""Runs a registry change in one write transaction, then publishes what it
changed: deltas at once, then fresh snapshots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from server.access.allowlists import Change
from server.access.keys import SigningKey
from server.access.publisher import AllowlistPublisher
from server.access.registry import Outcome
from server.web.errors import Conflict
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

Operation = Callable[[sa.Connection, datetime], Outcome]
SNAPSHOT_WAIT_S = 30.0


class AccessService:
    def __init__(self, engine: sa.Engine, key: SigningKey | None, key_problem: str | None,
                 publisher: AllowlistPublisher | None) -> None:
        self.engine = engine
        self.key = key
        self.key_problem = key_problem
        self.publisher = publisher
        # Keeps this process's deltas in version order.
        self._lock = asyncio.Lock()

    async def apply(self, operation: Operation) -> Outcome:
        async with self._lock:
            outcome = await asyncio.to_thread(self._commit, operation)
            if not outcome.changes:
                return outcome
            deltas_ok = self.publisher is not None and self.publisher.publish_deltas(outcome.changes)
        outcome.body["published"] = await self._finish(outcome.changes, deltas_ok)
        return outcome

    async def publish(self, changes: list[Change]) -> bool:
        """Publish changes another component committed (reconciliation ending
        registrations): deltas, then fresh snapshots."""
        if not changes:
            return True
        async with self._lock:
            deltas_ok = self.publisher is not None and self.publisher.publish_deltas(changes)
        return await self._finish(changes, deltas_ok)

    async def _finish(self, changes: list[Change], deltas_ok: bool) -> bool:
        snapshots_ok = await self._refresh([c.gateway_id for c in changes])
        published = deltas_ok and snapshots_ok
        if not published:
            log.warning("allowlist change committed but not published (%s); the next connect republishes it",
                        self.key_problem or "broker not connected" if self.publisher else "MQTT disabled")
        return published

    def _commit(self, operation: Operation) -> Outcome:
        try:
            with write_transaction(self.engine) as conn:
                return operation(conn, datetime.now(UTC))
        except sa.exc.IntegrityError as exc:
            # Lost a race on the one-active-credential index (PostgreSQL).
            raise Conflict(f"conflicting change: {exc.orig}") from exc

    async def _refresh(self, gateway_ids: list[str]) -> bool:
        if self.publisher is None:
            return False
        try:
            return await asyncio.wait_for(self.publisher.refresh(gateway_ids), SNAPSHOT_WAIT_S)
        except TimeoutError:
            log.error("allowlist snapshots for %s not published within %ss", ", ".join(gateway_ids),
                      SNAPSHOT_WAIT_S)
            return False
