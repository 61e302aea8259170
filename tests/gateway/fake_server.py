"""A stand-in for the rentgate server on a real broker: it records every
event it receives and acknowledges them only when told to."""

from __future__ import annotations

import threading
from collections import Counter

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rentgate import wire
from rentgate.mqtt import BrokerAddress


class FakeServer:
    def __init__(self, url: str, gateway_id: str, *, acking: bool = True) -> None:
        self.gateway_id = gateway_id
        self.acking = acking
        self.received: list[wire.Event] = []
        self.statuses: list[wire.GatewayStatus] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        address = BrokerAddress.parse(url)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-server-{gateway_id}")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(address.host, address.port)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("fake server could not subscribe")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def set_status(self, state: str, instance: str) -> None:
        status = wire.ServerStatus(state=state, instance=instance, ts=wire.utcnow())  # type: ignore[arg-type]
        self._client.publish(wire.SERVER_STATUS_TOPIC, status.model_dump_json(), qos=1, retain=True).wait_for_publish(5)

    def first_seq(self) -> int:
        """The outbox's first number (a new outbox starts at the clock, not at 1)."""
        with self._lock:
            firsts = [e.outbox_first_seq for e in self.received
                      if isinstance(e, wire.GatewayStarted) and e.outbox_first_seq is not None]
        return min(firsts) if firsts else 1

    def nth(self, seq: int) -> int:
        """1 for the outbox's first event, 2 for the next, ..."""
        return seq - self.first_seq() + 1

    def seqs(self, kind: str | None = None) -> list[int]:
        """Received events by position in the outbox (see ``nth``), in arrival order."""
        base = self.first_seq() - 1
        with self._lock:
            return [e.seq - base for e in self.received if kind is None or e.kind == kind]

    def times_received(self) -> Counter[int]:
        return Counter(self.seqs())

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        client.subscribe([(wire.events_topic(self.gateway_id), 1), (wire.status_topic(self.gateway_id), 1)])

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.topic == wire.status_topic(self.gateway_id):
            with self._lock:
                self.statuses.append(wire.decode_gateway_status(bytes(msg.payload)))
            return
        events = wire.decode_events(bytes(msg.payload), self.gateway_id)
        with self._lock:
            self.received.extend(events)
        if self.acking:
            ack = wire.Ack(committed=wire.to_ranges(e.seq for e in events))
            client.publish(wire.ack_topic(self.gateway_id), ack.model_dump_json(), qos=1)
