"""A terminal that pushes its events and keeps them: whatever reaches the
gateway by push, by re-post after a cut, or by the catch-up's event search,
the server gets each event once, at the terminal's time where its clock is
right. The terminal is the project's simulator (firmware_sim/isapi_terminal.py),
pushing over HTTP to the gateway's real listener, through a real broker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.hikvision_isapi import AcsEventRecord
from firmware_sim.isapi_terminal import IsapiTerminalSim
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import signing, wire
from rentgate.wire import Credential
from tests.gateway.access.helpers import SERVER_KEY
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, publish_allowlist, wait_until
from tests.gateway.test_app import running
from tests.services import Mosquitto, free_port

PASSWORD = "Passw0rd!"
TERMINAL = "k1t-main"
TENANT = Credential(format="raw", value="14008EC793")  # the allowlist's one card, as the server keeps it


@pytest.fixture
def listen_port() -> int:
    return free_port()


@pytest.fixture
async def sim(listen_port: int, request: pytest.FixtureRequest) -> AsyncIterator[IsapiTerminalSim]:
    # A terminal keeps a bounded queue of pushes to retry (DS-K1T: a few
    # hundred); what falls out of it is only in its event log.
    queue = getattr(request, "param", 1000)
    async with IsapiTerminalSim(password=PASSWORD, push_url=f"http://127.0.0.1:{listen_port}/isapi/events",
                                push_retry_s=0.05, push_retry_max_s=0.3, push_queue_max=queue) as terminal:
        yield terminal


def _config(tmp_path: Path, mosquitto: Mosquitto, sim: IsapiTerminalSim, port: int,
            **terminal: object) -> GatewayConfig:
    (tmp_path / "k1t.pw").write_text(PASSWORD)
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "access": {"public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())}},
        # The listener routes the terminal's pushes (by its MAC) to the same
        # device the terminal's table keeps, so both read as one device.
        "devices": [{"type": "hikvision_isapi", "id": "hik-listener", "host": "127.0.0.1", "port": port,
                     "terminals": {sim.mac: {"device": TERMINAL, "door": "front"}}}],
        "terminals": [{"id": TERMINAL, "url": sim.url, "password_file": str(tmp_path / "k1t.pw"),
                       "doors": ["front"], "probe_interval_s": 0.3, "retry_max_s": 0.5, **terminal}],
    })


def _reads(server: FakeServer) -> list[wire.CardRead]:
    return [e for e in server.received if isinstance(e, wire.CardRead) and e.device == TERMINAL]


def _card_of(event: AcsEventRecord) -> str:
    return format(int(event.card_no or "0"), "X")


async def _present(sim: IsapiTerminalSim, first: int, n: int) -> list[AcsEventRecord]:
    return [await sim.present_card(str(first + i)) for i in range(n)]


async def _settled(app: GatewayApp, sim: IsapiTerminalSim, last: AcsEventRecord) -> None:
    """Both paths are done with ``last``: the terminal pushed it, the catch-up
    went past it, and the server acknowledged everything the outbox held."""
    terminal = app.terminals[0]
    await sim.delivered(last.serial_no, timeout=10)
    await wait_until(lambda: (terminal.caught_up_to or 0) >= last.serial_no, timeout=10, what="caught up")
    assert app.outbox is not None
    outbox = app.outbox
    await wait_until(lambda: outbox.depth() == 0, timeout=10, what="the outbox emptied")


async def _synced(app: GatewayApp) -> None:
    terminal = app.terminals[0]
    await wait_until(lambda: terminal.health.version_held == 1 and terminal.caught_up_to is not None,
                     timeout=15, what="the terminal synced and its events counted")


@pytest.mark.parametrize("sim", [10], indirect=True)
async def test_a_cut_between_terminal_and_gateway_loses_nothing_and_doubles_nothing(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, sim: IsapiTerminalSim, listen_port: int) -> None:
    publish_allowlist(mosquitto, TENANT)
    # Before the gateway listens: the terminal keeps posting it until it does.
    early = await sim.present_card("77")
    async with running(_config(tmp_path, mosquitto, sim, listen_port)) as app:
        await _synced(app)
        live = [early, *await _present(sim, 1000, 3)]
        await _settled(app, sim, live[-1])
        await sim.network_down()
        await wait_until(lambda: app.terminals[0].health.reachable is False, timeout=10, what="unreachable")
        # More than one search page, and more than the terminal's push queue
        # holds: the first 25 come only by the catch-up.
        missed = await _present(sim, 2000, 35)
        await sim.network_restore()
        # The terminal re-posts the last ten and the catch-up fetches them too.
        await _settled(app, sim, missed[-1])
        assert app.outbox is not None and app.outbox.outbox.repeats >= 10, "both paths brought the last ten"
    expected = live + missed
    got = Counter(r.credential.value for r in _reads(server))
    assert got == Counter(_card_of(e) for e in expected), "every event once"
    by_card = {r.credential.value: r for r in _reads(server)}
    for event in expected:
        read = by_card[_card_of(event)]
        assert event.time is not None and read.ts == event.time, "the terminal's time: its clock is right"
        assert read.decision == "denied"  # unknown cards, refused by the terminal's own lock


async def test_a_gateway_restart_that_forgot_how_far_it_got_stores_nothing_twice(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, sim: IsapiTerminalSim, listen_port: int) -> None:
    publish_allowlist(mosquitto, TENANT)
    config = _config(tmp_path, mosquitto, sim, listen_port)
    async with running(config) as app:
        await _synced(app)
        first_seen = app.terminals[0].caught_up_to
        pushed = await _present(sim, 3000, 5)
        await _settled(app, sim, pushed[-1])
    # As after a power cut before the state file was written: the catch-up
    # at the next start fetches the pushed events again.
    state = config.data_dir / "terminals" / f"{TERMINAL}.json"
    saved = json.loads(state.read_text())
    assert saved["caught_up_to"] == pushed[-1].serial_no, "the pushed serials were kept as caught up"
    saved["caught_up_to"] = first_seen
    state.write_text(json.dumps(saved))
    async with running(config) as app:
        await _synced(app)
        after = await _present(sim, 4000, 2)
        await _settled(app, sim, after[-1])
    got = Counter(r.credential.value for r in _reads(server))
    assert got == Counter(_card_of(e) for e in pushed + after)


async def test_a_terminal_whose_counter_restarted_still_has_every_new_event_stored_once(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, sim: IsapiTerminalSim, listen_port: int) -> None:
    publish_allowlist(mosquitto, TENANT)
    async with running(_config(tmp_path, mosquitto, sim, listen_port)) as app:
        await _synced(app)
        before = await _present(sim, 5000, 4)
        await _settled(app, sim, before[-1])
        # A firmware upgrade wipes the event log: serials count from 1 again.
        await sim.reboot(lose_events=True)
        after = await _present(sim, 6000, 3)
        assert after[0].serial_no == 1
        await sim.delivered(after[-1].serial_no, timeout=10)
        # The reboot is seen, the catch-up meets serials below what it knew
        # and fetches the terminal's newest events; none is stored twice.
        await wait_until(lambda: app.terminals[0].caught_up_to == after[-1].serial_no, timeout=10,
                         what="counting from the new serials")
        assert app.outbox is not None
        outbox = app.outbox
        await wait_until(lambda: outbox.depth() == 0, timeout=10, what="the outbox emptied")
    got = Counter(r.credential.value for r in _reads(server))
    assert got == Counter(_card_of(e) for e in before + after)


@pytest.mark.parametrize("sim", [2], indirect=True)
async def test_a_counter_restarted_past_where_the_stopped_gateway_was_loses_none_of_its_events(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, sim: IsapiTerminalSim, listen_port: int,
        caplog: pytest.LogCaptureFixture) -> None:
    publish_allowlist(mosquitto, TENANT)
    # The push brings serials only: the interval's catch-up, finding nothing
    # missing, learns the identity of the event at caught_up_to on the way.
    config = _config(tmp_path, mosquitto, sim, listen_port, catch_up_interval_s=0.5)
    async with running(config) as app:
        await _synced(app)
        before = await _present(sim, 8000, 4)
        await _settled(app, sim, before[-1])
        terminal = app.terminals[0]
        await wait_until(lambda: terminal.marked_serial == before[-1].serial_no, timeout=10,
                         what="the event at caught_up_to known by its identity")
    # The gateway is down for days. A firmware upgrade clears the terminal's
    # log (a second later at least: its clock counts whole seconds), and its
    # new counter passes where the gateway stopped; its push queue (two)
    # keeps only the last two.
    await wait_until(lambda: sim.now() > before[-1].time, what="the terminal's clock past the last event")
    await sim.reboot(lose_events=True)
    after = await _present(sim, 9000, 2 * len(before) + 3)
    assert after[0].serial_no == 1 and after[-1].serial_no > before[-1].serial_no
    with caplog.at_level("WARNING", logger="gateway.terminals.sync"):
        async with running(config) as app:
            terminal = app.terminals[0]
            await sim.delivered(after[-1].serial_no, timeout=10)
            await wait_until(lambda: terminal.caught_up_to == after[-1].serial_no, timeout=10,
                             what="counting from the new serials")
            assert app.outbox is not None
            outbox = app.outbox
            # The two re-posted events came both ways, and were stored once.
            await wait_until(lambda: outbox.outbox.repeats >= 2, timeout=10, what="the re-posts seen as repeats")
            await wait_until(lambda: outbox.depth() == 0, timeout=10, what="the outbox emptied")
    got = Counter(r.credential.value for r in _reads(server))
    assert got == Counter(_card_of(e) for e in before + after), "every event once, the new counter's first too"
    assert f"event serials restarted (serial {before[-1].serial_no} is another event" in caplog.text


async def test_a_terminal_with_a_wrong_clock_has_its_reads_placed_at_the_right_time(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, sim: IsapiTerminalSim, listen_port: int) -> None:
    publish_allowlist(mosquitto, TENANT)
    sim.clock_offset_s = -3 * 3600  # lost three hours in a power cut
    sim.push_url = None  # events reach the gateway by the catch-up only: the corrected times are checked
    async with running(_config(tmp_path, mosquitto, sim, listen_port)) as app:
        await _synced(app)
        terminal = app.terminals[0]
        offset = terminal.health.clock_offset_s
        assert offset is not None and abs(offset + 3 * 3600) < 5, "the terminal's clock was measured"
        await sim.network_down()
        await wait_until(lambda: terminal.health.reachable is False, timeout=10, what="unreachable")
        presented_at = datetime.now(UTC)
        missed = await _present(sim, 7000, 2)
        await sim.network_restore()
        await wait_until(lambda: (terminal.caught_up_to or 0) >= missed[-1].serial_no, timeout=10,
                         what="caught up")
        assert app.outbox is not None
        outbox = app.outbox
        await wait_until(lambda: outbox.depth() == 0, timeout=10, what="the outbox emptied")
    reads = _reads(server)
    assert Counter(r.credential.value for r in reads) == Counter(_card_of(e) for e in missed)
    # The server is told, for the fleet page.
    told = [t.clock_offset_s for s in server.statuses for t in s.terminals or [] if t.clock_offset_s is not None]
    assert told and abs(told[-1] + 3 * 3600) < 5
    for read in reads:
        # Stamped three hours early by the terminal; reported when it happened.
        assert abs(read.ts - presented_at) < timedelta(seconds=10), read.ts


class _Cameras:
    def __init__(self) -> None:
        self.grants: list[tuple[str, datetime, int]] = []

    def grant(self, door: str, at: datetime, seq: int) -> None:
        self.grants.append((door, at, seq))


async def test_the_door_cameras_match_a_terminals_grant_at_its_arrival_not_its_clock(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    from gateway.devices.base import TerminalOrigin

    config = GatewayConfig.model_validate({"gateway_id": GW, "mqtt_url": mosquitto.url,
                                           "data_dir": str(tmp_path / "data")})
    cameras = _Cameras()
    async with running(config) as app:
        app.cameras = cameras  # type: ignore[assignment]
        card = Credential(format="raw", value="14008EC793")
        # Its clock 90 s slow, within what is believed: the read is stored at the
        # terminal's time, live, and the cameras get the moment it arrived.
        before = datetime.now(UTC)
        slow = before - timedelta(seconds=90)
        app.terminal_read("k1t", "front", card, True, TerminalOrigin(5, f"5/{slow:%Y%m%dT%H%M%S}Z/5/1", slow))
        await wait_until(lambda: len(cameras.grants) == 1, what="the grant handed to the cameras")
        door, at, _seq = cameras.grants[0]
        assert door == "front" and before <= at <= datetime.now(UTC)
        # The same read posted again: stored once, and no second grant.
        app.terminal_read("k1t", "front", card, True, TerminalOrigin(5, f"5/{slow:%Y%m%dT%H%M%S}Z/5/1", slow))
        assert app.outbox is not None
        outbox = app.outbox
        await wait_until(lambda: outbox.outbox.repeats == 1, what="the repeat seen")
        await wait_until(lambda: outbox.depth() == 0, timeout=10, what="acknowledged")
    reads = [e for e in server.received if isinstance(e, wire.CardRead)]
    assert len(reads) == 1 and reads[0].ts == slow and reads[0].decision == "granted"
    assert len(cameras.grants) == 1
