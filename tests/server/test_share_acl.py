"""On a fleet broker (Mosquitto's dynamic security deciding every topic),
the broker roles rentgate provisions let ingest workers share the events
and keep a status each, and let gateways read those statuses. The plugin
checks a shared subscription with its ``$share/<group>/`` prefix: without an
ACL of its own a worker's subscription is refused (SUBACK 0x80)."""

from __future__ import annotations

from rentgate import wire
from server.fleet.broker import gateway_acls, server_acls
from tests.server.helpers import batch, card_read
from tests.services import Mosquitto, MqttProbe

GW = "gw-acl-1"


def _login(broker: Mosquitto, name: str, acls: list[dict[str, object]]) -> MqttProbe:
    """A client whose role holds exactly ``acls`` (what production provisions)."""
    assert broker.dynsec is not None
    broker.dynsec.command(broker, [
        {"command": "createRole", "rolename": f"role-{name}", "acls": acls},
        {"command": "createClient", "username": name, "password": "secret-" + name,
         "roles": [{"rolename": f"role-{name}"}]},
    ])
    return MqttProbe(broker.host, broker.port, username=name, password="secret-" + name).connect()


def test_workers_share_the_events_and_gateways_read_their_statuses(fleet_broker: Mosquitto) -> None:
    worker = _login(fleet_broker, "ingest-1", server_acls())
    gateway = _login(fleet_broker, "gateway", gateway_acls(GW))
    try:
        assert worker.subscribe_result(wire.shared_subscription(wire.EVENTS_SUBSCRIPTION, "ingest")) == 1
        assert worker.subscribe_result(wire.shared_subscription(wire.STATUS_SUBSCRIPTION, "ingest")) == 1
        assert gateway.subscribe_result(wire.SERVER_WORKER_STATUS_SUBSCRIPTION) == 1

        gateway.publish(wire.events_topic(GW), batch(GW, [card_read(GW, 1)]))
        topic, payload, _ = worker.expect()
        assert topic == wire.events_topic(GW) and [e.seq for e in wire.decode_events(payload)] == [1]

        status = wire.ServerStatus(state="online", instance="ingest-1/x")
        worker.publish(wire.server_worker_status_topic("ingest-1"), status.model_dump_json().encode(), retain=True)
        topic, payload, _ = gateway.expect()
        assert topic == wire.server_worker_status_topic("ingest-1")
        assert wire.decode_server_status(payload).state == "online"
    finally:
        worker.close()
        gateway.close()
