"""Hikvision terminals that push ISAPI event notifications ("HTTP listening")
to a small HTTP server the gateway runs on its own loop.

Card and face reads become ``card_read`` events. Door events (opened, closed,
forced, held open) become ``door_state`` events as the terminal judged them: it
drives its own lock, so only it knows whether an opening was allowed. Bodies
are JSON, XML or multipart (docs/terminal-events.md); a multipart post is read
as it arrives, so a picture of any size is dropped unseen without losing the
event, and only the total upload is bounded.

:class:`TerminalDelivery` (dedupe and hand-over to the sink) is shared with the
alert-stream adapter (:mod:`gateway.devices.hikvision_stream`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.devices.base import DeviceConfigBase, DeviceRouter, EventSink, TerminalOrigin, TerminalSink, register
from gateway.devices.listener import AllowedNetworks, check_networks, serving
from gateway.devices.recent import RecentKeys
from rentgate import wire

if TYPE_CHECKING:
    from aiohttp import web

    from devices.hikvision import TerminalEvent

from devices.hikvision import DOOR_STATES

log = logging.getLogger(__name__)

_DEDUPE_WINDOW = 4096


class TerminalRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: wire.DeviceId
    door: wire.DeviceId | None = None


class HikvisionConfig(DeviceConfigBase):
    type: Literal["hikvision_isapi"]
    host: str = "0.0.0.0"  # noqa: S104 - terminals are on the building's LAN
    port: int = Field(ge=0, le=65535)
    path: str = Field(default="/isapi/events", pattern=r"^/")
    # Empty: any source address may post.
    allowed_ips: list[str] = Field(default_factory=list)
    # Terminal (deviceID, MAC or IP as it reports itself) -> the device and door
    # its reads are reported for. Empty: every terminal is this device.
    terminals: dict[str, TerminalRoute] = Field(default_factory=dict)
    # An event document (JSON, XML, the event part of a form); 413 above it.
    max_body_kb: int = Field(default=4096, ge=16)
    # A whole multipart post, pictures included (they are dropped as they pass).
    max_upload_kb: int = Field(default=16384, ge=16)
    noise_report_s: float = Field(default=60, gt=0)

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        return check_networks(value)


@dataclass
class PushStats:
    reads: int = 0
    duplicates: int = 0
    rejected: int = 0
    forbidden: int = 0
    door_events: int = 0
    other_events: int = 0


class TerminalDelivery:
    """Hands terminal events to the sink once each.

    A terminal posts or streams an event again when it missed our answer, with
    the same ``serialNo``. Its serial counter restarts at a reboot or a factory
    reset, so a serial alone would drop new events as repeats; the key is the
    serial together with what the event says (time, type, person, card): a
    repeat is identical, a new event under an old serial is not. A serial far
    below the last one seen is therefore delivered, never taken for a replay.
    """

    def __init__(self, stats: PushStats, window: int = _DEDUPE_WINDOW) -> None:
        self.stats = stats
        # Terminal (its first key: deviceID, MAC or IP) -> the serial of the
        # last event delivered: where a catch-up through AcsEvent search would
        # start. The last, not the highest: after a reboot it follows the
        # restarted counter.
        self.last_serials: dict[str, int] = {}
        self._seen = RecentKeys(window)

    def deliver(self, event: TerminalEvent, sink: EventSink) -> None:
        if event.serial_no is not None:
            if self._seen.seen_before(_event_key(event)):
                self.stats.duplicates += 1
                return
            self.last_serials[event.terminal_keys[0] if event.terminal_keys else ""] = event.serial_no
        credential = event.credential
        identity = event.identity
        # The gateway's own sink takes the event with its origin: stored once
        # however often it arrives (a re-post, the outage catch-up), noted for
        # the catch-up, and stamped with the terminal's time where its clock
        # can be believed (gateway.terminals.clock).
        origin = (TerminalOrigin(event.serial_no, identity, event.time)
                  if identity is not None and event.serial_no is not None and isinstance(sink, TerminalSink)
                  else None)
        if event.kind == "access" and credential is not None:
            self.stats.reads += 1
            # The terminal opened its own lock or not: its verdict is the
            # grant a door camera matches people with.
            if origin is not None:
                cast(TerminalSink, sink).terminal_read(credential, event.verified, origin)
            else:
                sink.card_read(credential, verdict=event.verified)
        elif event.kind == "door" and (state := DOOR_STATES.get(event.minor)) is not None:
            # The terminal drives its own lock, so its judgement of the door
            # (forced, held open) is the one that counts.
            self.stats.door_events += 1
            if origin is not None:
                cast(TerminalSink, sink).terminal_door(state, origin)
            else:
                sink.door_state(state)
        else:
            self.stats.other_events += 1
            if origin is not None:
                # Nothing to report, but its serial was heard: the catch-up
                # need not fetch it.
                cast(TerminalSink, sink).terminal_heard(origin)


def _event_key(event: TerminalEvent) -> tuple[object, ...]:
    terminal = event.terminal_keys[0] if event.terminal_keys else ""
    when = event.time.isoformat() if event.time else None
    return (terminal, event.serial_no, when, event.major, event.minor, event.person, event.card)


class HikvisionAdapter:
    def __init__(self, config: HikvisionConfig, sink: EventSink) -> None:
        self.config = config
        self.stats = PushStats()
        self.port: int | None = None  # the bound port, once listening
        self.listening = asyncio.Event()
        self._sink = sink
        self._delivery = TerminalDelivery(self.stats)
        self.last_serials = self._delivery.last_serials
        self._allowed = AllowedNetworks(config.allowed_ips)

    async def run(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_body_kb * 1024)
        app.router.add_post(self.config.path, self._handle)
        try:
            async with serving(app, self.config.host, self.config.port) as port:
                self.port = port
                log.info("hikvision %s: listening on %s:%s%s", self.config.id, self.config.host, port,
                         self.config.path)
                if self.config.terminals and not isinstance(self._sink, DeviceRouter):
                    log.warning("hikvision %s: this sink cannot report per terminal; "
                                "all reads are reported as %s", self.config.id, self.config.id)
                self._sink.device_status(True, f"listening on port {port}")
                self.listening.set()
                await self._report_noise()
        finally:
            self.listening.clear()

    async def _report_noise(self) -> None:
        reported = 0
        while True:
            await asyncio.sleep(self.config.noise_report_s)
            if self.stats.rejected != reported:
                reported = self.stats.rejected
                self._sink.device_status(True, "rejected terminal notifications", bad_frames=reported)

    async def _handle(self, request: web.Request) -> web.Response:
        from devices.hikvision import VendorPayloadError, parse_notification

        if not self._allowed.allows(request.remote):
            self.stats.forbidden += 1
            log.warning("hikvision %s: refused a post from %s (not in allowed_ips)", self.config.id, request.remote)
            return _status(request, 403, 4, "Forbidden")
        content_type = request.headers.get("Content-Type", "")
        try:
            if content_type.split(";", 1)[0].strip().lower().startswith("multipart/"):
                events, size = await self._read_form(request, content_type)
            else:
                body = await request.read()
                size = len(body)
                events = parse_notification(body, content_type)
        except _TooLarge:
            self.stats.rejected += 1
            log.warning("hikvision %s: refused a post from %s over %d kB", self.config.id, request.remote,
                        self.config.max_upload_kb)
            return _status(request, 413, 6, "Request Entity Too Large")
        except VendorPayloadError as exc:
            self.stats.rejected += 1
            log.warning("hikvision %s: rejected a notification from %s: %s", self.config.id,
                        request.remote, exc.reason)
            return _status(request, 400, 6, "Invalid Content")
        log.debug("hikvision %s: %d events in %d bytes from %s", self.config.id, len(events), size, request.remote)
        for event in events:
            sink = self._route(event)
            if sink is None:
                self.stats.forbidden += 1
                log.warning("hikvision %s: notification from unknown terminal %s", self.config.id,
                            "/".join(event.terminal_keys) or request.remote)
                return _status(request, 403, 4, "Unknown terminal")
            self._delivery.deliver(event, sink)
        return _status(request, 200, 1, "OK")

    async def _read_form(self, request: web.Request, content_type: str) -> tuple[list[TerminalEvent], int]:
        from devices.hikvision_stream import MultipartReader, boundary_of, form_events

        limit = self.config.max_upload_kb * 1024
        reader = MultipartReader(boundary_of(content_type), max_part=self.config.max_body_kb * 1024,
                                 max_picture=limit)
        parts, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            parts += reader.feed(chunk)
        parts += reader.close()
        return form_events(parts, truncated=reader.truncated), size

    def _route(self, event: TerminalEvent) -> EventSink | None:
        if not self.config.terminals:
            return self._sink
        route = next((self.config.terminals[k] for k in event.terminal_keys if k in self.config.terminals), None)
        if route is None:
            return None
        if isinstance(self._sink, DeviceRouter):
            return self._sink.for_device(route.device, route.door)
        return self._sink


class _TooLarge(Exception):
    pass


def _status(request: web.Request, http_status: int, code: int, text: str) -> web.Response:
    from aiohttp import web

    # ISAPI's ResponseStatus; terminals only look at the HTTP status.
    body = {"requestURL": request.path, "statusCode": code, "statusString": text,
            "subStatusCode": "ok" if http_status == 200 else "badParameters"}
    return web.json_response(body, status=http_status)


register("hikvision_isapi", HikvisionConfig, HikvisionAdapter)
