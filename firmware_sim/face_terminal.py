"""A simulated MQTT face terminal / smart lock: publishes one JSON object per
event to a topic carrying its serial number (``face/{sn}/event`` by default),
with the payload shape the gateway's default field map expects."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.errors import SimError
from rentgate.mqtt import BrokerAddress

log = logging.getLogger(__name__)


class FaceTerminalSimError(SimError):
    pass


class FaceTerminalSim:
    """Use as a context manager; calls block (run them in a thread from async code)."""

    def __init__(self, url: str, serial: str, *, topic: str = "face/{sn}/event", timeout_s: float = 10) -> None:
        self.address = BrokerAddress.parse(url)
        self.serial = serial
        self.topic = topic.replace("{sn}", serial)
        self.timeout_s = timeout_s
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-face-{serial}-{uuid.uuid4().hex[:6]}")
        if self.address.username:
            self._client.username_pw_set(self.address.username, self.address.password)

    def __enter__(self) -> FaceTerminalSim:
        self._client.connect(self.address.host, self.address.port)
        self._client.loop_start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def face(self, person: str, *, message_id: str | None = None) -> str:
        return self.publish_event({"type": "face_pass", "personId": person}, message_id)

    def card(self, card: str, *, message_id: str | None = None) -> str:
        return self.publish_event({"type": "card", "cardNo": card}, message_id)

    def heartbeat(self) -> str:
        return self.publish_event({"type": "heartbeat"}, None)

    def publish_event(self, fields: dict[str, Any], message_id: str | None) -> str:
        """Publish ``fields`` plus an id and a time; returns the id (send it
        again to simulate a QoS 1 redelivery)."""
        message_id = message_id or uuid.uuid4().hex
        doc = {"id": message_id, "sn": self.serial, "time": datetime.now(UTC).isoformat(timespec="seconds"), **fields}
        self.publish_raw(json.dumps(doc).encode())
        return message_id

    def publish_raw(self, payload: bytes) -> None:
        info = self._client.publish(self.topic, payload, qos=1)
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise FaceTerminalSimError(f"{self.topic}: not acknowledged by the broker in {self.timeout_s} s")
