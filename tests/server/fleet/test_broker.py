"""One identity per gateway, enforced by a real Mosquitto's dynamic security
plugin as DynsecProvisioner sets it up: what a gateway's login lets it do on
the gateways' TLS listener, and how fast a removed gateway is cut off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rentgate import wire
from server.fleet.broker import DynsecProvisioner
from server.fleet.ca import GatewayCa
from server.fleet.errors import BrokerError
from tests.server.fleet.conftest import GatewayIdentity, make_identity
from tests.services import Mosquitto, MqttProbe

MakeIdentity = Callable[[str], GatewayIdentity]
REFUSED = 0x80
# The target for revocation; what is measured is far below (see the
# report in docs/mosquitto.md).
CUTOFF_S = 2.0


def nothing_arrives(probe: MqttProbe, within: float = 0.5) -> bool:
    try:
        topic, payload, _ = probe.expect(within)
    except AssertionError:
        return True
    raise AssertionError(f"{probe.client_id} got {payload!r} on {topic}")


async def test_a_gateway_speaks_only_for_itself(fleet_broker: Mosquitto, provisioner: DynsecProvisioner,
                                                identity: MakeIdentity, server_probe: MqttProbe) -> None:
    a, b = identity("gw-a"), identity("gw-b")
    await provisioner.add_gateway(a.gateway_id, a.password)
    await provisioner.add_gateway(b.gateway_id, b.password)
    server_probe.subscribe(wire.EVENTS_SUBSCRIPTION)
    server_probe.subscribe(wire.STATUS_SUBSCRIPTION)
    server_probe.subscribe(wire.ALLOWLIST_REQUEST_SUBSCRIPTION)

    gw_a = a.probe(fleet_broker)
    assert gw_a.try_connect() == "Success"
    gw_a.publish(wire.events_topic("gw-a"), b"mine")
    assert server_probe.expect() == (wire.events_topic("gw-a"), b"mine", False)

    # MQTT 3.1.1 has no way to refuse a publish: the broker acknowledges it
    # and drops it. The server must never see it.
    for topic in (wire.events_topic("gw-b"), wire.status_topic("gw-b"), wire.allowlist_request_topic("gw-b"),
                  wire.ack_topic("gw-b"), wire.allowlist_topic("gw-b"), wire.config_topic("gw-b"),
                  wire.SERVER_STATUS_TOPIC, "rentgate/v1/gw/gw-a/other"):
        gw_a.publish(topic, b"forged")
    assert nothing_arrives(server_probe)

    # Another gateway's acks, configuration and allowlist: refused at SUBSCRIBE.
    for topic in (wire.ack_topic("gw-b"), wire.config_topic("gw-b"), wire.allowlist_topic("gw-b"),
                  wire.allowlist_delta_topic("gw-b"), wire.EVENTS_SUBSCRIPTION, "rentgate/#", "#"):
        assert gw_a.subscribe_result(topic) == REFUSED, topic
    # Its own: granted, and delivered.
    for topic in (wire.ack_topic("gw-a"), wire.config_topic("gw-a"), wire.allowlist_topic("gw-a"),
                  wire.allowlist_delta_topic("gw-a"), wire.SERVER_STATUS_TOPIC):
        assert gw_a.subscribe_result(topic) == 1, topic
    server_probe.publish(wire.ack_topic("gw-a"), b"ack for a")
    assert gw_a.expect()[:2] == (wire.ack_topic("gw-a"), b"ack for a")
    server_probe.publish(wire.ack_topic("gw-b"), b"ack for b")
    assert nothing_arrives(gw_a)
    gw_a.close()


async def test_the_login_is_bound_to_the_gateways_client_id_and_certificate(
        fleet_broker: Mosquitto, provisioner: DynsecProvisioner, identity: MakeIdentity, tmp_path: Path) -> None:
    a = identity("gw-a")
    await provisioner.add_gateway(a.gateway_id, a.password)
    assert a.probe(fleet_broker, client_id="rentgate-gw-gw-b").try_connect() == "Not authorized"
    assert a.probe(fleet_broker, password="not-the-password").try_connect() == "Not authorized"
    # A valid password without a client certificate of our CA: no TLS session at all.
    assert a.probe(fleet_broker, with_certificate=False).try_connect().startswith("no CONNACK")
    stranger_ca = GatewayCa.create(tmp_path / "stranger-ca")
    stranger = make_identity(stranger_ca, a.ca_file, tmp_path / "stranger", "gw-a")
    stranger.password = a.password
    assert stranger.probe(fleet_broker).try_connect().startswith("no CONNACK")
    ok = a.probe(fleet_broker)
    assert ok.try_connect() == "Success"
    ok.close()


async def test_enrolling_again_replaces_the_login(fleet_broker: Mosquitto, provisioner: DynsecProvisioner,
                                                  identity: MakeIdentity) -> None:
    a = identity("gw-a")
    await provisioner.add_gateway(a.gateway_id, "first-password-0123456789")
    await provisioner.add_gateway(a.gateway_id, a.password)
    assert a.probe(fleet_broker, password="first-password-0123456789").try_connect() == "Not authorized"
    ok = a.probe(fleet_broker)
    assert ok.try_connect() == "Success"
    ok.close()


async def test_a_removed_gateway_is_cut_off_at_once_and_stays_out(
        fleet_broker: Mosquitto, provisioner: DynsecProvisioner, identity: MakeIdentity,
        server_probe: MqttProbe) -> None:
    a, b = identity("gw-a"), identity("gw-b")
    await provisioner.add_gateway(a.gateway_id, a.password)
    await provisioner.add_gateway(b.gateway_id, b.password)
    gw_a, gw_b = a.probe(fleet_broker), b.probe(fleet_broker)
    assert gw_a.try_connect() == "Success"
    assert gw_b.try_connect() == "Success"

    started = time.monotonic()
    await provisioner.remove_gateway("gw-a")
    assert await asyncio.to_thread(gw_a.disconnected.wait, CUTOFF_S), "the broker kept the removed gateway"
    assert gw_a.disconnected_at is not None
    cutoff = gw_a.disconnected_at - started
    print(f"revocation cutoff: {cutoff * 1000:.1f} ms")
    assert cutoff < CUTOFF_S
    gw_a.client.loop_stop()
    assert a.probe(fleet_broker).try_connect() == "Not authorized"
    # The other gateway is untouched.
    assert gw_b.client.is_connected() and not gw_b.disconnected.is_set()
    server_probe.subscribe(wire.EVENTS_SUBSCRIPTION)
    gw_b.publish(wire.events_topic("gw-b"), b"still here")
    assert server_probe.expect()[:2] == (wire.events_topic("gw-b"), b"still here")
    # Removing again, or what never existed, is fine.
    await provisioner.remove_gateway("gw-a")
    await provisioner.remove_gateway("gw-never")
    gw_b.close()


async def test_nobody_publishes_or_subscribes_by_default(fleet_broker: Mosquitto) -> None:
    """A hand-made broker with Mosquitto's own defaults: the provisioner
    closes publishing and subscribing for clients without an ACL."""
    assert fleet_broker.dynsec is not None
    fleet_broker.dynsec.command(fleet_broker, [{"command": "setDefaultACLAccess", "acls": [
        {"acltype": "publishClientSend", "allow": True}, {"acltype": "subscribe", "allow": True}]}])
    dynsec = DynsecProvisioner(fleet_broker.admin_url, timeout_s=5.0)
    await dynsec.start()
    try:
        async def closed() -> bool:
            answer = await dynsec.run_commands([{"command": "getDefaultACLAccess"}])
            acls = {acl["acltype"]: acl["allow"] for acl in answer[0]["data"]["acls"]}
            return not acls["publishClientSend"] and not acls["subscribe"]

        deadline = time.monotonic() + 5
        while not await closed():
            assert time.monotonic() < deadline, "default ACL access left open"
            await asyncio.sleep(0.05)
    finally:
        await dynsec.close()


async def test_a_broker_that_refuses_or_does_not_answer_is_a_broker_error(fleet_broker: Mosquitto) -> None:
    assert fleet_broker.dynsec is not None
    wrong = DynsecProvisioner(fleet_broker.admin_url.replace(fleet_broker.dynsec.admin_password, "wrong"),
                              timeout_s=1.0)
    await wrong.start()
    try:
        with pytest.raises(BrokerError, match="no admin connection"):
            await wrong.add_gateway("gw-a", "x" * 20)
    finally:
        await wrong.close()
    # The server's login is no dynsec admin: the broker lets it in but will
    # not let it hear the answers, so no command is sent into the void.
    not_admin = DynsecProvisioner(fleet_broker.server_url, timeout_s=1.0)
    await not_admin.start()
    try:
        assert await asyncio.to_thread(not_admin.link.wait_connected, 10)
        with pytest.raises(BrokerError, match=r"let this login in but not hear .* \(is this login its admin\?\)"):
            await not_admin.add_gateway("gw-a", "x" * 20)
    finally:
        await not_admin.close()
    with pytest.raises(BrokerError, match="not a gateway id"):
        await not_admin.remove_gateway("gw/+")



async def test_the_provisioner_comes_back_with_the_broker(fleet_broker: Mosquitto, identity: MakeIdentity) -> None:
    """A revocation retried once the broker is back goes through: the admin
    link reconnects within a couple of seconds, not after a long backoff."""
    # Its own provisioner with a short command timeout: the broker is down on purpose.
    provisioner = DynsecProvisioner(fleet_broker.admin_url, timeout_s=1.5)
    await provisioner.start()
    try:
        a = identity("gw-a")
        await provisioner.add_gateway(a.gateway_id, a.password)
        await asyncio.to_thread(fleet_broker.stop)
        with pytest.raises(BrokerError):
            await provisioner.remove_gateway("gw-a")
        await asyncio.sleep(3)  # long enough for the reconnect backoff to grow
        await asyncio.to_thread(fleet_broker.start)
        # The retry may wait for the link (RECONNECT_MAX_S, jittered, plus the
        # connect on a busy machine), but well short of the 15 s backoff cap
        # a link without that setting would reach.
        provisioner.timeout_s = 5.0
        started = time.monotonic()
        await provisioner.remove_gateway("gw-a")
        assert time.monotonic() - started < 5
        assert a.probe(fleet_broker).try_connect() == "Not authorized"
    finally:
        await provisioner.close()
