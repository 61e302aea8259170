"""The services a benchmark runs against: Mosquitto and PostgreSQL from
``tests.services`` (started from the system's binaries on free ports), and the
rentgate server as a subprocess so that it has an interpreter of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Literal

import paho.mqtt.client as paho
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from rentgate import wire
from tests.services import Mosquitto, PostgresCluster, free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The benchmark could not run; the message says which part failed."""


@dataclass
class Stack:
    broker: Mosquitto
    database_url: str
    server: subprocess.Popen[bytes]
    server_log: Path

    @property
    def mqtt_url(self) -> str:
        return self.broker.url


@contextlib.contextmanager
def running_stack(workdir: Path, database: Literal["postgresql", "sqlite"]) -> Iterator[Stack]:
    """Broker, database and server, all stopped on the way out whatever happened."""
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(workdir / "mosquitto")
        broker.start()
        stack.callback(broker.stop)
        if database == "postgresql":
            cluster = PostgresCluster()
            stack.callback(cluster.destroy)
            cluster.start()
            url = cluster.url(cluster.create_database("bench"))
        else:
            url = f"sqlite:///{workdir / 'server.sqlite3'}"
        server_log = workdir / "server.log"
        log_file = stack.enter_context(open(server_log, "ab"))
        server = _start_server(url, broker.url, log_file)
        stack.callback(_stop_process, server, "server")
        _wait_server_online(broker, server, server_log)
        yield Stack(broker, url, server, server_log)


@contextlib.contextmanager
def throwaway_postgres(url: str | None, dbname: str) -> Iterator[str]:
    """``url`` when the caller gave one (``--database-url``), else a new
    database ``dbname`` in a PostgreSQL cluster of its own, removed on the way out."""
    if url is not None:
        yield url
        return
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.url(cluster.create_database(dbname))
    finally:
        cluster.destroy()


def _start_server(database_url: str, mqtt_url: str, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, RENTGATE_MQTT_CLIENT_ID="rentgate-bench-server")
    # BENCH_PROFILE_SERVER=file.pstats runs the server under cProfile (written at its clean exit).
    profile = os.environ.get("BENCH_PROFILE_SERVER")
    cmd = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "rentgate", "server", "--upgrade", "--database-url", database_url,
           "--mqtt-url", mqtt_url, "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                            start_new_session=True)


def _wait_server_online(broker: Mosquitto, server: subprocess.Popen[bytes], server_log: Path,
                        timeout: float = 60.0) -> None:
    """The server's retained status says online once its MQTT session is up."""
    online = threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            if wire.decode_server_status(bytes(msg.payload)).state == "online":
                online.set()
        except wire.WireError:
            pass

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-server-watch")
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(wire.SERVER_STATUS_TOPIC, 1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        waited = 0.0
        while not online.wait(0.2):
            waited += 0.2
            if server.poll() is not None or waited > timeout:
                tail = server_log.read_text(errors="replace")[-3000:]
                raise BenchError(f"server did not come online (exit code {server.poll()}):\n{tail}")
    finally:
        client.disconnect()
        client.loop_stop()


def _stop_process(proc: subprocess.Popen[bytes], name: str, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %s s; killing it", name, timeout)
        proc.kill()
        proc.wait(5)


def daily_partitions(engine: sa.Engine, now: datetime, *, days_back: int) -> None:
    """The events table's daily partitions for the ``days_back`` days before
    today, as a city that has run that long has them (the retention job
    makes each day's ahead of time: server/db/partitions.py); without them
    every read would sit in the DEFAULT partition and the benchmark would
    not pay what partitions cost."""
    from server.db import partitions
    from server.rules import CityRules

    zone = CityRules().zone
    with engine.begin() as conn:
        if not partitions.is_partitioned(conn):
            return
        taken = {p.name for p in partitions.partitions(conn)}
        today = now.astimezone(zone).date()
        for back in range(days_back, 0, -1):
            lo = partitions.day_start(today - timedelta(days=back), zone)
            name = partitions.partition_name(lo, zone)
            if name not in taken:
                partitions.create_partition(conn, name, lo, partitions.next_day_start(lo, zone))
        log.info("events: %s partitions", len(partitions.partitions(conn)))
