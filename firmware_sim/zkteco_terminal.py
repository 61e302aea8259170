"""A simulated ZKTeco terminal speaking the ADMS ("PUSH") protocol: the
terminal is the HTTP client. It registers with ``GET /iclock/cdata?options=all``,
uploads its attendance log (``POST /iclock/cdata?table=ATTLOG``), polls
``GET /iclock/getrequest`` for ``C:<id>:<command>`` lines, applies
``DATA UPDATE USERINFO`` / ``DATA DELETE USERINFO`` to its own user list and
reports each result on ``POST /iclock/devicecmd``. Its lock decides from its
own list, whatever the server thinks.

    terminal = ZktecoTerminalSim("http://127.0.0.1:8081", serial="CKJS201260012", poll_s=0.05)
    await terminal.start()
    await terminal.wait_for(lambda: terminal.registered)
    granted = await terminal.present_card("3265421170")

See docs/terminal-sim.md for the facts each behaviour follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import aiohttp

from firmware_sim.errors import SimError
from rentgate.aio import wait_event

log = logging.getLogger(__name__)

# ATTLOG verify field: 15 (face) was seen on a real unit; 1 fingerprint, 0 password and 2 card as the
# PUSH protocol describes them.
VERIFY_PASSWORD, VERIFY_FINGER, VERIFY_CARD, VERIFY_FACE = 0, 1, 2, 15
# devicecmd Return codes: 0 done; -1002 for an unknown command was seen on real units; the others are
# this simulator's choice (the documents at hand do not say).
RETURN_OK, RETURN_BAD_PARAM, RETURN_FULL, RETURN_UNKNOWN = 0, -1, -12, -1002

_MAX_RESPONSE = 256 * 1024
_MAX_COMMANDS = 100  # commands taken from one getrequest answer
_MAX_LINE = 4096
PIN_MAX = 24
NAME_MAX = 24


class ZktecoTerminalError(SimError):
    pass


@dataclass
class ZkUser:
    pin: str
    name: str = ""
    pri: str = "0"
    passwd: str = ""
    card: str = ""
    grp: str = "1"
    tz: str = ""


@dataclass(frozen=True)
class AttRecord:
    pin: str
    time: datetime  # device local time, no zone (ATTLOG carries none)
    status: int = 0
    verify: int = VERIFY_CARD

    def line(self) -> str:
        return f"{self.pin}\t{self.time:%Y-%m-%d %H:%M:%S}\t{self.status}\t{self.verify}\t0\t0\t0"


@dataclass(frozen=True)
class Presentation:
    """What the terminal's lock made of one card or face."""

    granted: bool
    pin: str = ""
    card: str = ""
    time: datetime | None = None


@dataclass
class CommandResult:
    id: str
    returned: int
    cmd: str


@dataclass
class ZkStats:
    handshakes: int = 0
    polls: int = 0
    uploads: int = 0  # ATTLOG posts answered OK
    upload_failures: int = 0
    results: list[CommandResult] = field(default_factory=list)


class ZktecoTerminalSim:
    def __init__(self, server_url: str, *, serial: str = "CKJS201260012", pushver: str = "2.4.1",
                 firmware: str = "Ver 8.0.4.2-20231106", poll_s: float | None = None, error_delay_s: float | None = None,
                 max_users: int = 3000, attlog_max: int = 100_000, pending_max: int = 10_000,
                 clock_offset_s: float = 0.0, utc_offset_h: float = 8.0, timeout_s: float = 5.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.serial = serial
        self.pushver = pushver
        self.firmware = firmware
        # None: take Delay / ErrorDelay from the server's options, as the device does.
        self.poll_s = poll_s
        self.error_delay_s = error_delay_s
        self.max_users = max_users
        self.clock_offset_s = clock_offset_s
        self.zone = timezone(timedelta(hours=utc_offset_h))
        self.timeout_s = timeout_s
        self.users: dict[str, ZkUser] = {}
        self.attlog: deque[AttRecord] = deque(maxlen=attlog_max)
        self.refused: list[Presentation] = []  # refusals: ATTLOG has no row for them
        self.options: dict[str, str] = {}
        self.stats = ZkStats()
        self.registered = False
        self.network_up = True
        self._pending: deque[AttRecord] = deque(maxlen=pending_max)
        self._stamp = 0
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._info_due = False

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"zkteco-{self.serial}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def __aenter__(self) -> ZktecoTerminalSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def now(self) -> datetime:
        return (datetime.now(self.zone) + timedelta(seconds=self.clock_offset_s)).replace(tzinfo=None, microsecond=0)

    # -- the door -------------------------------------------------------------
    async def present_card(self, card: str) -> Presentation:
        user = next((u for u in self.users.values() if u.card and u.card == card), None)
        return await self._decide(user, card=card, verify=VERIFY_CARD)

    async def present_face(self, pin: str) -> Presentation:
        return await self._decide(self.users.get(pin), verify=VERIFY_FACE)

    async def _decide(self, user: ZkUser | None, *, card: str = "", verify: int) -> Presentation:
        when = self.now()
        if user is None:
            decision = Presentation(False, card=card, time=when)
            self.refused.append(decision)
        else:
            decision = Presentation(True, pin=user.pin, card=card, time=when)
            record = AttRecord(user.pin, when, verify=verify)
            self.attlog.append(record)
            self._pending.append(record)
            self._wake.set()  # Realtime=1: upload at once
        await self._notify()
        return decision

    # -- the protocol loop ----------------------------------------------------
    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self._cycle(session)
                    await self._pause(self._poll_delay())
                except (aiohttp.ClientError, asyncio.TimeoutError, ZktecoTerminalError) as exc:
                    log.info("zkteco sim %s: %s", self.serial, exc)
                    await self._pause(self._error_delay())

    async def _cycle(self, session: aiohttp.ClientSession) -> None:
        if not self.network_up:
            raise ZktecoTerminalError("network down")
        if not self.registered:
            await self._handshake(session)
        await self._upload(session)
        commands = await self._poll(session)
        if commands:
            results = [self._execute(line) for line in commands]
            await self._report(session, results)

    async def _handshake(self, session: aiohttp.ClientSession) -> None:
        text = await self._get(session, "/iclock/cdata", {"SN": self.serial, "options": "all",
                                                          "pushver": self.pushver, "language": "83"})
        self.options = parse_options(text)
        self.registered = True
        self.stats.handshakes += 1
        await self._notify()

    async def _upload(self, session: aiohttp.ClientSession) -> None:
        while self._pending:
            batch = list(self._pending)[:100]
            body = "".join(r.line() + "\n" for r in batch)
            self._stamp += 1
            params = {"SN": self.serial, "table": "ATTLOG", "Stamp": str(self._stamp)}
            async with session.post(f"{self.server_url}/iclock/cdata", params=params, data=body.encode(),
                                    headers={"Content-Type": "text/plain"}) as response:
                answer = (await response.content.read(_MAX_RESPONSE)).decode(errors="replace")
                if response.status != 200 or not answer.strip().startswith("OK"):
                    self.stats.upload_failures += 1
                    await self._notify()
                    raise ZktecoTerminalError(f"ATTLOG upload answered {response.status} {answer[:40]!r}")
            for _ in batch:
                self._pending.popleft()
            self.stats.uploads += 1
            await self._notify()

    async def _poll(self, session: aiohttp.ClientSession) -> list[str]:
        params = {"SN": self.serial}
        if self._info_due:
            # After executing commands the device reports its state on the next poll.
            params["INFO"] = f"{self.firmware},{len(self.users)},0,{len(self.attlog)},127.0.0.1,10,15,0,0,0"
            self._info_due = False
        text = await self._get(session, "/iclock/getrequest", params)
        self.stats.polls += 1
        await self._notify()
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith("C:")]
        return lines[:_MAX_COMMANDS]

    async def _report(self, session: aiohttp.ClientSession, results: list[CommandResult]) -> None:
        body = "\n".join(f"ID={r.id}&Return={r.returned}&CMD={r.cmd}" for r in results) + "\n"
        async with session.post(f"{self.server_url}/iclock/devicecmd", params={"SN": self.serial},
                                data=body.encode(), headers={"Content-Type": "text/plain"}) as response:
            await response.content.read(_MAX_RESPONSE)
            if response.status != 200:
                raise ZktecoTerminalError(f"devicecmd answered {response.status}")
        self.stats.results.extend(results)
        self._info_due = True
        await self._notify()

    async def _get(self, session: aiohttp.ClientSession, path: str, params: dict[str, str]) -> str:
        async with session.get(f"{self.server_url}{path}", params=params) as response:
            text = (await response.content.read(_MAX_RESPONSE)).decode(errors="replace")
            if response.status != 200:
                raise ZktecoTerminalError(f"{path} answered {response.status}")
            return text

    # -- commands -------------------------------------------------------------
    def _execute(self, line: str) -> CommandResult:
        """``C:<id>:<command>``; a line without the prefix is ignored by real units, so it never gets here."""
        _, cmd_id, command = line[:_MAX_LINE].split(":", 2) if line.count(":") >= 2 else ("", "", "")
        verb = command.split(" ", 1)[0] if command else ""
        if not cmd_id:
            return CommandResult("", RETURN_BAD_PARAM, verb)
        if command.startswith("DATA UPDATE USERINFO "):
            return CommandResult(cmd_id, self._update_user(command[len("DATA UPDATE USERINFO "):]), "DATA")
        if command.startswith("DATA DELETE USERINFO "):
            return CommandResult(cmd_id, self._delete_user(command[len("DATA DELETE USERINFO "):]), "DATA")
        if command in ("INFO", "CHECK"):
            return CommandResult(cmd_id, RETURN_OK, command)
        if command == "CLEAR LOG":
            self.attlog.clear()
            return CommandResult(cmd_id, RETURN_OK, "CLEAR")
        return CommandResult(cmd_id, RETURN_UNKNOWN, verb)

    def _update_user(self, fields_text: str) -> int:
        fields = parse_fields(fields_text)
        pin = fields.get("PIN", "")
        if not pin or len(pin) > PIN_MAX or len(fields.get("Name", "")) > NAME_MAX * 4:
            return RETURN_BAD_PARAM
        user = self.users.get(pin)
        if user is None:
            if len(self.users) >= self.max_users:
                return RETURN_FULL
            user = self.users[pin] = ZkUser(pin)
        user.name = fields.get("Name", user.name)[:NAME_MAX]
        user.pri = fields.get("Pri", user.pri)
        user.passwd = fields.get("Passwd", user.passwd)
        user.card = fields.get("Card", user.card)
        user.grp = fields.get("Grp", user.grp)
        user.tz = fields.get("TZ", user.tz)
        return RETURN_OK

    def _delete_user(self, fields_text: str) -> int:
        pin = parse_fields(fields_text).get("PIN", "")
        if not pin:
            return RETURN_BAD_PARAM
        self.users.pop(pin, None)  # deleting an absent user is not an error
        return RETURN_OK

    # -- timing ---------------------------------------------------------------
    def _poll_delay(self) -> float:
        return self.poll_s if self.poll_s is not None else _seconds(self.options.get("Delay"), 30.0)

    def _error_delay(self) -> float:
        return self.error_delay_s if self.error_delay_s is not None else _seconds(self.options.get("ErrorDelay"), 30.0)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        # wait_event, not wait_for: on 3.11 wait_for can swallow stop()'s cancel (gh-86296).
        await wait_event(self._wake, seconds)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def network_down(self) -> None:
        self.network_up = False

    def network_restore(self) -> None:
        self.network_up = True
        self._wake.set()


def parse_options(text: str) -> dict[str, str]:
    """The server's handshake answer: ``GET OPTION FROM: SN`` then ``Key=Value`` lines."""
    options: dict[str, str] = {}
    for line in text.splitlines()[:200]:
        key, sep, value = line.strip().partition("=")
        if sep and key and len(key) <= 64:
            options[key.strip()] = value.strip()[:256]
    return options


def parse_fields(text: str) -> dict[str, str]:
    """``PIN=1\\tName=Zhang San\\tCard=123``: tab-separated ``Key=Value`` fields."""
    return {k: v for k, _, v in (f.partition("=") for f in text.split("\t")[:32]) if k}


def parse_results(body: str) -> list[dict[str, str]]:
    """A devicecmd body (one ``ID=..&Return=..&CMD=..`` line per command), for tests."""
    return [dict(parse_qsl(line)) for line in body.splitlines() if line.strip()]


def _seconds(value: str | None, default: float) -> float:
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return min(max(seconds, 0.01), 3600.0)
