"""A watch fires through the real path: a simulated OSDP reader
(firmware_sim) → the gateway process → a real Mosquitto → the server
process on PostgreSQL → the police client's webhook receiver, which is down
when the card is read and comes up later; the alert is retried until it
answers, and its signature verifies with the published key."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.osdp_reader import SimOsdpLine
from server.db.models import audit_log, police_alerts
from server.registry.idnumber import make_id_number
from tests.integration.harness import GATEWAY_ID, add_access_gateway, running_system
from tests.server.police.watch_helpers import police_client
from tests.server.police.watch_stack import Hook, add_watch_server
from tests.services import Mosquitto

DOOR = "front"
CARD = (77, 4242)  # the OSDP reader reports Wiegand 26 as "facility:card"
WATCHED = make_id_number("440604", date(1988, 7, 1), 321)
PURPOSE = {"code": "fugitive_pursuit", "legal_basis": "《刑事诉讼法》第155条", "case_ref": "GZ-2026-0099"}


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.stop()


def _alerts(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(police_alerts).order_by(police_alerts.c.id)))


def test_a_watch_fires_through_the_real_path_and_is_retried_while_the_receiver_is_down(
        tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, hook: Hook) -> None:
    with running_system(tmp_path) as system:
        system.extra_logs["mosquitto"] = mosquitto.log_text
        server = add_watch_server(system, database_url=postgres_url, mqtt_url=mosquitto.url)
        server.start()
        with SimOsdpLine() as line:
            reader = line.add_reader(1)
            gateway = add_access_gateway(system, mqtt_url=mosquitto.url, port=line.pts, readers={"reader-1": DOOR},
                                         public_keys=server.public_keys())
            gateway.start()

            # The landlord's steps: a building with the gateway, a tenant with a card.
            building = server.call("POST", "/api/v1/registry/buildings",
                                   {"name": "Watch Road 9", "code": "440604009", "address": "Watch Road 9"},
                                   expect=201)
            unit = server.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                               {"number": "201", "area_m2": 18, "rooms": 1}, expect=201)
            server.call("PUT", f"/api/v1/gateways/{GATEWAY_ID}/building", {"building_id": building["id"]})
            registration = server.call("POST", "/api/v1/registry/registrations", {
                "unit_id": unit["id"], "person": {"id_number": WATCHED, "name": "Tenant W"},
                "arrived_at": date.today().isoformat(),
                "credential": {"format": "wiegand26", "value": "%d:%d" % CARD},
            }, expect=201)
            gateway.wait_allowlist(registration["allowlist_versions"][GATEWAY_ID])

            # The police client watches the tenant's number; its receiver is down.
            client = police_client(system.engine, webhook_url=hook.url)
            status, watch = server.police("POST", "/api/v1/police/watches", client.token,
                                          {"purpose": PURPOSE, "id_number": WATCHED, "days": 7})
            system.check(status == 201, f"setting the watch answered {status}: {watch}")

            reader.present(*CARD)
            system.wait_for(lambda: any(a.last_error for a in _alerts(system.engine)), 20,
                            "a failed delivery attempt while the receiver is down")
            (alert,) = _alerts(system.engine)
            system.check(alert.delivered_at is None and alert.last_error.startswith("connection failed"),
                         f"alert before the receiver is up: {alert}")

            hook.start()
            system.wait_for(lambda: hook.received, 30, "the alert at the webhook receiver")
            system.wait_for(lambda: _alerts(system.engine)[0].delivered_at is not None, 10,
                            "the alert marked delivered")
            with urllib.request.urlopen(f"{server.url}/api/v1/police/signing-key", timeout=10) as resp:
                info = json.loads(resp.read())
            with system.engine.connect() as conn:
                audited = conn.execute(sa.select(audit_log.c.subject, audit_log.c.actor)
                                       .where(audit_log.c.action == "police.watch_alert")).all()
            system.check([tuple(r) for r in audited] == [(f"watch:{watch['id']}", f"client:{client.client_id}")],
                         f"the delivery's audit entries: {audited}")

    headers, body = hook.received[0].headers, hook.received[0].body
    doc = json.loads(body)
    assert doc["watch_id"] == watch["id"] and doc["door"] == DOOR and doc["event"] == "card_read"
    assert doc["place"] == {"in_jurisdiction": True, "building_code": "440604009", "address": "Watch Road 9"}
    assert doc["purpose"] == {"code": "fugitive_pursuit", "case_ref": "GZ-2026-0099"}
    assert WATCHED not in body.decode() and WATCHED[-4:] not in body.decode()
    assert int(headers["X-Rentgate-Attempt"]) >= 2

    # Verified as a receiver would, with the key the server publishes.
    fields = dict(part.split("=", 1) for part in headers["X-Rentgate-Signature"].split(","))
    assert fields["kid"] == info["key_id"]
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(info["public_key"]))
    key.verify(base64.b64decode(fields["sig"]), fields["t"].encode() + b"." + body)
