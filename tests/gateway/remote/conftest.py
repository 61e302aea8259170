"""A fake server that is online (its retained status is what the health gate
waits for) and a publisher for the config topic, on the test's Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW
from tests.services import Mosquitto, MqttProbe


@pytest.fixture
def online_server(server: FakeServer) -> FakeServer:
    server.set_status("online", "server-1")
    return server


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[MqttProbe]:
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    yield probe
    probe.close()


def publish_config(probe: MqttProbe, message: bytes, gw: str = GW) -> None:
    """As the server does: retained, QoS 1."""
    from rentgate import wire

    probe.publish(wire.config_topic(gw), message, qos=1, retain=True)
