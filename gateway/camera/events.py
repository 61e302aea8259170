"""Crossings in, camera events out (on the gateway's loop).

Outward crossings become ``people_crossing`` events at once. Inward ones wait
in the :class:`~gateway.camera.correlate.Correlator` until their window has
closed, then become a ``people_crossing`` with the grant's seq, a
``tailgating`` or an ``unidentified_entry``.

Data minimisation: only the two alert kinds keep their picture. A matched
entry's or an exit's JPEG is dropped in memory, never written. An alert's
picture is written and synced to the spool before its event enters the
outbox, so an event never names a picture the gateway does not have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from gateway.camera.correlate import Correlator, Decision, InwardCrossing
from gateway.camera.spool import SnapshotSpool
from gateway.camera.uploads import store_snapshot
from gateway.errors import GatewayError
from gateway.outbox import EventMaker
from rentgate import wire
from rentgate.aio import wait_event

log = logging.getLogger(__name__)

Submit = Callable[[Sequence[EventMaker]], "asyncio.Future[list[int]]"]
_IDLE_WAIT_S = 5.0


class CrossingLike(Protocol):
    """What the pipeline reports (devices.camera.crossing.Crossing)."""

    @property
    def direction(self) -> Literal["in", "out"]: ...
    @property
    def track(self) -> int: ...
    @property
    def snapshot(self) -> bytes | None: ...


@dataclass
class CameraEventStats:
    outward: int = 0
    matched: int = 0
    tailgating: int = 0
    unidentified: int = 0
    snapshots_kept: int = 0
    snapshots_discarded: int = 0


class CameraEvents:
    def __init__(self, gateway_id: str, submit: Submit, correlator: Correlator, spool: SnapshotSpool,
                 on_snapshot: Callable[[], None] = lambda: None) -> None:
        self.gateway_id = gateway_id
        self.correlator = correlator
        self.spool = spool
        self.stats = CameraEventStats()
        self._submit = submit
        self._on_snapshot = on_snapshot  # the uploader's wake-up
        self._wake = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ input (on the loop)

    def grant(self, door: str, at: datetime, seq: int) -> None:
        self.correlator.add_grant(door, at.timestamp(), seq)

    def crossed(self, device: str, door: str, crossing: CrossingLike, at: datetime) -> None:
        if crossing.direction == "out":
            if crossing.snapshot is not None:
                self.stats.snapshots_discarded += 1
            self.stats.outward += 1
            gw = self.gateway_id
            self._record(lambda seq: wire.PeopleCrossing(gw=gw, seq=seq, device=device, door=door, ts=at,
                                                         track=crossing.track, direction="out"))
            return
        inward = InwardCrossing(door=door, device=device, t=at.timestamp(), at=at, track=crossing.track,
                                snapshot=crossing.snapshot)
        for decision in self.correlator.add_crossing(inward, time.time()):
            self._spawn(self._emit(decision))
        self._wake.set()

    # ------------------------------------------------------------------ the decider task

    async def run(self) -> None:
        """Decide crossings as their windows close; at cancel, decide the rest
        with the grants known so far, so no crossing is lost at a stop."""
        try:
            while True:
                self._wake.clear()
                for decision in self.correlator.decide(time.time()):
                    self._spawn(self._emit(decision))
                due = self.correlator.next_due()
                wait = _IDLE_WAIT_S if due is None else min(_IDLE_WAIT_S, max(0.0, due - time.time()))
                await wait_event(self._wake, wait)
        finally:
            for decision in self.correlator.flush():
                self._emit_now(decision)
            if self._writes:
                await asyncio.gather(*self._writes, return_exceptions=True)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _emit(self, decision: Decision) -> None:
        try:
            stored = None
            if decision.outcome != "matched" and decision.crossing.snapshot is not None:
                stored = await store_snapshot(self.spool, decision.crossing.snapshot, self.gateway_id)
            self._count(decision, stored is not None)
            seqs = await self._record_async(self._maker(decision, stored[1] if stored else None))
            if stored is not None:
                if seqs is None:
                    await asyncio.to_thread(self.spool.forget, stored[0])
                else:
                    await asyncio.to_thread(self.spool.assign, stored[0], seqs[0])
                    self._on_snapshot()
        except Exception:  # noqa: BLE001 - one crossing must not stop the cameras
            log.exception("a camera event at %s could not be recorded", decision.crossing.door)

    def _emit_now(self, decision: Decision) -> None:
        """At shutdown, when the loop is stopping: the picture is written here
        (a few at most) and its seq assigned when the outbox commits."""
        stored = None
        if decision.outcome != "matched" and decision.crossing.snapshot is not None:
            try:
                stored = self.spool.store(decision.crossing.snapshot, self.gateway_id)
            except GatewayError as exc:
                log.error("a door snapshot could not be kept: %s", exc)
        self._count(decision, stored is not None)
        future = self._record(self._maker(decision, stored[1] if stored else None))
        if stored is not None and future is not None:
            row = stored[0]
            future.add_done_callback(
                lambda f: self.spool.assign(row, f.result()[0]) if not f.cancelled() and f.exception() is None
                else self.spool.forget(row))

    def _count(self, decision: Decision, kept: bool) -> None:
        if decision.outcome == "matched":
            self.stats.matched += 1
        elif decision.outcome == "tailgating":
            self.stats.tailgating += 1
        else:
            self.stats.unidentified += 1
        if decision.crossing.snapshot is not None:
            if kept:
                self.stats.snapshots_kept += 1
            else:
                self.stats.snapshots_discarded += 1

    def _maker(self, decision: Decision, snapshot: str | None) -> EventMaker:
        gw, c = self.gateway_id, decision.crossing
        if decision.outcome == "matched":
            grant_seq = decision.grant_seq
            return lambda seq: wire.PeopleCrossing(gw=gw, seq=seq, device=c.device, door=c.door, ts=c.at,
                                                   track=c.track, direction="in", grant_seq=grant_seq)
        if decision.outcome == "tailgating":
            entered, granted = decision.entered, decision.granted
            return lambda seq: wire.Tailgating(gw=gw, seq=seq, device=c.device, door=c.door, ts=c.at, track=c.track,
                                               snapshot=snapshot, entered=entered, granted=granted)
        return lambda seq: wire.UnidentifiedEntry(gw=gw, seq=seq, device=c.device, door=c.door, ts=c.at,
                                                  track=c.track, snapshot=snapshot)

    # ------------------------------------------------------------------ outbox

    def _record(self, maker: EventMaker) -> asyncio.Future[list[int]] | None:
        try:
            return self._submit([maker])
        except GatewayError as exc:
            log.error("a camera event was lost at shutdown: %s", exc)
            return None

    async def _record_async(self, maker: EventMaker) -> list[int] | None:
        future = self._record(maker)
        if future is None:
            return None
        try:
            return await future
        except Exception as exc:  # noqa: BLE001 - logged; the picture is then forgotten
            log.error("a camera event was not stored: %s", exc)
            return None
