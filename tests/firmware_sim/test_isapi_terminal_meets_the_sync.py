"""Issue 16 end to end: the gateway's terminal sync keeps the simulated
terminal's own lists equal to the signed allowlist, and a tenant removed from
the allowlist is refused by the terminal itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from firmware_sim.isapi_store import CARD_PASS, INVALID_CARD
from firmware_sim.isapi_terminal import IsapiTerminalSim
from gateway.terminals import TerminalSync, TerminalSyncConfig, supervise
from tests.gateway.access.helpers import delta, open_store, snapshot

STAYS, LEAVES = "C2A25F72", "BC614E"  # allowlist card values (hex), cardNo on the terminal in decimal


async def test_a_tenant_removed_from_the_allowlist_is_refused_at_the_terminal(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.apply(snapshot(1, STAYS, LEAVES)).applied
    secret = tmp_path / "terminal-password"
    secret.write_text("Passw0rd!")
    async with IsapiTerminalSim(password="Passw0rd!") as terminal:
        config = TerminalSyncConfig.model_validate({
            "id": "k1t-main", "url": terminal.url, "password_file": str(secret), "doors": ["door-1"],
            "probe_interval_s": 0.2, "retry_max_s": 0.3})
        sync = TerminalSync(config, store, tmp_path / "terminals")
        task = asyncio.create_task(supervise(sync), name="terminal-sync-under-test")
        try:
            await terminal.wait_for(lambda: sync.health.version_held == 1, timeout=10)
            assert len(terminal.store.cards) == 2
            assert (await terminal.present_card(str(int(LEAVES, 16)))).minor == CARD_PASS

            assert store.apply(delta(1, 2, removals=(LEAVES,))).applied
            sync.changed()
            await terminal.wait_for(lambda: sync.health.version_held == 2, timeout=10)
            assert (await terminal.present_card(str(int(LEAVES, 16)))).minor == INVALID_CARD
            assert (await terminal.present_card(str(int(STAYS, 16)))).minor == CARD_PASS
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_events_made_while_the_terminal_was_unreachable_are_caught_up_by_serial(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.apply(snapshot(1, STAYS)).applied
    secret = tmp_path / "terminal-password"
    secret.write_text("Passw0rd!")
    delivered: list[int] = []
    async with IsapiTerminalSim(password="Passw0rd!") as terminal:
        await terminal.present_card("1")  # history before the gateway knew the terminal: not "missed"
        config = TerminalSyncConfig.model_validate({
            "id": "k1t-main", "url": terminal.url, "password_file": str(secret), "doors": ["door-1"],
            "probe_interval_s": 0.1, "retry_max_s": 0.2, "catch_up_events": True})
        lost = asyncio.Event()
        sync = TerminalSync(config, store, tmp_path / "terminals",
                            deliver=lambda event: delivered.append(event.serial_no),
                            on_health=lambda health: None if health.reachable else lost.set())
        task = asyncio.create_task(supervise(sync), name="terminal-sync-under-test")
        try:
            await terminal.wait_for(lambda: sync.health.version_held == 1, timeout=5)
            await terminal.network_down()
            missed = [(await terminal.present_card(str(int(STAYS, 16)))).serial_no for _ in range(3)]
            await asyncio.wait_for(lost.wait(), 5)  # the sync noticed the outage
            await terminal.network_restore()
            await terminal.wait_for(lambda: delivered == missed, timeout=3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
