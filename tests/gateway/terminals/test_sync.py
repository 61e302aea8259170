"""The terminal's own user and card list follows the gateway's allowlist:
against a fake ISAPI terminal on a real socket, with digest authentication."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from devices.hikvision import card_credential
from devices.hikvision_isapi import AcsEventRecord
from gateway.access.store import AllowlistStore
from gateway.terminals import TerminalSync, TerminalSyncConfig, supervise
from gateway.terminals import sync as sync_module
from gateway.terminals.mapping import card_no, employee_no
from gateway.terminals.sync import Deliver
from tests.gateway.access.helpers import delta, open_store, snapshot
from tests.gateway.terminals.fake_isapi import FakeTerminal


def _config(terminal: FakeTerminal, tmp_path: Path, **extra: Any) -> TerminalSyncConfig:
    secret = tmp_path / "terminal-password"
    secret.write_text(terminal.password)
    return TerminalSyncConfig.model_validate({
        "id": "k1t-main", "url": terminal.url, "password_file": str(secret), "doors": ["door-1"],
        "probe_interval_s": 0.2, "retry_max_s": 0.3, **extra})


@pytest.fixture
async def terminal() -> AsyncIterator[FakeTerminal]:
    fake = FakeTerminal()
    await fake.start()
    yield fake
    await fake.close()


async def until(predicate: Callable[[], bool], terminal: FakeTerminal, timeout: float = 10.0,
                what: str = "condition") -> None:
    """Wait for the terminal's answers until ``predicate`` holds (no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            terminal.changed.clear()
            try:
                await asyncio.wait_for(terminal.changed.wait(), 0.5)
            except TimeoutError:
                pass  # a state change without a request (the sync's own health)
    assert predicate(), what


class Running:
    def __init__(self, sync: TerminalSync) -> None:
        self.sync = sync
        self.task = asyncio.create_task(supervise(sync), name=f"terminal-sync-{sync.config.id}")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def counting_events(tmp_path: Path, terminal: FakeTerminal, deliver: Deliver,
                          **config: object) -> AsyncIterator[TerminalSync]:
    """A sync holding version 1 that has counted the terminal's (empty) event
    log from serial 0, for the block."""
    store = open_store(tmp_path)
    store.apply(snapshot(1, "1400000001"))
    sync = TerminalSync(_config(terminal, tmp_path, **config), store, tmp_path / "terminals", deliver=deliver)
    run = Running(sync)
    try:
        await until(lambda: _held(store, sync)() and sync.caught_up_to == 0, terminal)
        yield sync
    finally:
        await run.stop()


def _held(store: AllowlistStore, sync: TerminalSync) -> Callable[[], bool]:
    return lambda: sync.health.version_held == store.version and sync.health.pending == 0


def _cards(n: int) -> list[str]:
    return [f"{0x1400000000 + i:010X}" for i in range(n)]


async def test_initial_sync_writes_every_user_and_card_and_keeps_a_landlords_own_user(
        tmp_path: Path, terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    values = _cards(200)
    assert store.apply(snapshot(1, *values)).applied
    terminal.users["9001"] = {"employeeNo": "9001", "name": "landlord", "userType": "normal"}
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal, what="version 1 held")
    finally:
        await run.stop()
    assert len(terminal.users) == 201 and "9001" in terminal.users
    assert {c["cardNo"] for c in terminal.cards.values()} == {str(int(v, 16)) for v in values}
    user = terminal.users[employee_no(f"p-{values[0]}")]
    assert user["name"] == "rentgate", "nothing about the person on the terminal"
    assert sync.health.foreign_users == 1 and sync.health.reachable and sync.health.writes_refused == 0
    saved = json.loads((tmp_path / "terminals" / "k1t-main.json").read_text())
    assert saved["version_held"] == 1


async def test_a_revocation_reaches_a_connected_terminal_within_seconds(tmp_path: Path,
                                                                       terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    values = _cards(50)
    store.apply(snapshot(1, *values))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        gone = employee_no(f"p-{values[7]}")
        started = time.monotonic()
        assert store.apply(delta(1, 2, removals=(values[7],))).applied
        sync.changed()  # what AccessRuntime's change listener does
        await until(lambda: gone in terminal.deleted, terminal, timeout=5)
        latency = terminal.deleted[gone] - started
        print(f"\nrevocation: allowlist delta applied -> terminal answered the delete in {latency * 1000:.1f} ms")
        assert latency < 2.0
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert gone not in terminal.users and str(int(values[7], 16)) not in terminal.cards
    assert len(terminal.users) == 49


async def test_a_revocation_does_not_wait_behind_a_long_initial_sync(tmp_path: Path,
                                                                    terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    values = _cards(3000)
    store.apply(snapshot(1, *values))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        first = employee_no(f"p-{values[0]}")
        await until(lambda: len(terminal.users) >= 100, terminal, what="the initial sync under way")
        started = time.monotonic()
        store.apply(delta(1, 2, removals=(values[0],)))
        sync.changed()
        await until(lambda: first in terminal.deleted, terminal, timeout=5)
        latency = terminal.deleted[first] - started
        print(f"\nrevocation during a 3,000-user sync, after {len(terminal.users)} users: {latency * 1000:.1f} ms")
        assert latency < 1.0 and len(terminal.users) < 2999, "the delete came before the rest of the list"
        await until(_held(store, sync), terminal, timeout=60)
    finally:
        await run.stop()
    assert len(terminal.users) == 2999 and first not in terminal.users


async def test_a_terminal_offline_during_changes_is_reconciled_when_it_returns(tmp_path: Path,
                                                                               terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    values = _cards(20)
    store.apply(snapshot(1, *values))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        await terminal.offline()
        store.apply(delta(1, 2, upserts=("AA00000001",), removals=(values[0], values[1])))
        sync.changed()
        await until(lambda: sync.health.reachable is False, terminal)
        assert sync.health.version_held == 1, "an unreachable terminal is not taken to hold the new version"
        # Meanwhile someone changes the terminal by hand: the full read on return finds it.
        terminal.users["stray"] = {"employeeNo": "stray", "name": "rentgate", "userType": "normal"}
        await terminal.online()
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    holders = {employee_no(f"p-{v}") for v in values[2:]} | {employee_no("p-AA00000001")}
    assert set(terminal.users) == holders


async def test_a_reboot_that_lost_the_list_triggers_a_full_reconciliation(tmp_path: Path,
                                                                          terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *_cards(10)))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    terminal.boot -= 3600  # up for an hour
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        terminal.reboot(wipe=True)
        await until(lambda: len(terminal.users) == 10 and len(terminal.cards) == 10, terminal)
    finally:
        await run.stop()


async def test_refused_writes_are_reported_and_retried(tmp_path: Path, terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *_cards(5)))
    terminal.full = True
    reports: list[tuple[bool, int]] = []
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals",
                        on_health=lambda h: reports.append((h.trusted, h.writes_refused)))
    run = Running(sync)
    try:
        await until(lambda: sync.health.writes_refused > 0, terminal)
        assert not sync.health.trusted and sync.health.version_held is None
        assert sync.health.last_error is not None and "noMemory" in sync.health.last_error
        terminal.full = False  # the landlord freed space
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert sync.health.trusted and len(terminal.users) == 5
    assert (False, 5) in reports or any(not trusted for trusted, _ in reports)


async def test_a_wrong_password_is_reported_never_trusted(tmp_path: Path, terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *_cards(3)))
    config = _config(terminal, tmp_path)
    terminal.password = "changed-by-the-installer"
    sync = TerminalSync(config, store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(lambda: sync.health.last_error is not None, terminal)
    finally:
        await run.stop()
    assert not sync.health.trusted and "401" in (sync.health.last_error or "")
    logins = terminal.requests
    assert logins <= 3, "one refused login, then a long wait (terminals lock out an address)"
    assert "changed-by-the-installer" not in (sync.health.last_error or "") and not terminal.users


async def test_without_an_allowlist_the_terminals_list_is_left_alone(tmp_path: Path,
                                                                     terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)  # nothing received yet (or the file was lost)
    terminal.users["p1"] = {"employeeNo": "p1", "name": "rentgate", "userType": "normal"}
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(lambda: sync.health.last_error is not None, terminal)
        assert set(terminal.users) == {"p1"} and terminal.writes == 0
        store.apply(snapshot(1, "1400000001"))
        sync.changed()
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert set(terminal.users) == {employee_no("p-1400000001")} and sync.health.last_error is None


async def test_a_terminal_that_pages_wrongly_is_reported_not_read_for_ever(tmp_path: Path,
                                                                           terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *_cards(40)))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        terminal.ignore_position = True
        await terminal.online()
        await until(lambda: "more records than it said" in (sync.health.last_error or ""), terminal)
    finally:
        await run.stop()


async def test_a_terminal_that_stops_answering_times_out_and_is_reconciled(tmp_path: Path,
                                                                           terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    values = _cards(10)
    store.apply(snapshot(1, *values))
    sync = TerminalSync(_config(terminal, tmp_path, request_timeout_s=0.3), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        terminal.stalled.set()
        store.apply(delta(1, 2, removals=(values[0],)))
        sync.changed()
        await until(lambda: sync.health.reachable is False, terminal)
        assert "Timeout" in (sync.health.last_error or "") and sync.health.version_held == 1
        terminal.stalled.clear()
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert employee_no(f"p-{values[0]}") not in terminal.users and len(terminal.users) == 9


async def test_foreign_users_are_removed_when_configured(tmp_path: Path, terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "1400000001"))
    terminal.users["9001"] = {"employeeNo": "9001", "name": "landlord", "userType": "normal"}
    terminal.cards["123"] = {"employeeNo": "9001", "cardNo": "123", "cardType": "normalCard"}
    sync = TerminalSync(_config(terminal, tmp_path, foreign_users="remove"), store, tmp_path / "terminals")
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert set(terminal.users) == {employee_no("p-1400000001")} and set(terminal.cards) == {str(0x1400000001)}


async def test_events_missed_in_an_outage_are_caught_up_exactly_once(tmp_path: Path,
                                                                     terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "1400000001"))
    for _ in range(3):
        terminal.add_event(card="100")  # history from before the gateway: not "missed"
    got: list[AcsEventRecord] = []
    sync = TerminalSync(_config(terminal, tmp_path, catch_up_events=True), store, tmp_path / "terminals",
                        deliver=got.append)
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
        pushed = terminal.add_event(card="200")
        sync.heard(pushed)  # the push listener delivered this one
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        missed = [terminal.add_event(card=str(300 + i)) for i in range(40)]  # more than one page
        await terminal.online()
        await until(lambda: len(got) >= 40, terminal)
        # Another outage without new events delivers nothing again.
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        await terminal.online()
        await until(lambda: sync.health.reachable is True and sync.health.pending == 0, terminal)
    finally:
        await run.stop()
    assert [e.serial_no for e in got] == missed
    assert card_credential(got[0].card_no or "").value == format(300, "X")


async def test_firmware_without_event_search_is_still_trusted_with_its_list(tmp_path: Path,
                                                                            terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "1400000001"))
    terminal.event_search = False
    sync = TerminalSync(_config(terminal, tmp_path, catch_up_events=True), store, tmp_path / "terminals",
                        deliver=lambda _e: None)
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal)
    finally:
        await run.stop()
    assert sync.health.trusted and sync.health.last_error is None


@pytest.mark.parametrize("value", ["1", "AB", "14008EC793", "FFFFFFFFFF", "123456789ABCDEF0"])
def test_card_numbers_round_trip_through_the_push_parser(value: str) -> None:
    from rentgate.wire import Credential

    number = card_no(Credential(format="raw", value=value))
    assert number == str(int(value, 16))
    assert card_credential(number) == Credential(format="raw", value=value)


def test_employee_numbers_fit_the_terminal() -> None:
    assert employee_no("p123") == "p123"
    for person in ("p-123", "c-77", "x" * 64, "h" + "0" * 31):
        number = employee_no(person)
        assert len(number) <= 32 and number.isalnum() and number != person
    assert employee_no("p-123") == employee_no("p-123") != employee_no("p-124")


async def test_ten_thousand_users_full_sync(tmp_path: Path, terminal: FakeTerminal) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *_cards(10_000)))
    sync = TerminalSync(_config(terminal, tmp_path), store, tmp_path / "terminals")
    started = time.monotonic()
    run = Running(sync)
    try:
        await until(_held(store, sync), terminal, timeout=300)
    finally:
        await run.stop()
    elapsed = time.monotonic() - started
    print(f"\n10,000 users + 10,000 cards written in {elapsed:.1f} s ({terminal.requests} HTTP requests)")
    assert len(terminal.users) == 10_000 and len(terminal.cards) == 10_000


async def test_a_gap_in_the_pushed_serials_is_fetched_without_an_outage(
        tmp_path: Path, terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.terminals.sync as sync_module

    monkeypatch.setattr(sync_module, "_GAP_WAIT_S", 0.2)
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        lost, pushed = terminal.add_event(card="500"), terminal.add_event(card="501")
        sync.heard(pushed)  # the push of ``lost`` never arrived
        assert sync.caught_up_to == 0
        await until(lambda: sync.caught_up_to == pushed, terminal, what="the gap fetched")
        after = terminal.add_event(card="502")
        sync.heard(after)  # contiguous again: nothing to fetch
        assert sync.caught_up_to == after
    assert [e.serial_no for e in got] == [lost, pushed], "the gap, and what the search found beside it"


async def test_a_pushed_alarm_above_the_newest_access_event_is_no_gap(
        tmp_path: Path, terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.terminals.sync as sync_module

    monkeypatch.setattr(sync_module, "_GAP_WAIT_S", 0.2)
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        lost = terminal.add_event(card="600")
        alarm = terminal.add_event(major=1, minor=0x400)  # tamper alarm: takes a serial, is no access event
        sync.heard(alarm)
        await until(lambda: sync.caught_up_to == alarm, terminal, what="the gap closed by one catch-up")
        # Nothing left open: not a catch-up every 30 s for ever.
        assert sync._catch_up_wait() > 60
    # The alarm is fetched too (it holds a serial); the gateway reports no read for it.
    assert [(e.serial_no, e.major) for e in got] == [(lost, 5), (alarm, 1)]


async def test_events_fetched_but_not_stored_are_fetched_again(tmp_path: Path, terminal: FakeTerminal) -> None:
    """The catch-up moves past an event only once the outbox has it on disk:
    a failed write (a full SD card) leaves it to the next catch-up."""
    disk_ok = False
    handed: list[int] = []

    def deliver(event: AcsEventRecord) -> asyncio.Future[list[int]]:
        handed.append(event.serial_no)
        commit: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        if disk_ok:
            commit.set_result([event.serial_no])
        else:
            commit.set_exception(OSError("disk I/O error"))
        return commit

    async with counting_events(tmp_path, terminal, deliver) as sync:
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        missed = [terminal.add_event(card=str(700 + i)) for i in range(3)]
        await terminal.online()
        await until(lambda: "not stored" in (sync.health.last_error or ""), terminal, what="the failure reported")
        assert sync.caught_up_to == 0
        disk_ok = True
        await until(lambda: sync.caught_up_to == missed[-1], terminal, what="fetched again and stored")
    assert handed[:3] == missed and handed[-3:] == missed


async def test_a_refused_login_is_not_tried_again_sooner_for_a_catch_up(
        tmp_path: Path, terminal: FakeTerminal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminals lock an address out after a few failed logins: an open gap
    in the serials or a catch-up falling due must not shorten login_retry_s."""
    import gateway.terminals.sync as sync_module

    monkeypatch.setattr(sync_module, "_GAP_WAIT_S", 0.05)
    async with counting_events(tmp_path, terminal, lambda _e: None, login_retry_s=600,
                               catch_up_interval_s=0.05) as sync:
        terminal.add_event(card="800")
        sync.heard(terminal.add_event(card="801"))  # a gap
        terminal.password = "changed-by-the-landlord"
        await until(lambda: sync.health.writes_refused > 0, terminal, what="the login refused")
        before = terminal.requests
        # Nothing to await: the point is that nothing happens for a while.
        await asyncio.sleep(1.0)
    assert terminal.requests - before <= 2, "logins tried again before login_retry_s"


def _single_serial(cond: dict[str, Any]) -> bool:
    return "beginSerialNo" in cond and cond["beginSerialNo"] == cond.get("endSerialNo")


async def test_the_counter_is_checked_after_an_outage_never_by_the_interval(tmp_path: Path,
                                                                            terminal: FakeTerminal) -> None:
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append, catch_up_interval_s=0.05) as sync:
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        missed = [terminal.add_event(card=str(900 + i)) for i in range(3)]
        await terminal.online()
        await until(lambda: sync.marked_serial == missed[-1], terminal, what="caught up, the last one marked")
        # The interval's catch-ups (every 0.05 s here) do not ask for it.
        asked = len(terminal.event_searches)
        await until(lambda: len(terminal.event_searches) >= asked + 20, terminal, what="twenty searches more")
        assert not [c for c in terminal.event_searches if _single_serial(c)]
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        await terminal.online()
        await until(lambda: any(_single_serial(c) for c in terminal.event_searches), terminal,
                    what="the marked event asked for")
        checks = [c for c in terminal.event_searches if _single_serial(c)]
        assert len(checks) == 1 and checks[0]["beginSerialNo"] == missed[-1] and checks[0]["major"] == 0
    assert [e.serial_no for e in got] == missed


async def test_a_terminal_refusing_a_single_serial_search_is_caught_up_unchecked(
        tmp_path: Path, terminal: FakeTerminal, caplog: pytest.LogCaptureFixture) -> None:
    terminal.single_serial_search = False
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        first = terminal.add_event(card="950")
        await terminal.online()
        await until(lambda: sync.marked_serial == first, terminal, what="caught up, marked")
        await terminal.offline()
        await until(lambda: sync.health.reachable is False, terminal)
        second = terminal.add_event(card="951")
        with caplog.at_level("WARNING", logger="gateway.terminals.sync"):
            await terminal.online()
            await until(lambda: sync.caught_up_to == second and sync.health.pending == 0, terminal,
                        what="caught up without the check")
        assert f"the search for event serial {first} was refused" in caplog.text
        assert sync.health.last_error is None and sync.health.writes_refused == 0
    assert [e.serial_no for e in got] == [first, second]


async def _caught_up_and_marked(sync: TerminalSync, terminal: FakeTerminal, cards: list[str]) -> list[int]:
    """Events kept through an outage, fetched when it ends, the last one marked."""
    await terminal.offline()
    await until(lambda: sync.health.reachable is False, terminal)
    kept = [terminal.add_event(card=card) for card in cards]
    await terminal.online()
    await until(lambda: sync.marked_serial == kept[-1], terminal, what="caught up, the last one marked")
    await terminal.offline()
    await until(lambda: sync.health.reachable is False, terminal)
    return kept


@pytest.mark.parametrize("reported", ["2026-12-06T14:00:00+09:00",  # the same instant, read in another zone
                                      "2026-12-06T13:00:00+09:00"])  # the same clock reading, another offset
async def test_a_changed_time_zone_is_not_taken_for_a_restarted_counter(
        tmp_path: Path, terminal: FakeTerminal, caplog: pytest.LogCaptureFixture, reported: str) -> None:
    """An installer corrects the terminal's time zone: it reports its kept
    events again under another offset. Nothing is fetched again (each
    would count as new where the identity's instant changed)."""
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        kept = await _caught_up_and_marked(sync, terminal, ["960", "961", "962"])
        for event in terminal.events:
            event["time"] = reported
        new = terminal.add_event(card="963")
        with caplog.at_level("INFO", logger="gateway.terminals.sync"):
            await terminal.online()
            await until(lambda: sync.caught_up_to == new, terminal, what="the new event caught up")
    assert [e.serial_no for e in got] == [*kept, new]
    assert "restarted" not in caplog.text


async def test_a_terminal_that_finds_nothing_for_one_serial_is_caught_up_without_fetching_again(
        tmp_path: Path, terminal: FakeTerminal, caplog: pytest.LogCaptureFixture) -> None:
    """The marked serial comes back empty while the terminal counts on above
    it: an overwritten oldest event (or such firmware), not a restart, so
    what was delivered already is not fetched again."""
    terminal.single_serial_finds = False
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        kept = await _caught_up_and_marked(sync, terminal, ["970", "971"])
        new = [terminal.add_event(card="972"), terminal.add_event(card="973")]
        with caplog.at_level("INFO", logger="gateway.terminals.sync"):
            await terminal.online()
            await until(lambda: sync.caught_up_to == new[-1], terminal, what="the new events caught up")
    assert [e.serial_no for e in got] == [*kept, *new]
    assert f"event serial {kept[-1]} is no longer kept" in caplog.text and "restarted" not in caplog.text


async def test_a_restarted_counter_far_past_the_reach_skips_nothing_above_caught_up_to(
        tmp_path: Path, terminal: FakeTerminal, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another event under the marked serial: a restart, and its newest
    serials are fetched; whatever is above caught_up_to is fetched too,
    however far the newest is past the reach (were this no restart after
    all, nothing would be skipped)."""
    monkeypatch.setattr(sync_module, "_RESTART_REACH", 2)
    got: list[AcsEventRecord] = []
    async with counting_events(tmp_path, terminal, got.append) as sync:
        kept = await _caught_up_and_marked(sync, terminal, ["980", "981"])
        terminal.events.clear()  # a reset: the log cleared, the counter from 1 again
        for i in range(6):
            terminal.add_event(card=str(990 + i))
        for event in terminal.events:
            event["time"] = "2026-12-07T09:00:00+08:00"
        with caplog.at_level("WARNING", logger="gateway.terminals.sync"):
            await terminal.online()
            await until(lambda: sync.caught_up_to == 6, terminal, what="counting on from the new counter")
    # The reach (2) alone would have fetched 5-6; above caught_up_to (2) is 3-6.
    assert [e.serial_no for e in got] == [*kept, 3, 4, 5, 6]
    assert "event serials restarted" in caplog.text
