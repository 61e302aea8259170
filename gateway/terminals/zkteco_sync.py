"""Keeping a ZKTeco ADMS terminal's own user list equal to the gateway's allowlist.

The terminal is the HTTP client (gateway/devices/zkteco.py): the gateway
cannot call it, only queue ``DATA UPDATE USERINFO`` / ``DATA DELETE USERINFO``
lines that it fetches at its next poll and answers with ``Return=<code>``.
ADMS gives no dependable way to read the terminal's list back, so the gateway
keeps, per terminal, a record of what it wrote (a small JSON file, replaced
atomically): PIN -> (name, card), and whether the terminal confirmed it.

One task per terminal (``terminal-sync-<device id>``); each pass:

1. reads the allowlist (off the loop) when it changed, when an entry's
   validity starts or ends (ADMS users carry no validity window, so the
   gateway writes only who may enter now), and every probe;
2. plans against the record: removals of PINs it wrote that are no longer
   wanted, and card changes, all queued at once (a revocation must land at
   the terminal's next poll); then additions, at most ``commands_per_poll``
   in flight, so that a revocation never waits behind a long list;
3. counts a write only when the terminal answers ``Return=0``; a refusal is
   counted in the health and tried again after ``refused_retry_s``;
4. waits for a result, an allowlist change, or the probe interval.

A PIN is written to the record *before* its first command is queued (as "not
confirmed"): a gateway that dies between queuing and the answer still knows
the terminal may hold it, and removes it when it is revoked. Users the
gateway never wrote (a landlord's admin, an installer's test user) are never
touched. Every ``full_sync_interval_s`` every wanted user is written again
(DATA UPDATE is idempotent), so a terminal replaced or wiped converges.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from devices.hikvision import VendorPayloadError
from devices.zkteco_adms import CommandResult, user_delete, user_update
from gateway.devices.zkteco import CommandError, ZktecoAdapter
from gateway.terminals.mapping import for_terminal
from gateway.terminals.sync import AllowlistSource, TerminalHealth
from gateway.terminals.watchdog import restart_on_crash
from rentgate.aio import wait_event
from rentgate.wire import AllowlistEntry

log = logging.getLogger(__name__)

PIN_MAX = 24  # ZKTeco firmware's PIN field (PIN2 on newer units), letters and digits
_DIGEST_PREFIX = "z"
_MAX_STATE_BYTES = 16 << 20  # some 200,000 users: more than any terminal holds
_CRASH_PAUSE_MAX_S = 60.0
_UTC = ZoneInfo("UTC")  # for_terminal's validity times, which ADMS users do not carry


@dataclass(frozen=True)
class ZkUser:
    """A user record as the gateway writes it: the label, and one card (decimal, "" for none)."""

    name: str
    card: str = ""


@dataclass(frozen=True)
class Held:
    user: ZkUser
    confirmed: bool  # False: a command was queued and not answered; the terminal may hold it


@dataclass
class Command:
    pin: str
    user: ZkUser | None  # None: delete the PIN
    queued_at: float
    fetched_seen_at: float | None = None  # when the sync first saw the terminal had fetched it


@dataclass
class Target:
    """Who the terminal should hold now, keyed by PIN."""

    users: dict[str, ZkUser]
    skipped: int
    next_change: datetime | None  # when an entry's validity next starts or ends


def zk_pin(employee_no: str) -> str:
    """The terminal's PIN for a person (mapping.employee_no, or a terminal_person's
    value): itself when the terminal takes it, else ``z`` + 23 hex of its digest.
    A plain value shaped like a digest is digested too, so two people never share a PIN."""
    digest_shaped = len(employee_no) == PIN_MAX and employee_no.startswith(_DIGEST_PREFIX) and all(
        c in "0123456789abcdef" for c in employee_no[1:])
    if len(employee_no) <= PIN_MAX and employee_no.isascii() and employee_no.isalnum() and not digest_shaped:
        return employee_no
    return _DIGEST_PREFIX + hashlib.blake2b(employee_no.encode(), digest_size=16).hexdigest()[:PIN_MAX - 1]


def target_for(entries: Iterable[AllowlistEntry], door: str, label: str, now: datetime) -> Target:
    """The users terminal of ``door`` should hold at ``now``. A person with several
    cards gets the lowest number (a ZKTeco user holds one); the others are skipped
    and counted, as are credentials no terminal reader reads."""
    current: list[AllowlistEntry] = []
    next_change: datetime | None = None
    for entry in entries:
        if entry.doors and door not in entry.doors:
            continue
        if entry.valid_from is not None and entry.valid_from > now:
            next_change = _earliest(next_change, entry.valid_from)
            continue
        if entry.valid_until is not None:
            if entry.valid_until <= now:
                continue
            next_change = _earliest(next_change, entry.valid_until)
        current.append(entry)
    desired = for_terminal(current, [door], _UTC, label)
    cards: dict[str, list[str]] = {}
    for number, card in desired.cards.items():
        cards.setdefault(card.employee_no, []).append(number)
    users: dict[str, ZkUser] = {}
    skipped = desired.skipped
    for employee in desired.users:
        held = sorted(cards.get(employee, []), key=lambda n: (len(n), n))
        usable = [n for n in held if len(f"{int(n):X}") <= 16]  # what the USERINFO builder takes
        skipped += len(held) - min(1, len(usable))
        users[zk_pin(employee)] = ZkUser(label, usable[0] if usable else "")
    return Target(users, skipped, next_change)


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


class ZkState:
    """What the gateway wrote to one terminal (and the terminal said it took),
    kept across restarts."""

    def __init__(self, sn: str) -> None:
        self.sn = sn
        self.users: dict[str, Held] = {}
        self.version_held: int | None = None
        self.last_full_at: str | None = None
        self.error: str | None = None  # why the record could not be read

    @classmethod
    def load(cls, path: Path, sn: str) -> ZkState:
        state = cls(sn)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return state
        except OSError as exc:
            return state.unreadable(path, str(exc.strerror or exc))
        try:
            if len(raw) > _MAX_STATE_BYTES:
                raise ValueError("file too large")
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("users"), dict):
                raise ValueError("not a user record")
        except ValueError as exc:
            # Kept aside, not overwritten by the next save: someone may recover the PINs from it.
            try:
                os.replace(path, path.with_name(path.name + ".unreadable"))
            except OSError:
                pass
            return state.unreadable(path, str(exc))
        for pin, item in doc["users"].items():
            if (isinstance(pin, str) and 0 < len(pin) <= PIN_MAX and isinstance(item, list) and len(item) == 3
                    and isinstance(item[0], str) and isinstance(item[1], str) and isinstance(item[2], bool)):
                state.users[pin] = Held(ZkUser(item[0][:64], item[1][:32]), item[2])
        version = doc.get("version_held")
        state.version_held = version if isinstance(version, int) and not isinstance(version, bool) else None
        full = doc.get("last_full_at")
        state.last_full_at = full[:64] if isinstance(full, str) else None
        return state

    def unreadable(self, path: Path, reason: str) -> ZkState:
        # Without the record the gateway cannot remove the users it wrote
        # earlier: a revoked tenant they held may still open. Said loudly, in
        # the log and in the terminal's health, until the gateway restarts.
        self.error = f"record of users written unreadable ({reason[:80]}): users written before may remain"
        log.error("zkteco %s: %s: %s", self.sn, path, self.error)
        return self

    def dumps(self) -> bytes:
        """Taken on the loop (the users change there); written off it."""
        doc = {"sn": self.sn, "version_held": self.version_held, "last_full_at": self.last_full_at,
               "users": {pin: [h.user.name, h.user.card, h.confirmed] for pin, h in self.users.items()}}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the record must be on disk
    before the command it announces can reach the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Kind = Literal["remove", "change", "add", "refresh"]


class ZkUserSync:
    """One terminal (serial number ``sn``) of a ZKTeco ADMS adapter."""

    def __init__(self, adapter: ZktecoAdapter, sn: str, source: AllowlistSource, state_dir: Path, *,
                 on_health: Callable[[TerminalHealth], None] | None = None) -> None:
        config = adapter.config
        door = config.sync_door(sn)
        if door is None:
            raise ValueError(f"zkteco {config.id}: terminal {sn} has no door to hold the allowlist of")
        self.adapter = adapter
        self._config = config
        self.sn = sn
        self.door = door
        self.id = config.sync_device(sn)  # the device id the health is reported under
        self.task_name = f"terminal-sync-{self.id}"
        self.source = source
        self._on_health = on_health
        self._path = state_dir / f"zkteco-{sn}.json"
        self._state = ZkState.load(self._path, sn)
        self.health = TerminalHealth(version_held=self._state.version_held,
                                     last_full_at=_parse_time(self._state.last_full_at))
        self.synced = asyncio.Event()  # set while the terminal holds the allowlist (tests, shutdown)
        self._wake = asyncio.Event()
        self._allowlist_changed = True
        self._inflight: dict[int, Command] = {}
        self._latest: dict[str, int] = {}  # PIN -> its newest command in flight
        self._retry_at: dict[str, float] = {}  # PIN -> when a refused write may be tried again
        self._refused_error: str | None = None
        self._crash_error: str | None = None
        self._dirty = False
        self._version: int | None = None
        self._entries: list[AllowlistEntry] = []
        self._read_at = -1e18
        self._target: Target | None = None
        self._rewrite: set[str] | None = None  # PINs still to write again in this full sync
        last_full = self.health.last_full_at
        self._full_due = (last_full + timedelta(seconds=config.full_sync_interval_s)
                          if last_full is not None else datetime.now(UTC))
        self._started = time.monotonic()
        self._reported: TerminalHealth | None = None

    def changed(self) -> None:
        """The allowlist changed (called on the loop)."""
        self._allowlist_changed = True
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        log.info("zkteco %s: keeping terminal %s's users for door %s (%d recorded as written)", self._config.id,
                 self.sn, self.door, len(self._state.users))
        self.adapter.add_result_listener(self._on_result)
        try:
            while True:
                self._wake.clear()
                delay = await self._pass()
                await wait_event(self._wake, delay)
        finally:
            self.adapter.remove_result_listener(self._on_result)

    async def supervise(self) -> None:
        """Run for ever, restarted after a crash (gateway/terminals/watchdog.py)."""

        def crashed() -> None:
            self._crash_error = "sync crashed; restarting"
            self._allowlist_changed = True
            self._health(None)

        await restart_on_crash(self.run, what=f"zkteco {self._config.id}: user sync of terminal {self.sn}",
                               crashed=crashed, pause_max_s=_CRASH_PAUSE_MAX_S)

    async def _pass(self) -> float:
        """One pass; how long to wait before the next unless something happens."""
        now = time.monotonic()
        self._expire(now)
        self._retry_at = {pin: when for pin, when in self._retry_at.items() if when > now}
        probe = self._config.sync_probe_interval_s
        wall = datetime.now(UTC)
        if self._allowlist_changed or now - self._read_at >= probe:
            self._allowlist_changed = False
            self._read_at = now
            version, entries = await asyncio.to_thread(self.source.current)
            if version != self._version or entries != self._entries:
                self._version, self._entries, self._target = version, entries, None
        if self._version is None:
            # No allowlist yet (a new gateway, or its file was unreadable):
            # an empty target would delete every tenant the gateway wrote
            # until the server's snapshot arrives. Leave the terminal as it is.
            self._health(None, "no allowlist yet: the terminal's list is left as it is")
            return probe
        target = self._target
        if target is None or (target.next_change is not None and wall >= target.next_change):
            target = self._target = await asyncio.to_thread(target_for, self._entries, self.door,
                                                            self._config.label, wall)
        self.health.skipped = target.skipped
        if self._rewrite is None and wall >= self._full_due:
            self._rewrite = set(target.users)
            log.info("zkteco %s: writing terminal %s's %d users again (full sync)", self._config.id, self.sn,
                     len(self._rewrite))
        plan = self._plan(target)
        pending = sum(1 for _, _, kind in plan if kind != "refresh")
        again = await self._queue(plan, now)
        if self._rewrite is not None:
            self._rewrite &= target.users.keys()
            if not self._rewrite:
                self._rewrite = None
                self._full_due = wall + timedelta(seconds=self._config.full_sync_interval_s)
                self.health.last_full_at = wall
                self._state.last_full_at = wall.isoformat()
                self._dirty = True
        # Commands in flight are for writes the record does not hold yet, so
        # they are counted in ``pending``; refreshes are not.
        if pending == 0:
            self._complete(self._version)
        else:
            self.synced.clear()
        if self._dirty:
            await self._save()
        self._health(pending)
        if again:
            return 0.0
        return self._delay(probe, target, wall)

    def _delay(self, probe: float, target: Target, wall: datetime) -> float:
        delay = probe
        now = time.monotonic()
        for when in self._retry_at.values():
            if when > now:
                delay = min(delay, when - now)
        if target.next_change is not None:
            delay = min(delay, max(0.0, (target.next_change - wall).total_seconds()))
        return delay

    # ------------------------------------------------------------------ planning

    def _plan(self, target: Target) -> list[tuple[str, ZkUser | None, Kind]]:
        """Every write that makes the terminal (as recorded) hold ``target``,
        removals and card changes first."""
        urgent: list[tuple[str, ZkUser | None, Kind]] = []
        rest: list[tuple[str, ZkUser | None, Kind]] = []
        refresh: list[tuple[str, ZkUser | None, Kind]] = []
        for pin in self._state.users:
            if pin not in target.users:
                urgent.append((pin, None, "remove"))
        for pin, user in target.users.items():
            held = self._state.users.get(pin)
            latest = self._inflight.get(self._latest.get(pin, 0))
            deleting = latest is not None and latest.user is None  # wanted again while its removal waits
            if held is not None and held.confirmed and held.user == user and not deleting:
                if self._rewrite is not None and pin in self._rewrite:
                    refresh.append((pin, user, "refresh"))
                continue
            if held is not None and held.user.card and held.user.card != user.card:
                urgent.append((pin, user, "change"))  # the old card may be a revoked one
            else:
                rest.append((pin, user, "add"))
        return urgent + rest + refresh

    async def _queue(self, plan: list[tuple[str, ZkUser | None, Kind]], now: float) -> bool:
        """Queue what is not already in flight; True when the allowlist changed
        meanwhile (a new pass should start at once)."""
        window = self._config.commands_per_poll
        urgent: list[tuple[str, ZkUser | None]] = []
        later: list[tuple[str, ZkUser | None]] = []
        room = window - len(self._inflight)
        for pin, user, kind in plan:
            if self._in_flight(pin, user) or self._retry_at.get(pin, 0.0) > now:
                continue
            if kind in ("remove", "change"):
                urgent.append((pin, user))  # never held back by the window
            elif room - len(later) - len(urgent) > 0:
                later.append((pin, user))
        if not urgent and not later:
            return False
        # A PIN the terminal may hold from now on goes on disk first (see the module's doc).
        fresh = [(pin, user) for pin, user in urgent + later if user is not None and pin not in self._state.users]
        for pin, user in urgent + later:
            if user is not None:
                held = self._state.users.get(pin)
                if held is None or held.user != user:
                    self._state.users[pin] = Held(user, False)
                    self._dirty = True
        if fresh:
            await self._save()
        again = self._allowlist_changed
        if again:
            # The list changed while the record was written: what was planned
            # as an addition may be a revocation now. Removals still hold.
            later = []
        batch = [(pin, user, line) for pin, user in urgent + later if (line := self._line(pin, user)) is not None]
        if not batch:
            return again
        try:
            ids = self.adapter.queue_commands(self.sn, [line for _, _, line in batch])
        except CommandError as exc:  # not this terminal's (a config changed under us): nothing was queued
            self._refused_error = str(exc)[:300]
            return again
        for cmd_id, (pin, user, _) in zip(ids, batch, strict=True):
            self._inflight[cmd_id] = Command(pin, user, now)
            self._latest[pin] = cmd_id
        removals = sum(1 for _, user, _ in batch if user is None)
        log.debug("zkteco %s: queued %d removals and %d writes for terminal %s", self._config.id, removals,
                  len(batch) - removals, self.sn)
        return again

    def _line(self, pin: str, user: ZkUser | None) -> str | None:
        try:
            if user is None:
                return user_delete(pin)
            return user_update(pin, name=user.name, card=f"{int(user.card):X}" if user.card else None)
        except VendorPayloadError as exc:
            # mapping.zk_pin and target_for make only lines the builders take; one that is
            # not is a bug, reported rather than sent again every pass.
            self._retry_at[pin] = time.monotonic() + self._config.refused_retry_s
            self._refused_error = f"cannot build a command for a user: {exc.reason}"[:300]
            return None

    def _in_flight(self, pin: str, user: ZkUser | None) -> bool:
        latest = self._inflight.get(self._latest.get(pin, 0))
        return latest is not None and latest.user == user

    # ------------------------------------------------------------------ results

    def _on_result(self, sn: str, result: CommandResult) -> None:
        """The adapter's result listener, on the loop: must not raise."""
        if sn != self.sn:
            return
        command = self._inflight.pop(result.id, None)
        if command is None:
            return
        self._settle(result.id, command, result.code)
        self._wake.set()

    def _settle(self, cmd_id: int, command: Command, code: int) -> None:
        newer = self._latest.get(command.pin) not in (None, cmd_id)
        if self._latest.get(command.pin) == cmd_id:
            del self._latest[command.pin]
        if code == 0:
            self._retry_at.pop(command.pin, None)
            if command.user is None:
                if not newer:  # a write queued after the removal may still put it back
                    self._state.users.pop(command.pin, None)
            else:
                current = self._state.users.get(command.pin)
                if not newer or current is None:
                    self._state.users[command.pin] = Held(command.user, True)
                if self._rewrite is not None:
                    self._rewrite.discard(command.pin)
            self._dirty = True
            return
        # Refused (memory full, a PIN or card the firmware does not take): not
        # done, counted, and tried again later rather than at every poll.
        self.health.writes_refused += 1
        self._retry_at[command.pin] = time.monotonic() + self._config.refused_retry_s
        what = "removing" if command.user is None else "writing"
        self._refused_error = f"terminal {self.sn} refused {what} a user (Return={code})"
        log.warning("zkteco %s: terminal %s refused %s user %s (Return=%d)", self._config.id, self.sn, what,
                    command.pin, code)

    def _expire(self, now: float) -> None:
        """Commands whose answer will not come: answered while no listener was
        registered, forgotten by the adapter, or fetched and never answered."""
        for cmd_id, command in list(self._inflight.items()):
            state = self.adapter.command_state(self.sn, cmd_id)
            if state == "queued":
                continue  # the terminal has not fetched it (offline): it stays pending, not queued twice
            if state == "done":
                result = self.adapter.result(self.sn, cmd_id)
                if result is not None:
                    del self._inflight[cmd_id]
                    self._settle(cmd_id, command, result.code)
                    continue
            elif state == "sent":
                if command.fetched_seen_at is None:
                    command.fetched_seen_at = now
                if now - command.fetched_seen_at < self._config.result_timeout_s:
                    continue
                log.info("zkteco %s: terminal %s fetched a command and never answered it; queuing it again",
                         self._config.id, self.sn)
                self.adapter.forget_command(self.sn, cmd_id)
            del self._inflight[cmd_id]
            if self._latest.get(command.pin) == cmd_id:
                del self._latest[command.pin]

    # ------------------------------------------------------------------ state and health

    def _complete(self, version: int | None) -> None:
        if self.health.version_held != version:
            log.info("zkteco %s: terminal %s holds allowlist version %s", self._config.id, self.sn, version)
        self.health.version_held = version
        self.health.writes_refused = 0
        self._refused_error = None
        self._crash_error = None
        if self._state.version_held != version:
            self._state.version_held = version
            self._dirty = True
        self.synced.set()

    async def _save(self) -> None:
        data = self._state.dumps()
        self._dirty = False
        try:
            await asyncio.to_thread(write_atomically, self._path, data)
        except OSError as exc:
            self._dirty = True
            # Queuing goes on: refusing to remove a revoked tenant because the
            # disk is full would be worse. The health says so.
            self._refused_error = f"cannot write {self._path.name}: {exc.strerror or exc}"[:300]
            log.error("zkteco %s: cannot write %s: %s", self._config.id, self._path, exc)

    def _health(self, pending: int | None, error: str | None = None) -> None:
        waiting = len(self._inflight)
        if pending is not None:
            self.health.pending = pending
        age = self.adapter.last_request_age(self.sn)
        limit = self.adapter.silence_limit_s
        if age is None:
            silent = time.monotonic() - self._started
            self.health.reachable = None if silent <= limit else False
            offline = f"terminal {self.sn} has not polled since the gateway started" if silent > limit else None
        else:
            self.health.reachable = age <= limit
            offline = None if age <= limit else f"terminal {self.sn} has not polled for {age:.0f} s"
        if offline is not None and waiting:
            offline += f"; {waiting} commands wait for it"
        self.health.last_error = (error or self._crash_error or offline or self._refused_error or self._state.error)
        if self.health.last_error is not None:
            self.health.last_error = self.health.last_error[:300]
        if self._reported != self.health:
            self._reported = replace(self.health)
            if self._on_health is not None:
                self._on_health(self.health)


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def user_syncs(adapter: ZktecoAdapter, source: AllowlistSource, state_dir: Path,
               on_health: Callable[[str, TerminalHealth], None]) -> list[ZkUserSync]:
    """One sync per terminal of ``adapter`` when its config has ``sync_users``
    (else none). ``on_health(device_id, health)`` is called on the loop when a
    terminal's health changes; each sync's ``supervise()`` is its task."""
    if not adapter.config.sync_users:
        return []
    def report_as(device: str) -> Callable[[TerminalHealth], None]:
        return lambda health: on_health(device, health)

    return [ZkUserSync(adapter, sn, source, state_dir, on_health=report_as(adapter.config.sync_device(sn)))
            for sn in adapter.config.terminals]


async def supervise(sync: ZkUserSync) -> None:
    """``sync.supervise()``, for callers that treat it like gateway.terminals.supervise."""
    await sync.supervise()
