"""``rentgate fleet broker-setup`` (a real Mosquitto started from what it
writes) and ``rentgate fleet revoke`` (against a real fleet broker)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import wire
from rentgate.cli import main
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import audit_log, gateways
from server.fleet.broker import DynsecProvisioner, add_gateway_commands
from server.fleet.ca import GatewayCa
from tests.server.fleet.conftest import GatewayIdentity, make_identity
from tests.services import Mosquitto, MqttProbe, find_binary, free_port, wait_port

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


# --------------------------------------------------------------------------- broker-setup


class GeneratedBroker:
    """Mosquitto started from broker-setup's folder, with only what a test
    machine needs changed: free ports on loopback, its store and log in the
    folder, no pid file, and ``user root`` when running as root."""

    def __init__(self, folder: Path) -> None:
        binary = find_binary("mosquitto", "/usr/sbin", "/usr/local/sbin")
        if binary is None:
            pytest.skip("mosquitto not found: install the Debian package mosquitto")
        self.server_port, self.tls_port = free_port(), free_port()
        text = (folder / "mosquitto.conf").read_text()
        text = text.replace("listener 1883 127.0.0.1", f"listener {self.server_port} 127.0.0.1")
        text = text.replace("listener 8883\n", f"listener {self.tls_port} 127.0.0.1\n")
        text = text.replace("persistence_location /var/lib/mosquitto/", f"persistence_location {folder}/")
        text = text.replace("log_dest file /var/log/mosquitto/mosquitto.log", f"log_dest file {folder}/log.txt")
        text = re.sub(r"^pid_file .*$", "", text, flags=re.M)
        if os.geteuid() == 0:
            text += "user root\n"
        self.conf = folder / "test.conf"
        self.conf.write_text(text)
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port("127.0.0.1", self.server_port, 10)
        wait_port("127.0.0.1", self.tls_port, 10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def generated(tmp_path: Path, run: Run) -> Iterator[tuple[dict[str, Any], GeneratedBroker]]:
    code, out, err = run("fleet", "broker-setup", "--dir", str(tmp_path / "broker"), "--host", "127.0.0.1",
                         "--host", "localhost", "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    broker = GeneratedBroker(tmp_path / "broker")
    yield doc, broker
    broker.stop()


def test_the_generated_broker_runs_and_only_the_logins_it_made_get_in(
        generated: tuple[dict[str, Any], GeneratedBroker], tmp_path: Path) -> None:
    doc, broker = generated
    folder = tmp_path / "broker"
    for private in ("broker.key", "dynamic-security.json", "gateway-ca/ca.key"):
        assert stat.S_IMODE((folder / private).stat().st_mode) == 0o600, private
    settings = doc["settings"]
    assert settings["RENTGATE_GATEWAY_MQTT_URL"] == "mqtts://127.0.0.1:8883"
    assert settings["RENTGATE_GATEWAY_CA_DIR"] == str(folder / "gateway-ca")

    def login(name: str) -> MqttProbe:
        return MqttProbe("127.0.0.1", broker.server_port, username=name, password=doc["passwords"][name])

    # The server's login works and may do what the server does.
    server = login("rentgate-server")
    assert server.try_connect() == "Success"
    assert server.subscribe_result(wire.EVENTS_SUBSCRIPTION) == 1
    assert server.subscribe_result("#") == 0x80
    monitor = login("monitor")
    assert monitor.try_connect() == "Success"
    assert monitor.subscribe_result("$SYS/broker/clients/connected") == 1
    assert monitor.subscribe_result(wire.EVENTS_SUBSCRIPTION) == 0x80
    monitor.close()
    assert MqttProbe("127.0.0.1", broker.server_port).try_connect() == "Not authorized"

    # The admin login provisions a gateway, whose certificate from the
    # generated CA gets it onto the TLS listener, speaking for itself.
    admin_url = settings["RENTGATE_BROKER_ADMIN_URL"].replace(":1883", f":{broker.server_port}")
    ca = GatewayCa.load(folder / "gateway-ca")
    gw = make_identity(ca, folder / "ca.pem", tmp_path / "gw", "gw-1")

    async def provision() -> None:
        dynsec = DynsecProvisioner(admin_url, timeout_s=5)
        await dynsec.start()
        try:
            await dynsec.add_gateway(gw.gateway_id, gw.password)
        finally:
            await dynsec.close()
    asyncio.run(provision())
    door = MqttProbe("127.0.0.1", broker.tls_port, client_id="rentgate-gw-gw-1", username="gw-1",
                     password=gw.password, tls=gw.tls())
    assert door.try_connect() == "Success"
    door.publish(wire.events_topic("gw-1"), b"hello")
    door.publish(wire.events_topic("gw-2"), b"forged")
    assert server.expect()[:2] == (wire.events_topic("gw-1"), b"hello")
    with pytest.raises(AssertionError):
        server.expect(0.5)
    door.close()
    server.close()


def test_broker_setup_never_overwrites(tmp_path: Path, run: Run) -> None:
    code, out, _ = run("fleet", "broker-setup", "--dir", str(tmp_path / "b"), "--host", "broker.example.cn")
    assert code == 0
    # Chinese by default, with the settings to copy.
    assert "密码只显示这一次" in out and "RENTGATE_BROKER_ADMIN_URL=mqtt://admin:" in out
    before = {p: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    code, _, err = run("--lang", "en", "fleet", "broker-setup", "--dir", str(tmp_path / "b"), "--host", "x")
    assert code == 2 and "will not overwrite" in err
    assert {p: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()} == before
    # An existing CA is used, not copied with its key.
    code, out, _ = run("fleet", "broker-setup", "--dir", str(tmp_path / "c"), "--host", "10.0.0.5",
                       "--ca-dir", str(tmp_path / "b" / "gateway-ca"), "--json")
    doc = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and doc["ca_created"] is False and not (tmp_path / "c" / "gateway-ca").exists()
    assert (tmp_path / "c" / "ca.pem").read_text() == (tmp_path / "b" / "gateway-ca" / "ca.pem").read_text()
    code, _, err = run("fleet", "broker-setup", "--dir", str(tmp_path / "d"), "--host", "h", "--port", "0")
    assert code == 2


# --------------------------------------------------------------------------- revoke


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(gateways).values(id="gw-a", first_seen=now, last_seen=now))
    monkeypatch.setenv("RENTGATE_DATABASE_URL", url)
    yield engine
    engine.dispose()


def test_revoke_asks_first_then_cuts_the_gateway_off(
        database: sa.Engine, fleet_broker: Mosquitto, monkeypatch: pytest.MonkeyPatch, run: Run,
        identity: Callable[[str], GatewayIdentity]) -> None:
    assert fleet_broker.dynsec is not None
    monkeypatch.setenv("RENTGATE_MQTT_URL", fleet_broker.server_url)
    monkeypatch.setenv("RENTGATE_BROKER_ADMIN_URL", fleet_broker.admin_url)
    gw = identity("gw-a")
    # The provisioner's own commands, less the clean-up of earlier attempts.
    fleet_broker.dynsec.command(fleet_broker, [c for c in add_gateway_commands("gw-a", gw.password)
                                               if not c["command"].startswith("delete")])
    door = gw.probe(fleet_broker)
    assert door.try_connect() == "Success"

    code, out, _ = run("fleet", "revoke", "gw-a")
    assert code == 2 and "--yes" in out and "将吊销网关 gw-a" in out
    with database.connect() as conn:
        assert conn.execute(sa.select(gateways.c.revoked_at)).scalar() is None
    assert door.client.is_connected()

    code, out, err = run("fleet", "revoke", "gw-a", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["first"] is True
    assert door.disconnected.wait(2.0)
    door.client.loop_stop()
    assert gw.probe(fleet_broker).try_connect() == "Not authorized"
    with database.connect() as conn:
        assert conn.execute(sa.select(gateways.c.revoked_at, gateways.c.revoked_by)).one()[1] is None
        audited = [tuple(r) for r in conn.execute(sa.select(audit_log.c.actor, audit_log.c.subject))]
        assert audited == [("cli:fleet", "gateway:gw-a")]

    code, out, _ = run("--lang", "en", "fleet", "revoke", "gw-a", "--yes")
    assert code == 0 and "revoked at" in out and "already" in out
    code, _, err = run("--lang", "en", "fleet", "revoke", "gw-nope", "--yes")
    assert code == 2 and "there is no gateway" in err


def test_revoke_says_when_the_broker_did_not_confirm(database: sa.Engine, monkeypatch: pytest.MonkeyPatch,
                                                     run: Run) -> None:
    port = free_port()  # nobody there
    monkeypatch.setenv("RENTGATE_MQTT_URL", f"mqtt://127.0.0.1:{port}")
    monkeypatch.setenv("RENTGATE_BROKER_ADMIN_URL", f"mqtt://admin:pw@127.0.0.1:{port}")
    monkeypatch.setattr("server.fleet.cli.LINK_WAIT_S", 0.2)
    monkeypatch.setattr("server.fleet.cli.BROKER_TIMEOUT_S", 0.5)
    started = time.monotonic()
    code, _, err = run("--lang", "en", "fleet", "revoke", "gw-a", "--yes")
    assert code == 1 and "is revoked in the database" in err and "run this again" in err
    assert time.monotonic() - started < 5
    with database.connect() as conn:
        assert conn.execute(sa.select(gateways.c.revoked_at)).scalar() is not None
