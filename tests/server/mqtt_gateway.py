"""A paho client that publishes like a gateway and collects what the server
sends back: for ingest tests against a real Mosquitto."""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rentgate import wire

TIMEOUT = 10.0


class FakeGateway:
    def __init__(self, url: str, gw: str) -> None:
        self.gw = gw
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(wire.ack_topic(gw), 1), (wire.SERVER_STATUS_TOPIC, 1)])
        self.client.loop_start()

    def publish(self, payload: bytes, leaf: str = "events") -> None:
        self.client.publish(f"{wire.TOPIC_ROOT}/gw/{self.gw}/{leaf}", payload, qos=1).wait_for_publish(TIMEOUT)

    async def next_ack(self, predicate: Callable[[wire.Ack], object] = lambda ack: True) -> wire.Ack:
        while True:
            topic, payload = await asyncio.to_thread(self.received.get, True, TIMEOUT)
            if topic == wire.ack_topic(self.gw) and predicate(ack := wire.decode_ack(payload)):
                return ack

    async def server_status(self) -> wire.ServerStatus:
        while True:
            topic, payload = await asyncio.to_thread(self.received.get, True, TIMEOUT)
            if topic == wire.SERVER_STATUS_TOPIC:
                return wire.decode_server_status(payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
