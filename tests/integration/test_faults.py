"""Faults while swipes are flowing: a crashed gateway, a stopped broker, a
killed or stopped server, garbage on a gateway's topic. After each, every
swipe with a valid frame is stored exactly once.

The gateways here run with ``ack_timeout_s = 2``: an event published into a
server that died before committing it is only resent when its ack is overdue,
and the 15 s default would make each test wait that long for recovery.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from firmware_sim.building import BuildingSim
from rentgate import wire
from server.db.models import events
from tests.integration.harness import GATEWAY_ID, Gateway, Server, System, building_config, pty_drained, readers_paused
from tests.services import Mosquitto, MqttProbe

pytestmark = pytest.mark.fault

ACK_TIMEOUT_S = 2
SWIPES = 60


def _bring_up(system: System, tmp_path: Path, mosquitto: Mosquitto, postgres_url: str,
              *, swipes: int = SWIPES) -> tuple[Server, Gateway, BuildingSim]:
    system.extra_logs["mosquitto"] = mosquitto.log_text
    server = system.add_server(database_url=postgres_url, mqtt_url=mosquitto.url)
    server.start()
    sim = system.add_building(building_config(tmp_path, total=swipes))
    gateway = system.add_gateway(mqtt_url=mosquitto.url, sim=sim, ack_timeout_s=ACK_TIMEOUT_S)
    gateway.start()
    return server, gateway, sim


def _swipes_flowing(system: System, sim: BuildingSim, reads: int = 10) -> None:
    sim.start()
    system.wait_for(lambda: len(system.stored_reads()) >= reads, 20, f"the first {reads} reads to be stored")


def _assert_all_delivered_once(system: System, sim: BuildingSim) -> None:
    stored = system.wait_delivered(sim)
    system.assert_exactly_once(sim.stats().expected_reads, stored)
    # Resent events close every gap the fault opened.
    system.wait_for(lambda: not system.open_gaps(), 20, "every sequence gap to be filled")


def test_gateway_killed_mid_burst_loses_and_repeats_nothing(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System,
) -> None:
    server, gateway, sim = _bring_up(system, tmp_path, mosquitto, postgres_url)
    _swipes_flowing(system, sim)

    # Freeze the server so that acks stop: the gateway's outbox fills with
    # events it has published but may not delete yet, the case a crash must not lose.
    server.pause()  # teardown's SIGKILL ends it even frozen, if the test fails here
    system.wait_for(lambda: len(gateway.outbox_seqs("card_read")) >= 5, 15, "unacknowledged reads in the outbox")
    with readers_paused(sim):
        system.wait_for(lambda: pty_drained(sim), 5, "the gateway to read every frame on its ports")
        swiped = len(sim.stats().expected_reads)
        system.wait_for(lambda: len(gateway.outbox_seqs("card_read") | system.stored_read_seqs()) >= swiped, 5,
                        "every swipe so far to be committed to the outbox")
        held = gateway.outbox_seqs("card_read")
        gateway.kill()
        server.resume()
        # Swipes resume once the new gateway has its ports open: what a reader
        # sends to a closed serial port is gone, for any gateway.
        gateway.start()

    system.check(held, "the outbox was empty when the gateway was killed")
    _assert_all_delivered_once(system, sim)
    stored_seqs = system.stored_read_seqs()
    system.check(held <= stored_seqs, f"reads held in the killed gateway's outbox not stored: {held - stored_seqs}")
    gw = server.wait_gateway()
    system.check(gw["open_gaps"] == 0, f"open gaps after recovery: {gw}")


def _reads_received_between(system: System, start: datetime, end: datetime) -> int:
    with system.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(events).where(
                events.c.gateway_id == GATEWAY_ID, events.c.kind == "card_read",
                events.c.received_at > start, events.c.received_at < end)).scalar_one())


def test_broker_stopped_during_swipes(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System,
) -> None:
    server, gateway, sim = _bring_up(system, tmp_path, mosquitto, postgres_url)
    _swipes_flowing(system, sim)

    mosquitto.stop()
    # What the broker wrote before it went may still sit in the server's socket
    # and be read (and stamped) a moment later. Once the server has seen the
    # connection end it has read all of it: nothing can reach it after that,
    # so no read may carry a later receipt time.
    system.wait_for(lambda: (server.get("/healthz") or (0, {}))[1].get("mqtt") == "disconnected", 15,
                    "the server to see the broker gone")
    stopped_at = datetime.now(UTC)
    depth = system.wait_for(lambda: len(gateway.outbox_seqs("card_read")), 15,
                            "reads to pile up in the gateway's outbox while the broker is down")
    time.sleep(1.0)  # the outage itself: swipes keep coming with nowhere to go
    restarted_at = datetime.now(UTC)
    mosquitto.start()
    received_during = _reads_received_between(system, stopped_at, restarted_at)
    system.check(received_during == 0, f"{received_during} reads were received with the broker down")
    # The same question about the minute before the stop has answers (swipes were flowing).
    system.check(_reads_received_between(system, stopped_at - timedelta(minutes=1), stopped_at) > 0,
                 "no read was received before the broker stopped")

    system.check(depth > 0, "the outbox held nothing during the outage")
    _assert_all_delivered_once(system, sim)


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_server_down_during_swipes(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System, how: str,
) -> None:
    server, gateway, sim = _bring_up(system, tmp_path, mosquitto, postgres_url)
    _swipes_flowing(system, sim)

    if how == "kill":
        server.kill()  # whatever it had received but not committed is gone with it
    else:
        server.stop()  # graceful: commits and acknowledges what it holds, then exits
    system.wait_for(lambda: len(gateway.outbox_seqs("card_read")) >= 3, 15,
                    "reads to wait in the gateway's outbox for the server")
    server.start()

    _assert_all_delivered_once(system, sim)


def test_garbage_on_a_gateway_topic_is_dead_lettered_and_ingest_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System,
) -> None:
    server, _, sim = _bring_up(system, tmp_path, mosquitto, postgres_url)
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    try:
        _swipes_flowing(system, sim)
        # Seq 1 (the gateway_started event) is long committed: a spoofed
        # payload's seq must not collide with anything the real gateway still holds.
        spoofed = wire.CardRead(gw="intruder-9", seq=1, device="reader-x", door="door-a", ts=wire.utcnow(),
                                credential=wire.Credential(format="em4100", value="0000000001"))
        garbage = {
            "not json": b"\xff\xfe{this is not json",
            "wrong schema": json.dumps({"v": 1, "gw": GATEWAY_ID, "kind": "teleport"}).encode(),
            "wrong gateway": wire.encode_event(spoofed).encode(),
            "1 MB blob": b"x" * 1_000_000,
        }
        for payload in garbage.values():
            probe.publish(wire.events_topic(GATEWAY_ID), payload)
    finally:
        probe.close()
    stored_at_garbage = len(system.stored_reads())

    system.wait_for(lambda: len(system.dead_letters()) >= len(garbage), 15, "every garbage payload in dead_letters")
    letters = system.dead_letters()
    system.check(len(letters) == len(garbage), f"dead letters: {letters}")
    system.check(all(letter["reason"] for letter in letters), f"a dead letter without a reason: {letters}")
    reasons = " | ".join(letter["reason"] for letter in letters)
    system.check("Invalid JSON" in reasons and "teleport" in reasons and "does not match topic" in reasons,
                 f"dead-letter reasons do not say what was wrong: {reasons}")
    system.check(1_000_000 in {letter["payload_size"] for letter in letters}, f"no 1 MB dead letter: {letters}")
    system.check(server.healthy(), "the server is not healthy after the garbage")

    _assert_all_delivered_once(system, sim)
    system.check(len(system.stored_reads()) > stored_at_garbage, "nothing was ingested after the garbage")
