"""A small Hikvision terminal for the sync tests, written from the ISAPI
documents: digest authentication, users and cards in dicts, the access
event log, and faults to inject (unreachable, wrong password, storage full,
reboot). It answers the way DS-K1T firmware does: ResponseStatus JSON with
statusCode / subStatusCode, searches paged with responseStatusStrg."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = "DS-K1T341"
PAGE_MAX = 30


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP digest is MD5


def _status(code: int, sub: str, http: int = 200) -> web.Response:
    text = {1: "OK", 3: "Device Error", 4: "Invalid Operation", 6: "Invalid Content"}[code]
    return web.json_response({"statusCode": code, "statusString": text, "subStatusCode": sub,
                              **({"errorCode": 0x60000000 + code, "errorMsg": sub} if code != 1 else {})},
                             status=http)


class FakeTerminal:
    def __init__(self, password: str = "secret-pw") -> None:
        self.password = password
        self.users: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.boot = time.monotonic()
        self.full = False  # storage full: user and card records refused
        self.writes = 0
        self.event_search = True  # older firmware has no AcsEvent search
        self.single_serial_search = True  # False: a search with beginSerialNo = endSerialNo is refused
        self.single_serial_finds = True  # False: such a search answers with no event (seen on some firmware)
        self.event_searches: list[dict[str, Any]] = []  # every AcsEventCond asked, in order
        self.ignore_position = False  # broken firmware: every search answers its first page
        self.stalled = asyncio.Event()  # set: requests hang (a terminal busy or a link that drops packets)
        self.requests = 0
        self.deleted: dict[str, float] = {}  # employeeNo -> when its delete was answered
        self.changed = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._nonces: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_route("*", "/ISAPI/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self.online()

    async def online(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        if not self.port:
            for address in self._runner.addresses:
                self.port = int(address[1])

    async def offline(self) -> None:
        """The network between gateway and terminal is cut (the terminal keeps working)."""
        assert self._site is not None
        await self._site.stop()
        # Existing keep-alive connections die with the network too.
        assert self._runner is not None and self._runner.server is not None
        for conn in list(self._runner.server.connections):
            conn.force_close()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reboot(self, *, wipe: bool = False) -> None:
        self.boot = time.monotonic()
        if wipe:  # a factory reset, or a firmware update that lost the lists
            self.users.clear()
            self.cards.clear()

    def add_event(self, *, card: str | None = None, employee: str | None = None, minor: int = 1,
                  major: int = 5) -> int:
        serial = len(self.events) + 1
        event: dict[str, Any] = {"major": major, "minor": minor, "time": "2026-12-06T13:00:00+08:00",
                                 "serialNo": serial, "doorNo": 1}
        if card:
            event["cardNo"] = card
        if employee:
            event["employeeNoString"] = employee
        self.events.append(event)
        return serial

    # ------------------------------------------------------------------ auth

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        header = request.headers.get("Authorization", "")
        if header.startswith("Digest ") and self._digest_ok(request, header[7:]):
            return await handler(request)
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        challenge = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    def _digest_ok(self, request: web.Request, text: str) -> bool:
        fields = {}
        for part in text.split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value.strip('"')
        if fields.get("nonce") not in self._nonces or fields.get("username") != "admin":
            return False
        ha1 = _md5(f"admin:{REALM}:{self.password}")
        ha2 = _md5(f"{request.method}:{fields.get('uri', '')}")
        expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))

    # ------------------------------------------------------------------ ISAPI

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        while self.stalled.is_set():
            await asyncio.sleep(0.05)  # hold the request open, as a hung terminal does
        path = request.path.removeprefix("/ISAPI/")
        body = await request.json() if request.can_read_body else {}
        route = f"{request.method} {path}"
        answer = {
            "GET System/status": self._device_status,
            "POST AccessControl/UserInfo/Record": self._user_record,
            "PUT AccessControl/UserInfo/Modify": self._user_modify,
            "POST AccessControl/UserInfo/Search": self._user_search,
            "PUT AccessControl/UserInfoDetail/Delete": self._user_delete,
            "GET AccessControl/UserInfoDetail/DeleteProcess": self._delete_process,
            "POST AccessControl/CardInfo/Record": self._card_record,
            "POST AccessControl/CardInfo/Search": self._card_search,
            "PUT AccessControl/CardInfo/Delete": self._card_delete,
            "POST AccessControl/AcsEvent": self._acs_event,
        }.get(route)
        if answer is None or route.endswith("AcsEvent") and not self.event_search:
            return _status(4, "notSupport", 404)
        response = answer(body)
        self.changed.set()
        return response

    def _device_status(self, _body: Any) -> web.Response:
        return web.json_response({"DeviceStatus": {"deviceUpTime": int(time.monotonic() - self.boot)}})

    def _user_record(self, body: Any) -> web.Response:
        user = body["UserInfo"]
        if self.full:
            return _status(3, "noMemory", 400)
        if user["employeeNo"] in self.users:
            return _status(6, "employeeNoAlreadyExist", 400)
        self.users[user["employeeNo"]] = user
        self.writes += 1
        return _status(1, "ok")

    def _user_modify(self, body: Any) -> web.Response:
        user = body["UserInfo"]
        if user["employeeNo"] not in self.users:
            return _status(6, "employeeNoNotExist", 400)
        self.users[user["employeeNo"]] = user
        self.writes += 1
        return _status(1, "ok")

    def _user_delete(self, body: Any) -> web.Response:
        cond = body["UserInfoDetail"]
        assert cond["mode"] == "byEmployeeNo"
        for item in cond["EmployeeNoList"]:
            number = item["employeeNo"]
            self.users.pop(number, None)
            self.cards = {n: c for n, c in self.cards.items() if c["employeeNo"] != number}
            self.deleted[number] = time.monotonic()
        self.writes += 1
        return _status(1, "ok")

    def _delete_process(self, _body: Any) -> web.Response:
        return web.json_response({"UserInfoDetailDeleteProcess": {"status": "success"}})

    def _card_record(self, body: Any) -> web.Response:
        card = body["CardInfo"]
        if self.full:
            return _status(3, "noMemory", 400)
        if card["employeeNo"] not in self.users:
            return _status(6, "employeeNoNotExist", 400)
        if card["cardNo"] in self.cards:
            return _status(6, "cardNoAlreadyExist", 400)
        self.cards[card["cardNo"]] = card
        self.writes += 1
        return _status(1, "ok")

    def _card_delete(self, body: Any) -> web.Response:
        for item in body["CardInfoDelCond"]["CardNoList"]:
            self.cards.pop(item["cardNo"], None)
        self.writes += 1
        return _status(1, "ok")

    def _user_search(self, body: Any) -> web.Response:
        return self._page("UserInfoSearch", "UserInfo", body["UserInfoSearchCond"], list(self.users.values()))

    def _card_search(self, body: Any) -> web.Response:
        return self._page("CardInfoSearch", "CardInfo", body["CardInfoSearchCond"], list(self.cards.values()))

    def _acs_event(self, body: Any) -> web.Response:
        cond = body["AcsEventCond"]
        self.event_searches.append(cond)
        begin, end = cond.get("beginSerialNo", 1), cond.get("endSerialNo", 2**62)
        if begin == end and not self.single_serial_search:
            return _status(6, "badParameters", 400)
        found = [e for e in self.events if begin <= e["serialNo"] <= end and cond["major"] in (0, e["major"])
                 and (begin != end or self.single_serial_finds)]
        if cond.get("timeReverseOrder"):
            found.reverse()
        return self._page("AcsEvent", "InfoList", cond, found)

    def _page(self, outer: str, key: str, cond: dict[str, Any], items: list[dict[str, Any]]) -> web.Response:
        start, count = 0 if self.ignore_position else cond["searchResultPosition"], min(cond["maxResults"], PAGE_MAX)
        page = items[start:start + count]
        status = ("NO MATCH" if not items else "MORE" if start + len(page) < len(items) or self.ignore_position and
                  len(items) > count else "OK")
        doc: dict[str, Any] = {"searchID": cond["searchID"], "responseStatusStrg": status,
                               "numOfMatches": len(page), "totalMatches": len(items)}
        if page:
            doc[key] = page
        return web.Response(text=json.dumps({outer: doc}), content_type="application/json")
