"""Simulated gateways in this process: real ``GatewayApp``s with real outboxes,
fed by the bench instead of card readers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import GatewayApp
from gateway.config import GatewayConfig, OutboxConfig
from gateway.outbox import EventMaker, Outbox, new_outbox_first_seq
from rentgate import wire

_CHUNK = 200  # events per append while "as fast as they can"


def card_read(gw: str, value: str) -> EventMaker:
    """An event stamped when the outbox numbers it, i.e. at the outbox write."""
    credential = wire.Credential(format="raw", value=value)
    return lambda seq: wire.CardRead(gw=gw, seq=seq, device="bench-reader", door="bench-door",
                                     ts=datetime.now(UTC), credential=credential)


def credential_prefix(phase: str) -> str:
    return f"b-{phase}-"


def value_of(phase: str, gw: str, i: int) -> str:
    return f"{credential_prefix(phase)}{gw}-{i}"


@dataclass
class Fleet:
    """Running gateways; ``stop()`` ends them all."""

    apps: list[GatewayApp]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(app.run(), name=f"bench-{app.gateway_id}") for app in self.apps]
        for app, task in zip(self.apps, self.tasks):
            ready = asyncio.create_task(app.ready.wait())
            await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                ready.cancel()
                task.result()  # raises the gateway's error

    def depth(self) -> int:
        return sum(app.outbox.depth() for app in self.apps if app.outbox is not None)

    async def drained(self, timeout: float) -> float:
        """Wait until every outbox is empty; returns the time.perf_counter() then."""
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            if self.depth() == 0:
                return now
            for task in self.tasks:
                if task.done():
                    task.result()
            if now > deadline:
                raise TimeoutError(f"{self.depth()} events still in the outboxes after {timeout:g} s")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        for app in self.apps:
            app.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def make_apps(phase: str, count: int, mqtt_url: str, workdir: Path, *, batch_max: int) -> list[GatewayApp]:
    return [make_app(f"bench-{phase}-{i}", mqtt_url, workdir, batch_max=batch_max) for i in range(count)]


def make_app(gw: str, mqtt_url: str, workdir: Path, *, batch_max: int) -> GatewayApp:
    return GatewayApp(_config(gw, mqtt_url, workdir, batch_max))


def _config(gw: str, mqtt_url: str, workdir: Path, batch_max: int) -> GatewayConfig:
    return GatewayConfig(gateway_id=gw, mqtt_url=mqtt_url, data_dir=workdir / gw, heartbeat_s=5,
                         outbox=OutboxConfig(batch_max=batch_max))


async def flood(app: GatewayApp, phase: str, count: int) -> None:
    """Append ``count`` events as fast as the outbox commits them."""
    assert app.outbox is not None
    gw = app.gateway_id
    for start in range(0, count, _CHUNK):
        await app.outbox.append([card_read(gw, value_of(phase, gw, i)) for i in range(start, min(count, start + _CHUNK))])


async def paced(app: GatewayApp, phase: str, rate: float, seconds: float) -> int:
    """Record events one at a time at ``rate`` per second, as swipes arrive;
    returns how many. Catches up (several at once) if the loop fell behind."""
    gw = app.gateway_id
    interval = 1.0 / rate
    started = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.perf_counter() - started) / interval) + 1)
        if due > sent:
            app.record([card_read(gw, value_of(phase, gw, i)) for i in range(sent, due)])
            sent = due
        await asyncio.sleep(max(0.0, started + sent * interval - time.perf_counter()))
    return sent


def build_backlog(phase: str, gw: str, workdir: Path, count: int) -> None:
    """Write ``count`` events into a gateway's outbox while it is not running."""
    path = _config(gw, "mqtt://127.0.0.1:1", workdir, 1).outbox_path
    with Outbox(path, gateway_id=gw, synchronous="normal", first_seq=new_outbox_first_seq()) as outbox:
        for start in range(0, count, 5000):
            outbox.append([card_read(gw, value_of(phase, gw, i)) for i in range(start, min(count, start + 5000))])
