"""EventStore.commit against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import wire
from server.db.models import dead_letters, events, gateways, seq_gaps
from server.ingest.store import EventStore
from tests.server.helpers import T0, batch, card_read, door_state, dropped, message, raw_batch

GW = "gw-store-1"


def count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def gap_rows(engine: sa.Engine, gw: str = GW) -> list[tuple[int, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(seq_gaps.c.first_seq, seq_gaps.c.last_seq, seq_gaps.c.state)
                            .where(seq_gaps.c.gateway_id == gw).order_by(seq_gaps.c.first_seq)).tuples()
        return list(rows)


def test_a_batch_sent_twice_is_stored_once_and_acknowledged_twice(engine: sa.Engine) -> None:
    store = EventStore(engine)
    payload = batch(GW, [card_read(GW, s) for s in range(1, 501)])

    first = store.commit([message(GW, payload)])
    again = store.commit([message(GW, payload), message(GW, payload)])

    assert count(engine, events) == 500
    assert (first.inserted, first.duplicates) == (500, 0)
    assert (again.inserted, again.duplicates) == (0, 1000)
    assert first.gateways[GW].ack() == wire.Ack(committed=[(1, 500)])
    assert again.gateways[GW].ack() == wire.Ack(committed=[(1, 500)])


def test_stored_events_keep_their_fields_and_time_zone(engine: sa.Engine) -> None:
    store = EventStore(engine)
    ts = datetime(2024, 5, 1, 16, 0, 0, 123456, tzinfo=UTC).astimezone(wire.utcnow().astimezone().tzinfo)
    denied = wire.CardRead(gw=GW, seq=3, device="r", ts=ts, decision="denied", reason="not on the allowlist",
                           credential=wire.Credential(format="em4100", value="0A1B2C3D4F"))
    wiegand = wire.CardRead(gw=GW, seq=4, device="r", ts=ts,
                            credential=wire.Credential(format="wiegand26", value="90:324", bits=26))
    store.commit([message(GW, batch(GW, [card_read(GW, 1, ts=ts), door_state(GW, 2, "forced"), denied, wiegand]))])

    with engine.connect() as conn:
        rows = conn.execute(sa.select(events).order_by(events.c.seq)).mappings().all()
    assert rows[0]["occurred_at"] == ts and rows[0]["occurred_at"].tzinfo is not None
    # A card's credential lives in its own columns; data keeps what else the event said.
    assert (rows[0]["credential_format"], rows[0]["credential_value"]) == ("em4100", "0A1B2C3D4E")
    assert rows[0]["data"] == {}
    assert rows[1]["kind"] == "door_state" and rows[1]["data"] == {"state": "forced"}
    assert rows[1]["credential_format"] is None
    assert rows[2]["credential_value"] == "0A1B2C3D4F"
    assert rows[2]["data"] == {"decision": "denied", "reason": "not on the allowlist"}
    assert rows[3]["data"] == {"credential": {"format": "wiegand26", "value": "90:324", "bits": 26}}


def test_one_bad_event_is_dead_lettered_and_the_rest_stored(engine: sa.Engine) -> None:
    store = EventStore(engine)
    good = [json.loads(wire.encode_event(card_read(GW, s))) for s in (1, 2, 4)]
    bad = {**json.loads(wire.encode_event(card_read(GW, 3))), "credential": {"format": "nfc", "value": "x"}}
    result = store.commit([message(GW, raw_batch(GW, [good[0], good[1], bad, good[2]]))])

    assert result.gateways[GW].ack() == wire.Ack(committed=[(1, 2), (4, 4)], rejected=[(3, 3)])
    assert count(engine, events) == 3
    with engine.connect() as conn:
        letter = conn.execute(sa.select(dead_letters)).mappings().one()
    assert (letter["gateway_id"], letter["seq"]) == (GW, 3)
    assert "credential" in letter["reason"]
    assert json.loads(letter["payload"])["credential"]["format"] == "nfc"
    assert gap_rows(engine) == []  # a rejected seq is accounted for, not missing


def test_an_event_of_another_gateway_is_dead_lettered_but_not_rejected(engine: sa.Engine) -> None:
    store = EventStore(engine)
    spoofed = raw_batch(GW, [json.loads(wire.encode_event(card_read(GW, 1))),
                             json.loads(wire.encode_event(card_read("gw-other", 2)))])
    result = store.commit([message(GW, spoofed)])
    # Rejecting seq 2 would make GW delete its own event 2 from its outbox.
    assert result.gateways[GW].ack() == wire.Ack(committed=[(1, 1)])
    with engine.connect() as conn:
        letter = conn.execute(sa.select(dead_letters)).mappings().one()
    assert (letter["gateway_id"], letter["seq"]) == (GW, None)
    assert "does not match topic" in letter["reason"]


def test_garbage_becomes_dead_letters_without_raising(engine: sa.Engine) -> None:
    store = EventStore(engine, max_payload_bytes=64 * 1024)
    now = datetime.now(UTC)
    garbage = [
        message(GW, b"\xff\xfe not json \x00"),
        message(GW, b'{"v": 1, "gw": "gw-store-1"}'),
        message(GW, b""),
        ("rentgate/v1/gw/bad id!/events", batch(GW, [card_read(GW, 1)]), now),
        ("rentgate/v1/gw/gw-store-1/unknown", b"{}", now),
        message(GW, batch("someone-else", [card_read("someone-else", 1)])),
        message(GW, b"[" + b" " * (70 * 1024) + b"]"),
        message(GW, b"not a status", leaf="status"),
        message(GW, wire.encode_event(card_read(GW, 7, device="r\u0000")).encode()),
    ]
    result = store.commit(garbage + [message(GW, batch(GW, [card_read(GW, 1)]))])

    assert count(engine, events) == 1
    assert result.dead_letters == len(garbage)
    assert count(engine, dead_letters) == len(garbage)
    with engine.connect() as conn:
        letters = conn.execute(sa.select(dead_letters).order_by(dead_letters.c.id)).mappings().all()
    assert letters[0]["payload_encoding"] == "base64"
    huge = letters[6]
    assert huge["payload_size"] == 70 * 1024 + 2 and "exceeds" in huge["reason"]
    assert len(huge["payload"]) == 64 * 1024
    # The event with a NUL is valid JSON but unstorable: rejected, so the gateway stops resending it.
    assert result.gateways[GW].ack() == wire.Ack(committed=[(1, 1)], rejected=[(7, 7)])


def test_gaps_open_split_fill_and_get_lost(engine: sa.Engine) -> None:
    store = EventStore(engine)

    def send(*seqs: int) -> None:
        store.commit([message(GW, batch(GW, [card_read(GW, s) for s in seqs]))])

    send(1, 2, 10)
    assert gap_rows(engine) == [(3, 9, "open")]
    send(5)
    assert gap_rows(engine) == [(3, 4, "open"), (6, 9, "open")]
    send(3, 4)
    assert gap_rows(engine) == [(3, 4, "filled"), (6, 9, "open")]
    store.commit([message(GW, batch(GW, [dropped(GW, 11, 6, 8)]))])
    assert gap_rows(engine) == [(3, 4, "filled"), (6, 8, "lost"), (9, 9, "open")]
    send(9)
    assert gap_rows(engine) == [(3, 4, "filled"), (6, 8, "lost"), (9, 9, "filled")]
    with engine.connect() as conn:
        assert conn.execute(sa.select(gateways.c.max_seq).where(gateways.c.id == GW)).scalar_one() == 11


def test_events_dropped_ahead_of_the_stream_are_recorded_lost(engine: sa.Engine) -> None:
    store = EventStore(engine)
    store.commit([message(GW, batch(GW, [card_read(GW, 1)]))])
    store.commit([message(GW, batch(GW, [dropped(GW, 50, 2, 49)]))])
    assert gap_rows(engine) == [(2, 49, "lost")]


def _started(seq: int, first: int) -> wire.GatewayStarted:
    return wire.GatewayStarted(gw=GW, seq=seq, device=GW, ts=T0, version="t", outbox_id=f"o-{first}",
                               outbox_first_seq=first, pending=0)


def test_a_new_outbox_numbered_from_the_clock_is_no_gap_and_is_stored(engine: sa.Engine) -> None:
    first = 1_795_000_000_000_000
    store = EventStore(engine)
    store.commit([message(GW, batch(GW, [_started(first, first), card_read(GW, first + 1, ts=T0)]))])
    assert gap_rows(engine) == []
    # Restarts of the same outbox repeat outbox_first_seq but are not its first event.
    store.commit([message(GW, batch(GW, [_started(first + 5, first), card_read(GW, first + 6, ts=T0)]))])
    assert gap_rows(engine) == [(first + 2, first + 4, "open")]
    assert count(engine, events, events.c.gateway_id == GW) == 4


def test_a_new_outbox_that_reuses_stored_numbers_is_reported(engine: sa.Engine,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    store = EventStore(engine)
    first = 1_795_000_000_000_000
    store.commit([message(GW, batch(GW, [_started(first, first)]))])
    store.commit([message(GW, batch(GW, [card_read(GW, first + 1, ts=T0)]))])
    store.commit([message(GW, batch(GW, [_started(first, first)]))])  # the same first event, replayed
    assert "check the gateway's clock" not in caplog.text
    clock_reset = wire.GatewayStarted(gw=GW, seq=first, device=GW, ts=T0, version="t", outbox_id="another",
                                      outbox_first_seq=first, pending=0)
    result = store.commit([message(GW, batch(GW, [clock_reset]))])
    assert result.duplicates == 1
    assert "check the gateway's clock" in caplog.text


def test_a_replaced_outbox_settles_the_old_ones_gaps_as_lost(engine: sa.Engine) -> None:
    store = EventStore(engine)
    store.commit([message(GW, batch(GW, [card_read(GW, s) for s in (1, 2, 4, 5)]))])
    assert gap_rows(engine) == [(3, 3, "open")]
    first = 1_795_000_000_000_000  # the old outbox's file was lost; a new one starts
    result = store.commit([message(GW, batch(GW, [_started(first, first), card_read(GW, first + 1, ts=T0)]))])
    assert gap_rows(engine) == [(3, 3, "lost")]  # nobody can send seq 3 any more
    assert result.inserted == 2 and result.duplicates == 0
    assert count(engine, events, events.c.gateway_id == GW) == 6


def test_gateway_status_updates_the_gateway_row(engine: sa.Engine) -> None:
    store = EventStore(engine)
    status = wire.GatewayStatus(gw=GW, state="online", ts=T0, version="0.1.0", outbox_depth=42,
                                oldest_unsent_age_s=3.5, dropped_total=0, rejected_total=1, allowlist_version=17)
    store.commit([message(GW, status.model_dump_json().encode(), leaf="status")])
    will = wire.GatewayStatus(gw=GW, state="offline")
    store.commit([message(GW, will.model_dump_json().encode(), leaf="status")])

    with engine.connect() as conn:
        row = conn.execute(sa.select(gateways)).mappings().one()
    assert row["online"] is False
    assert (row["outbox_depth"], row["oldest_unsent_age_s"], row["version"]) == (42, 3.5, "0.1.0")
    assert row["allowlist_version"] == 17  # kept from the last status that had it
    assert row["status_at"] > T0 - timedelta(seconds=1)


def test_poison_messages_are_dead_lettered_and_rejected(engine: sa.Engine) -> None:
    store = EventStore(engine)
    msg = message(GW, batch(GW, [card_read(GW, 1), card_read(GW, 2)]))
    result = store.dead_letter_messages([msg], "database refused: example")
    assert result.gateways[GW].ack() == wire.Ack(rejected=[(1, 2)])
    assert count(engine, dead_letters) == 1 and count(engine, events) == 0


def test_a_new_gateways_first_message_committed_after_later_ones_is_no_jump_and_no_gap(
        engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    # Two ingest workers on a shared subscription: the one holding the later
    # events commits first, before the gateway_started that says where the
    # outbox starts (seen in the chaos soak as a false sequence jump).
    first = 1_795_000_000_000_000
    store = EventStore(engine)
    later = store.commit([message(GW, batch(GW, [card_read(GW, first + s, ts=T0) for s in (1, 2, 3)]))])
    earlier = store.commit([message(GW, batch(GW, [_started(first, first)]))])
    assert (later.seq_jumps, earlier.seq_jumps) == (0, 0)
    assert count(engine, dead_letters) == 0
    assert "sequence jump" not in caplog.text and "check the gateway's clock" not in caplog.text
    assert gap_rows(engine) == []
    assert count(engine, events, events.c.gateway_id == GW) == 4
    # The count goes on from there: a later hole is a gap as ever.
    store.commit([message(GW, batch(GW, [card_read(GW, first + 6, ts=T0)]))])
    assert gap_rows(engine) == [(first + 4, first + 5, "open")]
