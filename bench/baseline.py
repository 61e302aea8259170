"""The broker's own speed: a plain paho publisher (this process) and a plain
paho subscriber (a subprocess, as the server is) at QoS 1 through the same
Mosquitto, one event JSON per message, nothing stored.

``python -m bench.baseline HOST PORT TOPIC COUNT`` is the subscriber: it prints
``ready`` once subscribed, then one JSON line when COUNT messages arrived."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.stack import REPO, BenchError

_INFLIGHT = 1000  # as rentgate.mqtt sets it


@dataclass(frozen=True)
class BaselineResult:
    messages: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds


def run_baseline(host: str, port: int, payloads: list[bytes], timeout: float = 300.0) -> BaselineResult:
    topic = "bench/baseline/events"
    sub = subprocess.Popen([sys.executable, "-m", "bench.baseline", host, str(port), topic, str(len(payloads))],
                           cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != b"ready":
            raise BenchError("baseline subscriber did not start")
        started = _publish_all(host, port, topic, payloads)
        out, _ = sub.communicate(timeout=timeout)
        done = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    return BaselineResult(len(payloads), done["last_at"] - started)


def _publish_all(host: str, port: int, topic: str, payloads: list[bytes]) -> float:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline-pub")
    client.max_inflight_messages_set(_INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        started = time.time()
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()
    return started


def _subscribe_main(host: str, port: int, topic: str, count: int) -> None:
    done = threading.Event()
    seen = 0
    last_at = 0.0
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, _msg: paho.MQTTMessage) -> None:
        nonlocal seen, last_at
        seen += 1
        if seen >= count:
            last_at = time.time()
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline-sub")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, 1)
    client.connect(host, port)
    client.loop_start()
    if not subscribed.wait(10):
        sys.exit("no SUBACK")
    print("ready", flush=True)
    done.wait(300)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"received": seen, "last_at": last_at}), flush=True)


if __name__ == "__main__":
    _subscribe_main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
