"""A simulated Hikvision access terminal (DS-K1T series) speaking ISAPI over
HTTP with digest authentication: its own users, cards and faces, its own lock
deciding from them, an event log searchable by serial number, the alert
stream, and "HTTP listening" pushes to a configured host, retried with the
same serialNo until answered 200.

Use as an async context manager::

    async with IsapiTerminalSim(password="Passw0rd!") as terminal:
        url = terminal.url            # http://127.0.0.1:<port>
        decision = await terminal.present_card("3265421170")

See docs/terminal-sim.md for the endpoints, the formats and the faults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from firmware_sim.digest import DigestGuard
from firmware_sim.errors import SimError
from firmware_sim.hikvision_terminal import FAKE_JPEG, multipart_body
from firmware_sim.isapi_store import (
    CHINA,
    AcsEventRecord,
    Capacity,
    IsapiRejection,
    TerminalStore,
    bad,
)

log = logging.getLogger(__name__)

PushFormat = Literal["json", "json_alert", "xml", "multipart"]
StreamFormat = Literal["json", "xml"]
PUSH_FORMATS: tuple[str, ...] = ("json", "json_alert", "xml", "multipart")

_XMLNS = "http://www.isapi.org/ver20/XMLSchema"
_BOUNDARY = "boundary"
_MAX_BODY = 64 * 1024
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class IsapiTerminalError(SimError):
    pass


@dataclass
class Lock:
    """The door lock the terminal drives: opened on every grant."""

    openings: int = 0
    last_opened: datetime | None = None


@dataclass
class PushStats:
    attempts: int = 0
    delivered: list[int] = field(default_factory=list)  # serials answered 200, in order
    statuses: list[int] = field(default_factory=list)  # HTTP status of every attempt (0: no answer)
    dropped: int = 0  # events that fell out of a full upload queue (still searchable)


def ok_body(request_url: str = "") -> dict[str, Any]:
    return {"requestURL": request_url, "statusCode": 1, "statusString": "OK", "subStatusCode": "ok"}


def ok_xml(request_url: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ResponseStatus version="2.0" xmlns="{_XMLNS}">'
            f"<requestURL>{_esc(request_url)}</requestURL><statusCode>1</statusCode><statusString>OK</statusString>"
            "<subStatusCode>ok</subStatusCode></ResponseStatus>")


class IsapiTerminalSim:
    """One terminal. Keyword-only settings; every fault is an attribute or a method."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, username: str = "admin",
                 password: str = "Passw0rd!", serial: str = "DS-K1T671M20261206V030230ENJ00000001",
                 mac: str = "44:47:cc:10:20:30", model: str = "DS-K1T671M",
                 firmware: str = "V3.2.30", firmware_build: str = "build 220105",
                 push_url: str | None = None, push_format: PushFormat = "json", push_retry_s: float = 0.2,
                 push_retry_max_s: float = 5.0, push_queue_max: int = 1000, push_timeout_s: float = 5.0,
                 stream_format: StreamFormat = "json", heartbeat_s: float = 10.0, stream_replay: int = 0,
                 max_streams: int = 1, capacity: Capacity | None = None, delete_processing_s: float = 0.0,
                 reboot_s: float = 0.3, max_failures: int = 5, lock_s: float = 1800.0,
                 nonce_uses: int | None = None) -> None:
        if push_format not in PUSH_FORMATS:
            raise IsapiTerminalError(f"push_format must be one of {PUSH_FORMATS}, not {push_format!r}")
        self.host = host
        self.port = port
        self.serial = serial
        self.mac = mac
        self.model = model
        self.firmware = firmware
        self.firmware_build = firmware_build
        self.store = TerminalStore(capacity)
        self.guard = DigestGuard({username: password}, realm=model, max_failures=max_failures, lock_s=lock_s,
                                 nonce_uses=nonce_uses)
        self.lock = Lock()
        self.push_url = push_url
        self.push_format: PushFormat = push_format
        self.push_retry_s = push_retry_s
        self.push_retry_max_s = push_retry_max_s
        self.push_timeout_s = push_timeout_s
        self.push = PushStats()
        self.stream_format: StreamFormat = stream_format
        self.heartbeat_s = heartbeat_s
        self.stream_replay = stream_replay
        self.max_streams = max_streams
        self.delete_processing_s = delete_processing_s
        self.reboot_s = reboot_s
        # Faults.
        self.delay_s = 0.0  # every answer waits this long
        self.clock_offset_s = 0.0  # the terminal's clock is this far off (event times, /System/time)
        self.network_up = True
        self.reboot_loses_events = False
        self.boots = 0
        self._booted_at = time.monotonic()
        self._push_queue: deque[int] = deque(maxlen=push_queue_max)
        self._push_wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._streams: set[asyncio.Queue[bytes | None]] = set()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._push_task: asyncio.Task[None] | None = None
        self._delete_status = "success"
        self._rebooting = False

    # -- lifecycle ------------------------------------------------------------
    async def __aenter__(self) -> IsapiTerminalSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def subscribers(self) -> int:
        """Alert streams open now."""
        return len(self._streams)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._listen()
        self._push_task = asyncio.create_task(self._push_loop(), name=f"isapi-push-{self.serial[-8:]}")

    async def stop(self) -> None:
        if self._push_task:
            self._push_task.cancel()
            await asyncio.gather(self._push_task, return_exceptions=True)
            self._push_task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._unlisten()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[self._faults_mw, self._auth_mw])
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def _unlisten(self) -> None:
        for queue in list(self._streams):
            queue.put_nowait(None)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- faults ---------------------------------------------------------------
    async def network_down(self) -> None:
        """The cable is pulled: nothing listens, pushes cannot leave."""
        self.network_up = False
        await self._unlisten()

    async def network_restore(self) -> None:
        self.network_up = True
        await self._listen()
        self._push_wake.set()

    def refuse_writes(self, sub_status: str | None = "lowMemory") -> None:
        """Every write is refused with this subStatusCode (None: accept again)."""
        self.store.refuse_writes = sub_status

    async def reboot(self, *, lose_events: bool | None = None) -> None:
        """Restart as the device does: the server goes away for ``reboot_s``;
        users, cards, faces and the event log stay (flash), serials go on.
        ``lose_events`` (default: the ``reboot_loses_events`` attribute) makes it
        come back with an empty log numbering from 1, as after a firmware
        upgrade or a reset that wipes it."""
        self._rebooting = True
        await self._unlisten()
        await asyncio.sleep(self.reboot_s)
        if self.reboot_loses_events if lose_events is None else lose_events:
            self.store.events.clear()
            self.store.next_serial = 1
            self._push_queue.clear()
        self.guard.unlock_all()
        self.boots += 1
        self._booted_at = time.monotonic()
        if self.network_up:
            await self._listen()
        self._rebooting = False
        self._push_wake.set()
        await self._notify()

    def now(self) -> datetime:
        return (datetime.now(CHINA) + timedelta(seconds=self.clock_offset_s)).replace(microsecond=0)

    # -- the door -------------------------------------------------------------
    async def present_card(self, card_no: str) -> AcsEventRecord:
        """A card held to the reader: the terminal decides from its own lists."""
        return await self._decided(self.store.present_card(card_no, self.now()))

    async def present_face(self, employee_no: str) -> AcsEventRecord:
        """The face of an enrolled person (or of someone the terminal does not know)."""
        return await self._decided(self.store.present_face(employee_no, self.now()))

    def enrol_face(self, employee_no: str) -> None:
        """As if a face picture had been uploaded for this person."""
        self.store.add_face(employee_no)

    async def _decided(self, event: AcsEventRecord) -> AcsEventRecord:
        if event.granted:
            self.lock.openings += 1
            self.lock.last_opened = event.time
        log.info("isapi sim %s: serial %d minor %#x card %s person %s", self.serial[-8:], event.serial_no,
                 event.minor, event.card_no, event.employee_no)
        if len(self._push_queue) == self._push_queue.maxlen:
            self.push.dropped += 1
        self._push_queue.append(event.serial_no)
        self._push_wake.set()
        self._to_streams(self._stream_part(event, current=True))
        await self._notify()
        return event

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever something happens."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def delivered(self, serial_no: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: serial_no in self.push.delivered, timeout)

    # -- HTTP push ------------------------------------------------------------
    async def _push_loop(self) -> None:
        backoff = self.push_retry_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.push_timeout_s)) as session:
            while True:
                if not (self._push_queue and self.push_url and self.network_up and not self._rebooting):
                    self._push_wake.clear()
                    await self._push_wake.wait()
                    continue
                serial_no = self._push_queue[0]
                if await self._post(session, serial_no):
                    backoff = self.push_retry_s
                    continue
                # The same event again, with its same serialNo, after a pause.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.push_retry_max_s)

    async def _post(self, session: aiohttp.ClientSession, serial_no: int) -> bool:
        event = self.store.event(serial_no)
        if event is None:  # overwritten in the log: nothing left to send
            self._push_queue.popleft()
            return True
        body, content_type = self.push_body(event)
        self.push.attempts += 1
        assert self.push_url is not None
        try:
            async with session.post(self.push_url, data=body, headers={"Content-Type": content_type}) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.info("isapi sim: push of serial %d failed: %s", serial_no, exc)
            status = 0
        self.push.statuses.append(status)
        if status != 200:
            await self._notify()
            return False
        if self._push_queue and self._push_queue[0] == serial_no:
            self._push_queue.popleft()
        self.push.delivered.append(serial_no)
        await self._notify()
        return True

    def push_body(self, event: AcsEventRecord) -> tuple[bytes, str]:
        """The body and content type of one event's push, in this terminal's format."""
        doc = self.alert(event)
        if self.push_format == "xml":
            return alert_xml(doc).encode(), 'application/xml; charset="UTF-8"'
        if self.push_format == "json_alert":
            return json.dumps({"EventNotificationAlert": doc}).encode(), 'application/json; charset="UTF-8"'
        if self.push_format == "multipart":
            return multipart_body(doc, picture=FAKE_JPEG if event.verify_mode == "face" else None)
        return json.dumps(doc).encode(), 'application/json; charset="UTF-8"'

    def alert(self, event: AcsEventRecord, *, current: bool | None = None) -> dict[str, Any]:
        """An EventNotificationAlert (as a dict) for one access event."""
        ace: dict[str, Any] = {
            "deviceName": self.model, "majorEventType": event.major, "subEventType": event.minor,
            "cardReaderKind": 1, "cardReaderNo": 1, "doorNo": 1, "verifyNo": event.serial_no % 256,
            "serialNo": event.serial_no, "currentVerifyMode": event.verify_mode,
            "frontSerialNo": max(event.serial_no - 1, 0), "attendanceStatus": "undefined", "label": "",
            "mask": "no", "purePwdVerifyEnable": True,
        }
        if event.employee_no:
            ace.update(employeeNoString=event.employee_no, name=event.name, userType=event.user_type or "normal")
        if event.card_no:
            ace.update(cardNo=event.card_no, cardType=1)
        doc: dict[str, Any] = {
            "ipAddress": self.host, "portNo": self.port, "protocol": "HTTP", "macAddress": self.mac,
            "channelID": 1, "dateTime": event.time.isoformat(timespec="seconds"), "activePostCount": 1,
            "eventType": "AccessControllerEvent", "eventState": "active",
            "eventDescription": "Access Controller Event", "AccessControllerEvent": ace,
        }
        if current is not None:
            doc["currentEvent"] = current
        return doc

    # -- alert stream ---------------------------------------------------------
    def _stream_part(self, event: AcsEventRecord | None, *, current: bool) -> bytes:
        if event is None:
            doc: dict[str, Any] = {"ipAddress": self.host, "portNo": self.port, "protocol": "HTTP",
                                   "macAddress": self.mac, "channelID": 1,
                                   "dateTime": self.now().isoformat(timespec="seconds"), "activePostCount": 0,
                                   "eventType": "heartBeat", "eventState": "active",
                                   "eventDescription": "heartBeat"}
        else:
            doc = self.alert(event, current=current)
        if self.stream_format == "xml":
            payload, content_type = alert_xml(doc).encode(), 'application/xml; charset="UTF-8"'
        else:
            payload, content_type = json.dumps(doc).encode(), 'application/json; charset="UTF-8"'
        head = f"--{_BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
        return head.encode() + payload + b"\r\n"

    def _to_streams(self, part: bytes) -> None:
        for queue in list(self._streams):
            try:
                queue.put_nowait(part)
            except asyncio.QueueFull:  # a reader that does not read is cut off, not waited for
                self._streams.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    async def _alert_stream(self, request: web.Request) -> web.StreamResponse:
        if len(self._streams) >= self.max_streams:
            # A DS-K1T342 refused a second concurrent subscription this way.
            raise IsapiRejection("deployExceedMax", "alertStream", status_code=4, status_string="Invalid Operation",
                                 http_status=403)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)
        for event in list(self.store.events)[-self.stream_replay:] if self.stream_replay else []:
            queue.put_nowait(self._stream_part(event, current=False))
        self._streams.add(queue)
        response = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={_BOUNDARY}"})
        try:
            await response.prepare(request)
            await self._notify()
            while True:
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        part = await queue.get()
                except TimeoutError:
                    part = self._stream_part(None, current=True)
                if part is None:
                    break
                await response.write(part)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
        return response

    # -- HTTP plumbing --------------------------------------------------------
    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            return await handler(request)
        except IsapiRejection as exc:
            return web.json_response(exc.body(request.path_qs), status=exc.http_status)
        finally:
            # Whoever waits in wait_for() looks again after every request.
            await self._notify()

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        result = self.guard.check(request.method, (request.raw_path, request.path),
                                  request.headers.get("Authorization"))
        if result.ok:
            return await handler(request)
        if result.locked_s:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<userCheck version="2.0" xmlns="{_XMLNS}">'
                    "<statusValue>401</statusValue><statusString>Unauthorized</statusString>"
                    f"<lockStatus>lock</lockStatus><unlockTime>{int(result.locked_s)}</unlockTime>"
                    "<retryLoginTime>0</retryLoginTime></userCheck>")
            return web.Response(status=401, text=body, content_type="application/xml")
        return web.Response(status=401, text="Unauthorized",
                            headers={"WWW-Authenticate": self.guard.challenge(stale=result.stale)})

    def _routes(self, app: web.Application) -> None:
        ac = "/ISAPI/AccessControl"
        r = app.router
        r.add_post(f"{ac}/UserInfo/Record", self._write(lambda d: self.store.add_user(d)))
        r.add_put(f"{ac}/UserInfo/Modify", self._write(lambda d: self.store.modify_user(d)))
        r.add_put(f"{ac}/UserInfo/SetUp", self._write(lambda d: self.store.set_up_user(d)))
        r.add_put(f"{ac}/UserInfo/Delete", self._write(self._delete_user_simple))
        r.add_post(f"{ac}/UserInfo/Search", self._read(self.store.search_users))
        r.add_get(f"{ac}/UserInfo/Count", self._get(self.store.count_users))
        r.add_put(f"{ac}/UserInfoDetail/Delete", self._user_detail_delete)
        r.add_get(f"{ac}/UserInfoDetail/DeleteProcess", self._get(
            lambda: {"UserInfoDetailDeleteProcess": {"status": self._delete_status}}))
        r.add_post(f"{ac}/CardInfo/Record", self._write(lambda d: self.store.add_card(d)))
        r.add_put(f"{ac}/CardInfo/Modify", self._write(lambda d: self.store.modify_card(d)))
        r.add_put(f"{ac}/CardInfo/SetUp", self._write(lambda d: self.store.set_up_card(d)))
        r.add_put(f"{ac}/CardInfo/Delete", self._write(lambda d: self.store.delete_cards(d)))
        r.add_post(f"{ac}/CardInfo/Search", self._read(self.store.search_cards))
        r.add_get(f"{ac}/CardInfo/Count", self._card_count)
        r.add_post(f"{ac}/AcsEvent", self._read(self.store.search_events))
        r.add_get("/ISAPI/Event/notification/alertStream", self._alert_stream)
        r.add_get("/ISAPI/Event/notification/httpHosts", self._get_http_hosts)
        r.add_put("/ISAPI/Event/notification/httpHosts", self._put_http_hosts)
        r.add_put("/ISAPI/Event/notification/httpHosts/{id}", self._put_http_hosts)
        r.add_get("/ISAPI/System/deviceInfo", self._device_info)
        r.add_get("/ISAPI/System/status", self._device_status)
        r.add_get("/ISAPI/System/time", self._system_time)
        r.add_put("/ISAPI/System/reboot", self._reboot)
        # Not ISAPI: the simulator's own control, so that a demo in another
        # process can hold a card or a face to the door (digest-authenticated
        # like the rest).
        r.add_post("/sim/present", self._sim_present)

    def _write(self, apply: Callable[[Any], object]) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            apply(await _json_body(request))
            return web.json_response(ok_body(request.path_qs))
        return handler

    def _read(self, answer: Callable[[Any], dict[str, Any]]) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(answer(await _json_body(request)))
        return handler

    @staticmethod
    def _get(answer: Callable[[], dict[str, Any]]) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(answer())
        return handler

    async def _sim_present(self, request: web.Request) -> web.StreamResponse:
        """``{"card": "<decimal number>"}`` or ``{"face": "<employeeNo>"}``
        held to the door: the terminal decides from its own lists, logs and
        pushes the event as it would, and answers what it did."""
        try:
            kind, value = await _present_body(request)
        except IsapiRejection as exc:
            return web.json_response(exc.body(request.path_qs), status=exc.http_status)
        event = await (self.present_card(value) if kind == "card" else self.present_face(value))
        return web.json_response({"granted": event.granted, "serialNo": event.serial_no, "minor": event.minor})

    def _delete_user_simple(self, doc: Any) -> None:
        cond = doc.get("UserInfoDelCond") if isinstance(doc, dict) else None
        if not isinstance(cond, dict):
            raise bad("UserInfoDelCond")
        self.store.delete_users(_employee_nos(cond))

    async def _user_detail_delete(self, request: web.Request) -> web.StreamResponse:
        doc = await _json_body(request)
        detail = doc.get("UserInfoDetail") if isinstance(doc, dict) else None
        if not isinstance(detail, dict) or detail.get("mode") not in ("all", "byEmployeeNo"):
            raise bad("mode" if isinstance(detail, dict) else "UserInfoDetail")
        if self._delete_status == "processing":
            raise IsapiRejection("deviceBusy", "UserInfoDetail", status_code=2, status_string="Device Busy",
                                 http_status=503)
        employee_nos = None if detail["mode"] == "all" else _employee_nos(detail)
        self.store._writable()
        if self.delete_processing_s <= 0:
            self.store.delete_users(employee_nos)
        else:
            # The device deletes in the background; DeleteProcess says "processing" meanwhile.
            self._delete_status = "processing"
            self._spawn(self._delete_later(employee_nos), "isapi-user-delete")
        return web.json_response(ok_body(request.path_qs))

    async def _delete_later(self, employee_nos: set[str] | None) -> None:
        try:
            await asyncio.sleep(self.delete_processing_s)
            self.store.delete_users(employee_nos)
            self._delete_status = "success"
        except IsapiRejection:
            self._delete_status = "failed"
        await self._notify()

    async def _card_count(self, request: web.Request) -> web.StreamResponse:
        employee_no = request.query.get("employeeNo")
        if employee_no is not None and not 0 < len(employee_no) <= 32:
            raise bad("employeeNo")
        return web.json_response(self.store.count_cards(employee_no))

    async def _get_http_hosts(self, request: web.Request) -> web.StreamResponse:
        host = ""
        if self.push_url:
            parts = urlsplit(self.push_url)
            host = (f"<HttpHostNotification><id>1</id><url>{_esc(parts.path or '/')}</url>"
                    f"<protocolType>HTTP</protocolType><parameterFormatType>"
                    f"{'XML' if self.push_format == 'xml' else 'JSON'}</parameterFormatType>"
                    f"<addressingFormatType>ipaddress</addressingFormatType>"
                    f"<ipAddress>{_esc(parts.hostname or '')}</ipAddress><portNo>{parts.port or 80}</portNo>"
                    "<httpAuthenticationMethod>none</httpAuthenticationMethod></HttpHostNotification>")
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<HttpHostNotificationList version="2.0" '
                f'xmlns="{_XMLNS}">{host}</HttpHostNotificationList>')
        return web.Response(text=body, content_type="application/xml")

    async def _put_http_hosts(self, request: web.Request) -> web.StreamResponse:
        root = _xml_body(await request.read())
        host = root if _local(root.tag) == "HttpHostNotification" else _child(root, "HttpHostNotification")
        if host is None:
            raise IsapiRejection("badXmlContent", "HttpHostNotification", status_code=5,
                                 status_string="Invalid XML Format")
        self.push_url = _host_url(host)
        fmt = (_text(host, "parameterFormatType") or "JSON").upper()
        if fmt == "XML":
            self.push_format = "xml"
        elif self.push_format == "xml":
            self.push_format = "json"
        self._push_wake.set()
        return web.Response(text=ok_xml(request.path_qs), content_type="application/xml")

    async def _device_info(self, request: web.Request) -> web.StreamResponse:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DeviceInfo version="2.0" xmlns="{_XMLNS}">'
                f"<deviceName>{_esc(self.model)}</deviceName><deviceID>{uuid.uuid5(uuid.NAMESPACE_OID, self.serial)}"
                f"</deviceID><model>{_esc(self.model)}</model><serialNumber>{_esc(self.serial)}</serialNumber>"
                f"<macAddress>{_esc(self.mac)}</macAddress><firmwareVersion>{_esc(self.firmware)}</firmwareVersion>"
                f"<firmwareReleasedDate>{_esc(self.firmware_build)}</firmwareReleasedDate>"
                "<deviceType>ACS</deviceType></DeviceInfo>")
        return web.Response(text=body, content_type="application/xml")

    async def _device_status(self, request: web.Request) -> web.StreamResponse:
        uptime = int(time.monotonic() - self._booted_at)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<DeviceStatus version="2.0" xmlns="{_XMLNS}">'
                f"<currentDeviceTime>{self.now().isoformat(timespec='seconds')}</currentDeviceTime>"
                f"<deviceUpTime>{uptime}</deviceUpTime></DeviceStatus>")
        return web.Response(text=body, content_type="application/xml")

    async def _system_time(self, request: web.Request) -> web.StreamResponse:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Time version="2.0" xmlns="{_XMLNS}">'
                f"<timeMode>manual</timeMode><localTime>{self.now().isoformat(timespec='seconds')}</localTime>"
                "<timeZone>CST-8:00:00</timeZone></Time>")
        return web.Response(text=body, content_type="application/xml")

    async def _reboot(self, request: web.Request) -> web.StreamResponse:
        self._spawn(self._reboot_after_answer(), "isapi-reboot")
        return web.Response(text=ok_xml(request.path_qs), content_type="application/xml")

    async def _reboot_after_answer(self) -> None:
        await asyncio.sleep(0.05)  # let the 200 leave before the server goes away
        await self.reboot()

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await work
        task = asyncio.create_task(run(), name=f"{name}-{self.serial[-8:]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _present_body(request: web.Request) -> tuple[str, str]:
    doc = await _json_body(request)
    if isinstance(doc, dict) and len(doc) == 1:
        (kind, value), = doc.items()
        if kind in ("card", "face") and isinstance(value, str) and 0 < len(value) <= 32:
            return kind, value
    raise bad("present")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("json") from None


def _employee_nos(cond: dict[str, Any]) -> set[str]:
    entries = cond.get("EmployeeNoList")
    if not isinstance(entries, list) or not entries or len(entries) > 1000:
        raise bad("EmployeeNoList")
    out = set()
    for entry in entries:
        no = entry.get("employeeNo") if isinstance(entry, dict) else None
        if not isinstance(no, str) or not 0 < len(no) <= 32:
            raise bad("employeeNo")
        out.add(no)
    return out


def _xml_body(raw: bytes) -> ET.Element:
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:  # no entity games on a device
        raise IsapiRejection("badXmlContent", "DOCTYPE", status_code=5, status_string="Invalid XML Format")
    try:
        return ET.fromstring(raw)
    except ET.ParseError:
        raise IsapiRejection("badXmlContent", "xml", status_code=5, status_string="Invalid XML Format") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _text(element: ET.Element, name: str) -> str:
    child = _child(element, name)
    return (child.text or "").strip()[:256] if child is not None else ""


def _host_url(host: ET.Element) -> str | None:
    address = _text(host, "ipAddress") or _text(host, "hostName")
    if not address:
        return None  # an emptied slot: no push
    port = _text(host, "portNo") or "80"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise IsapiRejection("badXmlContent", "portNo", status_code=6)
    scheme = "https" if _text(host, "protocolType").upper() == "HTTPS" else "http"
    path = _text(host, "url") or "/"
    return f"{scheme}://{address}:{port}{path if path.startswith('/') else '/' + path}"


def alert_xml(doc: dict[str, Any]) -> str:
    """An EventNotificationAlert document as XML, from its JSON form."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="2.0" xmlns="{_XMLNS}">'
            f"{_xml_fields(doc)}</EventNotificationAlert>")


def _xml_fields(doc: dict[str, Any]) -> str:
    out = []
    for key, value in doc.items():
        if isinstance(value, dict):
            out.append(f"<{key}>{_xml_fields(value)}</{key}>")
        elif isinstance(value, bool):
            out.append(f"<{key}>{'true' if value else 'false'}</{key}>")
        else:
            out.append(f"<{key}>{_esc(str(value))}</{key}>")
    return "".join(out)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
