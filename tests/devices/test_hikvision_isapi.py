"""ISAPI user, card and event management bodies and answers, as the
terminals send them; every parser bounded and fuzzed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import hikvision_isapi as isapi
from devices.hikvision_isapi import CardRecord, IsapiError, IsapiPayloadError, UserRecord

USER_PAGE = {"UserInfoSearch": {
    "searchID": "rg-1", "responseStatusStrg": "MORE", "numOfMatches": 2, "totalMatches": 31,
    "UserInfo": [
        {"employeeNo": "p1", "name": "rentgate", "userType": "normal", "closeDelayEnabled": False,
         "Valid": {"enable": True, "beginTime": "2026-11-01T00:00:00", "endTime": "2027-10-31T23:59:59",
                   "timeType": "local"},
         "belongGroup": "", "password": "", "doorRight": "1",
         "RightPlan": [{"doorNo": 1, "planTemplateNo": "1"}], "maxOpenDoorTime": 0, "openDoorTime": 0,
         "roomNumber": 0, "floorNumber": 0, "localUIRight": False, "gender": "unknown", "numOfCard": 1,
         "numOfFace": 0},
        {"employeeNo": "9001", "name": "房东", "userType": "normal",
         "Valid": {"enable": False, "beginTime": "2000-01-01T00:00:00", "endTime": "2037-12-31T23:59:59"}},
    ]}}


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_user_search_page() -> None:
    page = isapi.parse_user_page(_bytes(USER_PAGE))
    assert page.more and page.total == 31
    assert page.records[0] == UserRecord(employee_no="p1", name="rentgate", valid=True, begin="2026-11-01T00:00:00",
                                         end="2027-10-31T23:59:59")
    assert page.records[1].name == "房东" and not page.records[1].valid


def test_no_match_is_an_empty_last_page() -> None:
    page = isapi.parse_card_page(_bytes({"CardInfoSearch": {"searchID": "x", "responseStatusStrg": "NO MATCH",
                                                            "numOfMatches": 0, "totalMatches": 0}}))
    assert not page.more and page.records == []


def test_card_page_and_event_page() -> None:
    cards = isapi.parse_card_page(_bytes({"CardInfoSearch": {"searchID": "x", "responseStatusStrg": "OK",
                                                             "CardInfo": [{"employeeNo": "p1", "cardNo": "3",
                                                                           "leaderCard": "", "cardType": "normalCard"}]}}))
    assert cards.records == [CardRecord(card_no="3", employee_no="p1")]
    events = isapi.parse_event_page(_bytes({"AcsEvent": {"searchID": "x", "responseStatusStrg": "OK",
                                                         "numOfMatches": 1, "totalMatches": 1, "InfoList": [
        {"major": 5, "minor": 75, "time": "2026-12-06T13:00:00+08:00", "cardType": 1, "name": "",
         "employeeNoString": "p1", "serialNo": 1234, "doorNo": 1, "currentVerifyMode": "cardOrFace",
         "mask": "no", "pictureURL": "http://x/y.jpg"}]}}))
    event = events.records[0]
    assert (event.serial_no, event.major, event.minor, event.employee_no, event.door_no) == (1234, 5, 75, "p1", 1)
    assert event.time is not None and event.time.utcoffset() is not None


def test_requests_are_shaped_as_documented() -> None:
    body = isapi.user_body(UserRecord(employee_no="p1", name="rentgate"))
    assert body["UserInfo"]["Valid"] == {"enable": False, "beginTime": "2000-01-01T00:00:00",
                                         "endTime": "2037-12-31T23:59:59", "timeType": "local"}
    assert isapi.user_delete(["a", "b"]) == {"UserInfoDetail": {"mode": "byEmployeeNo", "EmployeeNoList": [
        {"employeeNo": "a"}, {"employeeNo": "b"}]}}
    assert isapi.card_delete(["7"]) == {"CardInfoDelCond": {"CardNoList": [{"cardNo": "7"}]}}
    cond = isapi.acs_event_search("s", 30, 30, begin_serial=101, end_serial=200)["AcsEventCond"]
    assert (cond["beginSerialNo"], cond["endSerialNo"], cond["major"], cond["minor"], cond["timeReverseOrder"]) == (
        101, 200, 5, 0, False)
    assert isapi.user_search("s", 0, 30)["UserInfoSearchCond"] == {"searchID": "s", "searchResultPosition": 0,
                                                                   "maxResults": 30}


def test_response_status_errors_say_what_failed() -> None:
    isapi.raise_for_status("user record", 200, _bytes({"statusCode": 1, "statusString": "OK", "subStatusCode": "ok"}))
    isapi.raise_for_status("user search", 200, _bytes(USER_PAGE))
    with pytest.raises(IsapiError) as err:
        isapi.raise_for_status("user record", 400, _bytes({
            "statusCode": 3, "statusString": "Device Error", "subStatusCode": "noMemory",
            "errorCode": 0x30000001, "errorMsg": "storage full"}))
    assert err.value.refused and err.value.sub_status == "noMemory" and "user record" in str(err.value)
    with pytest.raises(IsapiError) as err:
        isapi.raise_for_status("user modify", 200, _bytes({"ResponseStatus": {"statusCode": 2,
                                                                             "subStatusCode": "deviceBusy"}}))
    assert err.value.busy and not err.value.refused
    with pytest.raises(IsapiError) as err:
        isapi.raise_for_status("status", 401, b"<html>401</html>")
    assert err.value.refused and err.value.status_code is None


def test_counts_uptime_and_delete_progress() -> None:
    assert isapi.parse_count(_bytes({"UserInfoCount": {"userNumber": 12}}), "UserInfoCount") == 12
    assert isapi.parse_count(_bytes({"CardInfoCount": {"cardNumber": "3"}}), "CardInfoCount") == 3
    assert isapi.parse_uptime(_bytes({"DeviceStatus": {"deviceUpTime": 86400}})) == 86400
    assert isapi.parse_uptime(_bytes({"DeviceStatus": {}})) is None
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<DeviceStatus version="2.0" '
           b'xmlns="http://www.isapi.org/ver20/XMLSchema"><deviceUpTime>3600</deviceUpTime></DeviceStatus>')
    assert isapi.parse_uptime(xml) == 3600
    assert isapi.parse_delete_process(_bytes({"UserInfoDetailDeleteProcess": {"status": "processing"}})) == "processing"


@pytest.mark.parametrize("doc", [
    {"UserInfoSearch": {"responseStatusStrg": "MORE", "UserInfo": []}},  # would page for ever
    {"UserInfoSearch": {"responseStatusStrg": "PARTIAL"}},
    {"UserInfoSearch": {"responseStatusStrg": "OK", "UserInfo": [{"employeeNo": "x" * 33}]}},
    {"UserInfoSearch": {"responseStatusStrg": "OK", "UserInfo": [{"name": "no number"}]}},
    {"UserInfoSearch": {"responseStatusStrg": "OK", "UserInfo": [{"employeeNo": "1"}] * 1001}},
    {"UserInfoSearch": {"responseStatusStrg": "OK", "UserInfo": [{"employeeNo": "1", "Valid": {"enable": "yes"}}]}},
    {"UserInfoSearch": {"responseStatusStrg": "OK", "UserInfo": [{"employeeNo": "1", "Valid": {"enable": True,
                                                                                              "beginTime": "soon"}}]}},
    [],
])
def test_bad_pages_are_refused_with_a_reason(doc: Any) -> None:
    with pytest.raises(IsapiPayloadError):
        isapi.parse_user_page(_bytes(doc))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=4), max_leaves=20)
_keys = st.sampled_from(["employeeNo", "cardNo", "name", "Valid", "serialNo", "major", "minor", "time",
                         "responseStatusStrg", "totalMatches", "userType", "enable", "beginTime"])
_record = st.dictionaries(_keys, _json | st.sampled_from(["OK", "MORE", "NO MATCH", "2026-01-01T00:00:00"]),
                          max_size=8)


@settings(max_examples=300, deadline=None)
@given(outer=st.sampled_from(["UserInfoSearch", "CardInfoSearch", "AcsEvent"]),
       status=st.sampled_from(["OK", "MORE", "NO MATCH", "?"]), records=st.lists(_record, max_size=5),
       junk=_json)
def test_fuzzed_pages_parse_or_raise_the_payload_error(outer: str, status: str, records: list[dict[str, Any]],
                                                       junk: Any) -> None:
    key = {"UserInfoSearch": "UserInfo", "CardInfoSearch": "CardInfo", "AcsEvent": "InfoList"}[outer]
    parsers: dict[str, Callable[[bytes], isapi.SearchPage[Any]]] = {
        "UserInfoSearch": isapi.parse_user_page, "CardInfoSearch": isapi.parse_card_page,
        "AcsEvent": isapi.parse_event_page}
    parse = parsers[outer]
    for doc in ({outer: {"responseStatusStrg": status, key: records}}, junk, {outer: junk}):
        try:
            page = parse(_bytes(doc))
        except IsapiPayloadError:
            continue
        assert len(page.records) <= isapi.MAX_PAGE_RECORDS


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_fuzzed_bytes_never_escape_as_another_error(raw: bytes) -> None:
    for parse in (isapi.parse_user_page, isapi.parse_card_page, isapi.parse_event_page, isapi.parse_uptime,
                  isapi.parse_delete_process):
        try:
            parse(raw)
        except IsapiPayloadError:
            pass
    try:
        isapi.raise_for_status("op", 200, raw)
    except IsapiError:
        pass


@settings(max_examples=300, deadline=None)
@given(status=st.dictionaries(st.sampled_from(["statusCode", "subStatusCode", "errorCode", "errorMsg"]), _json),
       http=st.sampled_from([200, 400, 401, 500]))
def test_garbled_response_statuses_still_raise_the_isapi_error(status: dict[str, Any], http: int) -> None:
    for doc in (status, {"ResponseStatus": status}):
        try:
            isapi.raise_for_status("op", http, _bytes(doc))
        except IsapiError:
            pass
        else:
            assert http == 200
