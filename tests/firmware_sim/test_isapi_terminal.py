"""The simulated Hikvision terminal over real sockets, with a digest client of
our own: it refuses a wrong password, keeps its own lists, and its own lock
refuses a tenant once the tenant is deleted from it."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import DigestAuthMiddleware, web

from firmware_sim.isapi_store import CARD_NO_RIGHT, CARD_OUT_OF_DATE, CARD_PASS, FACE_PASS, INVALID_CARD, Capacity
from firmware_sim.isapi_terminal import IsapiTerminalSim, PushFormat

PASSWORD = "Passw0rd!"
AC = "/ISAPI/AccessControl"


@asynccontextmanager
async def client(terminal: IsapiTerminalSim, password: str = PASSWORD) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=terminal.url,
                                     middlewares=(DigestAuthMiddleware("admin", password),)) as session:
        yield session


async def call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, path, json=body) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def user(no: str, **valid: Any) -> dict[str, Any]:
    return {"UserInfo": {"employeeNo": no, "name": f"租户{no}", "userType": "normal",
                         "Valid": {"enable": True, "beginTime": "2020-01-01T00:00:00",
                                   "endTime": "2037-12-31T23:59:59", **valid},
                         "doorRight": "1", "RightPlan": [{"doorNo": 1, "planTemplateNo": "1"}]}}


def card(no: str, employee_no: str) -> dict[str, Any]:
    return {"CardInfo": {"employeeNo": employee_no, "cardNo": no, "cardType": "normalCard"}}


async def test_a_wrong_password_is_refused_and_locks_the_account_after_five_tries() -> None:
    async with IsapiTerminalSim(password=PASSWORD) as terminal:
        async with client(terminal, "wrong") as session:
            status, _ = await call(session, "GET", f"{AC}/UserInfo/Count?format=json")
            assert status == 401
        async with client(terminal) as session:
            status, body = await call(session, "GET", f"{AC}/UserInfo/Count?format=json")
            assert (status, body["UserInfoCount"]["userNumber"]) == (200, 0)
        for _ in range(5):
            async with client(terminal, "wrong") as session:
                assert (await call(session, "GET", "/ISAPI/System/deviceInfo"))[0] == 401
        async with client(terminal) as session:  # the right password, but the account is locked
            status, body = await call(session, "GET", "/ISAPI/System/deviceInfo")
            assert status == 401 and "<lockStatus>lock</lockStatus>" in body


async def test_a_deleted_tenant_is_refused_by_the_terminal_itself() -> None:
    async with IsapiTerminalSim() as terminal, client(terminal) as session:
        assert (await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1001")))[0] == 200
        assert (await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card("3265421170", "1001")))[0] == 200
        terminal.enrol_face("1001")
        assert (await terminal.present_card("3265421170")).minor == CARD_PASS
        assert (await terminal.present_face("1001")).minor == FACE_PASS
        assert terminal.lock.openings == 2

        status, _ = await call(session, "PUT", f"{AC}/UserInfoDetail/Delete?format=json",
                               {"UserInfoDetail": {"mode": "byEmployeeNo", "EmployeeNoList": [{"employeeNo": "1001"}]}})
        assert status == 200
        refused = await terminal.present_card("3265421170")
        assert (refused.minor, refused.granted) == (INVALID_CARD, False)
        assert not (await terminal.present_face("1001")).granted
        assert terminal.lock.openings == 2
        _, count = await call(session, "GET", f"{AC}/CardInfo/Count?format=json")
        assert count == {"CardInfoCount": {"cardNumber": 0}}


async def test_expired_and_blocklisted_users_are_refused_and_modify_lets_them_in_again() -> None:
    async with IsapiTerminalSim() as terminal, client(terminal) as session:
        blocked = user("7")
        blocked["UserInfo"]["userType"] = "blackList"
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", blocked)
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("8", endTime="2021-01-01T00:00:00"))
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json",
                   user("9", enable=False, endTime="2021-01-01T00:00:00"))
        for card_no, person in (("70", "7"), ("80", "8"), ("90", "9")):
            await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card(card_no, person))
        assert (await terminal.present_card("70")).minor == CARD_NO_RIGHT
        assert (await terminal.present_card("80")).minor == CARD_OUT_OF_DATE
        # Valid.enable false: the effective period does not apply, the user is valid for good.
        assert (await terminal.present_card("90")).granted
        assert (await call(session, "PUT", f"{AC}/UserInfo/Modify?format=json", user("7")))[0] == 200
        assert (await terminal.present_card("70")).granted


async def test_duplicates_and_unknown_people_get_the_devices_error_bodies() -> None:
    async with IsapiTerminalSim() as terminal, client(terminal) as session:
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1"))
        status, body = await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1"))
        assert status == 400
        assert body["statusCode"] == 6 and body["subStatusCode"] == "employeeNoAlreadyExist"
        assert body["errorCode"] == 1610637344
        status, body = await call(session, "PUT", f"{AC}/UserInfo/Modify?format=json", user("2"))
        assert (status, body["subStatusCode"]) == (400, "employeeNoNotExist")
        status, body = await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card("9", "2"))
        assert (status, body["subStatusCode"]) == (400, "employeeNoNotExist")
        assert (await call(session, "PUT", f"{AC}/UserInfo/SetUp?format=json", user("2")))[0] == 200
        status, body = await call(session, "POST", f"{AC}/UserInfo/Record?format=json",
                                  {"UserInfo": {"employeeNo": "x" * 33}})
        assert (status, body["subStatusCode"], body["errorMsg"]) == (400, "badJsonContent", "employeeNo")


async def test_search_pages_by_position_and_says_more_until_the_last_page() -> None:
    async with IsapiTerminalSim() as terminal, client(terminal) as session:
        for n in range(45):
            await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user(str(1000 + n)))
        seen: list[str] = []
        statuses = []
        while True:
            cond = {"searchID": "s1", "searchResultPosition": len(seen), "maxResults": 100}
            _, body = await call(session, "POST", f"{AC}/UserInfo/Search?format=json", {"UserInfoSearchCond": cond})
            result = body["UserInfoSearch"]
            statuses.append((result["responseStatusStrg"], result["numOfMatches"], result["totalMatches"]))
            seen += [u["employeeNo"] for u in result.get("UserInfo", [])]
            if result["responseStatusStrg"] != "MORE":
                break
        assert statuses == [("MORE", 30, 45), ("OK", 15, 45)]  # pages of at most 30, as the devices report
        assert seen == [str(1000 + n) for n in range(45)]
        cond = {"searchID": "s2", "searchResultPosition": 0, "maxResults": 5,
                "EmployeeNoList": [{"employeeNo": "1003"}, {"employeeNo": "9999"}]}
        _, body = await call(session, "POST", f"{AC}/UserInfo/Search?format=json", {"UserInfoSearchCond": cond})
        assert [u["employeeNo"] for u in body["UserInfoSearch"]["UserInfo"]] == ["1003"]
        cond = {"searchID": "s3", "searchResultPosition": 45, "maxResults": 5}
        _, body = await call(session, "POST", f"{AC}/UserInfo/Search?format=json", {"UserInfoSearchCond": cond})
        assert body["UserInfoSearch"]["responseStatusStrg"] == "NO MATCH"


async def test_acs_event_search_by_serial_range_returns_the_missed_events() -> None:
    async with IsapiTerminalSim() as terminal, client(terminal) as session:
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1"))
        await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card("111", "1"))
        serials = [(await terminal.present_card("111" if n % 2 else "999")).serial_no for n in range(6)]
        assert serials == [1, 2, 3, 4, 5, 6]
        cond = {"searchID": "catch-up", "searchResultPosition": 0, "maxResults": 30, "major": 0, "minor": 0,
                "beginSerialNo": 3, "endSerialNo": 999999999}
        _, body = await call(session, "POST", f"{AC}/AcsEvent?format=json", {"AcsEventCond": cond})
        infos = body["AcsEvent"]["InfoList"]
        assert [(i["serialNo"], i["minor"], i["cardNo"]) for i in infos] == [
            (3, INVALID_CARD, "999"), (4, CARD_PASS, "111"), (5, INVALID_CARD, "999"), (6, CARD_PASS, "111")]
        assert infos[1]["employeeNoString"] == "1" and infos[1]["time"].endswith("+08:00")
        # Like a DS-K1T344: a begin without an end is refused.
        del cond["endSerialNo"]
        status, body = await call(session, "POST", f"{AC}/AcsEvent?format=json", {"AcsEventCond": cond})
        assert (status, body["subStatusCode"], body["errorMsg"]) == (400, "badJsonContent", "endSerialNo")


class Listener:
    """A gateway's HTTP listening endpoint that answers what it is told to."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.bodies: list[tuple[str, bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append((request.content_type, await request.read()))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@asynccontextmanager
async def listening(answers: list[int]) -> AsyncIterator[Listener]:
    listener = Listener(answers)
    app = web.Application()
    app.router.add_post("/events", listener.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    listener.url = f"http://127.0.0.1:{port}/events"
    try:
        yield listener
    finally:
        await runner.cleanup()


def _serial_of(content_type: str, body: bytes) -> int:
    if content_type == "application/xml":
        root = ET.fromstring(body)
        ns = {"i": "http://www.isapi.org/ver20/XMLSchema"}
        found = root.find("i:AccessControllerEvent/i:serialNo", ns)
        assert found is not None and found.text is not None
        return int(found.text)
    if content_type.startswith("multipart/"):
        start = body.index(b"{")
        end = body.index(b"\r\n--", start)
        return int(json.loads(body[start:end])["AccessControllerEvent"]["serialNo"])
    doc = json.loads(body)
    return int(doc.get("EventNotificationAlert", doc)["AccessControllerEvent"]["serialNo"])


@pytest.mark.parametrize("form", ["json", "json_alert", "xml", "multipart"])
async def test_pushes_are_retried_with_the_same_serial_until_answered_200(form: PushFormat) -> None:
    async with listening([500, 503]) as listener, IsapiTerminalSim(
            push_url=None, push_format=form, push_retry_s=0.01) as terminal:
        terminal.push_url = listener.url
        event = await terminal.present_card("42")
        await terminal.delivered(event.serial_no)
        assert terminal.push.statuses == [500, 503, 200]
        assert [_serial_of(ct, body) for ct, body in listener.bodies] == [event.serial_no] * 3
        expected = {"json": "application/json", "json_alert": "application/json", "xml": "application/xml",
                    "multipart": "multipart/form-data"}[form]
        assert {ct for ct, _ in listener.bodies} == {expected}


async def test_http_hosts_sets_the_target_and_events_made_while_it_was_down_follow() -> None:
    async with listening([]) as listener, IsapiTerminalSim(push_retry_s=0.01) as terminal, \
            client(terminal) as session:
        missed = await terminal.present_card("1")  # no host configured yet: queued
        port = int(listener.url.split(":")[2].split("/")[0])
        xml = ('<HttpHostNotificationList><HttpHostNotification><id>1</id><url>/events</url>'
               '<protocolType>HTTP</protocolType><parameterFormatType>XML</parameterFormatType>'
               f'<addressingFormatType>ipaddress</addressingFormatType><ipAddress>127.0.0.1</ipAddress>'
               f'<portNo>{port}</portNo></HttpHostNotification></HttpHostNotificationList>')
        async with session.put("/ISAPI/Event/notification/httpHosts", data=xml) as response:
            assert response.status == 200
        await terminal.delivered(missed.serial_no)
        assert listener.bodies[0][0] == "application/xml"


async def test_reboot_keeps_users_and_serials_go_on() -> None:
    async with IsapiTerminalSim(reboot_s=0.05) as terminal:
        async with client(terminal) as session:
            await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("5"))
            await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card("55", "5"))
            first = await terminal.present_card("55")
            terminal._booted_at -= 3600  # a terminal that has been up an hour
            status, _ = await call(session, "PUT", "/ISAPI/System/reboot")
            assert status == 200
        await terminal.wait_for(lambda: terminal.boots == 1)
        async with client(terminal) as session:
            _, count = await call(session, "GET", f"{AC}/UserInfo/Count?format=json")
            assert count["UserInfoCount"]["userNumber"] == 1
            _, status_xml = await call(session, "GET", "/ISAPI/System/status")
            # Counted from the reboot, not from the hour before it.
            up = re.search(r"<deviceUpTime>(\d+)</deviceUpTime>", status_xml)
            assert up is not None, status_xml
            assert int(up.group(1)) < 600, up.group(1)
        assert (await terminal.present_card("55")).serial_no == first.serial_no + 1


async def test_the_alert_stream_carries_events_and_heartbeats() -> None:
    async with IsapiTerminalSim(heartbeat_s=0.05) as terminal, client(terminal) as session:
        async with session.get("/ISAPI/Event/notification/alertStream") as response:
            assert response.headers["Content-Type"] == "multipart/mixed; boundary=boundary"
            # A second subscriber is refused while the first is connected.
            status, body = await call(session, "GET", "/ISAPI/Event/notification/alertStream")
            assert (status, body["subStatusCode"]) == (403, "deployExceedMax")
            await terminal.present_card("123")
            docs = await _read_parts(response, lambda d: d.get("eventType") == "AccessControllerEvent")
        kinds = [d["eventType"] for d in docs]
        assert "heartBeat" in kinds or len(kinds) == 1
        assert docs[-1]["AccessControllerEvent"]["cardNo"] == "123" and docs[-1]["currentEvent"] is True


async def _read_parts(response: aiohttp.ClientResponse, until: Callable[[dict[str, Any]], bool]) -> list[Any]:
    docs: list[Any] = []
    while True:
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line, "the stream ended"
        if not line.startswith(b"Content-Length:"):
            continue
        length = int(line.split(b":")[1])
        assert await response.content.readline() == b"\r\n"
        docs.append(json.loads(await response.content.readexactly(length)))
        if until(docs[-1]):
            return docs


async def test_faults_refused_writes_limits_and_oversize_bodies() -> None:
    async with IsapiTerminalSim(capacity=Capacity(users=2)) as terminal, client(terminal) as session:
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1"))
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("2"))
        status, body = await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("3"))
        assert (status, body["subStatusCode"]) == (400, "userExceedLimit")
        terminal.refuse_writes("lowMemory")
        status, body = await call(session, "PUT", f"{AC}/UserInfo/Modify?format=json", user("1"))
        assert (status, body["statusString"], body["subStatusCode"]) == (500, "Device Error", "lowMemory")
        terminal.refuse_writes(None)
        huge = {"UserInfo": {"employeeNo": "4", "name": "x" * 100_000}}
        status, _ = await call(session, "POST", f"{AC}/UserInfo/Record?format=json", huge)
        assert status == 413
        async with session.post(f"{AC}/UserInfo/Record?format=json", data=b"\xff{not json") as response:
            assert response.status == 400
        terminal.clock_offset_s = -3600
        late = await terminal.present_card("1")
        assert abs((late.time - terminal.now()).total_seconds()) < 5


async def test_a_dropped_network_is_a_closed_port_and_pushes_wait_for_it() -> None:
    async with listening([]) as listener, IsapiTerminalSim(push_url=None, push_retry_s=0.01) as terminal:
        terminal.push_url = listener.url
        await terminal.network_down()
        event = await terminal.present_card("77")
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientConnectionError):
                await plain.get(f"{terminal.url}/ISAPI/System/deviceInfo")
        assert terminal.push.attempts == 0
        await terminal.network_restore()
        await terminal.delivered(event.serial_no)


async def test_user_detail_delete_is_polled_until_done() -> None:
    async with IsapiTerminalSim(delete_processing_s=0.1) as terminal, client(terminal) as session:
        await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("1"))
        await call(session, "PUT", f"{AC}/UserInfoDetail/Delete?format=json", {"UserInfoDetail": {"mode": "all"}})
        _, progress = await call(session, "GET", f"{AC}/UserInfoDetail/DeleteProcess?format=json")
        assert progress == {"UserInfoDetailDeleteProcess": {"status": "processing"}}
        await terminal.wait_for(lambda: not terminal.store.users)
        _, progress = await call(session, "GET", f"{AC}/UserInfoDetail/DeleteProcess?format=json")
        assert progress["UserInfoDetailDeleteProcess"]["status"] == "success"


async def test_a_nonce_that_expires_after_a_few_uses_is_renewed_by_the_client() -> None:
    # Terminals in the field expired a nonce after about eight uses.
    async with IsapiTerminalSim(nonce_uses=2) as terminal, client(terminal) as session:
        statuses = [(await call(session, "GET", f"{AC}/UserInfo/Count?format=json"))[0] for _ in range(5)]
        assert statuses == [200] * 5


async def test_a_reboot_that_loses_the_log_numbers_events_from_one_again() -> None:
    async with IsapiTerminalSim(reboot_s=0.01) as terminal:
        await terminal.present_card("1")
        await terminal.present_card("1")
        await terminal.reboot(lose_events=True)
        assert (await terminal.present_card("1")).serial_no == 1
        assert [e.serial_no for e in terminal.store.events] == [1]


async def test_the_simulators_own_control_presents_a_card_from_another_process() -> None:
    """/sim/present (not ISAPI; what the demo uses from its own process):
    the terminal decides from its own list, behind the same digest login."""
    async with IsapiTerminalSim(password=PASSWORD) as terminal, client(terminal) as session:
        assert (await call(session, "POST", f"{AC}/UserInfo/Record?format=json", user("77")))[0] == 200
        assert (await call(session, "POST", f"{AC}/CardInfo/Record?format=json", card("3265421170", "77")))[0] == 200
        status, body = await call(session, "POST", "/sim/present", {"card": "3265421170"})
        assert (status, body["granted"]) == (200, True)
        status, body = await call(session, "POST", "/sim/present", {"card": "999"})
        assert (status, body["granted"]) == (200, False)
        for bad_body in ({"card": 3265421170}, {"card": "1", "face": "2"}, {"badge": "1"}, ["card"],
                         {"card": "9" * 40}):
            assert (await call(session, "POST", "/sim/present", bad_body))[0] == 400, bad_body
        async with client(terminal, "wrong") as stranger:
            assert (await call(stranger, "POST", "/sim/present", {"card": "3265421170"}))[0] == 401
        assert terminal.lock.openings == 1
