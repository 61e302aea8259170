"""MQTT face terminals and smart locks: one topic per device serial number.

Vendors agree on nothing but the shape: a terminal publishes a JSON object
per event to a topic that contains its serial number (``face/{sn}/event``,
``face.{sn}.request``). Where the person number, the card and the event type
sit in that object is configured as a :class:`FieldMap` of dotted paths.

Pure: topic and payload in, :class:`TerminalRead` (or ``None`` for events that
are not reads) out, or a :class:`VendorPayloadError` saying why not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from devices.hikvision import VendorPayloadError, card_credential
from rentgate import wire

__all__ = ["FieldMap", "TerminalRead", "TopicTemplate", "VendorPayloadError", "parse_message"]

_SN_RE = r"[^/#+]{1,64}"


def _bad(reason: str) -> VendorPayloadError:
    return VendorPayloadError("mqtt terminal", reason)


class TopicTemplate:
    """A topic with one ``{sn}`` level (or part of a level), e.g. ``face/{sn}/event``."""

    def __init__(self, template: str) -> None:
        if template.count("{sn}") != 1:
            raise ValueError(f"topic template {template!r} must contain {{sn}} exactly once")
        if "#" in template or "+" in template:
            raise ValueError(f"topic template {template!r} must not contain MQTT wildcards")
        # MQTT wildcards match whole levels only: face.{sn}.request is one level,
        # so subscribe to the level and let the pattern pick the serial out.
        self.subscription = "/".join("+" if "{sn}" in lvl else lvl for lvl in template.split("/"))
        before, after = template.split("{sn}")
        self._pattern = re.compile(f"^{re.escape(before)}({_SN_RE}){re.escape(after)}$")
        self.template = template

    def serial(self, topic: str) -> str | None:
        """The serial number in a topic, or None if the topic is not this template's."""
        match = self._pattern.match(topic)
        return match.group(1) if match else None

    def topic(self, serial: str) -> str:
        return self.template.replace("{sn}", serial)


@dataclass(frozen=True, kw_only=True)
class FieldMap:
    """Dotted paths into the payload. ``read_types``: the ``event_type`` values
    that are reads (empty: every message with a person or card is one)."""

    person: str | None = "personId"
    card: str | None = "cardNo"
    event_type: str | None = "type"
    time: str | None = "time"
    message_id: str | None = "id"
    read_types: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TerminalRead:
    serial: str
    credential: wire.Credential
    event_type: str | None
    message_id: str | None
    time: str | None


def parse_message(topic: str, payload: bytes, template: TopicTemplate, fields: FieldMap) -> TerminalRead | None:
    serial = template.serial(topic)
    if serial is None:
        raise _bad(f"topic {topic[:100]!r} does not match {template.template!r}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"payload is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise _bad("JSON nested too deeply") from exc
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object, got {type(doc).__name__}")
    event_type = _text(doc, fields.event_type)
    if fields.read_types and event_type not in fields.read_types:
        return None
    card = _text(doc, fields.card)
    person = _text(doc, fields.person)
    if card:
        if len(card) > 32 or not all(c in "0123456789abcdefABCDEF" for c in card):
            raise _bad(f"card {card[:40]!r} is not a card number")
        credential = card_credential(card)
    elif person:
        if len(person) > 128:
            raise _bad("person id longer than 128 characters")
        credential = wire.Credential(format="terminal_person", value=person)
    else:
        if fields.read_types:
            raise _bad(f"a {event_type!r} event without a person or card")
        return None
    return TerminalRead(serial=serial, credential=credential, event_type=event_type,
                        message_id=_text(doc, fields.message_id), time=_text(doc, fields.time))


def _text(doc: dict[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f"{path} must be a string or a number, got {type(value).__name__}")
    return str(value).strip() or None
