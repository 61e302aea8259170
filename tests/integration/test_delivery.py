"""Every swipe with a valid frame ends up in the server's database exactly once,
with the real processes on the two supported stacks."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import System, building_config
from tests.services import Mosquitto


def test_swipes_reach_the_database_on_embedded_defaults(system: System, tmp_path: Path) -> None:
    broker = system.add_broker()
    broker.start()
    server = system.add_server(database_url=f"sqlite:///{tmp_path / 'rentgate.db'}", mqtt_url=broker.url)
    server.start()
    # A noisy line: split frames, garbage bytes, bad checksums, extra repeats.
    sim = system.add_building(building_config(tmp_path, total=50, pattern="poisson", noisy=True, rate_per_min=600))
    system.add_gateway(mqtt_url=broker.url, sim=sim).start()
    sim.start()

    stored = system.wait_delivered(sim)

    stats = sim.stats()
    assert stats.swipes_with_valid_frame > 0
    system.assert_exactly_once(stats.expected_reads, stored)
    gateway = server.wait_gateway()
    system.check(gateway["online"] and gateway["open_gaps"] == 0, f"gateway as the server sees it: {gateway}")


def test_swipes_reach_postgresql_through_mosquitto(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str, system: System,
) -> None:
    system.extra_logs["mosquitto"] = mosquitto.log_text
    system.add_server(database_url=postgres_url, mqtt_url=mosquitto.url).start()
    sim = system.add_building(building_config(tmp_path, total=60))
    system.add_gateway(mqtt_url=mosquitto.url, sim=sim).start()
    sim.start()

    stored = system.wait_delivered(sim)

    system.assert_exactly_once(sim.stats().expected_reads, stored)
    system.check(system.open_gaps() == [], f"sequence gaps left open: {system.open_gaps()}")
