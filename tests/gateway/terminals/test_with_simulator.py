"""The sync against the project's own ISAPI terminal simulator
(firmware_sim/isapi_terminal.py), whose lock decides from its own list: a
tenant deregistered at the server is refused by the terminal itself."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.isapi_terminal import IsapiTerminalSim
from gateway.access.store import AllowlistStore
from gateway.terminals import TerminalSync, TerminalSyncConfig, supervise
from gateway.terminals.sync import Deliver, event_mark
from tests.gateway.access.helpers import delta, open_store, snapshot
from tests.gateway.helpers import wait_until

PASSWORD = "Passw0rd!"
TENANT, LEAVER = "00C2A1B0F2", "00C2A1B0F3"  # raw-format hex as the server keeps em4100 cards


@pytest.fixture
async def sim() -> AsyncIterator[IsapiTerminalSim]:
    async with IsapiTerminalSim(password=PASSWORD) as terminal:
        yield terminal


@asynccontextmanager
async def syncing(sim: IsapiTerminalSim, store: AllowlistStore, folder: Path, *,
                  deliver: Deliver | None = None, **extra: object) -> AsyncIterator[TerminalSync]:
    """A sync of ``sim`` from ``store``, supervised as the gateway runs it, for the block."""
    secret = folder / "pw"
    secret.write_text(PASSWORD)
    config = TerminalSyncConfig.model_validate({
        "id": "k1t", "url": sim.url, "password_file": str(secret), "doors": ["front"], "probe_interval_s": 0.2,
        "retry_max_s": 0.3, **extra})
    sync = TerminalSync(config, store, folder / "terminals", deliver=deliver)
    task = asyncio.create_task(supervise(sync), name="terminal-sync-k1t")
    try:
        yield sync
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_revoked_card_is_refused_by_the_terminals_own_lock(tmp_path: Path, sim: IsapiTerminalSim) -> None:
    store = open_store(tmp_path)
    assert store.apply(snapshot(1, TENANT, LEAVER)).applied
    async with syncing(sim, store, tmp_path) as sync:
        await wait_until(lambda: sync.health.version_held == 1, timeout=10, what="version 1 on the terminal")
        leaver_card = str(int(LEAVER, 16))
        assert (await sim.present_card(leaver_card)).granted
        started = time.monotonic()
        assert store.apply(delta(1, 2, removals=(LEAVER,))).applied
        sync.changed()
        await wait_until(lambda: leaver_card not in sim.store.cards, timeout=5, what="the card deleted")
        print(f"\nsimulator: revocation reached the terminal in {(time.monotonic() - started) * 1000:.0f} ms")
        assert not (await sim.present_card(leaver_card)).granted
        assert (await sim.present_card(str(int(TENANT, 16)))).granted
        # A reboot keeps the list (flash); the sync reads it again and finds nothing to do.
        await sim.reboot()
        # The probe meets the closed port during the reboot (an error noted),
        # then a full pass reads the list again and clears it.
        await wait_until(lambda: sim.boots == 1 and sync.health.reachable is True and sync.health.version_held == 2
                         and sync.health.pending == 0 and sync.health.last_error is None, timeout=10,
                         what="the list read again after the reboot")
    assert sync.health.writes_refused == 0 and sync.health.last_error is None


async def test_events_the_terminal_kept_in_an_outage_are_caught_up_once(tmp_path: Path,
                                                                        sim: IsapiTerminalSim) -> None:
    from devices.hikvision_isapi import AcsEventRecord

    store = open_store(tmp_path)
    store.apply(snapshot(1, TENANT))
    card = str(int(TENANT, 16))
    got: list[AcsEventRecord] = []
    async with syncing(sim, store, tmp_path, deliver=got.append, catch_up_events=True) as sync:
        await sim.present_card("999")  # before the gateway knew the terminal: not missed
        await wait_until(lambda: sync.health.version_held == 1, timeout=10, what="synced")
        pushed = await sim.present_card(card)
        sync.heard(pushed.serial_no)  # delivered by the push listener
        await sim.network_down()
        await wait_until(lambda: sync.health.reachable is False, timeout=10, what="unreachable")
        missed = [await sim.present_card(card) for _ in range(35)]
        await sim.network_restore()
        await wait_until(lambda: len(got) >= 35, timeout=10, what="caught up")
        await sim.reboot()
        await wait_until(lambda: sim.boots == 1 and sync.health.reachable is True and sync.health.pending == 0,
                         timeout=10, what="back after the reboot")
    assert [e.serial_no for e in got] == [e.serial_no for e in missed]
    assert all(e.card_no == card and e.minor == missed[0].minor for e in got)


async def test_a_revoked_face_is_refused_by_the_terminals_own_lock(tmp_path: Path, sim: IsapiTerminalSim) -> None:
    """A tenant enrolled their face at the terminal (the landlord's phone app
    or the terminal's own menu): the allowlist names them as the terminal's
    person; ending the registration deletes the user, and its face with it."""
    from rentgate.wire import AllowlistDelta, AllowlistEntry, AllowlistSnapshot, Credential
    from tests.gateway.access.helpers import GW, T0, signed

    face = Credential(format="terminal_person", value="p77")
    store = open_store(tmp_path)
    assert store.apply(signed(AllowlistSnapshot(gw=GW, version=1, issued_at=T0, entries=[
        AllowlistEntry(credential=face, person="p-77")]))).applied
    async with syncing(sim, store, tmp_path) as sync:
        await wait_until(lambda: sync.health.version_held == 1, timeout=10, what="version 1 on the terminal")
        sim.enrol_face("p77")
        assert (await sim.present_face("p77")).granted
        assert store.apply(signed(AllowlistDelta(gw=GW, base_version=1, version=2, issued_at=T0,
                                                 removals=[face]))).applied
        sync.changed()
        await wait_until(lambda: sync.health.version_held == 2, timeout=5, what="version 2 on the terminal")
        assert not (await sim.present_face("p77")).granted, "refused by the terminal itself"


async def _three_kept_and_marked(sim: IsapiTerminalSim, sync: TerminalSync, got: list[Any],
                                 first_card: int) -> list[Any]:
    """Three reads kept by the terminal across a reboot (its log kept): the
    catch-up after it fetches them, the last one becomes the marked event."""
    await wait_until(lambda: sync.health.version_held == 1 and sync.caught_up_to == 0, timeout=10,
                     what="synced and counting from serial 0")
    kept = [await sim.present_card(str(first_card + i)) for i in range(3)]
    await sim.reboot()
    await wait_until(lambda: len(got) == 3 and sync.marked_serial == kept[-1].serial_no, timeout=10,
                     what="fetched, the last known by its identity")
    return kept


async def test_a_gateway_restart_with_the_terminal_unchanged_fetches_nothing_again(
        tmp_path: Path, sim: IsapiTerminalSim, caplog: pytest.LogCaptureFixture) -> None:
    from devices.hikvision_isapi import AcsEventRecord

    caplog.set_level(logging.DEBUG, logger="gateway.terminals.sync")
    store = open_store(tmp_path)
    store.apply(snapshot(1, TENANT))
    got: list[AcsEventRecord] = []
    async with syncing(sim, store, tmp_path, deliver=got.append) as sync:
        kept = await _three_kept_and_marked(sim, sync, got, 100)
    caplog.clear()
    async with syncing(sim, store, tmp_path, deliver=got.append) as sync:
        # One search for the marked event at the start finds it as it was.
        await wait_until(lambda: f"event serial {kept[-1].serial_no} is the one it was" in caplog.text,
                         timeout=10, what="the counter checked")
        later = await sim.present_card("200")
        await sim.reboot()
        await wait_until(lambda: len(got) == 4, timeout=10, what="the new event fetched")
        await wait_until(lambda: caplog.text.count("its counter did not restart") == 2, timeout=10,
                         what="checked again after the reboot")
    assert [e.serial_no for e in got] == [e.serial_no for e in [*kept, later]], "nothing fetched twice"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "serials" in r.getMessage()]


async def test_a_state_file_from_before_the_mark_loads_and_catches_up(
        tmp_path: Path, sim: IsapiTerminalSim, caplog: pytest.LogCaptureFixture) -> None:
    from devices.hikvision_isapi import AcsEventRecord

    caplog.set_level(logging.DEBUG, logger="gateway.terminals.sync")
    store = open_store(tmp_path)
    store.apply(snapshot(1, TENANT))
    caught_up = [await sim.present_card(str(300 + i)) for i in range(3)]
    missed = [await sim.present_card(str(400 + i)) for i in range(2)]
    # Written by the gateway before it kept an event's identity.
    state = tmp_path / "terminals" / "k1t.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"version_held": 1, "last_full_at": None,
                                 "caught_up_to": caught_up[-1].serial_no}))
    got: list[AcsEventRecord] = []
    async with syncing(sim, store, tmp_path, deliver=got.append) as sync:
        assert sync.caught_up_to == caught_up[-1].serial_no and sync.marked_serial is None
        await wait_until(lambda: len(got) == 2 and sync.marked_serial == missed[-1].serial_no, timeout=10,
                         what="caught up, the last known by its identity")
    assert "no event known by its identity yet: its counter is not checked" in caplog.text
    assert [e.serial_no for e in got] == [e.serial_no for e in missed]
    saved = json.loads(state.read_text())
    assert saved["caught_up_to"] == saved["marked_serial"] == missed[-1].serial_no
    assert saved["marked_event"] == event_mark(got[-1])


async def test_a_log_cleared_at_a_reboot_is_counted_from_its_first_new_serial(
        tmp_path: Path, sim: IsapiTerminalSim, caplog: pytest.LogCaptureFixture) -> None:
    from devices.hikvision_isapi import AcsEventRecord

    store = open_store(tmp_path)
    store.apply(snapshot(1, TENANT))
    got: list[AcsEventRecord] = []
    async with syncing(sim, store, tmp_path, deliver=got.append) as sync:
        kept = await _three_kept_and_marked(sim, sync, got, 500)
        # Some models clear their log at a reboot: empty when the gateway asks.
        with caplog.at_level("WARNING", logger="gateway.terminals.sync"):
            await sim.reboot(lose_events=True)
            await wait_until(lambda: sync.caught_up_to == 0, timeout=10, what="counting from serial 0 again")
        assert f"event serials restarted (serial {kept[-1].serial_no} is gone, newest none" in caplog.text
        # More than it had before; the next catch-up (here: after another reboot) fetches them all.
        new = [await sim.present_card(str(600 + i)) for i in range(5)]
        await sim.reboot()
        await wait_until(lambda: len(got) == 8, timeout=10, what="the new events fetched")
    assert [e.serial_no for e in got] == [1, 2, 3, 1, 2, 3, 4, 5]
    assert [e.card_no for e in got] == [e.card_no for e in [*kept, *new]]
