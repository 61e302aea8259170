"""An independent listener on every gateway's ack topic: when the server's
"committed" reached the broker's subscribers, stamped on a thread of its own."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.measure import AckSeen
from rentgate import wire

ACK_SUBSCRIPTION = "rentgate/v1/gw/+/ack"


class AckListener:
    def __init__(self, host: str, port: int) -> None:
        self.acks: list[AckSeen] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-ack-listener")
        self._client.on_connect = lambda c, *_a: c.subscribe(ACK_SUBSCRIPTION, 1)
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def __enter__(self) -> AckListener:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("ack listener got no SUBACK")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        at = time.time()
        gw = wire.gateway_from_topic(msg.topic)
        try:
            ack = wire.decode_ack(bytes(msg.payload))
        except wire.WireError:
            return
        if gw is not None and ack.committed:
            self.acks.append(AckSeen(at, gw, [(a, b) for a, b in ack.committed]))
