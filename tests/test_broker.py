"""The embedded amqtt broker carries what the gateway and the server rely on:
QoS 1, retained status messages and last wills.

The broker runs on the test's event loop, so every blocking paho call runs in
a worker thread (``asyncio.to_thread``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

from rentgate import broker as broker_mod
from rentgate.broker import BrokerError, EmbeddedBroker
from tests.services import MqttProbe, free_port, port_open, wait_for


async def test_qos1_publish_reaches_subscriber(embedded_broker: EmbeddedBroker) -> None:
    def scenario() -> tuple[str, bytes, bool]:
        sub = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        pub = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        sub.subscribe("rentgate/v1/gw/gw-1/events")
        pub.publish("rentgate/v1/gw/gw-1/events", b'{"seq": 1}')
        got = sub.expect()
        sub.close()
        pub.close()
        return got

    assert await asyncio.to_thread(scenario) == ("rentgate/v1/gw/gw-1/events", b'{"seq": 1}', False)


async def test_retained_status_reaches_a_late_subscriber(embedded_broker: EmbeddedBroker) -> None:
    def scenario() -> tuple[str, bytes, bool]:
        pub = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        pub.publish("rentgate/v1/server/status", b'{"online": true}', retain=True)
        pub.close()
        late = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        late.subscribe("rentgate/v1/server/status")
        got = late.expect()
        late.close()
        return got

    assert await asyncio.to_thread(scenario) == ("rentgate/v1/server/status", b'{"online": true}', True)


async def test_last_will_is_published_when_a_gateway_drops(embedded_broker: EmbeddedBroker) -> None:
    topic = "rentgate/v1/gw/gw-7/status"

    def scenario() -> tuple[tuple[str, bytes, bool], tuple[str, bytes, bool]]:
        watcher = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        watcher.subscribe(topic)
        gateway = MqttProbe(embedded_broker.host, embedded_broker.port, will=(topic, b"offline")).connect()
        gateway.drop()
        live = watcher.expect()
        watcher.close()
        # the will was retained: whoever looks later still sees the gateway offline
        later = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        later.subscribe(topic)
        retained = later.expect()
        later.close()
        return live, retained

    live, retained = await asyncio.to_thread(scenario)
    assert live[:2] == (topic, b"offline")
    assert retained == (topic, b"offline", True)


async def test_clean_disconnect_does_not_publish_the_will(embedded_broker: EmbeddedBroker) -> None:
    topic = "rentgate/v1/gw/gw-8/status"

    def scenario() -> None:
        watcher = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        watcher.subscribe(topic)
        gateway = MqttProbe(embedded_broker.host, embedded_broker.port, will=(topic, b"offline")).connect()
        gateway.close()
        # a marker published after the disconnect arrives first: no will in between
        marker = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        marker.publish(topic, b"marker")
        assert watcher.expect()[1] == b"marker"
        marker.close()
        watcher.close()

    await asyncio.to_thread(scenario)


async def test_throughput_qos1(embedded_broker: EmbeddedBroker) -> None:
    """Not a benchmark: a floor that catches a broker gone pathological, and
    the figure quoted in docs/mosquitto.md (run with -s to see it)."""
    count = 2000

    def scenario() -> float:
        sub = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        sub.subscribe("bench/#")
        pub = MqttProbe(embedded_broker.host, embedded_broker.port).connect()
        done = threading.Event()
        received = 0

        def on_message(*_args: object) -> None:
            nonlocal received
            received += 1
            if received == count:
                done.set()

        sub.client.on_message = on_message
        started = time.perf_counter()
        for _ in range(count):
            pub.client.publish("bench/x", b"x" * 200, qos=1)
        assert done.wait(60), f"only {received} of {count} messages arrived"
        rate = count / (time.perf_counter() - started)
        sub.close()
        pub.close()
        return rate

    rate = await asyncio.to_thread(scenario)
    print(json.dumps({"amqtt_qos1_msgs_per_s": round(rate)}))
    assert rate > 200


async def test_port_zero_picks_a_free_port_and_stop_releases_it() -> None:
    broker = EmbeddedBroker("127.0.0.1", 0)
    await broker.start()
    assert broker.port != 0
    assert await asyncio.to_thread(port_open, broker.host, broker.port)
    await broker.stop()
    assert not await asyncio.to_thread(port_open, broker.host, broker.port)


async def test_port_in_use_is_a_broker_error(embedded_broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError) as info:
        await EmbeddedBroker("127.0.0.1", embedded_broker.port).start()
    assert str(embedded_broker.port) in str(info.value)


async def test_start_emits_no_deprecation_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with EmbeddedBroker("127.0.0.1", 0):
            pass
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []


async def test_serve_runs_until_stopped() -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(broker_mod.serve("127.0.0.1", port, stop=stop), name="test-broker-serve")
    await asyncio.to_thread(wait_for, lambda: port_open("127.0.0.1", port), 10, what="broker port")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert not await asyncio.to_thread(port_open, "127.0.0.1", port)


def test_command_registers_host_and_port() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    broker_mod.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["broker", "--host", "0.0.0.0", "--port", "2883"])
    assert (args.host, args.port, args.func) == ("0.0.0.0", 2883, broker_mod._run_command)


def test_broker_process_exits_cleanly_on_sigterm() -> None:
    # Through the command's handler, not ``rentgate broker``: the CLI also
    # loads every other part's commands, which this test should not depend on.
    port = free_port()
    script = (
        "import argparse, sys; from rentgate import broker; "
        f"sys.exit(broker._run_command(argparse.Namespace(host='127.0.0.1', port={port})))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, 20, what="broker process")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
