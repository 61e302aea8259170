"""The service fixtures start real servers that behave like production ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests import services
from tests.conftest import service_missing
from tests.services import (
    REQUIRE_ENV,
    Mosquitto,
    MqttProbe,
    PostgresCluster,
    ServiceMissing,
    free_port,
    mosquitto_config,
    port_open,
    wait_for,
)


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, 7])
    assert wait_for(lambda: next(calls), timeout=1, interval=0) == 7


def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        wait_for(lambda: False, timeout=0.05, what="the moon")


def test_mosquitto_config_runs_as_root_only_when_root(tmp_path: Path) -> None:
    as_root = mosquitto_config(1884, tmp_path, run_as_root=True)
    assert "user root" in as_root.splitlines()
    assert "user root" not in mosquitto_config(1884, tmp_path, run_as_root=False)
    # the default of 1000 silently drops QoS 1 messages under load
    assert "max_queued_messages 100000" in as_root.splitlines()
    assert f"persistence_location {tmp_path}/" in as_root.splitlines()


def test_mosquitto_qos1_round_trip(mosquitto: Mosquitto) -> None:
    assert mosquitto.port != 1883, "must not be the machine's own broker"
    sub = MqttProbe(mosquitto.host, mosquitto.port).connect()
    pub = MqttProbe(mosquitto.host, mosquitto.port).connect()
    sub.subscribe("t/round-trip")
    pub.publish("t/round-trip", b"hello")
    assert sub.expect() == ("t/round-trip", b"hello", False)
    sub.close()
    pub.close()
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert "mosquitto version" in mosquitto.log_text()


def test_mosquitto_restart_keeps_a_persistent_sessions_queued_message(mosquitto: Mosquitto) -> None:
    offline = MqttProbe(mosquitto.host, mosquitto.port, client_id="server-1", clean_session=False).connect()
    offline.subscribe("t/queued")
    offline.close()
    pub = MqttProbe(mosquitto.host, mosquitto.port).connect()
    pub.publish("t/queued", b"while you were away")
    pub.close()

    mosquitto.stop()
    assert not port_open(mosquitto.host, mosquitto.port)
    mosquitto.start()

    back = MqttProbe(mosquitto.host, mosquitto.port, client_id="server-1", clean_session=False).connect()
    assert back.expect() == ("t/queued", b"while you were away", False)
    back.close()


def test_mosquitto_kill_then_start_serves_again(mosquitto: Mosquitto) -> None:
    mosquitto.kill()
    assert not mosquitto.running
    mosquitto.start()
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    probe.subscribe("t/after-crash")
    probe.publish("t/after-crash", b"x")
    assert probe.expect()[1] == b"x"
    probe.close()


def test_postgres_url_is_a_working_database(postgres_url: str, pg_cluster: PostgresCluster) -> None:
    assert postgres_url.startswith(f"postgresql+psycopg://rentgate@127.0.0.1:{pg_cluster.port}/")
    assert pg_cluster.port != 5432, "must not be the machine's own cluster"
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (41)")
        row = conn.execute("SELECT x + 1, current_setting('fsync') FROM t").fetchone()
    assert row == (42, "off")


def test_each_postgres_url_is_its_own_database(postgres_url: str, make_postgres_url: Callable[[], str]) -> None:
    other = make_postgres_url()
    assert other != postgres_url
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE only_here (x int)")
    with psycopg.connect(other.replace("+psycopg", "")) as conn:
        found = conn.execute("SELECT to_regclass('only_here')").fetchone()
    assert found == (None,)


def test_postgres_database_is_dropped_after_the_test(pg_cluster: PostgresCluster) -> None:
    name = pg_cluster.create_database()
    with psycopg.connect(pg_cluster.dsn(name)):
        # an open connection must not keep the database alive
        pg_cluster.drop_database(name)
    with psycopg.connect(pg_cluster.dsn("postgres")) as conn:
        rows = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert rows == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must change user for PostgreSQL")
def test_postgres_does_not_run_as_root(pg_cluster: PostgresCluster) -> None:
    with psycopg.connect(pg_cluster.dsn("postgres")) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # While the connection is open: its backend exits when it closes.
        assert os.stat(f"/proc/{row[0]}").st_uid != 0


def test_free_port_is_free() -> None:
    assert not port_open("127.0.0.1", free_port())


def test_missing_mosquitto_skips_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(services, "find_binary", lambda *_args: None)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(ServiceMissing) as missing:
        Mosquitto(tmp_path)
    with pytest.raises(pytest.skip.Exception, match="install the Debian package mosquitto"):
        service_missing(missing.value)


def test_missing_service_fails_when_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="postgresql not found"):
        service_missing(ServiceMissing("postgresql", "install the Debian package postgresql"))
