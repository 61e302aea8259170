"""Every message ends stored, duplicate or dead-lettered; sequence jumps are
recorded, not asked for (EventStore against SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa

from rentgate import wire
from server.db.models import dead_letters, events, gateways, seq_gaps
from server.ingest.store import DEFAULT_MAX_SEQ_JUMP, EventStore
from server.settings import ServerSettings
from tests.server.helpers import T0, batch, card_read, message, raw_batch

GW = "gw-outcome-1"
MAX = 2**63 - 1


def rows(engine: sa.Engine, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*where).order_by(table.c.id)).mappings()]


def max_seq(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(gateways.c.max_seq).where(gateways.c.id == GW)).scalar_one())


def send(store: EventStore, *seqs: int) -> dict[str, int]:
    return store.commit([message(GW, batch(GW, [card_read(GW, s, ts=T0) for s in seqs]))]).outcomes


def test_every_message_ends_in_exactly_one_outcome(engine: sa.Engine) -> None:
    store = EventStore(engine)
    good = json.loads(wire.encode_event(card_read(GW, 9)))
    messages = [
        message(GW, batch(GW, [card_read(GW, 1), card_read(GW, 2)])),                  # stored
        message(GW, batch(GW, [card_read(GW, 2)])),                                    # duplicate (in this batch)
        message(GW, wire.GatewayStatus(gw=GW, state="online").model_dump_json().encode(), leaf="status"),  # stored
        message(GW, b"", leaf="status"),                                               # stored (clears retained)
        message(GW, b"[" * 100_000),                                                   # dead_lettered
        message(GW, raw_batch(GW, [good, dict(good, seq="10")])),                      # dead_lettered, in part
        ("not/ours", b"{}", message(GW, b"")[2]),                                      # dead_lettered
    ]
    result = store.commit(messages)
    assert result.outcomes == {"stored": 3, "duplicate": 1, "dead_lettered": 3}

    again = store.commit([message(GW, batch(GW, [card_read(GW, 1)])),                  # duplicate
                          message(GW, batch(GW, [card_read(GW, 2), card_read(GW, 3)]))])  # stored: 3 is new
    assert again.outcomes == {"stored": 1, "duplicate": 1, "dead_lettered": 0}
    assert sum(again.outcomes.values()) == again.messages


def test_a_deeply_nested_payload_is_one_dead_letter_with_its_reason(engine: sa.Engine) -> None:
    result = EventStore(engine).commit([message(GW, b"[" * 100_000)])
    (letter,) = rows(engine, dead_letters)
    assert letter["reason"] == "JSON nested deeper than 32 levels"
    assert (letter["gateway_id"], letter["seq"], letter["payload_size"]) == (GW, None, 100_000)
    assert result.outcomes["dead_lettered"] == 1


def test_the_default_bound_is_the_settings_default() -> None:
    assert DEFAULT_MAX_SEQ_JUMP == ServerSettings.model_fields["max_seq_jump"].default


def test_the_largest_number_is_stored_and_recorded_not_asked_for(engine: sa.Engine) -> None:
    store = EventStore(engine)
    send(store, 1, 2)
    result = store.commit([message(GW, batch(GW, [card_read(GW, MAX, ts=T0)]))])

    assert result.outcomes["stored"] == 1 and result.seq_jumps == 1
    assert result.gateways[GW].ack() == wire.Ack(committed=[(MAX, MAX)])
    assert [r["seq"] for r in rows(engine, events)] == [1, 2, MAX]
    (record,) = rows(engine, dead_letters)
    assert record["seq"] == MAX and record["reason"].startswith(f"sequence jump: seq {MAX} leaves ")
    assert json.loads(record["payload"])["anomaly"] == "seq_jump"
    assert rows(engine, seq_gaps) == []
    # One stray number does not end gap detection for the numbers in use.
    assert max_seq(engine) == 2
    send(store, 5)
    assert [(g["first_seq"], g["last_seq"], g["state"]) for g in rows(engine, seq_gaps)] == [(3, 4, "open")]
    # Sent again (its ack was lost): a duplicate, and not a second record.
    again = store.commit([message(GW, batch(GW, [card_read(GW, MAX, ts=T0)]))])
    assert again.outcomes["duplicate"] == 1 and again.seq_jumps == 0
    assert len(rows(engine, dead_letters)) == 1


def test_a_jump_that_more_numbers_follow_moves_the_count(engine: sa.Engine) -> None:
    store = EventStore(engine, max_seq_jump=1000)
    send(store, 1)
    send(store, 10**12)  # alone: recorded, the count stays at 1
    assert max_seq(engine) == 1
    send(store, 10**12 + 3)  # near it: the gateway's numbering has moved
    assert max_seq(engine) == 10**12 + 3
    assert [(g["first_seq"], g["last_seq"]) for g in rows(engine, seq_gaps)] == [(10**12 + 1, 10**12 + 2)]
    assert [r["seq"] for r in rows(engine, dead_letters)] == [10**12]


def test_a_jump_in_a_rejected_event_is_recorded_too(engine: sa.Engine) -> None:
    store = EventStore(engine, max_seq_jump=1000)
    send(store, 1)
    bad = json.loads(wire.encode_event(card_read(GW, 5000)))
    bad["ts"] = 12345
    result = store.commit([message(GW, raw_batch(GW, [bad]))])
    assert result.gateways[GW].ack() == wire.Ack(rejected=[(5000, 5000)])
    reasons = sorted(r["reason"][:14] for r in rows(engine, dead_letters))
    assert reasons == ["card_read.ts: ", "sequence jump:"]
    assert rows(engine, seq_gaps) == []


def test_a_bare_dead_letter_keeps_the_payload_in_base64(engine: sa.Engine) -> None:
    payload = batch(GW, [card_read(GW, 1)])
    result = EventStore(engine).dead_letter_messages([message(GW, payload)], "refused twice", bare=True)
    (letter,) = rows(engine, dead_letters)
    assert base64.b64decode(letter["payload"]) == payload and letter["payload_encoding"] == "base64"
    assert result.outcomes == {"stored": 0, "duplicate": 0, "dead_lettered": 1}
    assert result.gateways == {}  # nothing rejected: only the dead letter itself is sure to fit
