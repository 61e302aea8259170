"""Fixtures shared by every test package: real services on free ports.

* ``mosquitto``           a Mosquitto of the test's own (tests.services.Mosquitto)
* ``pg_cluster``          one PostgreSQL cluster for the session (tests.services.PostgresCluster)
* ``postgres_url``        a fresh database in it, as a SQLAlchemy URL, dropped after the test
* ``make_postgres_url``   a factory for more such databases in one test
* ``embedded_broker``     a started rentgate.broker.EmbeddedBroker (amqtt) on a free port
* ``fleet_broker``        a Mosquitto set up like a production fleet broker: the dynamic
                          security plugin (admin_url, server_url), no anonymous logins, and
                          a TLS listener (gateway_url) that wants a client certificate from
                          its gateway CA (``.dynsec.ca``)
* ``nats_cluster``        three NATS nodes with JetStream and an MQTT listener each, for one
                          test module (tests.services.NatsCluster; docs/clustering.md)

A missing binary skips the test with the package to install, or fails it when
RENTGATE_REQUIRE_SERVICES=1 (CI sets that, so a skipped suite cannot pass).
Tests using these fixtures get the ``services`` marker: ``-m "not services"``
leaves them out.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import NoReturn

import pytest

from rentgate import lang
from rentgate.broker import EmbeddedBroker
from tests.services import PORT_OWNER_ENV, REQUIRE_ENV, Mosquitto, NatsCluster, PostgresCluster, ServiceMissing

# This process hands out the test ports (tests/services.py free_port); a
# subprocess it starts inherits the variable with another pid and does not.
os.environ[PORT_OWNER_ENV] = str(os.getpid())

_SERVICE_FIXTURES = {"mosquitto", "fleet_broker", "pg_cluster", "postgres_url", "make_postgres_url", "nats_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(autouse=True)
def default_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in the default language (Chinese), whatever the
    environment says or an earlier ``main(["--lang", "en", ...])`` chose:
    set_cli_lang keeps its choice for the process and writes RENTGATE_LANG
    for the processes a command starts. setenv first, so that teardown
    removes what a test's --lang wrote."""
    monkeypatch.setattr(lang, "_chosen", None)
    monkeypatch.setenv(lang.LANG_ENV, "zh")
    monkeypatch.delenv(lang.LANG_ENV)


def service_missing(exc: ServiceMissing) -> NoReturn:
    reason = f"{exc.service} not found: {exc.hint}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    try:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    except ServiceMissing as exc:
        service_missing(exc)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fleet_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    try:
        broker = Mosquitto(tmp_path_factory.mktemp("fleet-broker"), dynsec=True)
    except ServiceMissing as exc:
        service_missing(exc)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Module-scoped: a cluster takes seconds to elect its leaders. A test
    that stops a node starts it again, or comes last in its module."""
    try:
        cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    except ServiceMissing as exc:
        service_missing(exc)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster()
    except ServiceMissing as exc:
        service_missing(exc)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_pg_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL of one test's own, for tests that stop and start it."""
    try:
        cluster = PostgresCluster()
    except ServiceMissing as exc:
        service_missing(exc)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def make_postgres_url(pg_cluster: PostgresCluster) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        created.append(pg_cluster.create_database())
        return pg_cluster.url(created[-1])

    yield make
    for name in created:
        pg_cluster.drop_database(name)


@pytest.fixture
def postgres_url(make_postgres_url: Callable[[], str]) -> str:
    return make_postgres_url()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker("127.0.0.1", 0)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()

