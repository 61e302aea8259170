"""Event and message builders shared by the server tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rentgate import wire

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def card_read(gw: str, seq: int, *, device: str = "reader-1", door: str | None = "door-1",
              ts: datetime | None = None, card: str = "0A1B2C3D4E") -> wire.CardRead:
    return wire.CardRead(gw=gw, seq=seq, device=device, door=door, ts=ts or T0 + timedelta(seconds=seq),
                         credential=wire.Credential(format="em4100", value=card))


def door_state(gw: str, seq: int, state: str = "open", *, door: str = "door-1") -> wire.DoorState:
    return wire.DoorState(gw=gw, seq=seq, device="contact-1", door=door, ts=T0 + timedelta(seconds=seq),
                          state=state)  # type: ignore[arg-type]


def dropped(gw: str, seq: int, first: int, last: int) -> wire.EventsDropped:
    return wire.EventsDropped(gw=gw, seq=seq, device="gateway", ts=T0 + timedelta(seconds=seq), first_seq=first,
                              last_seq=last, count=last - first + 1, reason="outbox_full")


def batch(gw: str, events: list[Any]) -> bytes:
    return wire.batch_json(gw, [wire.encode_event(e) for e in events])


def raw_batch(gw: str, raw_events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"v": 1, "gw": gw, "events": raw_events}).encode()


def message(gw: str, payload: bytes, *, leaf: str = "events") -> tuple[str, bytes, datetime]:
    return (f"{wire.TOPIC_ROOT}/gw/{gw}/{leaf}", payload, datetime.now(UTC))
