"""The ``osdp`` device type: its config, and a gateway whose OSDP line
reports each reader's cards under that reader's id and door."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.osdp_reader import SimOsdpLine
from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from rentgate import wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, wait_until
from tests.gateway.test_app import running
from tests.services import Mosquitto

HEAD = """\
gateway_id = "gw-1"
mqtt_url = "mqtt://127.0.0.1:1883"
data_dir = "/var/lib/rentgate"
"""

LINE = HEAD + """
[[devices]]
type = "osdp"
id = "line-1"
port = "/dev/ttyUSB0"
channel_id = 2

[[devices.readers]]
id = "reader-front"
door = "front"
address = 1
scbk = "000102030405060708090a0b0c0d0e0f"

[[devices.readers]]
id = "reader-back"
door = "back"
address = 2
"""


def _problems(text: str) -> dict[str, int | None]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return {p.path: p.line for p in info.value.problems}


def test_an_osdp_line_is_a_valid_device() -> None:
    device = parse_config(LINE).devices[0]
    assert device.type == "osdp" and device.id == "line-1"


@pytest.mark.parametrize(("old", "new", "path"), [
    ('scbk = "000102030405060708090a0b0c0d0e0f"', 'scbk = "0001"', "devices.0.readers.0.scbk"),
    ("address = 2", "address = 127", "devices.0.readers.1.address"),
    ("channel_id = 2", "channel_id = 0", "devices.0.channel_id"),
    ('door = "back"', 'door = "back"\ncolour = "red"', "devices.0.readers.1.colour"),
    ("address = 2", "address = 1", "devices.0.readers"),
])
def test_bad_values_are_rejected_with_their_key_path(old: str, new: str, path: str) -> None:
    assert path in _problems(LINE.replace(old, new))


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(mosquitto.url, GW, acking=True)
    yield fake
    fake.close()


async def test_osdp_readers_cards_reach_the_server_under_their_own_device_and_door(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    with SimOsdpLine() as sim:
        front, back = sim.add_reader(1), sim.add_reader(2)
        config = GatewayConfig.model_validate({
            "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
            "devices": [{"type": "osdp", "id": "line-1", "port": sim.pts, "channel_id": 1, "readers": [
                {"id": "reader-front", "door": "front", "address": 1},
                {"id": "reader-back", "door": "back", "address": 2},
            ]}],
        })
        async with running(config) as app:
            def online() -> set[str]:
                return {e.device for e in server.received if isinstance(e, wire.DeviceStatus) and e.online}

            await wait_until(lambda: online() >= {"line-1", "reader-front", "reader-back"}, what="readers online")
            front.present(90, 324)
            back.present(1, 2)
            await wait_until(lambda: len(server.seqs("card_read")) == 2, what="both cards")
            reads = {(e.device, e.door, e.credential.format, e.credential.value)
                     for e in server.received if isinstance(e, wire.CardRead)}
            assert reads == {("reader-front", "front", "wiegand26", "90:324"),
                             ("reader-back", "back", "wiegand26", "1:2")}
            assert app.devices_online == {"line-1": True, "reader-front": True, "reader-back": True}
