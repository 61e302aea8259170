"""MQTT face terminals and smart locks, on a broker of their own (often one
in the building, not the city's), one topic per terminal serial number.

The adapter runs its own :class:`MqttLink`; paho delivers on its network
thread, where a message is parsed (pure, quick) and handed to the sink, which
is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.devices.base import DeviceConfigBase, DeviceRouter, EventSink, register
from gateway.devices.hikvision import TerminalRoute
from gateway.devices.recent import RecentKeys
from rentgate.mqtt import validate_url

if TYPE_CHECKING:
    from devices.face_terminal import FieldMap, TopicTemplate

log = logging.getLogger(__name__)

_DEDUPE_WINDOW = 4096


class FieldsConfig(BaseModel):
    """Dotted paths into a terminal's JSON payload; an empty string: not sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = "personId"
    card: str = "cardNo"
    event_type: str = "type"
    time: str = "time"
    message_id: str = "id"
    read_types: list[str] = Field(default_factory=list)

    def field_map(self) -> FieldMap:
        from devices.face_terminal import FieldMap

        return FieldMap(person=self.person or None, card=self.card or None, event_type=self.event_type or None,
                        time=self.time or None, message_id=self.message_id or None,
                        read_types=tuple(self.read_types))


class MqttTerminalConfig(DeviceConfigBase):
    type: Literal["mqtt_terminal"]
    mqtt_url: str
    topic: str = "face/{sn}/event"
    qos: int = Field(default=1, ge=0, le=1)
    fields: FieldsConfig = Field(default_factory=FieldsConfig)
    # Serial number -> device and door; empty: every terminal is this device.
    terminals: dict[str, TerminalRoute] = Field(default_factory=dict)
    noise_report_s: float = Field(default=60, gt=0)

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_url(value)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        from devices.face_terminal import TopicTemplate

        TopicTemplate(value)  # ValueError says what is wrong
        return value


@dataclass
class TerminalStats:
    reads: int = 0
    duplicates: int = 0
    rejected: int = 0
    unknown_terminal: int = 0
    not_reads: int = 0


class MqttTerminalAdapter:
    def __init__(self, config: MqttTerminalConfig, sink: EventSink) -> None:
        from devices.face_terminal import TopicTemplate

        self.config = config
        self.stats = TerminalStats()
        self._sink = sink
        self._template: TopicTemplate = TopicTemplate(config.topic)
        self._fields = config.fields.field_map()
        self._seen = RecentKeys(_DEDUPE_WINDOW)
        self._lock = threading.Lock()
        self.subscribed = threading.Event()

    async def run(self) -> None:
        from rentgate.mqtt import LinkSettings, MqttLink

        settings = LinkSettings(url=self.config.mqtt_url, client_id=f"rentgate-terminals-{self.config.id}",
                                subscriptions=[(self._template.subscription, self.config.qos)])
        link = MqttLink(settings, on_message=self._on_message, on_subscribed=self._on_subscribed,
                        on_disconnect=self._on_disconnect)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(link.run(), name=f"mqtt-terminal-{self.config.id}")
            tg.create_task(self._report_noise(), name=f"mqtt-terminal-noise-{self.config.id}")

    async def _report_noise(self) -> None:
        reported = 0
        while True:
            await asyncio.sleep(self.config.noise_report_s)
            if self.stats.rejected != reported:
                reported = self.stats.rejected
                self._sink.device_status(self.subscribed.is_set(), "rejected terminal messages", bad_frames=reported)

    def _on_subscribed(self) -> None:
        # Not on the CONNACK: a terminal's message published before the
        # broker grants the subscription would not reach us.
        self.subscribed.set()
        self._sink.device_status(True, f"connected to terminal broker, topic {self.config.topic}")

    def _on_disconnect(self) -> None:
        self.subscribed.clear()
        self._sink.device_status(False, "terminal broker unreachable")

    def _on_message(self, topic: str, payload: bytes) -> None:
        from devices.face_terminal import VendorPayloadError, parse_message

        try:
            read = parse_message(topic, payload, self._template, self._fields)
        except VendorPayloadError as exc:
            with self._lock:
                self.stats.rejected += 1
            log.warning("mqtt terminal %s: rejected a message on %s (%d bytes): %s", self.config.id, topic[:100],
                        len(payload), exc.reason)
            return
        if read is None:
            with self._lock:
                self.stats.not_reads += 1
            return
        sink = self._route(read.serial)
        if sink is None:
            with self._lock:
                self.stats.unknown_terminal += 1
            log.warning("mqtt terminal %s: message from unknown terminal %s", self.config.id, read.serial)
            return
        if read.message_id is not None and self._seen_before((read.serial, read.message_id)):
            return
        with self._lock:
            self.stats.reads += 1
        sink.card_read(read.credential)

    def _seen_before(self, key: tuple[str, str]) -> bool:
        # QoS 1 delivers at least once: a redelivered message carries the same id.
        if not self._seen.seen_before(key):
            return False
        with self._lock:
            self.stats.duplicates += 1
        return True

    def _route(self, serial: str) -> EventSink | None:
        if not self.config.terminals:
            return self._sink
        route = self.config.terminals.get(serial)
        if route is None:
            return None
        if isinstance(self._sink, DeviceRouter):
            return self._sink.for_device(route.device, route.door)
        return self._sink


register("mqtt_terminal", MqttTerminalConfig, MqttTerminalAdapter)
