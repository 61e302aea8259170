"""The wire contract: what a gateway may send and what the server accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TypedDict

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


# --------------------------------------------------------------------------- strictness

GOOD = {"v": 1, "gw": "gw-1", "seq": 2, "device": "r", "ts": "2026-01-01T00:00:00Z", "kind": "door_state",
        "state": "open"}


def event_json(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def refused(payload: bytes) -> str:
    with pytest.raises(WireError) as info:
        wire.decode_events(payload, "gw-1")
    return info.value.reason


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (event_json(seq="2"), "seq: Input should be a valid integer, not text"),
        (event_json(seq=2.0), "seq: Input should be a valid integer, not a number with a fraction or exponent"),
        (event_json().replace(b'"seq": 2', b'"seq": 1e3'), "seq: Input should be a valid integer, not a number"),
        (event_json(seq=True), "seq: Input should be a valid integer, not true/false"),
        (event_json(seq=2**63), "seq: Input should be less than or equal to 9223372036854775807"),
        (event_json(seq=0), "seq: Input should be greater than or equal to 1"),
        (event_json(v=True), "v: Input should be a valid integer, not true/false"),
        (event_json(v=1.0), "v: Input should be a valid integer"),
        (event_json(ts=12345), "ts: must be a time written as text"),
        (event_json(ts="12345"), "ts: must be a time written as text"),
        (event_json(ts="2026-01-01 00:00:00Z"), "ts: must be a time written as text"),
        (event_json(ts="2026-01-01T00:00Z"), "ts: must be a time written as text"),
        (event_json(ts="2026-01-01T00:00:00.1234567Z"), "ts: must be a time written as text"),
        (event_json(ts="2026-01-01T00:00:00Z\n"), "ts: must be a time written as text"),
        (event_json(ts="2026-13-01T00:00:00Z"), "ts: Input should be a valid datetime"),
        (event_json().replace(b'"seq": 2', b'"seq": NaN'), "seq"),
        (event_json(kind="device_status", state=None, online="true"), "online: Input should be a valid boolean"),
        (json.dumps({**GOOD, "kind": "card_read", "credential": {"format": "raw", "value": "ab", "bits": 0}}).encode(),
         "bits: Input should be greater than or equal to 1"),
    ],
)
def test_no_value_is_converted_to_the_type_the_contract_wants(payload: bytes, fragment: str) -> None:
    assert fragment in refused(payload)


def test_reasons_name_the_kind_of_value_sent_never_the_value() -> None:
    payload = json.dumps({**GOOD, "kind": "card_read", "credential": {"format": "em4100", "value": 14008}}).encode()
    reason = refused(payload)
    assert "not an integer" in reason and "14008" not in reason


@pytest.mark.parametrize("ts", ["2026-11-22T08:30:00Z", "2026-11-22T08:30:00.123Z", "2026-11-22T08:30:00.123456Z",
                                "2026-11-22T16:30:00+08:00", "2026-11-22T03:30:00.5-05:00"])
def test_documented_times_are_taken(ts: str) -> None:
    (event,) = wire.decode_events(event_json(ts=ts), "gw-1")
    assert event.ts == datetime.fromisoformat(ts)


def test_the_largest_number_is_taken() -> None:
    assert [e.seq for e in wire.decode_events(event_json(seq=2**63 - 1), "gw-1")] == [2**63 - 1]


@pytest.mark.parametrize(
    "payload, key",
    [
        (b'{"v":1,"gw":"gw-1","seq":2,"device":"r","ts":"2026-01-01T00:00:00Z","ts":"1999-01-01T00:00:00Z",'
         b'"kind":"door_state","state":"open"}', "ts"),
        (b'{"v":1,"gw":"gw-1","seq":2,"seq":3,"device":"r","ts":"2026-01-01T00:00:00Z","kind":"door_state",'
         b'"state":"open"}', "seq"),
        # Whitespace before a colon, and a key spelt with an escape, hide nothing.
        (b'{"v":1,"gw":"gw-1","seq" :2,"seq":3,"device":"r","ts":"2026-01-01T00:00:00Z","kind":"door_state",'
         b'"state":"open"}', "seq"),
        (b'{"v":1,"gw":"gw-1","seq":2,"\\u0073eq":3,"device":"r","ts":"2026-01-01T00:00:00Z","kind":"door_state",'
         b'"state":"open"}', "seq"),
        (b'{"v":1,"gw":"gw-1","seq":2,"device":"r","ts":"2026-01-01T00:00:00Z","kind":"card_read",'
         b'"credential":{"format":"em4100","value":"14008EC793","value":"0000000000"}}', "value"),
        (b'{"v":1,"gw":"gw-1","gw":"gw-1","events":[%s]}' % event_json(), "gw"),
    ],
)
def test_a_repeated_key_is_refused_wherever_it_is(payload: bytes, key: str) -> None:
    assert refused(payload) == f"key {key!r} appears twice in one JSON object"


def test_a_string_starting_with_a_colon_is_not_taken_for_a_key() -> None:
    odd = CardRead(gw="gw-1", seq=3, device="r", ts=TS, decision="denied", reason=':"x":',
                   credential=Credential(format="raw", value=":"))
    assert wire.decode_events(wire.encode_event(odd), "gw-1") == [odd]


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000,
                                     b'{"v":1,"gw":"gw-1","events":[%s]}' % (b"[" * 40 + b"]" * 40)])
def test_deep_nesting_is_refused_before_any_parser_sees_it(payload: bytes) -> None:
    assert refused(payload) == "JSON nested deeper than 32 levels"
    assert wire.salvage_events(payload, "gw-1") == ([], [])


def test_brackets_in_strings_are_not_nesting() -> None:
    odd = CardRead(gw="gw-1", seq=3, device="r", ts=TS, decision="denied", reason='[{"\\' * 50,
                   credential=Credential(format="raw", value="[" * 100))
    batch = wire.batch_json("gw-1", [wire.encode_event(odd), wire.encode_event(card(4))])
    assert [e.seq for e in wire.decode_events(batch, "gw-1")] == [3, 4]


@pytest.mark.parametrize("depth", [1, 31, 32, 33, 64])
def test_the_depth_bound_is_exact(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    assert wire.json_depth_exceeds(nested) is (depth > wire.MAX_JSON_DEPTH)
    # The same inside a batch of ordinary events, which takes the long path.
    padded = b'{"a":[%s,%s]}' % (b",".join([b'{"b":"x"}'] * 40), nested)
    assert wire.json_depth_exceeds(padded) is (depth + 2 > wire.MAX_JSON_DEPTH)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\:, ab\u00e9\n', max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\: ab', max_size=3),
                                                                 inner, max_size=4),
    max_leaves=40,
)


@given(_JSON, st.integers(0, 12), st.booleans())
def test_the_depth_scan_agrees_with_a_parser(value: object, limit: int, spaced: bool) -> None:
    text = json.dumps(value, indent=1 if spaced else None, ensure_ascii=False).encode()
    assert wire.json_depth_exceeds(text, limit) is (_depth(value) > limit)


@given(st.binary(max_size=200), st.integers(0, 5))
def test_the_depth_scan_takes_any_bytes(data: bytes, limit: int) -> None:
    wire.json_depth_exceeds(data, limit)


@given(st.sampled_from(sorted(GOOD)), st.booleans())
def test_any_key_repeated_in_an_event_is_found(key: str, spaced: bool) -> None:
    text = json.dumps(GOOD, separators=(", ", ": ") if spaced else (",", ":"))
    repeated = text[:-1] + ("," if not spaced else ", ") + json.dumps(key) + (": " if spaced else ":") \
        + json.dumps(GOOD[key]) + "}"
    assert wire.decode_events(text, "gw-1")
    with pytest.raises(WireError, match="appears twice"):
        wire.decode_events(repeated, "gw-1")


def test_salvage_dead_letters_what_it_cannot_number() -> None:
    good = json.loads(wire.encode_event(card(1)))
    payload = json.dumps({"v": 1, "gw": "gw-1", "events": [good, dict(good, seq="2"), dict(good, seq=3.0)]})
    kept, bad = wire.salvage_events(payload, "gw-1")
    assert [e.seq for e in kept] == [1]
    # Before, both were skipped without a trace; now they are dead letters without a number.
    assert [(seq, "seq" in reason) for seq, reason, _ in bad] == [(None, True), (None, True)]


def test_salvage_reads_nothing_from_an_oversized_batch() -> None:
    one = json.loads(wire.encode_event(card(1)))
    payload = json.dumps({"v": 1, "gw": "gw-1", "events": [dict(one, seq=s) for s in range(1, 5002)]})
    assert "at most 5000" in refused(payload.encode())
    assert wire.salvage_events(payload, "gw-1") == ([], [])


def test_every_decoder_is_strict() -> None:
    with pytest.raises(WireError, match="valid integer"):
        wire.decode_ack(b'{"v":1,"committed":[["1",2]]}')
    with pytest.raises(WireError, match="appears twice"):
        wire.decode_gateway_status(b'{"v":1,"gw":"gw-1","state":"online","state":"offline"}')
    with pytest.raises(WireError, match="nested deeper"):
        wire.decode_server_status(b"[" * 1000)


# Gateways stamp in UTC; whole-minute offsets are what RFC 3339 can write.
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5, minutes=30))])


class _Common(TypedDict):
    gw: str
    seq: int
    device: str
    ts: datetime


def _event_of(kind: str, ts: datetime = TS) -> wire.Event:
    common = _Common(gw="gw-1", seq=7, device="gw-1", ts=ts)
    makers: dict[str, Callable[[], wire.Event]] = {
        "card_read": lambda: CardRead(**common, credential=Credential(format="osdp_raw", value="ab", bits=8)),
        "door_state": lambda: wire.DoorState(**common, state="forced"),
        "device_status": lambda: wire.DeviceStatus(**common, online=False, detail='port "x" [gone]\n',
                                                   bad_frames=3),
        "gateway_started": lambda: wire.GatewayStarted(**common, version="0.1.0", outbox_id="o", pending=0,
                                                       outbox_first_seq=7),
        "events_dropped": lambda: wire.EventsDropped(**common, first_seq=1, last_seq=6, count=6,
                                                     reason="outbox_full"),
        "people_crossing": lambda: wire.PeopleCrossing(**common, door="front", track=4, direction="in",
                                                       grant_seq=6),
        "tailgating": lambda: wire.Tailgating(**common, door="front", track=5, snapshot="0f" * 32, entered=3,
                                              granted=1),
        "unidentified_entry": lambda: wire.UnidentifiedEntry(**common, door="front", track=0, snapshot="e" * 64),
    }
    return makers[kind]()


@given(st.datetimes(timezones=_ZONES), st.sampled_from(wire.EVENT_KINDS))
def test_what_the_gateway_sends_is_what_the_server_takes(ts: datetime, kind: str) -> None:
    event = _event_of(kind, ts)
    assert wire.decode_events(wire.encode_event(event), "gw-1") == [event]
    assert wire.decode_events(wire.batch_json("gw-1", [wire.encode_event(event)] * 2), "gw-1") == [event] * 2


def _raw_keys(text: str) -> int:
    count = 0

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal count
        count += len(items)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return count


@pytest.mark.parametrize("kind", wire.EVENT_KINDS)
@pytest.mark.parametrize("batched", [False, True])
def test_the_models_count_exactly_the_keys_that_were_sent(kind: str, batched: bool) -> None:
    # An overcount would let a repeated key through the fast path, so it must be exact.
    text = wire.encode_event(_event_of(kind))
    payload = wire.batch_json("gw-1", [text, text.replace('"seq":7', '"seq":8')]) if batched else text.encode()
    msg = wire._validate_message(payload, "gw-1")
    events = list(msg.events) if isinstance(msg, wire.EventBatch) else [msg]
    counted = wire._count_event_keys(events) + (len(msg.__pydantic_fields_set__) if batched else 0)
    assert counted == wire._count_keys(msg) == _raw_keys(payload.decode())


def test_a_camera_event_names_its_door_and_a_well_formed_snapshot_hash() -> None:
    base = '{"v":1,"gw":"gw-1","seq":3,"device":"cam-1","ts":"2026-12-05T10:00:00Z","kind":"unidentified_entry","track":1'
    with pytest.raises(WireError, match="door"):
        wire.decode_events(base + "}", "gw-1")
    for bad in ("A" * 64, "a" * 63, "a" * 65, "../" + "a" * 61):
        with pytest.raises(WireError, match="snapshot"):
            wire.decode_events(base + ',"door":"d","snapshot":"%s"}' % bad, "gw-1")
    # A tailgate is one person beyond at least one grant: 1 entered or 0 granted is not one.
    tail = '{"v":1,"gw":"gw-1","seq":3,"device":"cam-1","door":"d","ts":"2026-12-05T10:00:00Z","kind":"tailgating","track":1'
    for counts in ('"entered":1,"granted":1', '"entered":2,"granted":0'):
        with pytest.raises(WireError):
            wire.decode_events(tail + "," + counts + "}", "gw-1")
