"""The supervised MQTT link against a real Mosquitto."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from rentgate.mqtt import LinkSettings, MqttLink, Will, backoff_delays
from tests.services import Mosquitto, MqttProbe


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[MqttLink]:
    task = asyncio.create_task(link.run(), name="link-under-test")
    try:
        yield link
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def settings(broker: Mosquitto, **kw: object) -> LinkSettings:
    defaults: dict[str, object] = {"url": broker.url, "client_id": "link-test", "backoff_initial_s": 0.05,
                                   "backoff_max_s": 0.3}
    return LinkSettings(**{**defaults, **kw})  # type: ignore[arg-type]


async def test_reconnects_and_subscribes_again_after_a_broker_restart(mosquitto: Mosquitto) -> None:
    got: queue.Queue[bytes] = queue.Queue()
    link = MqttLink(settings(mosquitto, subscriptions=[("t/#", 1)]), on_message=lambda t, p: got.put(p))
    async with running(link):
        await until(link.connected.is_set, "the first connection")
        mosquitto.stop()
        await until(lambda: not link.connected.is_set(), "the link to notice the broker is gone")
        assert not link.publish("t/x", b"lost?")  # refused, not queued in memory behind our back
        mosquitto.start()
        # Connected is not enough: a message published before the broker has
        # granted the subscription again would not reach the link.
        await until(lambda: link.stats.connects >= 2 and link.subscribed.is_set(), "the reconnection")
        probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
        try:
            probe.publish("t/after", b"hello again")
        finally:
            probe.close()
        assert await asyncio.to_thread(got.get, True, 5) == b"hello again"


async def test_stop_writes_what_was_published_and_sends_no_will(mosquitto: Mosquitto) -> None:
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    probe.subscribe("gw/#")
    link = MqttLink(settings(mosquitto, will=Will("gw/status", b"offline")))
    async with running(link):
        await until(link.connected.is_set, "the connection")
        for i in range(200):
            assert link.publish("gw/data", str(i).encode())
        assert link.publish("gw/status", b"bye", retain=True)
    # running() has cancelled the link: stop() drained it.
    payloads = [probe.expect()[1] for _ in range(201)]
    assert payloads[-1] == b"bye" and payloads[:3] == [b"0", b"1", b"2"]
    assert probe.messages.empty() or probe.expect(timeout=0.5)[1] != b"offline"
    probe.close()


async def test_watchdog_replaces_a_network_thread_that_died(mosquitto: Mosquitto) -> None:
    link = MqttLink(settings(mosquitto, watchdog_s=0.4))
    real_loop = link._network_loop
    calls: list[int] = []

    def dies_the_first_time(generation: int) -> None:
        calls.append(generation)
        if len(calls) > 1:
            real_loop(generation)

    link._network_loop = dies_the_first_time  # type: ignore[method-assign]
    async with running(link):
        await until(link.connected.is_set, "a connection from the replacement thread")
    assert link.stats.watchdog_restarts >= 1 and len(calls) >= 2


async def test_a_replaced_network_thread_leaves_the_new_connection_up(mosquitto: Mosquitto) -> None:
    """A message handler that blocks past the watchdog: the watchdog starts a
    new network thread, which connects and subscribes. When the old handler
    returns, the old thread ends: that must not mark the new, live
    connection down (publish() would refuse everything until the broker
    happened to drop it)."""
    release = threading.Event()
    blocked = threading.Event()
    got: queue.Queue[bytes] = queue.Queue()

    def handler(topic: str, payload: bytes) -> None:
        if payload == b"block" and not blocked.is_set():
            blocked.set()
            release.wait(10)
        got.put(payload)

    link = MqttLink(settings(mosquitto, subscriptions=[("t/#", 1)], watchdog_s=0.4), on_message=handler)
    async with running(link):
        await until(link.subscribed.is_set, "the first subscription")
        probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
        try:
            probe.publish("t/x", b"block")
            await until(blocked.is_set, "the handler to block")
            await until(lambda: link.stats.watchdog_restarts >= 1 and link.subscribed.is_set(),
                        "the replacement thread subscribed")
            replaced = link.stats.watchdog_restarts
            # From here a stall of the new thread on a busy machine must not
            # count as a second hang (the watchdog reads this every round).
            link.settings.watchdog_s = 10.0
            release.set()  # the old thread leaves now
            assert await asyncio.to_thread(got.get, True, 5) == b"block"
            # Through the new connection, both ways, after the old thread left.
            probe.publish("t/y", b"after")
            assert await asyncio.to_thread(got.get, True, 5) == b"after"
            assert link.connected.is_set() and link.subscribed.is_set()
            assert link.publish("t/z", b"still up")
            assert link.stats.watchdog_restarts == replaced
        finally:
            release.set()
            probe.close()


def test_backoff_is_jittered_and_capped() -> None:
    delays = backoff_delays(0.1, 2.0)
    sample = [next(delays) for _ in range(200)]
    assert max(sample) <= 2.0 and min(sample) >= 0.05
    assert len({round(d, 6) for d in sample[20:]}) > 100  # jittered, not a fixed schedule


class _SilentBroker:
    """Accepts MQTT connections, answers CONNECT, and never acknowledges a
    PUBLISH: a broker that has stopped reading its queue."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, name="silent-broker", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        try:
            conn.recv(4096)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
            while conn.recv(4096):
                pass  # PUBLISHes read, never acknowledged
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for conn in self._conns:
            conn.close()


async def test_stop_gives_up_on_a_broker_that_never_acknowledges() -> None:
    broker = _SilentBroker()
    link = MqttLink(LinkSettings(url=f"mqtt://127.0.0.1:{broker.port}", client_id="link-test"))
    task = asyncio.create_task(link.run(), name="link-under-test")
    try:
        await until(link.connected.is_set, "the connection")
        assert link.publish("gw/data", b"never acked")
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(link.stop, 0.5)
        took = asyncio.get_running_loop().time() - started
        assert 0.4 <= took < 2.0, took  # waited for the PUBACK, then gave up within its bound
        assert not link.connected.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        broker.close()


async def test_stop_is_bounded_when_the_network_thread_is_stuck(mosquitto: Mosquitto) -> None:
    release = threading.Event()
    stuck = threading.Event()

    def blocks(topic: str, payload: bytes) -> None:
        stuck.set()
        release.wait(30)  # a handler that hangs the network thread

    link = MqttLink(settings(mosquitto, subscriptions=[("t/#", 1)]), on_message=blocks)
    task = asyncio.create_task(link.run(), name="link-under-test")
    try:
        await until(link.subscribed.is_set, "the subscription")
        probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
        try:
            probe.publish("t/x", b"hang")
        finally:
            probe.close()
        assert await asyncio.to_thread(stuck.wait, 10), "the handler never ran"
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(link.stop, 0.5)
        assert asyncio.get_running_loop().time() - started < 2.5  # not drain + 5 s + 5 s
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_link_with_fallbacks_goes_to_the_next_broker_when_one_cannot_be_reached(
        mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nodes of a clustered broker (docs/clustering.md): the first is down,
    the link connects to the second; when that one goes, back to the first,
    which is up again by then."""
    first = Mosquitto(tmp_path_factory.mktemp("first"))
    link = MqttLink(settings(first, fallback_urls=[mosquitto.url]))
    try:
        async with running(link):
            await until(link.connected.is_set, "a connection to the fallback")
            assert (link.address.port, link.stats.connects) == (mosquitto.port, 1)
            first.start()
            mosquitto.stop()
            await until(lambda: link.stats.connects >= 2, "a connection back to the first")
            assert link.address.port == first.port
    finally:
        first.stop()


def test_a_link_without_fallbacks_keeps_its_one_broker() -> None:
    link = MqttLink(LinkSettings(url="mqtt://127.0.0.1:1", client_id="alone"))
    link._next_address()
    assert [a.port for a in link.addresses] == [1] and link.address.port == 1


async def test_a_subscription_the_broker_refuses_is_asked_for_again_until_granted(fleet_broker: Mosquitto) -> None:
    """A SUBACK can refuse while the connection stays up (here an ACL; on a
    NATS cluster that lost a node, a consumer JetStream could not make yet).
    The link asks again, backing off, instead of living without it."""
    assert fleet_broker.dynsec is not None
    fleet_broker.dynsec.command(fleet_broker, [
        {"command": "createRole", "rolename": "late"},
        {"command": "createClient", "username": "late", "password": "pw", "roles": [{"rolename": "late"}]},
    ])
    got: queue.Queue[bytes] = queue.Queue()
    granted: list[bool] = []
    link = MqttLink(LinkSettings(url=f"mqtt://late:pw@{fleet_broker.host}:{fleet_broker.port}", client_id="late",
                                 subscriptions=[("t/#", 1)], backoff_initial_s=0.1, backoff_max_s=0.4),
                    on_message=lambda t, p: got.put(p), on_subscribed=lambda: granted.append(True))
    async with running(link):
        await until(lambda: link.stats.last_error == "subscription refused: t/#", "the refused SUBACK")
        # Connected, but not every subscription is granted: nobody is told
        # the link hears its topics.
        assert link.connected.is_set() and not link.subscribed.is_set() and granted == []
        assert link.stats.refused_subscription == "t/#"
        fleet_broker.dynsec.command(fleet_broker, [
            {"command": "addRoleACL", "rolename": "late", "acltype": acltype, "topic": "t/#", "allow": True}
            for acltype in ("subscribePattern", "publishClientReceive", "publishClientSend")])

        def arrived() -> bool:
            link.publish("t/x", b"granted")
            try:
                return got.get(timeout=0.2) == b"granted"
            except queue.Empty:
                return False

        await until(arrived, "the subscription granted on a later attempt")
        await until(link.subscribed.is_set, "the link to say it is subscribed")
        assert granted == [True] and link.stats.refused_subscription is None
