"""Pure translation of libosdp's event dicts into typed events.

libosdp hands events over as loosely typed dicts; everything that could be
wrong in one (a malformed reply from a noisy line, a format we do not read)
becomes a value here, never an exception, so the line's worker cannot die
on bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices import wiegand
from rentgate import wire

# libosdp 3.2.9's numbers (osdp_sys); repeated here so this module stays pure.
EVENT_CARDREAD = 1
EVENT_STATUS = 4
EVENT_NOTIFICATION = 5
NOTIFICATION_PD_STATUS = 2
CARD_FORMAT_WIEGAND = 1
CARD_FORMAT_UNSPECIFIED = 0
STATUS_REPORT_INPUT = 0
STATUS_REPORT_LOCAL = 2


@dataclass(frozen=True, slots=True)
class CardEvent:
    address: int
    credential: wire.Credential | None
    # Why no credential could be made (bad parity, an unknown format).
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    address: int
    online: bool


@dataclass(frozen=True, slots=True)
class InputEvent:
    """The state of every input the reader reports (door contact, REX ...)."""

    address: int
    states: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class TamperEvent:
    address: int
    tamper: bool
    power_ok: bool | None


LineEvent = CardEvent | StatusEvent | InputEvent | TamperEvent


def translate(address: int, event: Mapping[str, object], *, mode: wiegand.Mode = "standard") -> LineEvent | None:
    """One libosdp event as ours; None for events we do not use."""
    kind = event.get("event")
    if kind == EVENT_CARDREAD:
        return _card(address, event, mode)
    if kind == EVENT_NOTIFICATION and event.get("type") == NOTIFICATION_PD_STATUS:
        return StatusEvent(address, bool(event.get("arg0")))
    if kind == EVENT_STATUS:
        return _status(address, event)
    return None


def _card(address: int, event: Mapping[str, object], mode: wiegand.Mode) -> CardEvent:
    data, bits, fmt = event.get("data"), event.get("length"), event.get("format")
    if not isinstance(data, bytes) or not isinstance(bits, int) or isinstance(bits, bool):
        return CardEvent(address, None, "card read without data or bit length")
    if fmt not in (CARD_FORMAT_WIEGAND, CARD_FORMAT_UNSPECIFIED):
        return CardEvent(address, None, f"card data format {fmt!r} not supported")
    try:
        return CardEvent(address, wiegand.credential_from_packed(data, bits, mode=mode))
    except wiegand.WiegandError as exc:
        return CardEvent(address, None, str(exc))


def _status(address: int, event: Mapping[str, object]) -> LineEvent | None:
    report = event.get("report")
    if not isinstance(report, bytes):
        return None
    if event.get("type") == STATUS_REPORT_INPUT:
        return InputEvent(address, tuple(b != 0 for b in report))
    if event.get("type") == STATUS_REPORT_LOCAL and report:
        return TamperEvent(address, report[0] != 0, report[1] == 0 if len(report) > 1 else None)
    return None
