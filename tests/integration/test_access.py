"""At the door, end to end with the real processes: a landlord registers a
tenant with a card through the server's registry API, the gateway opens the
door for it from its signed allowlist, ending the tenancy shuts the door
within seconds, decisions keep being made while the broker is down and reach
the server exactly once later, and a forced door raises an alarm at the server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from firmware_sim.osdp_reader import SimOsdpLine, SimOsdpReader
from server.registry.idnumber import make_id_number
from tests.integration.harness import (
    GATEWAY_ID,
    AccessGateway,
    AccessServer,
    System,
    add_access_gateway,
    add_access_server,
    stored_decisions,
    stored_door_states,
)
from tests.services import Mosquitto

log = logging.getLogger(__name__)

DOOR = "front"
READER = "reader-front"
TENANT_CARD = (90, 324)  # the OSDP reader reports Wiegand 26 as "facility:card"
STRANGER_CARD = (1, 2)
TENANT_ID = make_id_number("440604", date(1992, 3, 8), 217)  # synthetic, valid check character
REVOCATION_LIMIT_S = 5.0


@dataclass
class Door:
    system: System
    server: AccessServer
    gateway: AccessGateway
    reader: SimOsdpReader
    mosquitto: Mosquitto

    def pulses(self) -> int:
        return len(self.reader.commands("output"))

    def decisions(self) -> list[tuple[str, str | None, str | None]]:
        return stored_decisions(self.system.engine)


@pytest.fixture
def door(tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System) -> Iterator[Door]:
    """Server on PostgreSQL, gateway with one OSDP reader on a simulated line, both through Mosquitto."""
    system.extra_logs["mosquitto"] = mosquitto.log_text
    server = add_access_server(system, database_url=postgres_url, mqtt_url=mosquitto.url)
    server.start()
    with SimOsdpLine() as line:
        reader = line.add_reader(1)
        gateway = add_access_gateway(system, mqtt_url=mosquitto.url, port=line.pts, readers={READER: DOOR},
                                     public_keys=server.public_keys())
        gateway.start()
        yield Door(system, server, gateway, reader, mosquitto)


def _tenant_with_card(door: Door) -> int:
    """The landlord's steps through the registry API: building, a unit, its
    gateway, a tenant registered there with a card. Returns the registration
    id once the gateway holds the card."""
    api = door.server
    building = api.call("POST", "/api/v1/registry/buildings", {"name": "Chancheng 117"}, expect=201)
    unit = api.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                    {"number": "101", "area_m2": 20, "rooms": 1}, expect=201)
    api.call("PUT", f"/api/v1/gateways/{GATEWAY_ID}/building", {"building_id": building["id"]})
    registration = api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": unit["id"], "person": {"id_number": TENANT_ID, "name": "Tenant A"},
        "arrived_at": date.today().isoformat(),
        "credential": {"format": "wiegand26", "value": "%d:%d" % TENANT_CARD},
    }, expect=201)
    door.gateway.wait_allowlist(registration["allowlist_versions"][GATEWAY_ID])
    return int(registration["id"])


def test_a_card_opens_the_door_until_the_tenancy_ends(door: Door) -> None:
    system, reader = door.system, door.reader
    registration = _tenant_with_card(door)

    reader.present(*TENANT_CARD)
    system.wait_for(lambda: door.decisions() == [("90:324", "granted", None)], 10, "the grant at the server")
    system.wait_for(lambda: door.pulses() == 1, 5, "the lock relay pulsed")

    ended_at = time.monotonic()
    ended = door.server.call("POST", f"/api/v1/registry/registrations/{registration}/end", {})
    door.gateway.wait_allowlist(ended["allowlist_versions"][GATEWAY_ID], timeout=REVOCATION_LIMIT_S)
    revocation_s = time.monotonic() - ended_at
    log.warning("revocation: registration ended → the gateway holds the revoking list in %.3f s", revocation_s)

    reader.present(*TENANT_CARD)
    system.wait_for(lambda: len(door.decisions()) == 2, 10, "the second read at the server")
    system.check(door.decisions()[1] == ("90:324", "denied", "revoked"), f"stored: {door.decisions()}")
    system.check(door.pulses() == 1, f"the lock was pulsed for a revoked card: {door.reader.commands('output')}")


def test_the_door_decides_while_the_broker_is_down(door: Door) -> None:
    system, reader = door.system, door.reader
    _tenant_with_card(door)

    door.mosquitto.stop()
    reader.present(*TENANT_CARD)
    system.wait_for(lambda: door.pulses() == 1, 5, "the door to open with no broker")
    reader.present(*STRANGER_CARD)
    # Both decisions durable before the broker returns, the stranger's without a pulse.
    system.wait_for(lambda: len(door.gateway.outbox_seqs("card_read")) == 2, 5, "both decisions in the outbox")
    system.check(door.pulses() == 1, "the lock was pulsed for an unknown card")
    system.check(door.decisions() == [], f"stored while the broker was down: {door.decisions()}")

    door.mosquitto.start()
    system.wait_for(lambda: len(door.decisions()) >= 2, 30, "the offline decisions at the server")
    system.wait_for(lambda: not door.gateway.outbox_seqs(), 30, "the gateway's outbox to drain")
    system.check(door.decisions() == [("90:324", "granted", None), ("1:2", "denied", "unknown")],
                 f"stored: {door.decisions()}")


def test_a_forced_door_raises_an_alarm_at_the_server(door: Door) -> None:
    system, reader = door.system, door.reader

    def states() -> list[tuple[str | None, str]]:
        return stored_door_states(system.engine)

    # The gateway takes the contact's first report as how the door is: report it shut first.
    reader.set_inputs(False)
    system.wait_for(lambda: states() == [(DOOR, "closed")], 10, "the door's contact known as closed")
    reader.set_inputs(True)  # nobody was granted: the door was forced
    system.wait_for(lambda: states()[1:] == [(DOOR, "forced")], 10, "the forced-door alarm at the server")
    reader.set_inputs(False)
    system.wait_for(lambda: states()[2:] == [(DOOR, "closed")], 10, "the door closed again")
    system.check(door.pulses() == 0, "the lock was pulsed with no grant")
