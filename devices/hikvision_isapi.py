"""Hikvision ISAPI user, card and event management, pure: request bodies and
the parsing of answers, no I/O.

What a DS-K1T face or card terminal keeps for itself, and how it is managed
(ISAPI "AccessControl" JSON, ``?format=json`` on every path):

* users: ``POST UserInfo/Record`` adds one ``UserInfo``, ``PUT UserInfo/Modify``
  changes one, ``PUT UserInfo/SetUp`` adds or changes (newer firmware),
  ``POST UserInfo/Search`` pages through ``UserInfoSearchCond``,
  ``PUT UserInfoDetail/Delete`` removes users by ``employeeNo`` together with
  their cards and faces (asynchronous: ``GET UserInfoDetail/DeleteProcess``
  says when it is done), ``GET UserInfo/Count``;
* cards: ``CardInfo/Record|Modify|Search|Delete|Count`` in the same shapes,
  a card belongs to one ``employeeNo`` and ``cardNo`` is unique on the device;
* events: ``POST AcsEvent`` with ``AcsEventCond`` (``beginSerialNo`` /
  ``endSerialNo`` bound the serial numbers) answers ``AcsEvent.InfoList``.

Searches answer ``responseStatusStrg`` ``OK`` (this is the last page),
``MORE`` (ask again from ``searchResultPosition + numOfMatches``) or
``NO MATCH``. A refusal is an ISAPI ``ResponseStatus`` (``statusCode`` 1 is
OK; ``subStatusCode`` such as ``employeeNoAlreadyExist`` or ``noMemory``;
newer firmware adds ``errorCode`` and ``errorMsg``): :func:`raise_for_status`
turns it into an :class:`IsapiError` saying which operation failed.

Every parser bounds what it accepts (records per page, string lengths) and
raises :class:`IsapiPayloadError` for anything else, never another exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from devices.errors import DeviceError

__all__ = [
    "EMPLOYEE_NO_MAX",
    "AcsEventRecord",
    "CardRecord",
    "IsapiError",
    "IsapiPayloadError",
    "SearchPage",
    "UserRecord",
]

# Paths, relative to the terminal's base URL.
USER_RECORD = "/ISAPI/AccessControl/UserInfo/Record?format=json"
USER_MODIFY = "/ISAPI/AccessControl/UserInfo/Modify?format=json"
USER_SETUP = "/ISAPI/AccessControl/UserInfo/SetUp?format=json"
USER_SEARCH = "/ISAPI/AccessControl/UserInfo/Search?format=json"
USER_COUNT = "/ISAPI/AccessControl/UserInfo/Count?format=json"
USER_DELETE = "/ISAPI/AccessControl/UserInfoDetail/Delete?format=json"
USER_DELETE_PROCESS = "/ISAPI/AccessControl/UserInfoDetail/DeleteProcess?format=json"
# Older firmware without UserInfoDetail: removes the user record only.
USER_DELETE_LEGACY = "/ISAPI/AccessControl/UserInfo/Delete?format=json"
CARD_RECORD = "/ISAPI/AccessControl/CardInfo/Record?format=json"
CARD_MODIFY = "/ISAPI/AccessControl/CardInfo/Modify?format=json"
CARD_SEARCH = "/ISAPI/AccessControl/CardInfo/Search?format=json"
CARD_COUNT = "/ISAPI/AccessControl/CardInfo/Count?format=json"
CARD_DELETE = "/ISAPI/AccessControl/CardInfo/Delete?format=json"
ACS_EVENT = "/ISAPI/AccessControl/AcsEvent?format=json"
DEVICE_STATUS = "/ISAPI/System/status?format=json"

# DS-K1T firmware takes employeeNo up to 32 characters; digits and letters
# are what every model accepts (some refuse '-' or '_' in old firmware, none
# refuses letters and digits).
EMPLOYEE_NO_MAX = 32
EMPLOYEE_NO_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
CARD_NO_MAX = 32
NAME_MAX = 32
# The largest page a terminal answers is 30 on most firmware; the parser
# accepts more in case one answers more, never unbounded.
MAX_PAGE_RECORDS = 1000
MAX_SEARCH_ID = 64
MAX_TEXT = 256
# ISAPI times are local, without a zone ("timeType": "local").
_UPTIME_XML = re.compile(rb"<deviceUpTime>\s*(\d{1,18})\s*</deviceUpTime>")
_DEVICE_TIME_XML = re.compile(rb"<currentDeviceTime>\s*([0-9T:+.\-Z ]{10,40})\s*</currentDeviceTime>")
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")

SearchStatus = Literal["OK", "MORE", "NO MATCH"]
R = TypeVar("R")
T = TypeVar("T")
BEGIN_DEFAULT = "2000-01-01T00:00:00"
END_DEFAULT = "2037-12-31T23:59:59"
MAJOR_EVENT = 5

# statusCode meanings (ISAPI ResponseStatus).
STATUS_TEXT = {1: "OK", 2: "Device Busy", 3: "Device Error", 4: "Invalid Operation", 5: "Invalid Format",
               6: "Invalid Content", 7: "Reboot Required"}
# subStatusCodes that mean the terminal will not take the write however often
# it is asked (memory full, feature missing); the rest may pass on a retry.
REFUSALS = frozenset({"noMemory", "deviceNoMemory", "userExceedLimit", "userNumExceed", "cardNumExceed",
                      "notSupport", "invalidOperation", "badAuthorization", "badParameters", "lowPrivilege"})
USER_EXISTS = frozenset({"employeeNoAlreadyExist", "deviceUserAlreadyExist", "employeeNoAlreadyUserExist"})
USER_MISSING = frozenset({"employeeNoNotExist", "userNotExist"})
CARD_EXISTS = frozenset({"cardNoAlreadyExist", "cardAlreadyExist"})


class IsapiPayloadError(DeviceError, ValueError):
    """A terminal's answer that is not what the ISAPI documents say."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"hikvision {what}: {reason}")
        self.what = what
        self.reason = reason


class IsapiError(DeviceError):
    """The terminal refused an operation with an ISAPI ResponseStatus."""

    def __init__(self, operation: str, *, http_status: int, status_code: int | None, sub_status: str | None,
                 error_code: int | None = None, error_msg: str | None = None) -> None:
        self.operation = operation
        self.http_status = http_status
        self.status_code = status_code
        self.sub_status = sub_status
        self.error_code = error_code
        self.error_msg = error_msg
        text = STATUS_TEXT.get(status_code or 0, f"status {status_code}")
        detail = ", ".join(x for x in (sub_status, error_msg) if x)
        super().__init__(f"{operation}: HTTP {http_status}, {text}" + (f" ({detail})" if detail else ""))

    @property
    def refused(self) -> bool:
        """The terminal will not take this write on a retry either."""
        return self.http_status in (401, 403) or self.sub_status in REFUSALS or self.status_code in (4, 5, 6)

    @property
    def busy(self) -> bool:
        return self.status_code in (2, 3, 7) or self.http_status >= 500


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user on the terminal. Times are the terminal's local wall clock,
    ``YYYY-MM-DDTHH:MM:SS``; ``valid`` False means no validity window."""

    employee_no: str
    name: str = ""
    user_type: str = "normal"
    valid: bool = False
    begin: str = BEGIN_DEFAULT
    end: str = END_DEFAULT

    def same_as(self, other: UserRecord) -> bool:
        """Equal for what the gateway writes (a disabled window's times do not matter)."""
        if (self.employee_no, self.name, self.user_type, self.valid) != (
                other.employee_no, other.name, other.user_type, other.valid):
            return False
        return not self.valid or (self.begin, self.end) == (other.begin, other.end)


@dataclass(frozen=True, slots=True)
class CardRecord:
    card_no: str
    employee_no: str
    card_type: str = "normalCard"


@dataclass(frozen=True, slots=True)
class AcsEventRecord:
    serial_no: int
    major: int
    minor: int
    time: datetime | None
    employee_no: str | None
    card_no: str | None
    door_no: int | None


@dataclass(frozen=True, slots=True)
class SearchPage(Generic[R]):
    status: SearchStatus
    total: int | None
    records: list[R]

    @property
    def more(self) -> bool:
        return self.status == "MORE"


def is_employee_no(value: str) -> bool:
    return bool(EMPLOYEE_NO_RE.match(value))


def local_time(value: datetime) -> str:
    """A naive or already converted datetime as ISAPI's local time text."""
    return value.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- requests


def user_body(user: UserRecord) -> dict[str, Any]:
    """For UserInfo/Record, Modify and SetUp. ``doorRight`` "1" and the
    all-day plan template 1 open door 1, the terminal's own lock."""
    return {"UserInfo": {
        "employeeNo": user.employee_no, "name": user.name, "userType": user.user_type,
        "Valid": {"enable": user.valid, "beginTime": user.begin, "endTime": user.end, "timeType": "local"},
        "doorRight": "1", "RightPlan": [{"doorNo": 1, "planTemplateNo": "1"}],
    }}


def card_body(card: CardRecord) -> dict[str, Any]:
    return {"CardInfo": {"employeeNo": card.employee_no, "cardNo": card.card_no, "cardType": card.card_type}}


def user_search(search_id: str, position: int, max_results: int,
                employee_nos: list[str] | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"searchID": search_id, "searchResultPosition": position, "maxResults": max_results}
    if employee_nos:
        cond["EmployeeNoList"] = [{"employeeNo": e} for e in employee_nos]
    return {"UserInfoSearchCond": cond}


def card_search(search_id: str, position: int, max_results: int,
                card_nos: list[str] | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"searchID": search_id, "searchResultPosition": position, "maxResults": max_results}
    if card_nos:
        cond["CardNoList"] = [{"cardNo": c} for c in card_nos]
    return {"CardInfoSearchCond": cond}


def user_delete(employee_nos: list[str]) -> dict[str, Any]:
    return {"UserInfoDetail": {"mode": "byEmployeeNo", "EmployeeNoList": [{"employeeNo": e} for e in employee_nos]}}


def user_delete_legacy(employee_nos: list[str]) -> dict[str, Any]:
    return {"UserInfoDelCond": {"EmployeeNoList": [{"employeeNo": e} for e in employee_nos]}}


def card_delete(card_nos: list[str]) -> dict[str, Any]:
    return {"CardInfoDelCond": {"CardNoList": [{"cardNo": c} for c in card_nos]}}


def acs_event_search(search_id: str, position: int, max_results: int, *, begin_serial: int | None = None,
                     end_serial: int | None = None, major: int = MAJOR_EVENT, minor: int = 0,
                     newest_first: bool = False) -> dict[str, Any]:
    """Events of ``major`` (0: all), oldest first unless ``newest_first``,
    with serial numbers from ``begin_serial`` to ``end_serial`` when given:
    both or neither (a DS-K1T344 refuses beginSerialNo without endSerialNo)."""
    if (begin_serial is None) != (end_serial is None):
        raise ValueError("give both begin_serial and end_serial, or neither")
    cond: dict[str, Any] = {"searchID": search_id, "searchResultPosition": position, "maxResults": max_results,
                            "major": major, "minor": minor, "timeReverseOrder": newest_first}
    if begin_serial is not None:
        cond["beginSerialNo"] = begin_serial
        cond["endSerialNo"] = end_serial
    return {"AcsEventCond": cond}


# --------------------------------------------------------------------------- answers


def load(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IsapiPayloadError(what, f"not JSON: {str(exc)[:80]}") from exc


def raise_for_status(operation: str, http_status: int, body: bytes) -> None:
    """Raise :class:`IsapiError` unless the answer is a success. A 2xx
    without a ResponseStatus (a search's answer) is a success."""
    doc: Any = None
    try:
        doc = json.loads(body) if body.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        doc = None
    status = _response_status(doc)
    code = _lenient(_opt_int, status, "statusCode")
    if 200 <= http_status < 300 and code in (None, 1):
        return
    raise IsapiError(operation, http_status=http_status, status_code=code,
                     sub_status=_lenient(_opt_text, status, "subStatusCode"),
                     error_code=_lenient(_opt_int, status, "errorCode"),
                     error_msg=_lenient(_opt_text, status, "errorMsg"))


def _lenient(read: Callable[[dict[str, Any] | None, str], T | None], status: dict[str, Any] | None,
             key: str) -> T | None:
    # A garbled field of an error must not hide the error itself.
    try:
        return read(status, key)
    except IsapiPayloadError:
        return None


def _response_status(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, dict):
        return None
    inner = doc.get("ResponseStatus")
    if isinstance(inner, dict):
        return inner
    return doc if "statusCode" in doc else None


def parse_user_page(body: bytes) -> SearchPage[UserRecord]:
    found = _page(body, "UserInfoSearch", "UserInfo")
    return SearchPage(found[0], found[1], [_user(r) for r in found[2]])


def parse_card_page(body: bytes) -> SearchPage[CardRecord]:
    found = _page(body, "CardInfoSearch", "CardInfo")
    return SearchPage(found[0], found[1], [_card(r) for r in found[2]])


def parse_event_page(body: bytes) -> SearchPage[AcsEventRecord]:
    found = _page(body, "AcsEvent", "InfoList")
    return SearchPage(found[0], found[1], [_event(r) for r in found[2]])


def parse_count(body: bytes, outer: Literal["UserInfoCount", "CardInfoCount"]) -> int:
    doc = load(body, outer)
    inner = doc.get(outer) if isinstance(doc, dict) else None
    field = "userNumber" if outer == "UserInfoCount" else "cardNumber"
    value = _opt_int(inner, field) if isinstance(inner, dict) else None
    if value is None:
        raise IsapiPayloadError(outer, f"no {field}")
    return value


def parse_delete_process(body: bytes) -> Literal["success", "processing", "failed"]:
    doc = load(body, "UserInfoDetailDeleteProcess")
    inner = doc.get("UserInfoDetailDeleteProcess") if isinstance(doc, dict) else None
    status = inner.get("status") if isinstance(inner, dict) else None
    if status == "success":
        return "success"
    if status in ("processing", "inProgress"):
        return "processing"
    if status == "failed":
        return "failed"
    raise IsapiPayloadError("UserInfoDetailDeleteProcess", f"unknown status {str(status)[:40]!r}")


def parse_uptime(body: bytes) -> int | None:
    """``DeviceStatus.deviceUpTime`` in seconds, None when the firmware does
    not say. Many firmwares answer System/status in XML whatever the
    ``format`` asked for, so both are read."""
    if body.lstrip()[:1] == b"<":
        found = _UPTIME_XML.search(body[:65536])
        return int(found.group(1)) if found else None
    doc = load(body, "DeviceStatus")
    inner = doc.get("DeviceStatus") if isinstance(doc, dict) else None
    return _opt_int(inner, "deviceUpTime") if isinstance(inner, dict) else None


@dataclass(frozen=True)
class DeviceStatus:
    uptime_s: int | None
    # The terminal's own clock, as it answers (``currentDeviceTime``): how far
    # off it is decides whether its event times are believed.
    device_time: datetime | None


def parse_status(body: bytes) -> DeviceStatus:
    """``System/status``: uptime and the terminal's clock, either None when
    the firmware does not say (XML or JSON, whatever was asked for)."""
    if body.lstrip()[:1] == b"<":
        head = body[:65536]
        found = _DEVICE_TIME_XML.search(head)
        return DeviceStatus(parse_uptime(body), _aware_time(found.group(1).decode() if found else None))
    doc = load(body, "DeviceStatus")
    inner = doc.get("DeviceStatus") if isinstance(doc, dict) else None
    if not isinstance(inner, dict):
        return DeviceStatus(None, None)
    return DeviceStatus(_opt_int(inner, "deviceUpTime"), _aware_time(inner.get("currentDeviceTime")))


def _aware_time(value: object) -> datetime | None:
    # Without a zone the offset cannot be measured: as good as unknown.
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _page(body: bytes, outer: str, list_key: str) -> tuple[SearchStatus, int | None, list[dict[str, Any]]]:
    doc = load(body, outer)
    inner = doc.get(outer) if isinstance(doc, dict) else None
    if not isinstance(inner, dict):
        raise IsapiPayloadError(outer, f"no {outer} object")
    status = inner.get("responseStatusStrg")
    if status not in ("OK", "MORE", "NO MATCH"):
        raise IsapiPayloadError(outer, f"responseStatusStrg {str(status)[:40]!r}")
    items = inner.get(list_key, [])
    if status == "NO MATCH" or items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise IsapiPayloadError(outer, f"{list_key} is not a list of objects")
    if len(items) > MAX_PAGE_RECORDS:
        raise IsapiPayloadError(outer, f"{len(items)} records in one page (at most {MAX_PAGE_RECORDS})")
    if status == "MORE" and not items:
        # A page that says "more" but holds nothing would make the caller ask forever.
        raise IsapiPayloadError(outer, "MORE with no records")
    return status, _opt_int(inner, "totalMatches"), items


def _user(raw: dict[str, Any]) -> UserRecord:
    employee_no = _text(raw, "employeeNo", EMPLOYEE_NO_MAX, "UserInfo")
    valid = raw.get("Valid") or {}
    if not isinstance(valid, dict):
        raise IsapiPayloadError("UserInfo", "Valid is not an object")
    enable = valid.get("enable", False)
    if not isinstance(enable, bool):
        raise IsapiPayloadError("UserInfo", "Valid.enable is not true/false")
    return UserRecord(employee_no=employee_no, name=_opt_text(raw, "name", NAME_MAX * 4) or "",
                      user_type=_opt_text(raw, "userType", 32) or "normal", valid=enable,
                      begin=_time_text(valid, "beginTime") or BEGIN_DEFAULT,
                      end=_time_text(valid, "endTime") or END_DEFAULT)


def _card(raw: dict[str, Any]) -> CardRecord:
    return CardRecord(card_no=_text(raw, "cardNo", CARD_NO_MAX, "CardInfo"),
                      employee_no=_text(raw, "employeeNo", EMPLOYEE_NO_MAX, "CardInfo"),
                      card_type=_opt_text(raw, "cardType", 32) or "normalCard")


def _event(raw: dict[str, Any]) -> AcsEventRecord:
    serial = _opt_int(raw, "serialNo")
    major = _opt_int(raw, "major")
    if serial is None or major is None:
        raise IsapiPayloadError("AcsEvent", "an event without serialNo or major")
    time_text = _opt_text(raw, "time", 64)
    try:
        when = datetime.fromisoformat(time_text) if time_text else None
    except ValueError:
        when = None  # a terminal with an unset clock still reports real reads
    return AcsEventRecord(serial_no=serial, major=major, minor=_opt_int(raw, "minor") or 0, time=when,
                          employee_no=_opt_text(raw, "employeeNoString", EMPLOYEE_NO_MAX * 4)
                          or _opt_text(raw, "employeeNo", EMPLOYEE_NO_MAX * 4),
                          card_no=_opt_text(raw, "cardNo", CARD_NO_MAX), door_no=_opt_int(raw, "doorNo"))


def _text(raw: dict[str, Any], key: str, limit: int, what: str) -> str:
    value = _opt_text(raw, key, limit)
    if value is None:
        raise IsapiPayloadError(what, f"no {key}")
    return value


def _opt_text(raw: dict[str, Any] | None, key: str, limit: int = MAX_TEXT) -> str | None:
    if raw is None:
        return None
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise IsapiPayloadError(key, f"not text but {type(value).__name__}")
    text = str(value).strip()
    if len(text) > limit:
        raise IsapiPayloadError(key, f"longer than {limit} characters")
    return text or None


def _opt_int(raw: dict[str, Any] | None, key: str) -> int | None:
    if raw is None:
        return None
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    raise IsapiPayloadError(key, f"not a non-negative integer: {str(value)[:40]!r}")


def _time_text(raw: dict[str, Any], key: str) -> str | None:
    text = _opt_text(raw, key, 64)
    if text is None:
        return None
    # Some firmware appends a zone or milliseconds; the gateway compares the local wall time.
    head = text[:19]
    if not _LOCAL_TIME.match(head):
        raise IsapiPayloadError(key, f"not a time: {text[:40]!r}")
    return head
