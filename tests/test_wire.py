"""The wire contract: what a gateway may send and what the server accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rentgate import wire
from rentgate.wire import CardRead, Credential, WireError

TS = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)


def card(seq: int, gw: str = "gw-1") -> CardRead:
    return CardRead(gw=gw, seq=seq, device="reader-a", door="door-a", ts=TS,
                    credential=Credential(format="em4100", value="14008EC793"))


def test_single_event_and_batch_decode_to_the_same_events() -> None:
    events = [card(1), card(2)]
    single = wire.decode_events(wire.encode_event(events[0]), "gw-1")
    batch = wire.decode_events(wire.batch_json("gw-1", [wire.encode_event(e) for e in events]), "gw-1")
    assert single == [events[0]]
    assert batch == events


def test_event_from_another_gateway_than_its_topic_is_refused() -> None:
    with pytest.raises(WireError, match="does not match topic"):
        wire.decode_events(wire.encode_event(card(1, gw="gw-2")), "gw-1")


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        (b"[]", "should be an object"),
        (json.dumps({"v": 2, "gw": "gw-1", "seq": 1}).encode(), "kind"),
        (json.dumps({"v": 1, "gw": "gw-1", "seq": 0, "device": "r", "ts": "2026-01-01T00:00:00Z",
                     "kind": "door_state", "state": "open"}).encode(), "seq"),
        (json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "device": "r", "ts": "2026-01-01T00:00:00",
                     "kind": "door_state", "state": "open"}).encode(), "time zone"),
        (json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "device": "r", "ts": "2026-01-01T00:00:00Z",
                     "kind": "door_state", "state": "open", "extra": 1}).encode(), "extra"),
    ],
)
def test_malformed_payloads_give_a_reason(payload: bytes, fragment: str) -> None:
    with pytest.raises(WireError) as info:
        wire.decode_events(payload, "gw-1")
    assert fragment.lower() in info.value.reason.lower()


def test_salvage_keeps_valid_events_and_names_bad_ones() -> None:
    good = json.loads(wire.encode_event(card(1)))
    bad = dict(good, seq=2, credential={"format": "em4100"})
    payload = json.dumps({"v": 1, "gw": "gw-1", "events": [good, bad]})
    with pytest.raises(WireError):
        wire.decode_events(payload, "gw-1")
    kept, rejected = wire.salvage_events(payload, "gw-1")
    assert [e.seq for e in kept] == [1]
    assert [seq for seq, _, _ in rejected] == [2]
    assert "credential.value" in rejected[0][1]


@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_wire_error(data: bytes) -> None:
    try:
        wire.decode_events(data, "gw-1")
    except WireError:
        pass
    wire.salvage_events(data, "gw-1")


def test_ranges_collapse_and_ack_round_trips() -> None:
    assert wire.to_ranges([5, 1, 2, 3, 7, 6, 10]) == [(1, 3), (5, 7), (10, 10)]
    ack = wire.Ack(committed=wire.to_ranges([1, 2, 3]), resend=[(9, 12)])
    assert wire.decode_ack(ack.model_dump_json()) == ack


@pytest.mark.parametrize("gw", ["gw-1", "Building_7.door", "a"])
def test_topics_carry_the_gateway_id(gw: str) -> None:
    assert wire.gateway_from_topic(wire.events_topic(gw)) == gw
    assert wire.gateway_from_topic(wire.ack_topic(gw)) == gw


@pytest.mark.parametrize("gw", ["", "a/b", "+", "#", "a b", "x" * 65, "-lead"])
def test_gateway_ids_that_would_break_topics_are_refused(gw: str) -> None:
    with pytest.raises(WireError):
        wire.events_topic(gw)
    assert wire.gateway_from_topic(f"rentgate/v1/gw/{gw}/events") is None


def test_json_schema_covers_every_event_kind() -> None:
    text = json.dumps(wire.json_schema())
    for kind in wire.EVENT_KINDS:
        assert f'"{kind}"' in text


def test_shape_is_recognised_whatever_the_bytes_look_like() -> None:
    event = card(7)
    # "events" inside a value of a single event ...
    odd = wire.CardRead(gw="gw-1", seq=8, device="reader-a", ts=TS, decision="denied", reason='"events" full',
                        credential=Credential(format="raw", value="x"))
    assert wire.decode_events(wire.encode_event(odd), "gw-1") == [odd]
    # ... and a batch whose key is written with a JSON escape.
    escaped = '{"v":1,"gw":"gw-1","\\u0065vents":[%s]}' % wire.encode_event(event)
    assert wire.decode_events(escaped, "gw-1") == [event]


def test_an_event_claiming_another_gateway_is_not_rejected_by_its_number() -> None:
    # Rejecting seq 5 would make gw-1 delete its own, unrelated event 5.
    spoofed = wire.batch_json("gw-1", [wire.encode_event(card(4)), wire.encode_event(card(5, gw="gw-2"))])
    kept, bad = wire.salvage_events(spoofed, "gw-1")
    assert [e.seq for e in kept] == [4]
    assert [(seq, "does not match topic" in reason) for seq, reason, _ in bad] == [(None, True)]


def test_published_schema_matches_the_models() -> None:
    from pathlib import Path

    published = json.loads((Path(__file__).parents[1] / "docs" / "wire-schema.json").read_text())
    assert published == wire.json_schema(), "run: rentgate wire-schema > docs/wire-schema.json"
