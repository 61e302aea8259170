"""Hikvision ISAPI event notifications from access-control and face terminals.

A terminal reports events in one of these forms (docs/terminal-events.md):

- "HTTP listening" push: one POST per event, the body JSON, JSON wrapped as
  ``{"EventNotificationAlert": {...}}``, XML ``<EventNotificationAlert>``
  (the default of many firmwares, namespace ``http://www.hikvision.com/ver20/XMLSchema``
  or ``http://www.isapi.org/ver20/XMLSchema``), or ``multipart/form-data``
  whose event part (``event_log``, ``AccessControllerEvent``,
  ``EventNotificationAlert``, ...) is JSON or XML, often with a ``Picture``;
- the alert stream, ``GET /ISAPI/Event/notification/alertStream``: the same
  documents as the parts of an endless ``multipart/mixed`` response
  (:mod:`devices.hikvision_stream`).

The document is an ``EventNotificationAlert``::

    {"ipAddress": "...", "macAddress": "...", "dateTime": "2024-03-01T10:15:30+08:00",
     "eventType": "AccessControllerEvent",
     "AccessControllerEvent": {"deviceName": "...", "majorEventType": 5,
        "subEventType": 75, "employeeNoString": "1001", "cardNo": "",
        "serialNo": 1234, ...}}

In XML every value is text, and some JSON firmwares send numbers as strings
too, so every number is read from either. XML is parsed with ``defusedxml``
with DTDs refused (no entity expansion, no external entities) and only the
two levels that carry an event are looked at.

Pictures are never kept (a face photo is personal data the gateway has no
use for); the parser does not even return them. A terminal that gets no 200
posts the same event again with the same ``serialNo``. Heartbeats
(``heartBeat``, ``videoloss`` and other event types) carry no reads.

Pure: bytes and a content type in, :class:`TerminalEvent` values out, or a
:class:`VendorPayloadError` saying why not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml

from devices.errors import DeviceError
from rentgate import wire

__all__ = [
    "TerminalEvent",
    "VendorPayloadError",
    "card_credential",
    "parse_document",
    "parse_notification",
]

_JSON_MEDIA = frozenset({"application/json", "text/json"})
_XML_MEDIA = frozenset({"application/xml", "text/xml"})
# A sniffed body: text/plain is what some firmwares label JSON with.
_SNIFFED_MEDIA = frozenset({"text/plain", "application/octet-stream", ""})
_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")
_XML_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "utf-16"})
MAX_DOCUMENT = 1 << 20  # an event document is a few kB; a picture never gets here

MAJOR_ALARM, MAJOR_EXCEPTION, MAJOR_OPERATION, MAJOR_EVENT = 1, 2, 3, 5

# Minor types under MAJOR_EVENT (HCNetSDK MINOR_* constants) that say what the
# terminal itself concluded; the gateway decides on its own, this is context.
_PASS = frozenset({0x01, 0x02, 0x26, 0x4B, 0x4D, 0x50, 0x68})
_FAIL = frozenset({0x03, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x27, 0x4C, 0x4E, 0x51, 0x69})
# Door open / closed / forced (opened abnormally) / held open (open timeout),
# HCNetSDK MINOR_DOOR_OPEN_NORMAL, _CLOSE_NORMAL, _OPEN_ABNORMAL, _OPEN_TIMEOUT.
DOOR_STATES: dict[int, Literal["open", "closed", "forced", "held_open"]] = {
    0x15: "open", 0x16: "closed", 0x17: "forced", 0x18: "held_open"}
_DOOR = frozenset(DOOR_STATES)

_MAX_CARD_CHARS = 32


class VendorPayloadError(DeviceError, ValueError):
    """A vendor terminal sent something that is not a usable event."""

    def __init__(self, vendor: str, reason: str) -> None:
        super().__init__(f"{vendor}: {reason}")
        self.vendor = vendor
        self.reason = reason


def _bad(reason: str) -> VendorPayloadError:
    return VendorPayloadError("hikvision", reason)


@dataclass(frozen=True, kw_only=True)
class TerminalEvent:
    """One access-controller event as the terminal reported it.

    ``kind``: ``access`` (someone presented a card, face or finger),
    ``door`` (door opened, closed, forced, held open), ``other``.
    ``verified``: the terminal's own verdict where the minor type says one.
    """

    kind: Literal["access", "door", "other"]
    major: int
    minor: int
    serial_no: int | None
    mac: str | None
    ip: str | None
    device_id: str | None
    device_name: str | None
    person: str | None
    card: str | None
    verified: bool | None
    time: datetime | None

    @property
    def terminal_keys(self) -> tuple[str, ...]:
        """What can name this terminal in a config, most specific first."""
        return tuple(k for k in (self.device_id, self.mac, self.ip) if k)

    @property
    def identity(self) -> str | None:
        """The event as the terminal numbers it: serial, time and type, the
        same whether it came pushed, streamed or fetched by AcsEvent search
        (which give the same time in the same zone). With the time in it, a
        counter that restarted after a reset does not make a new event look
        like an old one. Nothing personal: it is kept after the event is sent.
        None when the terminal gave no serial."""
        if self.serial_no is None:
            return None
        if self.time is None:
            # No time to tell a restarted counter's event from an old one:
            # what was presented does (the outbox keeps only a keyed digest).
            when = f"-{self.card or ''}/{self.person or ''}"
        elif self.time.tzinfo is None:
            when = self.time.strftime("%Y%m%dT%H%M%S")
        else:
            try:
                when = self.time.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            except (OverflowError, ValueError):  # year 1 or 9999 with an offset: an unset clock
                when = self.time.replace(tzinfo=None).strftime("%Y%m%dT%H%M%S") + str(self.time.utcoffset())
        return f"{self.serial_no}/{when}/{self.major}/{self.minor}"

    @property
    def credential(self) -> wire.Credential | None:
        """The card if one was presented, else the person the terminal recognised."""
        if self.card:
            return card_credential(self.card)
        if self.person:
            return wire.Credential(format="terminal_person", value=self.person)
        return None


def card_credential(card_no: str) -> wire.Credential:
    """Hikvision reports a card as the decimal of its number (some firmware:
    hex); as a ``raw`` credential the value is hex, as the wire contract says."""
    value = card_no.strip()
    if value.isdigit():
        return wire.Credential(format="raw", value=format(int(value), "X"))
    return wire.Credential(format="raw", value=value.upper())


def parse_notification(body: bytes, content_type: str, *, max_document: int = MAX_DOCUMENT) -> list[TerminalEvent]:
    """The events in one POST; empty for a heartbeat or a non-access event type."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("multipart/"):
        # Imported here: the stream module builds on this one.
        from devices.hikvision_stream import MultipartReader, boundary_of, form_events

        reader = MultipartReader(boundary_of(content_type), max_part=max_document, max_picture=len(body) + 1)
        parts = reader.feed(body) + reader.close()
        return form_events(parts, truncated=reader.truncated)
    if len(body) > max_document:
        raise _bad(f"document of {len(body)} bytes over the limit of {max_document}")
    return parse_document(body, media)


def parse_document(body: bytes, media: str) -> list[TerminalEvent]:
    """The events of one ``EventNotificationAlert``, JSON or XML; a body labelled
    neither is told by its first character."""
    if media in _JSON_MEDIA:
        return _events(_load_json(body))
    if media in _XML_MEDIA:
        return _events(_load_xml(body))
    if media not in _SNIFFED_MEDIA:
        raise _bad(f"unsupported content type {media!r}")
    start = body.lstrip()[:1]
    if start == b"<":
        return _events(_load_xml(body))
    return _events(_load_json(body))


def _load_json(raw: bytes) -> Any:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise _bad("JSON nested too deeply") from exc
    if isinstance(doc, dict) and "eventType" not in doc and isinstance(doc.get("EventNotificationAlert"), dict):
        return doc["EventNotificationAlert"]
    return doc


def _load_xml(raw: bytes) -> dict[str, Any]:
    declared = _XML_ENCODING.match(raw[:256])
    if declared and declared.group(1).decode("ascii").lower() not in _XML_ENCODINGS:
        # expat would look the name up among Python's codecs, any installed
        # package's included: only the encodings terminals use get that far.
        raise _bad(f"XML in an unsupported encoding {declared.group(1)[:20].decode('ascii')!r}")
    try:
        root: Element = safe_xml.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, ValueError, LookupError, RecursionError) as exc:
        # defusedxml's refusals (DTD, entities) are ValueErrors; an encoding
        # name expat does not know is a LookupError.
        raise _bad(f"body is not usable XML: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if _local(root.tag) != "EventNotificationAlert":
        raise _bad(f"XML root is {_local(root.tag)[:40]!r}, not EventNotificationAlert")
    return _xml_object(root, depth=2)


def _xml_object(element: Element, *, depth: int) -> dict[str, Any]:
    """Children as a dict: text for leaves, dicts for the levels that carry an
    event; deeper structure (pictures' metadata, lists) is not needed."""
    result: dict[str, Any] = {}
    for child in element:
        key = _local(child.tag)
        if key in result:
            continue  # a repeated element: the first one counts
        if len(child) and depth > 1:
            result[key] = _xml_object(child, depth=depth - 1)
        elif not len(child):
            result[key] = (child.text or "").strip()
    return result


def _local(tag: object) -> str:
    # "{namespace}name": the two Hikvision namespaces name the same elements.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _events(doc: Any) -> list[TerminalEvent]:
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object, got {type(doc).__name__}")
    event_type = doc.get("eventType")
    ace = doc.get("AccessControllerEvent")
    if ace is None:
        if event_type in (None, "AccessControllerEvent"):
            raise _bad("no AccessControllerEvent in the notification")
        return []  # heartBeat and other event types carry no reads
    if not isinstance(ace, dict):
        raise _bad("AccessControllerEvent is not an object")
    major = _int(ace, "majorEventType", required=True)
    minor = _int(ace, "subEventType", required=False) or 0
    assert major is not None
    person = _str(ace, "employeeNoString") or _str(ace, "employeeNo")
    card = _str(ace, "cardNo")
    if card is not None and (len(card) > _MAX_CARD_CHARS or not _is_hex(card)):
        raise _bad(f"cardNo {card[:40]!r} is not a card number")
    if person is not None and len(person) > 128:
        raise _bad("employeeNoString longer than 128 characters")
    return [TerminalEvent(
        kind=_kind(major, minor, person, card),
        major=major,
        minor=minor,
        serial_no=_int(ace, "serialNo", required=False),
        mac=_str(doc, "macAddress"),
        ip=_str(doc, "ipAddress"),
        device_id=_str(doc, "deviceID"),
        device_name=_str(ace, "deviceName"),
        person=person,
        card=card,
        verified=True if minor in _PASS else False if minor in _FAIL else None,
        time=_time(doc.get("dateTime")),
    )]


def _kind(major: int, minor: int, person: str | None, card: str | None) -> Literal["access", "door", "other"]:
    if major != MAJOR_EVENT:
        return "other"
    if person or card:
        return "access"
    return "door" if minor in _DOOR else "other"


def _int(obj: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    # bool is an int in Python, never in this protocol.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    text = value.strip() if isinstance(value, str) else ""
    # isascii: str.isdigit() also accepts digits int() does not read ("²").
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    raise _bad(f"{key} must be a non-negative integer, got {str(value)[:40]!r}")


def _str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f"{key} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _time(value: Any) -> datetime | None:
    # A terminal with an unset clock still reports valid reads: keep them.
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
