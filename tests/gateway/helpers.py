"""Small tools shared by the gateway tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from gateway.outbox import EventMaker
from rentgate import wire
from tests.gateway.access.helpers import T0, signed
from tests.services import Mosquitto, MqttProbe

GW = "gw-test"
TS = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def card(value: str = "14008EC793", *, gw: str = GW, device: str = "reader-1") -> EventMaker:
    credential = wire.Credential(format="em4100", value=value)
    return lambda seq: wire.CardRead(gw=gw, seq=seq, device=device, door="door-1", ts=TS, credential=credential)


def cards(n: int, *, gw: str = GW) -> list[EventMaker]:
    return [card(f"{i:010X}", gw=gw) for i in range(n)]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def seqs_in(payload: bytes) -> list[int]:
    """The seqs of the events in one published message, in order."""
    return [e.seq for e in wire.decode_events(payload)]


def is_batch(payload: bytes) -> bool:
    return "events" in json.loads(payload)


def publish_allowlist(mosquitto: Mosquitto, tenant: wire.Credential,
                      revoked: Sequence[wire.Credential] = ()) -> None:
    """Version 1 of GW's allowlist as the server publishes it: signed and
    retained on ``mosquitto``, ``tenant`` its one entry (person p-1)."""
    snapshot = wire.AllowlistSnapshot(gw=GW, version=1, issued_at=T0, revoked=list(revoked),
                                      entries=[wire.AllowlistEntry(credential=tenant, person="p-1")])
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    try:
        probe.publish(wire.allowlist_topic(GW), signed(snapshot), retain=True)
    finally:
        probe.close()
