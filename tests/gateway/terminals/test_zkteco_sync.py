"""The ZKTeco user sync against the project's ADMS terminal simulator
(firmware_sim/zkteco_terminal.py) polling a real ZktecoAdapter over HTTP: the
simulated terminal's own lock decides from its own list, so a tenant removed
from the allowlist is refused by the terminal itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from firmware_sim.zkteco_terminal import ZktecoTerminalSim, ZkUser
from gateway.devices.zkteco import ZktecoAdapter, ZktecoConfig
from gateway.terminals.mapping import employee_no
from gateway.terminals.sync import TerminalHealth
from gateway.terminals.zkteco_sync import ZkUserSync, supervise, user_syncs, zk_pin
from rentgate.wire import AllowlistEntry, Credential
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink
from tests.gateway.test_zkteco_adapter import ZkTerminal

SN = "CKJS201260012"
TENANT, LEAVER = "00C2A1B0F2", "00C2A1B0F3"  # em4100 as the server keeps them


def decimal(card: str) -> str:
    """What the terminal's reader reads for an em4100 credential."""
    return str(int(card, 16))


def entry(card: str, person: str = "", **fields: Any) -> AllowlistEntry:
    return AllowlistEntry.model_validate({"credential": Credential(format="em4100", value=card),
                                          "person": person or f"p-{card}", **fields})


class ListSource:
    """An AllowlistSource whose list the test sets."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.entries: list[AllowlistEntry] = []

    def set(self, version: int, *entries: AllowlistEntry) -> None:
        self.version, self.entries = version, list(entries)

    def current(self) -> tuple[int | None, list[AllowlistEntry]]:
        return self.version, list(self.entries)


class Healths:
    """The healths the sync reports, and a way to await one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, TerminalHealth]] = []
        self._event = asyncio.Event()

    def __call__(self, device: str, health: TerminalHealth) -> None:
        self.seen.append((device, replace(health)))
        self._event.set()

    @property
    def last(self) -> TerminalHealth:
        return self.seen[-1][1] if self.seen else TerminalHealth()

    async def until(self, predicate: Callable[[TerminalHealth], bool], timeout: float = 10.0,
                    what: str = "health") -> TerminalHealth:
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.last):
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last {self.last}") from None
        return self.last


def config(**extra: Any) -> ZktecoConfig:
    return ZktecoConfig.model_validate({
        "type": "zkteco_adms", "id": "lobby-zk", "host": "127.0.0.1", "port": 0, "poll_delay_s": 1,
        "error_delay_s": 1, "sync_users": True, "terminals": {SN: {"device": "lobby-zk", "door": "front"}},
        "sync_probe_interval_s": 0.1, "refused_retry_s": 0.3, **extra})


@dataclass
class Rig:
    adapter: ZktecoAdapter
    terminal: ZktecoTerminalSim
    source: ListSource
    state_dir: Path

    def has_card(self, card: str) -> bool:
        return any(u.card == decimal(card) for u in self.terminal.users.values())

    @asynccontextmanager
    async def syncing(self, healths: Healths) -> AsyncIterator[ZkUserSync]:
        [sync] = user_syncs(self.adapter, self.source, self.state_dir, healths)
        task = asyncio.create_task(supervise(sync), name=sync.task_name)
        try:
            yield sync
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def rig(tmp_path: Path, *, max_users: int = 3000, **extra: Any) -> AsyncIterator[Rig]:
    adapter = ZktecoAdapter(config(**extra), RecordingSink())
    task = asyncio.create_task(adapter.run(), name="zkteco-under-test")
    try:
        await asyncio.wait_for(adapter.listening.wait(), 5)
        async with ZktecoTerminalSim(f"http://127.0.0.1:{adapter.port}", serial=SN, poll_s=0.05, error_delay_s=0.05,
                                     max_users=max_users) as terminal:
            await terminal.wait_for(lambda: terminal.registered)
            yield Rig(adapter, terminal, ListSource(), tmp_path / "terminals")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_tenant_is_written_and_a_revoked_one_refused_by_the_terminals_own_lock(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        # The landlord's own card, enrolled at the terminal: not the gateway's to remove.
        r.terminal.users["9001"] = ZkUser("9001", name="landlord", card="777")
        r.source.set(1, entry(TENANT), entry(LEAVER), entry("00C2A1B0F4", doors=["back"]))
        healths = Healths()
        async with r.syncing(healths) as sync:
            assert sync.task_name == "terminal-sync-lobby-zk"
            health = await healths.until(lambda h: h.version_held == 1, what="version 1 held")
            assert health.pending == 0 and health.writes_refused == 0 and health.reachable is True
            assert health.last_error is None and health.trusted
            assert {u.name for u in r.terminal.users.values()} == {"rentgate", "landlord"}
            assert (await r.terminal.present_card(decimal(LEAVER))).granted
            assert not (await r.terminal.present_card(decimal("00C2A1B0F4"))).granted  # another door's
            started = time.monotonic()
            r.source.set(2, entry(TENANT))
            sync.changed()
            await r.terminal.wait_for(lambda: not r.has_card(LEAVER), timeout=5)
            print(f"\nsimulator: revocation reached the terminal in {(time.monotonic() - started) * 1000:.0f} ms")
            assert not (await r.terminal.present_card(decimal(LEAVER))).granted
            assert (await r.terminal.present_card(decimal(TENANT))).granted
            await healths.until(lambda h: h.version_held == 2 and h.pending == 0, what="version 2 held")
            assert r.terminal.users["9001"].card == "777"
        assert {device for device, _ in healths.seen} == {"lobby-zk"}
        assert all(h.writes_refused == 0 for _, h in healths.seen)


async def test_a_revocation_does_not_wait_behind_a_long_list_of_additions(tmp_path: Path) -> None:
    tenants = [f"00C2A1{i:04X}" for i in range(300)]
    async with rig(tmp_path, commands_per_poll=5) as r:
        r.source.set(1, *(entry(t) for t in tenants))
        healths = Healths()
        async with r.syncing(healths) as sync:
            await r.terminal.wait_for(lambda: r.has_card(tenants[0]), timeout=10)
            # Only a window of additions is in the adapter's queue, not 300.
            assert r.adapter.pending(SN) <= 5 + 5
            started = time.monotonic()
            r.source.set(2, *(entry(t) for t in tenants[1:]))
            sync.changed()
            await r.terminal.wait_for(lambda: not r.has_card(tenants[0]), timeout=5)
            print(f"\nsimulator: revocation among {len(tenants)} additions took "
                  f"{(time.monotonic() - started) * 1000:.0f} ms ({len(r.terminal.users)} written by then)")
            assert len(r.terminal.users) < len(tenants) - 50, "the removal waited for the additions"
            await healths.until(lambda h: h.version_held == 2, timeout=30, what="the whole list written")
            assert len(r.terminal.users) == len(tenants) - 1


async def test_a_refused_write_is_reported_not_counted_and_tried_again(tmp_path: Path) -> None:
    async with rig(tmp_path, max_users=1) as r:
        r.source.set(1, entry(TENANT), entry(LEAVER))
        healths = Healths()
        async with r.syncing(healths):
            refused = await healths.until(lambda h: h.writes_refused >= 1, what="the full terminal's refusal")
            assert refused.version_held is None and refused.pending == 1 and not refused.trusted
            assert refused.last_error is not None and "refused writing a user (Return=-12)" in refused.last_error
            assert len(r.terminal.users) == 1
            # Retried, not at every poll: a few times over the retry interval.
            await healths.until(lambda h: h.writes_refused >= 2, what="a second try")
            r.terminal.max_users = 10  # the installer deleted old users
            done = await healths.until(lambda h: h.version_held == 1, what="the write taken at last")
            assert done.writes_refused == 0 and done.pending == 0 and done.last_error is None
            assert (await r.terminal.present_card(decimal(TENANT))).granted
            assert (await r.terminal.present_card(decimal(LEAVER))).granted


async def test_an_offline_terminal_keeps_its_commands_pending_and_converges_when_back(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.source.set(1, entry(LEAVER))
        healths = Healths()
        async with r.syncing(healths) as sync:
            await healths.until(lambda h: h.version_held == 1, what="version 1 held")
            r.terminal.network_down()
            r.source.set(2, entry(TENANT))
            sync.changed()
            away = await healths.until(lambda h: h.reachable is False, what="the silent terminal noticed")
            assert away.pending == 2 and away.version_held == 1 and not away.trusted
            assert away.last_error is not None and "2 commands wait for it" in away.last_error
            # Queued once, however many passes went by: one removal, one addition.
            assert r.adapter.pending(SN) == 2
            assert r.has_card(LEAVER)  # the terminal did not hear of it: still opens, and the health says so
            r.terminal.network_restore()
            back = await healths.until(lambda h: h.version_held == 2, what="converged after the outage")
            assert back.reachable is True and back.pending == 0 and back.last_error is None
            assert not (await r.terminal.present_card(decimal(LEAVER))).granted
            assert (await r.terminal.present_card(decimal(TENANT))).granted


async def test_a_tenant_granted_again_while_the_removal_waits_is_written_after_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.source.set(1, entry(TENANT))
        healths = Healths()
        async with r.syncing(healths) as sync:
            await healths.until(lambda h: h.version_held == 1, what="version 1 held")
            r.terminal.network_down()
            r.source.set(2)
            sync.changed()
            await healths.until(lambda h: h.pending == 1, what="the removal queued")
            r.source.set(3, entry(TENANT))
            sync.changed()
            # The removal is still on its way: the terminal will not hold version 3 until a write follows it.
            await wait_until(lambda: r.adapter.pending(SN) == 2, what="a write queued after the removal")
            assert healths.last.pending == 1 and healths.last.version_held == 1
            r.terminal.network_restore()
            await healths.until(lambda h: h.version_held == 3, what="version 3 held")
            assert (await r.terminal.present_card(decimal(TENANT))).granted


async def test_the_record_survives_a_restart_and_users_written_before_are_removed(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.source.set(1, entry(TENANT), entry(LEAVER))
        first = Healths()
        async with r.syncing(first):
            await first.until(lambda h: h.version_held == 1, what="version 1 held")
        record = json.loads((r.state_dir / f"zkteco-{SN}.json").read_text())
        assert record["sn"] == SN and all(confirmed for _, _, confirmed in record["users"].values())
        assert set(record["users"]) == {zk_pin_for(LEAVER), zk_pin_for(TENANT)}
        # The gateway restarts with a list that no longer has the leaver.
        r.source.set(2, entry(TENANT))
        healths = Healths()
        async with r.syncing(healths):
            await healths.until(lambda h: h.version_held == 2 and h.pending == 0, what="version 2 held")
            assert not r.has_card(LEAVER) and r.has_card(TENANT)
        record = json.loads((r.state_dir / f"zkteco-{SN}.json").read_text())
        assert set(record["users"]) == {zk_pin_for(TENANT)} and record["version_held"] == 2


async def test_a_write_the_gateway_never_saw_answered_is_still_removed_later(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.terminal.network_down()
        r.source.set(1, entry(LEAVER))
        healths = Healths()
        async with r.syncing(healths):
            await healths.until(lambda h: h.pending == 1, what="the write queued")
        # The gateway stopped before the answer; the record says the terminal may hold the PIN.
        record = json.loads((r.state_dir / f"zkteco-{SN}.json").read_text())
        assert record["users"] == {zk_pin_for(LEAVER): ["rentgate", decimal(LEAVER), False]}
        r.terminal.network_restore()  # and takes the command queued before the stop
        await r.terminal.wait_for(lambda: r.has_card(LEAVER))
        r.source.set(2, entry(TENANT))
        again = Healths()
        async with r.syncing(again):
            await again.until(lambda h: h.version_held == 2, what="version 2 held")
            assert not r.has_card(LEAVER) and r.has_card(TENANT)


async def test_a_command_fetched_and_never_answered_is_queued_again(tmp_path: Path) -> None:
    adapter = ZktecoAdapter(config(result_timeout_s=0.3), RecordingSink())
    task = asyncio.create_task(adapter.run(), name="zkteco-under-test")
    source = ListSource()
    source.set(1, entry(TENANT))
    healths = Healths()
    [sync] = user_syncs(adapter, source, tmp_path, healths)
    syncing = asyncio.create_task(sync.supervise(), name=sync.task_name)
    try:
        await asyncio.wait_for(adapter.listening.wait(), 5)
        async with aiohttp.ClientSession() as session:
            terminal = ZkTerminal(session, f"http://127.0.0.1:{adapter.port}", SN)
            await healths.until(lambda h: h.pending == 1, what="the write queued")
            [first] = (await terminal.poll()).splitlines()
            first_id = int(first.split(":")[1])
            # The terminal restarted while executing it: no result ever comes.
            await wait_until(lambda: adapter.command_state(SN, first_id) == "unknown" and adapter.pending(SN) == 1,
                             what="the command queued again")
            [second] = (await terminal.poll()).splitlines()
            second_id = int(second.split(":")[1])
            assert second_id != first_id and second.split(":", 2)[2] == first.split(":", 2)[2]
            assert await terminal.report(f"ID={second_id}&Return=0&CMD=DATA\n".encode()) == "OK"
            await healths.until(lambda h: h.version_held == 1, what="the second one answered")
            # A late answer to the first is ignored.
            assert await terminal.report(f"ID={first_id}&Return=0&CMD=DATA\n".encode()) == "OK"
    finally:
        for running in (syncing, task):
            running.cancel()
        await asyncio.gather(syncing, task, return_exceptions=True)


async def test_no_allowlist_yet_leaves_the_terminal_alone(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.source.set(1, entry(LEAVER))
        first = Healths()
        async with r.syncing(first):
            await first.until(lambda h: h.version_held == 1, what="version 1 held")
        r.source.version, r.source.entries = None, []  # the allowlist file was lost
        healths = Healths()
        async with r.syncing(healths):
            health = await healths.until(lambda h: h.last_error is not None and "no allowlist" in h.last_error)
            assert r.adapter.pending(SN) == 0 and r.has_card(LEAVER)
            assert health.version_held == 1  # from the record: what it last fully held


async def test_validity_ends_at_the_terminal_and_a_wiped_terminal_is_refilled(tmp_path: Path) -> None:
    async with rig(tmp_path, full_sync_interval_s=0.5) as r:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        r.source.set(1, entry(TENANT), entry(LEAVER, valid_until=soon))
        healths = Healths()
        async with r.syncing(healths):
            await r.terminal.wait_for(lambda: r.has_card(TENANT) and r.has_card(LEAVER))
            # ADMS users carry no validity: the gateway removes the card when it ends.
            await r.terminal.wait_for(lambda: not r.has_card(LEAVER), timeout=5)
            assert datetime.now(UTC) >= soon
            # Replaced or factory-reset behind the gateway's back: the next full sync writes it again.
            r.terminal.users.clear()
            await r.terminal.wait_for(lambda: r.has_card(TENANT), timeout=5)
            assert not r.has_card(LEAVER)
        assert any(h.last_full_at is not None for _, h in healths.seen)


def test_sync_users_needs_each_terminal_and_its_door() -> None:
    base = {"type": "zkteco_adms", "id": "lobby-zk", "door": "front", "port": 0, "sync_users": True}
    with pytest.raises(ValidationError, match="each terminal listed by its serial number"):
        ZktecoConfig.model_validate(base)
    with pytest.raises(ValidationError, match=f"terminal {SN} has no door"):
        ZktecoConfig.model_validate({**base, "terminals": {SN: {"device": "lobby-zk"}}})
    ok = ZktecoConfig.model_validate({**base, "terminals": {SN: {"device": "side-zk", "door": "side"}}})
    assert ok.sync_door(SN) == "side" and ok.sync_device(SN) == "side-zk"
    assert not ZktecoConfig.model_validate({**base, "sync_users": False}).sync_users


def test_pins_are_what_a_terminal_takes_and_never_shared() -> None:
    assert zk_pin("1001") == "1001"
    long = zk_pin("h" + "a" * 31)
    assert len(long) == 24 and long.startswith("z") and long.isalnum()
    assert zk_pin(long) != long  # a plain value shaped like a digest is digested too
    assert zk_pin("p-12") != zk_pin("p12")


def zk_pin_for(card: str) -> str:
    return zk_pin(employee_no(f"p-{card}"))
