"""The MQTT terminal adapter against a real Mosquitto, fed by the simulated terminal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from firmware_sim.face_terminal import FaceTerminalSim
from gateway.devices.face_terminal import MqttTerminalAdapter, MqttTerminalConfig
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink
from tests.services import Mosquitto


def _config(url: str, **extra: Any) -> MqttTerminalConfig:
    return MqttTerminalConfig.model_validate({"type": "mqtt_terminal", "id": "lock-3", "door": "room-3",
                                              "mqtt_url": url, **extra})


@asynccontextmanager
async def running(config: MqttTerminalConfig) -> AsyncIterator[tuple[MqttTerminalAdapter, RecordingSink]]:
    sink = RecordingSink()
    adapter = MqttTerminalAdapter(config, sink)
    task = asyncio.create_task(adapter.run(), name="mqtt-terminal-under-test")
    await wait_until(lambda: adapter.subscribed.is_set() or task.done(), what="the adapter subscribed")
    if task.done():
        task.result()
    try:
        yield adapter, sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_faces_and_cards_become_reads_and_redeliveries_are_dropped(mosquitto: Mosquitto) -> None:
    async with running(_config(mosquitto.url, noise_report_s=0.05)) as (adapter, sink):
        with FaceTerminalSim(mosquitto.url, "SN0001") as terminal:
            face_id = await asyncio.to_thread(terminal.face, "1001")
            await asyncio.to_thread(terminal.face, "1001", message_id=face_id)  # QoS 1 redelivery
            await asyncio.to_thread(terminal.heartbeat)
            await asyncio.to_thread(terminal.publish_raw, b"\x00garbage")
            await asyncio.to_thread(terminal.card, "3265421170")
        await wait_until(lambda: len(sink.reads) >= 2, what="two reads")
        assert sink.values() == [("terminal_person", "1001"), ("raw", "C2A25F72")]
        assert (adapter.stats.duplicates, adapter.stats.rejected, adapter.stats.not_reads) == (1, 1, 1)
        await wait_until(lambda: any(bad == 1 for _, _, bad in sink.statuses), what="the garbage count reported")
        assert sink.statuses[0][0] is True


async def test_a_vendor_topic_and_field_map_and_unknown_terminals(mosquitto: Mosquitto) -> None:
    config = _config(mosquitto.url, topic="face.{sn}.request",
                     fields={"person": "info.personId", "event_type": "operator", "read_types": ["RecPush"]},
                     terminals={"K-1": {"device": "lock-3"}})
    async with running(config) as (adapter, sink):
        with FaceTerminalSim(mosquitto.url, "K-2", topic="face.{sn}.request") as stranger:
            await asyncio.to_thread(stranger.publish_event, {"operator": "RecPush", "info": {"personId": "9"}}, None)
        with FaceTerminalSim(mosquitto.url, "K-1", topic="face.{sn}.request") as terminal:
            await asyncio.to_thread(terminal.publish_event, {"operator": "HeartBeat"}, None)
            await asyncio.to_thread(terminal.publish_event, {"operator": "RecPush", "info": {"personId": "77"}}, None)
        await wait_until(lambda: sink.reads != [], what="the read")
        assert sink.values() == [("terminal_person", "77")]
        assert (adapter.stats.unknown_terminal, adapter.stats.not_reads) == (1, 1)


def test_a_bad_topic_template_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        _config("mqtt://localhost", topic="face/event")
