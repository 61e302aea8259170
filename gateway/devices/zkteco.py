"""ZKTeco face and card terminals speaking ADMS (the PUSH protocol): the
terminal is the HTTP client, the gateway serves ``/iclock/cdata``,
``/iclock/getrequest`` and ``/iclock/devicecmd`` (devices/zkteco_adms.py,
docs/terminal-events.md).

Each ATTLOG (or rtlog) record becomes a ``card_read`` of the terminal's person
number (``terminal_person``), or of the card when the record names one; the
terminal verified the person itself, so the read carries its grant. The
gateway keeps each terminal's upload stamps (in ``state_file`` across
restarts) and answers them at the terminal's start, so it does not upload
again what the gateway has; a batch posted again because our ``OK`` was lost
is recognised record by record.

Commands for a terminal (user sync) go through :meth:`ZktecoAdapter.queue_commands`;
the terminal fetches them at its next poll and reports each result, which
:meth:`ZktecoAdapter.wait_result` and the result listeners receive. With
``sync_users`` the gateway keeps each terminal's user list equal to its
allowlist through them (gateway/terminals/zkteco_sync.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from gateway.devices.base import DeviceConfigBase, DeviceRouter, EventSink, TerminalOrigin, TerminalSink, register
from gateway.devices.hikvision import TerminalRoute
from gateway.devices.listener import AllowedNetworks, check_networks, serving
from gateway.devices.recent import RecentKeys
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from aiohttp import web

    from devices.zkteco_adms import AttlogRecord, CommandResult

log = logging.getLogger(__name__)

# A record's identity holds the person's PIN: kept only as long as a terminal
# plausibly posts a batch again (its OK lost, the gateway restarted).
_IDENTITY_KEEP_S = 3 * 86400
_DEDUPE_WINDOW = 16384  # a terminal re-sends whole batches of up to a few hundred records
_TABLES = frozenset({"ATTLOG", "OPERLOG", "ATTPHOTO", "rtlog", "rtstate"})
# Results kept for result()/wait_result() after they came: enough for the
# commands in flight, bounded so that years of full syncs do not pile up.
_RESULTS_KEPT = 8192
CommandState = Literal["queued", "sent", "done", "unknown"]
ResultListener = Callable[[str, "CommandResult"], None]


class ZktecoConfig(DeviceConfigBase):
    type: Literal["zkteco_adms"]
    host: str = "0.0.0.0"  # noqa: S104 - terminals are on the building's LAN
    port: int = Field(ge=0, le=65535)
    # Empty: any source address may talk to the gateway.
    allowed_ips: list[str] = Field(default_factory=list)
    # Terminal serial number (SN) -> the device and door its reads are
    # reported for. Empty: every terminal is this device.
    terminals: dict[str, TerminalRoute] = Field(default_factory=dict)
    # Where the upload stamps are kept across restarts (a JSON file the
    # gateway writes). None: in memory only, so after a restart a terminal
    # may upload again records the gateway already reported.
    state_file: Path | None = None
    poll_delay_s: int = Field(default=10, ge=1, le=600)
    error_delay_s: int = Field(default=30, ge=1, le=3600)
    # The terminal's clock zone (hours east of UTC), told to the terminal.
    timezone_h: int = Field(default=8, ge=-12, le=14)
    commands_per_poll: int = Field(default=20, ge=1, le=500)
    # The parser's own bound (devices/zkteco_adms.py MAX_BODY) is 1 MB.
    max_body_kb: int = Field(default=1024, ge=16, le=1024)
    # Keep each terminal's own user list equal to the allowlist entries for
    # its door (docs/terminal-sync.md, "ZKTeco ADMS terminals"), so that a
    # revoked tenant is refused by the terminal itself. Needs every terminal
    # listed in ``terminals`` with its door.
    sync_users: bool = False
    # The Name written on every user the gateway writes: nothing about the
    # person on a stairwell box. Users the gateway did not write are never
    # touched (it removes only users it recorded as written).
    label: str = Field(default="rentgate", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    # Every so often every user is written again (DATA UPDATE is idempotent):
    # ADMS cannot read the list back, so a terminal replaced or wiped behind
    # the gateway's back converges within this time.
    full_sync_interval_s: float = Field(default=6 * 3600, gt=0)
    # How often the sync looks at the terminal without an allowlist change or
    # a result (whether it still polls, commands without an answer).
    sync_probe_interval_s: float = Field(default=10, gt=0, le=3600)
    # A user write the terminal refused (memory full, a PIN it does not take)
    # is tried again after this long, not at every poll.
    refused_retry_s: float = Field(default=60, gt=0, le=86400)
    # A command the terminal fetched but never answered (it restarted while
    # executing it) is queued again after this long.
    result_timeout_s: float = Field(default=120, gt=0, le=86400)

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @model_validator(mode="after")
    def _sync_needs_doors(self) -> ZktecoConfig:
        if not self.sync_users:
            return self
        if not self.terminals:
            raise ValueError("sync_users needs each terminal listed by its serial number (SN) with its door: "
                             "terminals = { <SN> = { device = \"<id>\", door = \"<door>\" } }")
        doorless = sorted(sn for sn, route in self.terminals.items() if route.door is None)
        if doorless:
            raise ValueError(f"sync_users: terminal {doorless[0]} has no door; give it one "
                             f"(terminals = {{ {doorless[0]} = {{ device = \"...\", door = \"<door>\" }} }}): "
                             "it holds the allowlist entries for that door")
        return self

    def sync_door(self, sn: str) -> str | None:
        """The door whose allowlist entries terminal ``sn`` holds."""
        route = self.terminals.get(sn)
        return route.door if route is not None else self.door

    def sync_device(self, sn: str) -> str:
        """The device id the terminal's sync health is reported under."""
        route = self.terminals.get(sn)
        return route.device if route is not None else self.id


class CommandError(GatewayError, ValueError):
    """A command that cannot be queued (bad line, unknown terminal)."""


@dataclass
class AdmsStats:
    reads: int = 0
    duplicates: int = 0
    rejected: int = 0
    bad_lines: int = 0
    forbidden: int = 0
    polls: int = 0
    other_records: int = 0
    commands_sent: int = 0
    results: int = 0


class ZktecoAdapter:
    def __init__(self, config: ZktecoConfig, sink: EventSink) -> None:
        self.config = config
        self.stats = AdmsStats()
        self.port: int | None = None
        self.listening = asyncio.Event()
        self._sink = sink
        self._seen = RecentKeys(_DEDUPE_WINDOW)
        self._allowed = AllowedNetworks(config.allowed_ips)
        self._zone = timezone(timedelta(hours=config.timezone_h))
        self._stamps: dict[str, dict[str, str]] = _load_stamps(config.state_file)
        self._queues: dict[str, deque[tuple[int, str]]] = {}
        self._queued: set[tuple[str, int]] = set()  # what the queues hold, for command_state
        self._sent: dict[tuple[str, int], str] = {}
        self._results: OrderedDict[tuple[str, int], CommandResult] = OrderedDict()
        self._waiters: dict[tuple[str, int], asyncio.Future[CommandResult]] = {}
        self._listeners: list[ResultListener] = []
        self._last_seen: dict[str, float] = {}
        self._offline: set[str] = set()
        self._reported: set[str] = set()
        # Ids from the clock, so that results of a previous run's commands
        # never match this run's.
        self._next_id = int(time.time()) % (2**31 - 2**24) + 1

    # -- commands, for the user-sync engine ---------------------------------

    def queue_commands(self, sn: str, lines: Sequence[str]) -> list[int]:
        """Queue command lines (``DATA UPDATE USERINFO ...``, see
        devices/zkteco_adms.py) for the terminal ``sn``; returns their ids in
        order. Call on the gateway's event loop."""
        from devices.hikvision import VendorPayloadError
        from devices.zkteco_adms import command_line, parse_serial

        try:
            parse_serial(sn)
            ids = list(range(self._next_id, self._next_id + len(lines)))
            entries = [(cmd_id, command_line(cmd_id, line)) for cmd_id, line in zip(ids, lines, strict=True)]
        except VendorPayloadError as exc:
            raise CommandError(f"zkteco {self.config.id}: {exc.reason}") from exc
        if self.config.terminals and sn not in self.config.terminals:
            raise CommandError(f"zkteco {self.config.id}: terminal {sn} is not configured")
        self._next_id += len(lines)
        self._queues.setdefault(sn, deque()).extend(entries)
        self._queued.update((sn, cmd_id) for cmd_id in ids)
        return ids

    def pending(self, sn: str) -> int:
        """Commands not yet fetched by the terminal plus those fetched without a result."""
        return len(self._queues.get(sn, ())) + sum(1 for key in self._sent if key[0] == sn)

    def result(self, sn: str, cmd_id: int) -> CommandResult | None:
        return self._results.get((sn, cmd_id))

    async def wait_result(self, sn: str, cmd_id: int, timeout: float) -> CommandResult:
        """The terminal's result for a queued command; TimeoutError if none came."""
        if (done := self._results.get((sn, cmd_id))) is not None:
            return done
        future = self._waiters.setdefault((sn, cmd_id), asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    def add_result_listener(self, listener: ResultListener) -> None:
        """``listener(sn, result)`` for every result a terminal reports."""
        self._listeners.append(listener)

    def remove_result_listener(self, listener: ResultListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def command_state(self, sn: str, cmd_id: int) -> CommandState:
        """Where a queued command is: not yet fetched, fetched without a result,
        answered, or unknown (never queued this run, or answered long ago)."""
        key = (sn, cmd_id)
        if key in self._results:
            return "done"
        if key in self._sent:
            return "sent"
        if key in self._queued:
            return "queued"
        return "unknown"

    def forget_command(self, sn: str, cmd_id: int) -> None:
        """Stop waiting for a fetched command's result (the terminal will not
        send it; the caller queues the command again). A late one is ignored."""
        self._sent.pop((sn, cmd_id), None)

    def last_request_age(self, sn: str) -> float | None:
        """Seconds since terminal ``sn`` last talked to the gateway; None if it has not this run."""
        seen = self._last_seen.get(sn)
        return None if seen is None else time.monotonic() - seen

    @property
    def silence_limit_s(self) -> float:
        """A terminal silent for longer is offline: it polls every ``poll_delay_s``."""
        return float(3 * self.config.poll_delay_s + self.config.error_delay_s)

    # -- serving --------------------------------------------------------------

    async def run(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_body_kb * 1024)
        app.router.add_get("/iclock/cdata", self._options)
        app.router.add_post("/iclock/cdata", self._upload)
        app.router.add_get("/iclock/getrequest", self._poll)
        app.router.add_post("/iclock/devicecmd", self._results_posted)
        try:
            async with serving(app, self.config.host, self.config.port) as port:
                self.port = port
                log.info("zkteco %s: ADMS server on %s:%s", self.config.id, self.config.host, port)
                self._sink.device_status(True, f"listening on port {port}")
                self.listening.set()
                await self._watch_terminals()
        finally:
            self.listening.clear()

    async def _watch_terminals(self) -> None:
        # A terminal polls every poll_delay_s; several polls missed is an
        # offline terminal (power, network), reported once until it is back.
        limit = self.silence_limit_s
        while True:
            await asyncio.sleep(max(1.0, self.config.poll_delay_s / 2))
            now = time.monotonic()
            for sn, seen in list(self._last_seen.items()):
                if now - seen > limit and sn not in self._offline:
                    self._offline.add(sn)
                    log.warning("zkteco %s: terminal %s silent for %.0f s", self.config.id, sn, now - seen)
                    self._sink_for(sn).device_status(False, f"terminal {sn} has not polled for {now - seen:.0f} s")

    async def _options(self, request: web.Request) -> web.Response:
        from devices.zkteco_adms import options_block

        sn = self._admit(request)
        if isinstance(sn, int):
            return _text(f"refused ({sn})", sn)
        block = options_block(sn, stamps=self._stamps.get(sn, {}), delay_s=self.config.poll_delay_s,
                              error_delay_s=self.config.error_delay_s, timezone_h=self.config.timezone_h)
        log.info("zkteco %s: terminal %s started (options %s)", self.config.id, sn,
                 request.query.get("options", "-"))
        return _text(block)

    async def _upload(self, request: web.Request) -> web.Response:
        from devices.hikvision import VendorPayloadError
        from devices.zkteco_adms import parse_attlog, valid_stamp

        sn = self._admit(request)
        if isinstance(sn, int):
            return _text(f"refused ({sn})", sn)
        table = request.query.get("table", "")
        body = await request.read()
        if table not in ("ATTLOG", "rtlog"):
            # Operation logs, photos, user records: acknowledged so the
            # terminal moves on; the gateway has no use for them here.
            count = sum(1 for line in body.splitlines() if line.strip())
            self.stats.other_records += count
            self._keep_stamp(sn, table, valid_stamp(request.query.get("Stamp")))
            return _text(f"OK: {count}")
        try:
            batch = parse_attlog(body)
        except VendorPayloadError as exc:
            self.stats.rejected += 1
            log.warning("zkteco %s: rejected a %s post from %s: %s", self.config.id, table, sn, exc.reason)
            return _text(f"ERROR: {exc.reason}", 400)
        sink = self._sink_for(sn)
        for record in batch.records:
            self._deliver(sn, record, sink)
        if batch.bad_lines:
            self.stats.bad_lines += len(batch.bad_lines)
            line, reason = batch.bad_lines[0]
            log.warning("zkteco %s: %d bad %s lines from %s (line %d: %s)", self.config.id, len(batch.bad_lines),
                        table, sn, line, reason)
            sink.device_status(True, f"bad {table} lines from {sn}", bad_frames=self.stats.bad_lines)
        self._keep_stamp(sn, table, valid_stamp(request.query.get("Stamp")))
        # Every line is answered as taken, bad ones too: a refusal would make
        # the terminal post the same batch again for ever.
        return _text(f"OK: {batch.lines}")

    def _deliver(self, sn: str, record: AttlogRecord, sink: EventSink) -> None:
        if self._seen.seen_before((sn, record.key)):
            self.stats.duplicates += 1
            return
        self.stats.reads += 1
        if isinstance(sink, TerminalSink):
            # Stored once by its identity across gateway restarts too (a
            # terminal whose stamps were lost uploads its log again), and
            # reported at the terminal's time where it can be believed
            # (gateway/terminals/clock.py; ADMS gives no way to measure the
            # clock, so a clock off by hours passes).
            stamped = record.time.replace(tzinfo=self._zone) if record.time is not None else None
            sink.terminal_read(record.credential, record.granted,
                               TerminalOrigin(None, record_identity(sn, record), stamped, keep_s=_IDENTITY_KEEP_S))
        else:
            sink.card_read(record.credential, verdict=record.granted)

    async def _poll(self, request: web.Request) -> web.Response:
        sn = self._admit(request)
        if isinstance(sn, int):
            return _text(f"refused ({sn})", sn)
        self.stats.polls += 1
        queue = self._queues.get(sn)
        if not queue:
            return _text("OK")
        lines: list[str] = []
        while queue and len(lines) < self.config.commands_per_poll:
            cmd_id, line = queue.popleft()
            self._queued.discard((sn, cmd_id))
            self._sent[(sn, cmd_id)] = line
            lines.append(line)
        self.stats.commands_sent += len(lines)
        return _text("\n".join(lines) + "\n")

    async def _results_posted(self, request: web.Request) -> web.Response:
        from devices.zkteco_adms import parse_command_results

        sn = self._admit(request)
        if isinstance(sn, int):
            return _text(f"refused ({sn})", sn)
        for result in parse_command_results(await request.read()):
            if self._sent.pop((sn, result.id), None) is None:
                log.info("zkteco %s: result for a command %d %s was not sent this run", self.config.id,
                         result.id, sn)
                continue
            self.stats.results += 1
            self._results[(sn, result.id)] = result
            if len(self._results) > _RESULTS_KEPT:
                self._results.popitem(last=False)
            if (future := self._waiters.pop((sn, result.id), None)) is not None and not future.done():
                future.set_result(result)
            for listener in list(self._listeners):  # a listener may remove itself
                listener(sn, result)
        return _text("OK")

    # -- helpers --------------------------------------------------------------

    def _admit(self, request: web.Request) -> str | int:
        """The terminal's SN, or the HTTP status to refuse it with."""
        from devices.hikvision import VendorPayloadError
        from devices.zkteco_adms import parse_serial

        if not self._allowed.allows(request.remote):
            self.stats.forbidden += 1
            log.warning("zkteco %s: refused %s (not in allowed_ips)", self.config.id, request.remote)
            return 403
        try:
            sn = parse_serial(request.query.get("SN"))
        except VendorPayloadError as exc:
            self.stats.rejected += 1
            log.warning("zkteco %s: %s from %s", self.config.id, exc.reason, request.remote)
            return 400
        if self.config.terminals and sn not in self.config.terminals:
            self.stats.forbidden += 1
            log.warning("zkteco %s: unknown terminal %s at %s", self.config.id, sn, request.remote)
            return 403
        self._last_seen[sn] = time.monotonic()
        if sn in self._offline or sn not in self._reported:
            self._offline.discard(sn)
            self._reported.add(sn)
            self._sink_for(sn).device_status(True, f"terminal {sn} connected")
        return sn

    def _sink_for(self, sn: str) -> EventSink:
        route = self.config.terminals.get(sn)
        if route is not None and isinstance(self._sink, DeviceRouter):
            return self._sink.for_device(route.device, route.door)
        return self._sink

    def _keep_stamp(self, sn: str, table: str, stamp: str | None) -> None:
        if stamp is None or table not in _TABLES or self._stamps.get(sn, {}).get(table) == stamp:
            return
        self._stamps.setdefault(sn, {})[table] = stamp
        if self.config.state_file is not None:
            _save_stamps(self.config.state_file, self._stamps)


def record_identity(sn: str, record: AttlogRecord) -> str:
    """One ATTLOG or rtlog record as the outbox keeps it (gateway.outbox.Sourced,
    which stores only a digest keyed with the outbox's own salt): the terminal
    and what the record says, so that the same record uploaded again is stored
    once."""
    return "zk/" + "/".join(str(part) for part in (sn[:40], *record.key))[:180]


def _load_stamps(path: Path | None) -> dict[str, dict[str, str]]:
    if path is None or not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # Without stamps a terminal uploads again what it has; the records'
        # dedupe catches only the recent ones. Say so, and go on.
        log.warning("zkteco: cannot read the stamps in %s (%s); terminals may upload old records again", path, exc)
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(sn): {str(t): str(s) for t, s in tables.items()} for sn, tables in doc.items()
            if isinstance(tables, dict)}


def _save_stamps(path: Path, stamps: dict[str, dict[str, str]]) -> None:
    # Written whole and renamed, so a power cut leaves the old or the new file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stamps, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _text(body: str, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.Response(text=body, status=status, content_type="text/plain")


register("zkteco_adms", ZktecoConfig, ZktecoAdapter)
