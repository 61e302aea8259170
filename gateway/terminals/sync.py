"""Keeping one terminal's users and cards equal to the gateway's allowlist.

One task per terminal (``terminal-sync-<id>``), one pass at a time:

1. probe the terminal (``System/status``); an uptime that went down means it
   rebooted, no answer means it is unreachable;
2. after start, after the terminal was unreachable or rebooted, and every
   ``full_sync_interval_s``: read its whole user and card list (paginated)
   as what it holds; otherwise trust what the last passes left there;
3. plan the difference against the allowlist's entries for its doors and
   apply it, removals first (a revocation must land in seconds), then
   additions and changes, each confirmed by the terminal before it counts;
4. fetch the events it kept that the push listener did not bring
   (``catch_up_events``): after start, an outage or a reboot, when a gap in
   the pushed serial numbers stays open, and every ``catch_up_interval_s``;
   after start, an outage or a reboot it first asks for the one event it is
   known to hold (serial and identity, kept with ``caught_up_to``): gone, or
   another event under that serial, means its counter restarted, and its
   newest events are fetched by identity;
5. wait for the next allowlist change or probe.

Events are delivered by serial number and identity (serial, time, type): the
outbox stores each once (gateway.outbox.Sourced), so the push and the catch-up
may both bring an event without it reaching the server twice. How far the
serials are known to have arrived (the push listener's serials, contiguous,
and each catch-up's end) is kept across restarts, so a catch-up fetches only
the gap; with it the newest event the catch-up knows by identity, so that a
counter that restarted and already counted past ``caught_up_to`` while the
gateway was not looking is still seen.

A transient failure ends the pass and the next one starts after a capped,
jittered backoff from what had been applied. A write the terminal refuses
(wrong password, memory full) is counted and reported, never taken as
done: the terminal's status names it until a pass holds the whole list.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from devices import hikvision_isapi as isapi
from devices.hikvision_isapi import AcsEventRecord, CardRecord, UserRecord
from gateway.terminals.client import IsapiClient
from gateway.terminals.clock import offset_s
from gateway.terminals.config import TerminalSyncConfig
from gateway.terminals.errors import (
    TerminalAnswerError,
    TerminalError,
    TerminalEventsNotStored,
    TerminalRefused,
    TerminalUnreachable,
)
from gateway.terminals.mapping import Desired, for_terminal
from gateway.terminals.state import SavedState
from gateway.terminals.watchdog import restart_on_crash
from rentgate.wire import AllowlistEntry

log = logging.getLogger(__name__)

_PAGE = 30  # what DS-K1T firmware answers at most per search page
_DELETE_POLL_S = (0.02, 0.05, 0.1, 0.2, 0.5)
_DELETE_WAIT_S = 30.0
_ABOVE_MAX = 4096  # pushed serials noted beyond a gap, at most
_GAP_WAIT_S = 30.0  # a gap in the pushed serials open this long is fetched
_RESTART_REACH = 5000  # after a counter restart, fetch at most this many of its newest serials
_FETCH_SPAN = 1_000_000  # serials asked for above the last known (the search needs an end)
R = TypeVar("R")


class AllowlistSource(Protocol):
    def current(self) -> tuple[int | None, list[AllowlistEntry]]:
        """The allowlist's version and entries now (safe off the loop)."""


# Hands a fetched event to the outbox; what it returns, when awaitable, is
# its commit: the catch-up counts an event as caught up once that is done.
Deliver = Callable[[AcsEventRecord], "Awaitable[object] | None"]


@dataclass
class Plan:
    delete_cards: list[str] = field(default_factory=list)
    delete_users: list[str] = field(default_factory=list)
    put_users: list[UserRecord] = field(default_factory=list)
    put_cards: list[CardRecord] = field(default_factory=list)
    foreign_users: int = 0

    def __len__(self) -> int:
        return len(self.delete_cards) + len(self.delete_users) + len(self.put_users) + len(self.put_cards)


@dataclass
class TerminalHealth:
    """What the gateway's status says of the terminal (wire.TerminalSyncHealth)."""

    reachable: bool | None = None  # None: not tried yet
    version_held: int | None = None
    pending: int = 0
    last_error: str | None = None
    last_full_at: datetime | None = None
    writes_refused: int = 0  # writes refused since the last complete pass
    foreign_users: int | None = None
    skipped: int = 0
    clock_offset_s: float | None = None  # its clock minus the gateway's, at the last probe

    @property
    def trusted(self) -> bool:
        return bool(self.reachable) and self.writes_refused == 0


def plan(desired: Desired, users: dict[str, UserRecord], cards: dict[str, CardRecord], *, label: str,
         remove_foreign: bool) -> Plan:
    """The writes that make ``users`` and ``cards`` (what the terminal holds)
    equal to ``desired``; users not labelled as the gateway's are left alone
    unless ``remove_foreign``."""
    out = Plan()
    for number, user in users.items():
        if number in desired.users:
            continue
        if remove_foreign or user.name == label:
            out.delete_users.append(number)
        else:
            out.foreign_users += 1
    gone = set(out.delete_users)
    for number, card in cards.items():
        if card.employee_no in gone:
            continue  # deleting the user deletes its cards
        want = desired.cards.get(number)
        if want is not None:
            if want.employee_no != card.employee_no:
                out.delete_cards.append(number)  # cardNo is unique: free it for its new holder
            continue
        owner = users.get(card.employee_no)
        if remove_foreign or owner is None or owner.name == label:
            out.delete_cards.append(number)
    out.put_users = [u for n, u in desired.users.items() if n not in users or not users[n].same_as(u)]
    freed = set(out.delete_cards)
    out.put_cards = [c for n, c in desired.cards.items() if n not in cards or n in freed]
    return out


class TerminalSync:
    def __init__(self, config: TerminalSyncConfig, source: AllowlistSource, state_dir: Path, *,
                 client: IsapiClient | None = None, deliver: Deliver | None = None,
                 on_health: Callable[[TerminalHealth], None] | None = None) -> None:
        self.config = config
        self.source = source
        self.client = client or IsapiClient(config)
        self._deliver = deliver
        self._on_health = on_health
        self._state_path = state_dir / f"{config.id}.json"
        self._saved = SavedState.load(self._state_path)
        self.health = TerminalHealth(version_held=self._saved.version_held,
                                     last_full_at=_parse_time(self._saved.last_full_at))
        self._changed = asyncio.Event()
        self.synced = asyncio.Event()  # set after each pass that left nothing pending (tests, shutdown)
        self._users: dict[str, UserRecord] | None = None  # what the terminal holds; None: read it again
        self._cards: dict[str, CardRecord] = {}
        self._uptime: int | None = None
        self._catch_up_due = config.catch_up_events
        # Ask for the marked event before the next catch-up: set with
        # _catch_up_due after start, an outage, a reboot; never by the interval.
        self._check_counter = config.catch_up_events
        self._catch_up_at = time.monotonic() + config.catch_up_interval_s
        self._above: set[int] = set()  # pushed serials beyond a gap
        self._gap_since: float | None = None
        self._dirty = False  # the saved state changed since it was written
        self._full_due_at = 0.0
        self._legacy_delete = False
        self._failures = 0
        self._full_read = False  # the last read was a full one: its time goes in the status

    def changed(self) -> None:
        """The allowlist changed (called on the loop)."""
        self._changed.set()

    def forget(self) -> None:
        """Read the terminal's whole list at the next pass (it was changed behind our back)."""
        self._users = None
        self._changed.set()

    @property
    def caught_up_to(self) -> int | None:
        """The event serial up to which everything has arrived or been fetched."""
        return self._saved.caught_up_to

    @property
    def marked_serial(self) -> int | None:
        """The serial of the event known by its identity, asked for again to
        see whether the counter restarted (None: none known yet)."""
        return self._saved.marked_serial

    @property
    def clock_offset_s(self) -> float | None:
        return self.health.clock_offset_s

    def heard(self, serial: int) -> None:
        """The push listener delivered event ``serial`` (called on the loop):
        a catch-up starts after the serials known to have arrived without a
        gap. A serial at or below them is a re-post or a restarted counter;
        the catch-up after the terminal's reboot sorts the latter out."""
        known = self._saved.caught_up_to
        if known is None or serial <= known:
            return
        if serial != known + 1:
            if len(self._above) < _ABOVE_MAX:
                self._above.add(serial)
            if self._gap_since is None:
                self._gap_since = time.monotonic()
            return
        known = serial
        while known + 1 in self._above:
            known += 1
            self._above.discard(known)
        self._advance(known)

    def _advance(self, known: int) -> None:
        self._saved.caught_up_to = known
        if (self._saved.marked_serial or 0) > known:  # moved back (a restarted counter): not its event
            self._saved.marked_serial = self._saved.marked_event = None
        self._above = {s for s in self._above if s > known}
        # A gap still open starts its wait again: at most one catch-up per wait.
        self._gap_since = time.monotonic() if self._above else None
        self._dirty = True

    def _save_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            try:
                self._saved.save(self._state_path)
            except OSError as exc:
                # Only costs a longer catch-up: the outbox still stores each event once.
                log.warning("terminal %s: cannot save its state: %s", self.config.id, exc)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        log.info("terminal %s: keeping its users for doors %s at %s", self.config.id, ",".join(self.config.doors),
                 self.config.url)
        try:
            while True:
                self._changed.clear()
                delay = await self._one_pass()
                self._save_if_dirty()
                if self._failures == 0:
                    # A catch-up falling due shortens only the wait after a pass
                    # that worked: after a failure the backoff (and after a
                    # refused login, login_retry_s) holds.
                    delay = min(delay, self._catch_up_wait())
                await self._wait(delay)
        finally:
            self._save_if_dirty()
            await self.client.close()

    def _catch_up_wait(self) -> float:
        """Seconds until a catch-up falls due by itself (a gap, the interval)."""
        if not self.config.catch_up_events or self._deliver is None:
            return float("inf")
        now = time.monotonic()
        due = self._catch_up_at
        if self._gap_since is not None:
            due = min(due, self._gap_since + _GAP_WAIT_S)
        return max(0.0, due - now)

    async def _wait(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), delay)
        except TimeoutError:
            pass

    async def _one_pass(self) -> float:
        """One pass; how long to wait before the next unless the list changes."""
        try:
            outcome = await self._sync()
        except TerminalUnreachable as exc:
            self._lost(str(exc))
        except TerminalRefused as exc:
            self._error(str(exc), refused=exc.refused)
            if exc.http_status == 401:
                return await self._login_refused()
        except (TerminalAnswerError, TerminalEventsNotStored) as exc:
            self._error(str(exc), refused=False)
        except TerminalError as exc:  # the password cannot be read
            self._error(str(exc), refused=True)
        else:
            if outcome == "again":
                return 0.0  # the list changed mid-pass: removals first, at once
            if outcome == "done":
                self._failures = 0
                return self.config.probe_interval_s
        self._failures += 1
        return self._backoff()

    async def _login_refused(self) -> float:
        # Terminals lock an address out after a few failed logins (DS-K1T:
        # five, for half an hour), the landlord's own admin login with it:
        # wait long, and read the password afresh for the next try.
        await self.client.close()
        self._failures += 1
        return self.config.login_retry_s

    def _backoff(self) -> float:
        cap = self.config.retry_max_s
        base = min(cap, 0.5 * 2 ** min(self._failures - 1, 16))
        # Full jitter, so a building's terminals coming back together spread out.
        return random.uniform(base / 2, base)  # noqa: S311 - not for secrets

    async def _sync(self) -> Literal["done", "again", "refused"]:
        await self._probe()
        if self._saved.caught_up_to is None:
            # First contact: where its events start counting, before anything
            # else, so that an outage right after is caught up from here.
            await self._catch_up_when_due()
        try:
            outcome = await self._keep_list()
        except (TerminalRefused, TerminalAnswerError, TerminalEventsNotStored):
            # A terminal that refuses writes still hands over its events.
            await self._catch_up_when_due()
            raise
        await self._catch_up_when_due()
        return outcome

    async def _keep_list(self) -> Literal["done", "again", "refused"]:
        if self._users is None or time.monotonic() >= self._full_due_at:
            await self._read_all()
        self._changed.clear()  # changes from here on interrupt this pass's additions
        version, entries = await asyncio.to_thread(self.source.current)
        if version is None:
            # No allowlist yet (a new gateway, or its file was unreadable):
            # an empty target would delete every tenant from the terminal
            # until the server's snapshot arrives. Leave the terminal as it is.
            self.health.last_error = "no allowlist yet: the terminal's list is left as it is"
            self._report()
            return "done"
        desired = await asyncio.to_thread(for_terminal, entries, self.config.doors, self.config.zone,
                                          self.config.label)
        self.health.skipped = desired.skipped
        complete = await self._apply(desired)
        if not complete:
            self._report()
            return "again" if self._changed.is_set() and not self.health.writes_refused else "refused"
        self._held(version)
        return "done"

    async def _catch_up_when_due(self) -> None:
        if self._deliver is not None and self.config.catch_up_events and (
                self._catch_up_due or self._catch_up_wait() == 0.0):
            await self._catch_up_if_supported()

    # ------------------------------------------------------------------ reading

    async def _probe(self) -> None:
        sent = datetime.now(UTC)
        try:
            status = await self.client.parsed("GET", isapi.DEVICE_STATUS, "status", None, isapi.parse_status)
        except TerminalRefused as exc:
            if exc.http_status != 404 and exc.sub_status != "notSupport":
                raise
            # Firmware without System/status: reboots show as outages only,
            # and its clock is not measured.
            status = isapi.DeviceStatus(None, None)
        uptime = status.uptime_s
        self._measure_clock(status.device_time, sent, datetime.now(UTC))
        if self.health.reachable is not True:
            log.info("terminal %s reachable", self.config.id)
            self._users = None
            self._catch_up_due = self._check_counter = self.config.catch_up_events
        if uptime is not None and self._uptime is not None and uptime < self._uptime:
            log.warning("terminal %s rebooted (uptime %s s, was %s s): reading its list again", self.config.id,
                        uptime, self._uptime)
            self._users = None
            self._catch_up_due = self._check_counter = self.config.catch_up_events
        self._uptime = uptime
        self.health.reachable = True

    def _measure_clock(self, device_time: datetime | None, sent: datetime, answered: datetime) -> None:
        if device_time is None:
            self.health.clock_offset_s = None
            return
        offset = offset_s(device_time, sent, answered)
        tolerance = self.config.clock_tolerance_s
        was = self.health.clock_offset_s
        if abs(offset) > tolerance and (was is None or abs(was) <= tolerance):
            # Its event times are not believed while it is off (gateway/terminals/clock.py),
            # and the validity times written to it are read against a wrong clock.
            log.warning("terminal %s: its clock is %s the gateway's by %.0f s; set it (or its NTP server)",
                        self.config.id, "ahead of" if offset > 0 else "behind", abs(offset))
        elif abs(offset) <= tolerance and was is not None and abs(was) > tolerance:
            log.info("terminal %s: its clock is right again (%+.0f s)", self.config.id, offset)
        self.health.clock_offset_s = offset

    async def _read_all(self) -> None:
        started = time.monotonic()
        users = await self._search_all(isapi.USER_SEARCH, isapi.user_search, isapi.parse_user_page, "user search")
        cards = await self._search_all(isapi.CARD_SEARCH, isapi.card_search, isapi.parse_card_page, "card search")
        self._users = {u.employee_no: u for u in users}
        self._cards = {c.card_no: c for c in cards}
        self._full_due_at = time.monotonic() + self.config.full_sync_interval_s
        self._full_read = True
        log.info("terminal %s holds %d users and %d cards (read in %.1f s)", self.config.id, len(users), len(cards),
                 time.monotonic() - started)

    async def _search_all(self, path: str, build: Callable[[str, int, int], dict[str, Any]],
                          parse: Callable[[bytes], isapi.SearchPage[R]], operation: str) -> list[R]:
        search_id = f"rg-{random.getrandbits(48):012x}"
        found: list[R] = []
        while True:
            page = await self.client.parsed("POST", path, operation, build(search_id, len(found), _PAGE), parse)
            found.extend(page.records)
            if not page.more:
                return found
            # A terminal that ignores searchResultPosition would answer MORE for ever.
            if len(found) > 1_000_000 or (page.total is not None and len(found) > page.total):
                raise TerminalAnswerError(self.config.id, f"{operation}: more records than it said it has")

    # ------------------------------------------------------------------ writing

    async def _apply(self, desired: Desired) -> bool:
        """Apply the plan, removals first; True when the terminal holds all of
        it. Refused writes are counted; additions stop when the list changes
        meanwhile, so that a revocation never waits behind a long list."""
        assert self._users is not None
        todo = plan(desired, self._users, self._cards, label=self.config.label,
                    remove_foreign=self.config.foreign_users == "remove")
        self.health.foreign_users = todo.foreign_users
        self.health.pending = len(todo)
        if self._full_read:
            self._full_read = False
            self.health.last_full_at = datetime.now(UTC)
            self._saved.last_full_at = self.health.last_full_at.isoformat()
        if not todo:
            self.health.writes_refused = 0
            return True
        log.info("terminal %s: removing %d cards and %d users, writing %d users and %d cards", self.config.id,
                 len(todo.delete_cards), len(todo.delete_users), len(todo.put_users), len(todo.put_cards))
        refused = 0
        size = self.config.batch_size
        for batch in _batches(todo.delete_cards, size):
            refused += await self._guard(self._delete_cards(batch), len(batch))
        for batch in _batches(todo.delete_users, size):
            refused += await self._guard(self._delete_users(batch), len(batch))
        for user in todo.put_users:
            if self._changed.is_set() or refused >= size:
                break
            refused += await self._guard(self._put_user(user), 1)
        for card in todo.put_cards:
            if self._changed.is_set() or refused >= size:
                break  # a full terminal refuses the rest too: no use asking 10,000 times a pass
            if card.employee_no in self._users:
                refused += await self._guard(self._put_card(card), 1)
            else:
                refused += 1  # its user was refused
        self.health.writes_refused = refused
        if refused:
            log.warning("terminal %s refused %d writes: %s", self.config.id, refused, self.health.last_error)
        return refused == 0 and not self._changed.is_set()

    async def _guard(self, write: Awaitable[None], count: int) -> int:
        """Run one write; a refusal is counted and the pass goes on with the
        others, anything else ends the pass."""
        try:
            await write
        except TerminalRefused as exc:
            if not exc.refused or exc.http_status == 401:
                raise
            self.health.last_error = str(exc)[:300]
            log.debug("terminal %s refused a write: %s", self.config.id, exc.reason)
            return count
        self.health.pending = max(0, self.health.pending - count)
        return 0

    async def _delete_cards(self, numbers: list[str]) -> None:
        await self.client.call("PUT", isapi.CARD_DELETE, "card delete", isapi.card_delete(numbers))
        for number in numbers:
            self._cards.pop(number, None)

    async def _delete_users(self, numbers: list[str]) -> None:
        if not self._legacy_delete:
            try:
                await self.client.call("PUT", isapi.USER_DELETE, "user delete", isapi.user_delete(numbers))
            except TerminalRefused as exc:
                if exc.http_status != 404 and exc.sub_status != "notSupport":
                    raise
                log.info("terminal %s has no UserInfoDetail/Delete: using UserInfo/Delete", self.config.id)
                self._legacy_delete = True
            else:
                await self._await_delete()
        if self._legacy_delete:
            await self.client.call("PUT", isapi.USER_DELETE_LEGACY, "user delete", isapi.user_delete_legacy(numbers))
        assert self._users is not None
        gone = set(numbers)
        for number in numbers:
            self._users.pop(number, None)
        self._cards = {n: c for n, c in self._cards.items() if c.employee_no not in gone}

    async def _await_delete(self) -> None:
        # The terminal deletes users (and their faces) in the background; the
        # revocation counts once it says so.
        deadline = time.monotonic() + _DELETE_WAIT_S
        for attempt in range(10_000):
            state = await self.client.parsed("GET", isapi.USER_DELETE_PROCESS, "user delete progress", None,
                                             isapi.parse_delete_process)
            if state == "success":
                return
            if state == "failed":
                raise TerminalRefused(self.config.id, "user delete: the terminal says it failed", refused=False)
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(_DELETE_POLL_S[min(attempt, len(_DELETE_POLL_S) - 1)])
        raise TerminalUnreachable(self.config.id, f"user delete still processing after {_DELETE_WAIT_S:.0f} s")

    async def _put_user(self, user: UserRecord) -> None:
        assert self._users is not None
        modify = user.employee_no in self._users
        try:
            await self._write_user(user, modify)
        except TerminalRefused as exc:
            if exc.sub_status in isapi.USER_EXISTS and not modify:
                await self._write_user(user, True)
            elif exc.sub_status in isapi.USER_MISSING and modify:
                await self._write_user(user, False)
            else:
                raise
        self._users[user.employee_no] = user

    async def _write_user(self, user: UserRecord, modify: bool) -> None:
        if modify:
            await self.client.call("PUT", isapi.USER_MODIFY, "user modify", isapi.user_body(user))
        else:
            await self.client.call("POST", isapi.USER_RECORD, "user record", isapi.user_body(user))

    async def _put_card(self, card: CardRecord) -> None:
        try:
            await self.client.call("POST", isapi.CARD_RECORD, "card record", isapi.card_body(card))
        except TerminalRefused as exc:
            if exc.sub_status not in isapi.CARD_EXISTS:
                raise
            # Held by someone we did not know of (the list changed behind our back).
            await self.client.call("PUT", isapi.CARD_DELETE, "card delete", isapi.card_delete([card.card_no]))
            await self.client.call("POST", isapi.CARD_RECORD, "card record", isapi.card_body(card))
        self._cards[card.card_no] = card

    # ------------------------------------------------------------------ events

    async def _catch_up_if_supported(self) -> None:
        try:
            await self._catch_up()
        except TerminalRefused as exc:
            if exc.http_status != 404 and exc.sub_status != "notSupport":
                raise
            # Not a refused write: the firmware has no event search. Say so once, stop asking.
            log.warning("terminal %s has no AcsEvent search: events missed in an outage cannot be fetched",
                        self.config.id)
            self._deliver = None

    async def _catch_up(self) -> None:
        """Deliver the events the terminal kept that did not arrive by push:
        everything above the serials known to have arrived, asked for by
        serial number (not by time: a clock reset orders events wrongly in
        time). Done only once every fetched event is on disk."""
        assert self._deliver is not None
        self._catch_up_at = time.monotonic() + self.config.catch_up_interval_s
        if self._saved.caught_up_to is None:
            # First contact: its history is from before the gateway knew it, not
            # missed. Its newest serial (by time: an estimate is enough here).
            newest = await self._newest_event()
            log.info("terminal %s: events counted from serial %s on", self.config.id,
                     newest.serial_no if newest else 0)
            self._advance(newest.serial_no if newest else 0)
            self._mark(newest)
        elif not (self._check_counter and await self._counter_restarted()):
            since = self._saved.caught_up_to
            fetched, highest = await self._fetch_events(since + 1, since + _FETCH_SPAN)
            if highest is not None:
                self._advance(max(highest.serial_no, self._saved.caught_up_to or highest.serial_no))
                self._mark(highest)
                log.info("terminal %s: %d events fetched (serials %s-%s); those the push brought are not stored "
                         "again", self.config.id, fetched, since + 1, highest.serial_no)
            else:
                await self._after_nothing_above(since)
        self._save_if_dirty()
        self._catch_up_due = self._check_counter = False

    async def _counter_restarted(self) -> bool:
        """After start, an outage or a reboot: is the marked event still what
        the terminal holds under its serial? Another event there (or none,
        with its newest serial below ``caught_up_to``) means its counter
        restarted (a reset or firmware upgrade that cleared its log), perhaps
        already past ``caught_up_to``, where fetching above it would miss the
        new counter's first serials: its newest events are fetched by
        identity too (a repeat of what the push brought is not stored twice).
        None there while it counts on above is an overwritten oldest event,
        not a restart. One small search when it did not restart; True when it
        did (and was handled)."""
        serial, mark = self._saved.marked_serial, self._saved.marked_event
        if serial is None or mark is None:
            log.debug("terminal %s: no event known by its identity yet: its counter is not checked", self.config.id)
            return False
        try:
            held = await self._event_at(serial)
        except TerminalRefused as exc:
            if not exc.refused or exc.http_status in (401, 404) or exc.sub_status == "notSupport":
                raise  # busy, the login, or no event search at all: as for any search
            # A search of one serial refused (begin = end): the catch-up goes
            # on as before rather than failing every pass on it.
            log.warning("terminal %s: the search for event serial %s was refused (%s): whether its counter "
                        "restarted is not checked", self.config.id, serial, exc.reason)
            return False
        held_mark = event_mark(held) if held is not None else None
        if held_mark is not None and same_event(held_mark, mark):
            log.debug("terminal %s: event serial %s is the one it was: its counter did not restart", self.config.id,
                      serial)
            return False
        newest = await self._newest_event()
        since = self._saved.caught_up_to or 0
        if held is None and newest is not None and newest.serial_no >= since:
            # Gone, yet it counts on at or above caught_up_to. A counter that
            # restarted and counted past the marked serial would hold some
            # event there: this is a full log that overwrote its oldest
            # events (or a firmware that finds nothing for one serial). The
            # ordinary catch-up goes on; the mark is learnt again.
            log.info("terminal %s: event serial %s is no longer kept (its oldest events were overwritten): "
                     "catching up as usual", self.config.id, serial)
            self._saved.marked_serial = self._saved.marked_event = None
            self._dirty = True
            return False
        first = None if newest is None else max(1, newest.serial_no - _RESTART_REACH + 1)
        if newest is not None and newest.serial_no > since:
            # Whatever it holds above caught_up_to is fetched as any catch-up
            # would: were this no restart after all (a clock or time-zone
            # change the mark did not see through), nothing is skipped.
            first = min(first or 1, since + 1)
        log.warning("terminal %s: event serials restarted (serial %s is %s, newest %s, was caught up to %s): "
                    "fetching serials %s-%s by identity", self.config.id, serial,
                    "another event" if held is not None else "gone", newest.serial_no if newest else "none", since,
                    first, newest.serial_no if newest else "none")
        await self._after_restart(newest, first)
        return True

    async def _after_nothing_above(self, since: int) -> None:
        """Nothing above ``since``: all caught up, or its counter started again
        (a reset or firmware upgrade that cleared its log)."""
        newest = await self._newest_event()
        if newest is None or newest.serial_no >= since:
            self._advance(since)  # what was pushed above it meanwhile waits its turn again
            if newest is not None and newest.serial_no == since:
                self._mark(newest)  # learnt without asking: checked after the next start, outage, reboot
            return
        # What it holds now came after the restart. Fetched by identity, a
        # repeat of what the push brought is not stored twice.
        log.warning("terminal %s: event serials restarted (%s, was %s): fetching its newest events",
                    self.config.id, newest.serial_no, since)
        await self._after_restart(newest, max(1, newest.serial_no - _RESTART_REACH + 1))

    async def _after_restart(self, newest: AcsEventRecord | None, first: int | None) -> None:
        """Fetch ``first`` to ``newest`` (its newest event; None: its log is
        empty) and count on from the restarted counter."""
        fetched, highest = (0, None) if newest is None or first is None else await self._fetch_events(
            first, newest.serial_no)
        top = max(newest.serial_no if newest else 0, highest.serial_no if highest else 0)
        self._above = set()
        self._saved.marked_serial = self._saved.marked_event = None  # the old counter's
        self._advance(top)
        self._mark(highest if highest is not None and highest.serial_no == top else newest)
        log.info("terminal %s: %d events fetched after the restart; counting on from serial %s", self.config.id,
                 fetched, top)

    def _mark(self, event: AcsEventRecord | None) -> None:
        """Keep ``event`` as the one asked for after the next start, outage or
        reboot, when it is caught up and no older than the one kept."""
        known, mark = self._saved.caught_up_to, event_mark(event) if event is not None else None
        if event is None or mark is None or known is None or event.serial_no > known:
            return
        if event.serial_no >= (self._saved.marked_serial or 0) and (
                event.serial_no, mark) != (self._saved.marked_serial, self._saved.marked_event):
            self._saved.marked_serial, self._saved.marked_event = event.serial_no, mark
            self._dirty = True

    async def _fetch_events(self, first: int, last: int) -> tuple[int, AcsEventRecord | None]:
        """Fetch serials ``first``..``last`` (every event type: alarms take
        serials too) and hand each to the outbox; returns how many and the
        event with the highest serial, once every one is stored (only then may
        the caller move past them)."""
        assert self._deliver is not None
        search_id = f"rg-{random.getrandbits(48):012x}"
        position, fetched = 0, 0
        highest: AcsEventRecord | None = None
        commits: list[Awaitable[object]] = []
        while True:  # bounded: at most last - first + 1 events (checked below)
            body = isapi.acs_event_search(search_id, position, _PAGE, begin_serial=first, end_serial=last, major=0)
            page = await self.client.parsed("POST", isapi.ACS_EVENT, "event search", body, isapi.parse_event_page)
            for event in page.records:
                if first <= event.serial_no <= last:
                    commits += self._hand_over(event)
                    fetched += 1
                    if highest is None or event.serial_no > highest.serial_no:
                        highest = event
            position += len(page.records)
            if not page.more:
                break
            if position > last - first + 1:
                raise TerminalAnswerError(self.config.id, "event search: more events than serials asked for")
        results = await asyncio.gather(*commits, return_exceptions=True)
        if failed := [r for r in results if isinstance(r, BaseException)]:
            # Not stored (the outbox's disk): fetched again at the next catch-up.
            raise TerminalEventsNotStored(self.config.id, f"{len(failed)} fetched events not stored: {failed[0]}")
        return fetched, highest

    def _hand_over(self, event: AcsEventRecord) -> list[Awaitable[object]]:
        assert self._deliver is not None
        try:
            commit = self._deliver(event)
        except Exception:  # noqa: BLE001 - one event the gateway cannot make must not stop the rest
            log.exception("terminal %s: event serial %s could not be reported; skipped", self.config.id,
                          event.serial_no)
            return []
        return [commit] if inspect.isawaitable(commit) else []

    async def _newest_event(self) -> AcsEventRecord | None:
        # Every major type (0): alarms and exceptions take serials too, and a
        # pushed alarm above the newest access event must not look like a gap.
        body = isapi.acs_event_search("rg-newest", 0, 1, major=0, newest_first=True)
        page = await self.client.parsed("POST", isapi.ACS_EVENT, "event search", body, isapi.parse_event_page)
        return max(page.records, key=lambda e: e.serial_no, default=None)

    async def _event_at(self, serial: int) -> AcsEventRecord | None:
        """The one event the terminal holds under ``serial`` (None: none)."""
        # A search id of its own each time: a terminal may answer a repeated id
        # from where that search left off.
        body = isapi.acs_event_search(f"rg-{random.getrandbits(48):012x}", 0, 1, begin_serial=serial,
                                      end_serial=serial, major=0)
        page = await self.client.parsed("POST", isapi.ACS_EVENT, "event search", body, isapi.parse_event_page)
        return next((e for e in page.records if e.serial_no == serial), None)

    # ------------------------------------------------------------------ status

    def _held(self, version: int | None) -> None:
        changed = self.health.version_held != version or self.health.writes_refused or self.health.last_error
        self.health.version_held = version
        self.health.pending = 0
        self.health.writes_refused = 0
        self.health.last_error = None
        if changed or self._saved.version_held != version or self._saved.last_full_at != (
                self.health.last_full_at.isoformat() if self.health.last_full_at else None):
            self._saved.version_held = version
            self._saved.save(self._state_path)
            log.info("terminal %s holds allowlist version %s", self.config.id, version)
        self._report()
        self.synced.set()

    def _lost(self, reason: str) -> None:
        if self.health.reachable is not False:
            log.warning("terminal %s unreachable: %s", self.config.id, reason)
        self.health.reachable = False
        self.health.last_error = reason[:300]
        self._users = None
        self._report()

    def _error(self, reason: str, *, refused: bool) -> None:
        log.warning("terminal %s: %s", self.config.id, reason)
        self.health.last_error = reason[:300]
        if refused:
            self.health.reachable = True  # it answered, and said no
            self.health.writes_refused = max(1, self.health.writes_refused)
        self._report()

    def _report(self) -> None:
        if self.health.pending or self.health.writes_refused:
            self.synced.clear()
        if self._on_health is not None:
            self._on_health(self.health)


def event_mark(event: AcsEventRecord) -> str | None:
    """What tells an event from another one under the same serial after a
    counter restart: its time and type as the terminal reported them, the
    time both as the clock read it and as an instant (``wall|instant/major/
    minor``). Nothing personal: it is kept in the state file. None without a
    time (one the terminal did not even format)."""
    when = event.time
    if when is None:
        return None
    wall = instant = when.replace(tzinfo=None).isoformat()
    if when.tzinfo is not None:
        try:
            instant = when.astimezone(UTC).replace(tzinfo=None).isoformat()
        except (OverflowError, ValueError):  # year 1 or 9999 with an offset: an unset clock
            pass
    return f"{wall}|{instant}/{event.major}/{event.minor}"


def same_event(mark: str, other: str) -> bool:
    """Whether two marks name the same event: the same type and the same
    time, read either way. A terminal whose time zone was changed reports
    its kept events again under another offset: either the clock reading
    or the instant stays the same, and that is not a restarted counter."""
    time_a, _, kind_a = mark.partition("/")
    time_b, _, kind_b = other.partition("/")
    if kind_a != kind_b:
        return False
    wall_a, _, instant_a = time_a.partition("|")
    wall_b, _, instant_b = time_b.partition("|")
    return wall_a == wall_b or (bool(instant_a) and instant_a == instant_b)


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


async def supervise(sync: TerminalSync) -> None:
    """Run ``sync`` for ever, restarted after a crash with its list read afresh."""

    def crashed() -> None:
        sync.health.last_error = "sync crashed; restarting"
        sync.forget()

    await restart_on_crash(sync.run, what=f"terminal {sync.config.id}: sync", crashed=crashed,
                           pause_max_s=sync.config.retry_max_s)
