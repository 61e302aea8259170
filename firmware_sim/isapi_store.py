"""What a Hikvision access terminal keeps in flash: its users, cards, faces
and event log, and the decision its lock makes from them. Pure: the HTTP side
(firmware_sim/isapi_terminal.py) turns requests into calls here and
:class:`IsapiRejection` into ISAPI error bodies.

Shapes follow the ISAPI access-control documents (UserInfo, CardInfo,
UserInfoDetail, AcsEvent); see docs/terminal-sim.md for where each fact
comes from and what is simplified.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from firmware_sim.errors import SimError

CHINA = timezone(timedelta(hours=8))

# subEventType values under major 5 (HCNetSDK MINOR_*).
CARD_PASS, CARD_NO_RIGHT, CARD_INVALID_PERIOD, CARD_OUT_OF_DATE, INVALID_CARD = 0x01, 0x06, 0x07, 0x08, 0x09
FACE_PASS, FACE_FAIL = 0x4B, 0x4C
MAJOR_EVENT = 5

EMPLOYEE_NO_MAX = 32  # EmployeeNoInfo max reported by a DS-K1T342 (1-32)
NAME_MAX = 128
CARD_NO_MAX = 32
PAGE_MAX = 30  # search page maximum the terminals report for users and events
SERIAL_MAX = 3_000_000_000  # the event serial maximum a DS-K1T342 reported
LIST_MAX = 1000  # EmployeeNoList / CardNoList entries accepted in one request

# errorCode values seen from devices; others are not known and are left out.
_ERROR_CODES = {"employeeNoAlreadyExist": 1610637344, "badJsonContent": 1610612737}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class IsapiRejection(SimError):
    """A request the terminal refuses, with the ISAPI status it answers."""

    def __init__(self, sub_status: str, error_msg: str = "", *, status_code: int = 6,
                 status_string: str = "Invalid Content", http_status: int = 400) -> None:
        super().__init__(f"{sub_status}: {error_msg}")
        self.sub_status = sub_status
        self.error_msg = error_msg or sub_status
        self.status_code = status_code
        self.status_string = status_string
        self.http_status = http_status

    def body(self, request_url: str = "") -> dict[str, Any]:
        doc: dict[str, Any] = {"statusCode": self.status_code, "statusString": self.status_string,
                               "subStatusCode": self.sub_status, "errorMsg": self.error_msg}
        if request_url:
            doc["requestURL"] = request_url
        if self.sub_status in _ERROR_CODES:
            doc["errorCode"] = _ERROR_CODES[self.sub_status]
        return doc


def bad(field_name: str) -> IsapiRejection:
    return IsapiRejection("badJsonContent", field_name)


def lacking(field_name: str) -> IsapiRejection:
    return IsapiRejection("MessageParametersLack", field_name)


@dataclass
class User:
    employee_no: str
    name: str = ""
    user_type: str = "normal"
    enable: bool = True  # Valid.enable: the effective period applies (false: permanent)
    begin: datetime | None = None  # device local time, no zone (timeType "local")
    end: datetime | None = None
    door_right: str = "1"
    right_plan: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, cards: int, faces: int) -> dict[str, Any]:
        valid: dict[str, Any] = {"enable": self.enable, "timeType": "local",
                                 "beginTime": _fmt(self.begin or datetime(1970, 1, 1)),
                                 "endTime": _fmt(self.end or datetime(2037, 12, 31, 23, 59, 59))}
        return {"employeeNo": self.employee_no, "name": self.name, "userType": self.user_type,
                "closeDelayEnabled": False, "Valid": valid, "belongGroup": "", "password": "",
                "doorRight": self.door_right, "RightPlan": self.right_plan, "maxOpenDoorTime": 0,
                "openDoorTime": 0, "roomNumber": 0, "floorNumber": 0, "localUIRight": False,
                "gender": "unknown", "numOfCard": cards, "numOfFP": 0, "numOfFace": faces}


@dataclass
class Card:
    card_no: str
    employee_no: str
    card_type: str = "normalCard"

    def to_json(self) -> dict[str, Any]:
        return {"employeeNo": self.employee_no, "cardNo": self.card_no, "leaderCard": "", "cardType": self.card_type}


@dataclass(frozen=True)
class AcsEventRecord:
    serial_no: int
    minor: int
    time: datetime  # aware, as the device's clock showed it
    card_no: str = ""
    employee_no: str = ""
    name: str = ""
    user_type: str = ""
    verify_mode: str = "cardOrFace"
    major: int = MAJOR_EVENT

    @property
    def granted(self) -> bool:
        return self.minor in (CARD_PASS, FACE_PASS)

    def info(self) -> dict[str, Any]:
        """One entry of an AcsEvent search's InfoList."""
        doc: dict[str, Any] = {"major": self.major, "minor": self.minor, "time": self.time.isoformat(),
                               "cardReaderNo": 1, "doorNo": 1, "type": 0, "serialNo": self.serial_no,
                               "currentVerifyMode": self.verify_mode, "mask": "unknown"}
        if self.card_no:
            doc.update(cardNo=self.card_no, cardType=1, cardReaderKind=1)
        if self.employee_no:
            doc.update(employeeNoString=self.employee_no, name=self.name, userType=self.user_type or "normal")
        return doc


@dataclass
class Capacity:
    users: int = 10_000
    cards: int = 10_000
    cards_per_user: int = 5
    events: int = 100_000  # retained; older ones are overwritten, serials go on


class TerminalStore:
    """The terminal's lists, its event log and its lock's decisions."""

    def __init__(self, capacity: Capacity | None = None, *, first_serial: int = 1) -> None:
        self.capacity = capacity or Capacity()
        self.users: dict[str, User] = {}
        self.cards: dict[str, Card] = {}
        self.faces: set[str] = set()
        self.events: deque[AcsEventRecord] = deque(maxlen=self.capacity.events)
        self.next_serial = first_serial
        self.refuse_writes: str | None = None  # a subStatusCode every write is refused with

    # -- users -------------------------------------------------------------
    def add_user(self, doc: Any) -> None:
        user = _user_from(_member(doc, "UserInfo"))
        self._writable()
        if user.employee_no in self.users:
            raise IsapiRejection("employeeNoAlreadyExist", "checkUser")
        if len(self.users) >= self.capacity.users:
            raise IsapiRejection("userExceedLimit", "userNum")
        self.users[user.employee_no] = user

    def modify_user(self, doc: Any) -> None:
        info = _member(doc, "UserInfo")
        no = _employee_no(info)
        self._writable()
        if no not in self.users:
            raise IsapiRejection("employeeNoNotExist", "employeeNo")
        self.users[no] = _user_from(info, base=self.users[no])

    def set_up_user(self, doc: Any) -> None:
        info = _member(doc, "UserInfo")
        no = _employee_no(info)
        if no in self.users:
            self.modify_user(doc)
        else:
            self.add_user(doc)

    def delete_users(self, employee_nos: Iterable[str] | None) -> int:
        """None: everyone. Their cards and faces go with them."""
        self._writable()
        doomed = list(self.users) if employee_nos is None else [n for n in employee_nos if n in self.users]
        for no in doomed:
            del self.users[no]
            self.faces.discard(no)
        gone = set(doomed)
        for card_no in [c.card_no for c in self.cards.values() if c.employee_no in gone]:
            del self.cards[card_no]
        return len(doomed)

    def search_users(self, doc: Any) -> dict[str, Any]:
        cond = _member(doc, "UserInfoSearchCond")
        wanted = _id_list(cond.get("EmployeeNoList"), "employeeNo", "EmployeeNoList")
        users = [u for u in self.users.values() if wanted is None or u.employee_no in wanted]
        page, status, position = _page(cond, users)
        return {"UserInfoSearch": _search_result(cond, status, len(users), position, "UserInfo", [
            u.to_json(self._cards_of(u.employee_no), int(u.employee_no in self.faces)) for u in page])}

    def count_users(self) -> dict[str, Any]:
        return {"UserInfoCount": {"userNumber": len(self.users), "bindFaceUserNumber": len(self.faces),
                                  "bindCardUserNumber": len({c.employee_no for c in self.cards.values()})}}

    # -- cards ---------------------------------------------------------------
    def add_card(self, doc: Any) -> None:
        card = _card_from(_member(doc, "CardInfo"))
        self._writable()
        if card.card_no in self.cards:
            raise IsapiRejection("cardNoAlreadyExist", "cardNo")
        self._may_hold(card)
        self.cards[card.card_no] = card

    def modify_card(self, doc: Any) -> None:
        card = _card_from(_member(doc, "CardInfo"))
        self._writable()
        if card.card_no not in self.cards:
            raise IsapiRejection("cardNoNotExist", "cardNo")
        if self.cards[card.card_no].employee_no != card.employee_no:
            self._may_hold(card)
        self.cards[card.card_no] = card

    def set_up_card(self, doc: Any) -> None:
        card = _card_from(_member(doc, "CardInfo"))
        if card.card_no in self.cards:
            self.modify_card(doc)
        else:
            self.add_card(doc)

    def delete_cards(self, doc: Any) -> int:
        cond = _member(doc, "CardInfoDelCond")
        by_person = _id_list(cond.get("EmployeeNoList"), "employeeNo", "EmployeeNoList")
        by_card = _id_list(cond.get("CardNoList"), "cardNo", "CardNoList")
        self._writable()
        doomed = [c.card_no for c in self.cards.values()
                  if (by_person is None and by_card is None)
                  or (by_person is not None and c.employee_no in by_person)
                  or (by_card is not None and c.card_no in by_card)]
        for card_no in doomed:
            del self.cards[card_no]
        return len(doomed)

    def search_cards(self, doc: Any) -> dict[str, Any]:
        cond = _member(doc, "CardInfoSearchCond")
        by_person = _id_list(cond.get("EmployeeNoList"), "employeeNo", "EmployeeNoList")
        by_card = _id_list(cond.get("CardNoList"), "cardNo", "CardNoList")
        cards = [c for c in self.cards.values()
                 if (by_person is None or c.employee_no in by_person) and (by_card is None or c.card_no in by_card)]
        page, status, position = _page(cond, cards)
        return {"CardInfoSearch": _search_result(cond, status, len(cards), position, "CardInfo",
                                                 [c.to_json() for c in page])}

    def count_cards(self, employee_no: str | None = None) -> dict[str, Any]:
        n = self._cards_of(employee_no) if employee_no else len(self.cards)
        return {"CardInfoCount": {"cardNumber": n}}

    def add_face(self, employee_no: str) -> None:
        """A face picture enrolled for a user (the picture itself is not kept)."""
        self._writable()
        if employee_no not in self.users:
            raise IsapiRejection("employeeNoNotExist", "FPID")
        self.faces.add(employee_no)

    # -- the lock ------------------------------------------------------------
    def present_card(self, card_no: str, now: datetime) -> AcsEventRecord:
        card = self.cards.get(card_no)
        if card is None or card.employee_no not in self.users:
            return self._log(INVALID_CARD, now, card_no=card_no, verify_mode="card")
        user = self.users[card.employee_no]
        return self._log(_verdict(user, now, CARD_PASS), now, card_no=card_no, user=user, verify_mode="card")

    def present_face(self, employee_no: str, now: datetime) -> AcsEventRecord:
        user = self.users.get(employee_no)
        if user is None or employee_no not in self.faces:
            return self._log(FACE_FAIL, now, verify_mode="face")
        minor = FACE_PASS if _verdict(user, now, FACE_PASS) == FACE_PASS else FACE_FAIL
        return self._log(minor, now, user=user, verify_mode="face")

    def _log(self, minor: int, now: datetime, *, card_no: str = "", user: User | None = None,
             verify_mode: str) -> AcsEventRecord:
        event = AcsEventRecord(serial_no=self.next_serial, minor=minor, time=now, card_no=card_no,
                               employee_no=user.employee_no if user else "", name=user.name if user else "",
                               user_type=user.user_type if user else "", verify_mode=verify_mode)
        self.next_serial += 1
        self.events.append(event)
        return event

    # -- events --------------------------------------------------------------
    def search_events(self, doc: Any) -> dict[str, Any]:
        cond = _member(doc, "AcsEventCond")
        wanted = _EventFilter.of(cond)
        matches = [e for e in self.events if wanted(e)]
        if cond.get("timeReverseOrder") is True:
            matches.reverse()
        page, status, position = _page(cond, matches)
        result = _search_result(cond, status, len(matches), position, "InfoList", [e.info() for e in page])
        return {"AcsEvent": result}

    def event(self, serial_no: int) -> AcsEventRecord | None:
        first = self.events[0].serial_no if self.events else self.next_serial
        index = serial_no - first
        return self.events[index] if 0 <= index < len(self.events) else None

    # -- helpers -------------------------------------------------------------
    def _writable(self) -> None:
        if self.refuse_writes:
            raise IsapiRejection(self.refuse_writes, "write refused", status_code=3, status_string="Device Error",
                                 http_status=500)

    def _may_hold(self, card: Card) -> None:
        if card.employee_no not in self.users:
            raise IsapiRejection("employeeNoNotExist", "employeeNo")
        if len(self.cards) >= self.capacity.cards:
            raise IsapiRejection("cardNumOverLimit", "cardNo")
        if self._cards_of(card.employee_no) >= self.capacity.cards_per_user:
            raise IsapiRejection("cardNumPerPersonOverLimit", "cardNo")

    def _cards_of(self, employee_no: str) -> int:
        return sum(1 for c in self.cards.values() if c.employee_no == employee_no)


def _verdict(user: User, now: datetime, pass_minor: int) -> int:
    local = now.astimezone(CHINA).replace(tzinfo=None)
    if user.user_type == "blackList":
        return CARD_NO_RIGHT
    # Valid.enable switches the effective period on; false makes it permanent (ISAPI UserInfo).
    if not user.enable:
        return pass_minor
    if user.begin is not None and local < user.begin:
        return CARD_INVALID_PERIOD
    if user.end is not None and local > user.end:
        return CARD_OUT_OF_DATE
    return pass_minor


def _member(doc: Any, name: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise bad(name)
    value = doc.get(name)
    if value is None:
        raise lacking(name)
    if not isinstance(value, dict):
        raise bad(name)
    return value


def _text(info: dict[str, Any], key: str, limit: int, *, required: bool = False, default: str = "") -> str:
    value = info.get(key)
    if value is None:
        if required:
            raise lacking(key)
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad(key)
    text = str(value)
    if len(text) > limit or (required and not text):
        raise bad(key)
    return text


def _employee_no(info: dict[str, Any]) -> str:
    return _text(info, "employeeNo", EMPLOYEE_NO_MAX, required=True)


def _user_from(info: dict[str, Any], base: User | None = None) -> User:
    user = User(employee_no=_employee_no(info)) if base is None else User(**vars(base))
    user.name = _text(info, "name", NAME_MAX, default=user.name)
    user.user_type = _text(info, "userType", 16, default=user.user_type)
    if user.user_type not in ("normal", "visitor", "blackList"):
        raise bad("userType")
    user.door_right = _text(info, "doorRight", 64, default=user.door_right)
    plan = info.get("RightPlan", user.right_plan)
    if not isinstance(plan, list) or len(plan) > 16 or not all(isinstance(p, dict) for p in plan):
        raise bad("RightPlan")
    user.right_plan = plan
    valid = info.get("Valid")
    if valid is not None:
        _apply_valid(user, valid)
    return user


def _apply_valid(user: User, valid: Any) -> None:
    if not isinstance(valid, dict):
        raise bad("Valid")
    enable = valid.get("enable", user.enable)
    if not isinstance(enable, bool):
        raise bad("enable")
    user.enable = enable
    if "beginTime" in valid:
        user.begin = _local_time(valid["beginTime"], "beginTime")
    if "endTime" in valid:
        user.end = _local_time(valid["endTime"], "endTime")
    if user.begin and user.end and user.end < user.begin:
        raise bad("endTime")


def _card_from(info: dict[str, Any]) -> Card:
    card_type = _text(info, "cardType", 16, default="normalCard")
    if card_type not in ("normalCard", "patrolCard", "hijackCard", "superCard", "dismissingCard", "blackListCard",
                         "visitorCard", "duressCard", "blockList", "dismissCard"):
        raise bad("cardType")
    return Card(card_no=_text(info, "cardNo", CARD_NO_MAX, required=True), employee_no=_employee_no(info),
                card_type=card_type)


def _id_list(value: Any, key: str, name: str) -> set[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > LIST_MAX:
        raise bad(name)
    out: set[str] = set()
    for entry in value:
        if not isinstance(entry, dict):
            raise bad(name)
        out.add(_text(entry, key, max(EMPLOYEE_NO_MAX, CARD_NO_MAX), required=True))
    return out


def _int(cond: dict[str, Any], key: str, *, default: int | None = None, maximum: int = SERIAL_MAX) -> int:
    value = cond.get(key)
    if value is None:
        if default is None:
            raise lacking(key)
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise bad(key)
    return int(value)


def _page(cond: dict[str, Any], items: list[Any]) -> tuple[list[Any], str, int]:
    _text(cond, "searchID", 64, required=True)
    position = _int(cond, "searchResultPosition", maximum=SERIAL_MAX)
    wanted = _int(cond, "maxResults", maximum=SERIAL_MAX)
    if wanted < 1:
        raise bad("maxResults")
    page = items[position:position + min(wanted, PAGE_MAX)]
    if not page:
        return page, "NO MATCH", position
    return page, ("MORE" if position + len(page) < len(items) else "OK"), position


def _search_result(cond: dict[str, Any], status: str, total: int, position: int, key: str,
                   page: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"searchID": cond["searchID"], "responseStatusStrg": status,
                              "numOfMatches": len(page), "totalMatches": total}
    if page:
        result[key] = page
    return result


@dataclass(frozen=True)
class _EventFilter:
    major: int
    minor: int
    first: int | None
    last: int | None
    start: datetime | None
    end: datetime | None
    card_no: str
    employee_no: str

    @classmethod
    def of(cls, cond: dict[str, Any]) -> _EventFilter:
        first = last = None
        if "beginSerialNo" in cond or "endSerialNo" in cond:
            # A DS-K1T344 refused beginSerialNo without endSerialNo: badJsonContent, errorMsg endSerialNo.
            first = _int(cond, "beginSerialNo", default=0)
            if cond.get("endSerialNo") is None:
                raise bad("endSerialNo")
            last = _int(cond, "endSerialNo")
        return cls(major=_int(cond, "major", maximum=0xFFFF), minor=_int(cond, "minor", maximum=0xFFFF),
                   first=first, last=last, start=_aware_time(cond.get("startTime"), "startTime"),
                   end=_aware_time(cond.get("endTime"), "endTime"),
                   card_no=_text(cond, "cardNo", CARD_NO_MAX), employee_no=_text(cond, "employeeNoString", 32))

    def __call__(self, e: AcsEventRecord) -> bool:
        return ((not self.major or e.major == self.major) and (not self.minor or e.minor == self.minor)
                and (self.first is None or self.first <= e.serial_no)
                and (self.last is None or e.serial_no <= self.last)
                and (self.start is None or e.time >= self.start) and (self.end is None or e.time <= self.end)
                and (not self.card_no or e.card_no == self.card_no)
                and (not self.employee_no or e.employee_no == self.employee_no))


def _aware_time(value: Any, key: str) -> datetime | None:
    """Search times carry a zone offset; without one the devices answered badJsonContent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise bad(key)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(key) from None
    if parsed.tzinfo is None:
        raise bad(key)
    return parsed


def _local_time(value: Any, key: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise bad(key)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(key) from None
    # Validity is in device local time; an offset, if sent, is converted to it.
    return parsed.astimezone(CHINA).replace(tzinfo=None) if parsed.tzinfo else parsed


def _fmt(when: datetime) -> str:
    return when.strftime(_TIME_FORMAT)
