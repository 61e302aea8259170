"""The district's gateways on the wire: one per building, all sharing one
MQTT connection. Each keeps every event it published until the server's
acknowledgement names it (as a real gateway's outbox does), sends it again
when the connection comes back, when the server announces itself online,
when the server asks for a resend, and when acknowledgements stall.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from firmware_sim.district.cameras import Crossing, door_of
from rentgate import wire
from rentgate.aio import wait_event
from rentgate.mqtt import LinkSettings, MqttLink

log = logging.getLogger(__name__)

ACK_SUBSCRIPTION = f"{wire.TOPIC_ROOT}/gw/+/ack"
_BATCH = 2000  # events per message, well under wire.MAX_BATCH_EVENTS
_STALL_S = 5.0  # no acknowledgement for this long: send the pending events again


@dataclass(frozen=True)
class Read:
    at: datetime
    card: str
    granted: bool


@dataclass
class FleetStats:
    published: int = 0  # distinct events
    committed: int = 0
    rejected: int = 0
    resent: int = 0


class GatewayFleet:
    def __init__(self, mqtt_url: str) -> None:
        self.stats = FleetStats()
        self._seq: dict[str, int] = {}
        self._pending: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress = asyncio.Event()
        self.link = MqttLink(
            LinkSettings(url=mqtt_url, client_id=f"sim-district-gw-{uuid.uuid4().hex[:8]}",
                         subscriptions=[(ACK_SUBSCRIPTION, 1), (wire.SERVER_STATUS_TOPIC, 1)]),
            on_message=self._on_message, on_connect=self._resend_all)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.link.run()

    def publish(self, gateway_id: str, reads: list[Read]) -> None:
        """Number the reads (this gateway's next sequence numbers), keep them
        until acknowledged and send them."""
        def event(read: Read, seq: int) -> wire.Event:
            return wire.CardRead(
                gw=gateway_id, seq=seq, device="reader-1", door="大门", ts=read.at,
                credential=wire.Credential(format="em4100", value=read.card),
                decision="granted" if read.granted else "denied", reason=None if read.granted else "revoked")
        self._publish(gateway_id, [partial(event, read) for read in reads])

    def publish_crossings(self, gateway_id: str, crossings: list[Crossing]) -> None:
        """Unit door cameras' crossings (firmware_sim/district/cameras.py) as
        wire camera events, numbered and kept like the reads."""
        def event(c: Crossing, track: int, seq: int) -> wire.Event:
            common: dict[str, Any] = {"gw": gateway_id, "seq": seq, "device": f"cam-{c.unit}",
                                      "door": door_of(c.unit), "ts": c.at, "track": track}
            if c.kind == "unidentified_entry":
                return wire.UnidentifiedEntry(**common)
            if c.kind == "tailgating":
                return wire.Tailgating(**common, entered=2, granted=1)
            return wire.PeopleCrossing(**common, direction=c.direction)
        self._publish(gateway_id, [partial(event, c, k) for k, c in enumerate(crossings)])

    def _publish(self, gateway_id: str, makers: list[Callable[[int], wire.Event]]) -> None:
        if not makers:
            return
        first = self._seq.get(gateway_id, 0) + 1
        jsons = {}
        for offset, make in enumerate(makers):
            seq = first + offset
            jsons[seq] = wire.encode_event(make(seq))
        self._seq[gateway_id] = first + len(makers) - 1
        with self._lock:
            self._pending.setdefault(gateway_id, {}).update(jsons)
            self.stats.published += len(jsons)
        self._send(gateway_id, sorted(jsons.items()))

    def pending(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pending.values())

    async def acknowledged(self, timeout: float = 300.0) -> None:
        """Return once every published event is acknowledged; raises
        TimeoutError if they are not within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending():
            self._progress.clear()
            if not self.pending():
                break
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.pending()} events not acknowledged after {timeout:g} s")
            if not await wait_event(self._progress, min(_STALL_S, left)):
                log.warning("acknowledgements stalled with %s events pending; sending them again", self.pending())
                self._resend_all()

    def stop(self) -> None:
        self.link.stop()

    # ------------------------------------------------------------------ network thread

    def _send(self, gateway_id: str, items: list[tuple[int, str]]) -> None:
        topic = wire.events_topic(gateway_id)
        for i in range(0, len(items), _BATCH):
            chunk = [text for _, text in items[i:i + _BATCH]]
            if not self.link.publish(topic, wire.batch_json(gateway_id, chunk), qos=1):
                return  # not connected: the reconnect sends everything pending

    def _resend_all(self) -> None:
        with self._lock:
            snapshot = {gw: sorted(p.items()) for gw, p in self._pending.items() if p}
        for gw, items in snapshot.items():
            self.stats.resent += len(items)
            self._send(gw, items)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == wire.SERVER_STATUS_TOPIC:
            try:
                online = wire.decode_server_status(payload).state == "online"
            except wire.WireError:
                return
            if online:
                self._resend_all()
            return
        gw = wire.gateway_from_topic(topic)
        if gw is None:
            return
        try:
            ack = wire.decode_ack(payload)
        except wire.WireError:
            log.warning("unreadable ack on %s", topic)
            return
        again: list[tuple[int, str]] = []
        with self._lock:
            pending = self._pending.get(gw, {})
            for ranges, counter in ((ack.committed, "committed"), (ack.rejected, "rejected")):
                done = 0
                for first, last in ranges:
                    for seq in range(first, last + 1):
                        if pending.pop(seq, None) is not None:
                            done += 1
                setattr(self.stats, counter, getattr(self.stats, counter) + done)
            for first, last in ack.resend:
                again.extend((s, pending[s]) for s in range(first, last + 1) if s in pending)
        if again:
            self._send(gw, again)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._progress.set)
