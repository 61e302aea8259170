"""When the soak breaks what: three loops over one :class:`System`.

- **Process faults**, one at a time: SIGKILL the broker, an ingest worker, a
  web process, PostgreSQL or a gateway, leave it down for a while, start it
  again. Each round takes every kind once in a shuffled order, so every kind
  is injected however short the soak (the first round finishes even past the
  end). The first gateway and the first ingest worker are never killed: their
  memory is measured over the whole run (bench/soak_memory.py).
- **Network cuts**: one gateway at a time is cut off (``blackhole``, a
  pulled cable, or ``reset``, a rebooting router; bench/soak_proxy.py) for a
  while.
- **The long outage**: the busiest gateway is blackholed until its outbox
  holds ``long_outage_events`` (or for at most ``long_outage_max_s``), then
  reconnected; ``catchup_s`` runs from that moment until its outbox is back
  to its live-traffic depth (at most one second of its own load). The other
  two loops hold still during the catch-up, so the figure is the replay's own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.soak_proxy import CutMode
from bench.soak_system import System

log = logging.getLogger(__name__)

PROCESS_FAULTS = ("broker_kill", "ingest_kill", "web_kill", "postgres_kill", "gateway_kill")
NET_FAULTS = ("net_blackhole", "net_reset")
LONG_OUTAGE = "long_outage"
ALL_FAULTS = (*PROCESS_FAULTS, *NET_FAULTS, LONG_OUTAGE)


@dataclass(frozen=True)
class ChaosPlan:
    duration_s: float
    fault_gap_s: tuple[float, float]
    down_s: tuple[float, float]
    net_gap_s: tuple[float, float]
    net_cut_s: tuple[float, float]
    long_outage_at_s: float
    long_outage_events: int
    long_outage_max_s: float
    long_outage_gateway: str


@dataclass
class Chaos:
    system: System
    plan: ChaosPlan
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    counts: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    long_outage: dict[str, Any] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    calm: asyncio.Event = field(default_factory=asyncio.Event)  # cleared while the long outage catches up

    def __post_init__(self) -> None:
        self.calm.set()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _note(self, kind: str, target: str, down_s: float) -> None:
        self.counts[kind] += 1
        self.events.append({"t": round(self.elapsed(), 1), "kind": kind, "target": target, "down_s": round(down_s, 1)})
        log.warning("[chaos %6.1f s] %s %s for %.1f s", self.elapsed(), kind, target, down_s)

    async def _pause(self, seconds: float) -> bool:
        """Sleep, waking early when the soak stops; False if it did."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    # ------------------------------------------------------------------ process faults

    async def process_faults(self) -> None:
        first_round = True
        while first_round or not self.stopping.is_set():
            kinds = list(PROCESS_FAULTS)
            self.rng.shuffle(kinds)
            for kind in kinds:
                if not first_round and self.stopping.is_set():
                    return
                if not await self._pause(self.rng.uniform(*self.plan.fault_gap_s)) and not first_round:
                    return
                await self.calm.wait()
                await self.inject(kind, self.rng.uniform(*self.plan.down_s))
            first_round = False

    async def inject(self, kind: str, down_s: float) -> None:
        s = self.system
        if kind == "broker_kill":
            self._note(kind, "mosquitto", down_s)
            await s.kill_broker(down_s)
        elif kind == "postgres_kill":
            self._note(kind, "postgresql", down_s)
            await s.kill_postgres(down_s)
        elif kind in ("ingest_kill", "web_kill"):
            pool = s.ingest_servers() if kind == "ingest_kill" else s.web_servers()
            # The first ingest worker lives through the soak (its memory is measured) when others share its work.
            victims = pool[1:] if kind == "ingest_kill" and len(pool) > 1 else pool
            victim = self.rng.choice(victims)
            self._note(kind, victim.name, down_s)
            await s.kill_server(victim, down_s)
        elif kind == "gateway_kill":
            victim_gw = self.rng.choice(s.gateways[1:] or s.gateways)
            self._note(kind, victim_gw.name, down_s)
            await s.kill_gateway(victim_gw, down_s)
        else:
            raise ValueError(f"unknown fault {kind}")

    # ------------------------------------------------------------------ network cuts

    async def net_cuts(self) -> None:
        modes = list(NET_FAULTS)
        first_round = True
        while first_round or not self.stopping.is_set():
            for kind in modes:
                if not await self._pause(self.rng.uniform(*self.plan.net_gap_s)) and not first_round:
                    return
                await self.calm.wait()
                busy = self.long_outage.get("gateway") if self.long_outage.get("active") else None
                victim = self.rng.choice([g for g in self.system.gateways if g.name != busy])
                cut_s = self.rng.uniform(*self.plan.net_cut_s)
                self._note(kind, victim.name, cut_s)
                mode: CutMode = "blackhole" if kind == "net_blackhole" else "reset"
                self.system.proxies.cut(victim.name, mode)
                try:
                    await asyncio.sleep(cut_s)
                finally:
                    self.system.proxies.cut(victim.name, None)
            first_round = False

    # ------------------------------------------------------------------ the long outage

    async def long_outage_run(self) -> None:
        plan = self.plan
        gw = self.system.gateway(plan.long_outage_gateway)
        await self._pause(max(0.0, plan.long_outage_at_s - self.elapsed()))
        out = self.long_outage
        out.update(gateway=gw.name, active=True, target_events=plan.long_outage_events)
        self._note(LONG_OUTAGE, gw.name, plan.long_outage_max_s)
        entry = self.events[-1]  # its down_s becomes the outage's real length once it is over
        self.system.proxies.cut(gw.name, "blackhole")
        cut_at = time.monotonic()
        deepest = 0
        try:
            while time.monotonic() - cut_at < plan.long_outage_max_s:
                deepest = max(deepest, gw.depth or 0)
                if deepest >= plan.long_outage_events:
                    break
                await asyncio.sleep(0.5)
        finally:
            self.system.proxies.cut(gw.name, None)
        restored = time.monotonic()
        entry["down_s"] = round(restored - cut_at, 1)
        out.update(outage_s=round(restored - cut_at, 1), outbox_at_reconnect=deepest, active=False)
        log.warning("[chaos %6.1f s] long outage over after %.0f s: %d events in %s's outbox; catching up",
                    self.elapsed(), restored - cut_at, deepest, gw.name)
        self.calm.clear()
        try:
            live_depth = max(100, int(gw.spec.rate))
            connected_at: float | None = None
            while True:
                if connected_at is None and gw.status.get("connected"):
                    connected_at = time.monotonic()
                depth = gw.depth
                if depth is not None and depth <= live_depth and gw.status_at > restored:
                    break
                if time.monotonic() - restored > max(600.0, deepest / 200):
                    out["catchup_timed_out"] = True
                    break
                await asyncio.sleep(0.1)
            out["catchup_s"] = round(time.monotonic() - restored, 2)
            out["caught_up_at_s"] = round(self.elapsed(), 1)
            out["reconnect_s"] = round(connected_at - restored, 2) if connected_at is not None else None
            log.warning("[chaos %6.1f s] %s caught up in %.1f s", self.elapsed(), gw.name, out["catchup_s"])
        finally:
            self.calm.set()
