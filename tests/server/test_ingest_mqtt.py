"""What a security test of the running server sent, through a real Mosquitto
into the real server application: each message ends stored, duplicate or
dead-lettered with its reason, and a user sees it in /api/v1/dead-letters,
/api/v1/events, /api/v1/gaps and on /metrics.

When a message gets no acknowledgement of its own (nothing in it can be
numbered), the test sends a good event after it on the same connection and
waits for that one's acknowledgement: MQTT keeps a publisher's QoS 1 messages
in order and the server commits in order, so the first has been dealt with."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from server.app import make_app
from server.db.models import dead_letters
from server.ingest.consumer import IngestService
from server.ingest.store import EventStore
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user
from tests.server.helpers import T0, batch, card_read
from tests.server.mqtt_gateway import TIMEOUT, FakeGateway

Client = TestClient[web.Request, web.Application]
GW = "gw-strict-1"
MAX = 2**63 - 1
GOOD = json.loads(wire.encode_event(card_read(GW, 2, ts=T0)))


@pytest.fixture
def settings(mosquitto: Any, sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url, mqtt_url=mosquitto.url,
                          mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}", gap_resend_delay_s=0.3)


@pytest.fixture
def gateway(mosquitto: Any) -> Iterator[FakeGateway]:
    fake = FakeGateway(mosquitto.url, GW)
    yield fake
    fake.close()


@pytest.fixture
async def server(settings: ServerSettings, sqlite_engine: sa.Engine, gateway: FakeGateway,
                 aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    """The whole server application (ingest, API, /metrics), connected."""
    admin = make_user(sqlite_engine)
    client = await aiohttp_client(make_app(settings), headers=bearer(admin.token))
    assert (await gateway.server_status()).state == "online"
    return client


async def api(client: Client, path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def metrics(client: Client) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status == 200
    found = {}
    for line in (await response.text()).splitlines():
        if match := re.fullmatch(r'rentgate_(\w+?)(?:\{outcome="(\w+)"\})? (\S+)', line):
            name, outcome, value = match.groups()
            found[f"{name}:{outcome}" if outcome else name] = float(value)
    return found


async def outcomes(client: Client) -> tuple[float, float, float]:
    m = await metrics(client)
    return (m["ingest_messages_total:stored"], m["ingest_messages_total:duplicate"],
            m["ingest_messages_total:dead_lettered"])


async def dead_letters_of(client: Client) -> list[dict[str, Any]]:
    return list((await api(client, "/api/v1/dead-letters"))["dead_letters"])


async def stored_seqs(client: Client) -> list[int]:
    return [e["seq"] for e in (await api(client, f"/api/v1/events?gateway={GW}"))["events"]]


async def dealt_with(gateway: FakeGateway, marker_seq: int) -> None:
    """Send a good event and wait for its acknowledgement (see the module's text)."""
    gateway.publish(wire.encode_event(card_read(GW, marker_seq, ts=T0)).encode())
    await gateway.next_ack(lambda a: any(first <= marker_seq <= last for first, last in a.committed))


def event(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


async def test_a_payload_nested_100000_levels_is_dead_lettered_and_counted(server: Client,
                                                                          gateway: FakeGateway) -> None:
    gateway.publish(b"[" * 100_000)
    await dealt_with(gateway, 1)

    (letter,) = await dead_letters_of(server)
    assert letter["reason"] == "JSON nested deeper than 32 levels"
    assert (letter["gateway_id"], letter["seq"], letter["payload_size"]) == (GW, None, 100_000)
    assert await outcomes(server) == (1, 0, 1)
    assert await stored_seqs(server) == [1]


async def test_seq_sent_as_text_is_dead_lettered_not_stored(server: Client, gateway: FakeGateway) -> None:
    gateway.publish(event(seq="2"))
    await dealt_with(gateway, 1)

    (letter,) = await dead_letters_of(server)
    assert "seq: Input should be a valid integer, not text" in letter["reason"]
    assert letter["seq"] is None  # "2" is not a number the gateway may delete on our word
    assert await stored_seqs(server) == [1]
    assert await outcomes(server) == (1, 0, 1)


async def test_seq_written_1e3_is_not_event_1000(server: Client, gateway: FakeGateway) -> None:
    gateway.publish(event().replace(b'"seq": 2', b'"seq": 1e3'))
    await dealt_with(gateway, 1)

    (letter,) = await dead_letters_of(server)
    assert "seq: Input should be a valid integer, not a number with a fraction or exponent" in letter["reason"]
    assert await stored_seqs(server) == [1]


async def test_a_time_sent_as_a_number_is_rejected_not_stored_as_1970(server: Client,
                                                                      gateway: FakeGateway) -> None:
    gateway.publish(event(ts=12345))
    # The number is valid: the gateway hears the event was rejected, and deletes it.
    assert (await gateway.next_ack()).rejected == [(2, 2)]

    (letter,) = await dead_letters_of(server)
    assert letter["seq"] == 2 and "ts: must be a time written as text like 2026-11-22T08:30:00.123Z" \
        in letter["reason"]
    assert await stored_seqs(server) == []
    assert await outcomes(server) == (0, 0, 1)


@pytest.mark.parametrize("repeated, seq", [("ts", 2), ("seq", None)])
async def test_a_repeated_key_is_dead_lettered(server: Client, gateway: FakeGateway, repeated: str,
                                               seq: int | None) -> None:
    text = event().decode()
    gateway.publish((text[:-1] + f', "{repeated}": {json.dumps(GOOD[repeated] if seq else 3)}}}').encode())
    if seq is None:  # which of the two numbers would it be? Neither is rejected.
        await dealt_with(gateway, 1)
    else:
        assert (await gateway.next_ack()).rejected == [(seq, seq)]

    (letter,) = await dead_letters_of(server)
    assert letter["reason"] == f"key {repeated!r} appears twice in one JSON object"
    assert letter["seq"] == seq
    assert 2 not in await stored_seqs(server)
    assert (await outcomes(server))[2] == 1


async def test_the_largest_seq_is_stored_recorded_and_asks_for_nothing(server: Client,
                                                                       gateway: FakeGateway) -> None:
    await dealt_with(gateway, 1)
    gateway.publish(wire.encode_event(card_read(GW, MAX, ts=T0)).encode())
    assert (await gateway.next_ack()).committed == [(MAX, MAX)]

    (record,) = await dead_letters_of(server)
    assert record["seq"] == MAX and record["reason"].startswith(f"sequence jump: seq {MAX} leaves ")
    assert (await metrics(server))["seq_jumps_total"] == 1
    assert (await api(server, "/api/v1/gaps"))["gaps"] == []
    assert await stored_seqs(server) == [1, MAX]
    # Gap detection goes on for the numbers the gateway really uses: a resend
    # request for 3 alone, never for the 9.2e18 numbers below MAX.
    gateway.publish(batch(GW, [card_read(GW, 2, ts=T0), card_read(GW, 4, ts=T0)]))
    assert (await gateway.next_ack(lambda a: a.resend)).resend == [(3, 3)]
    assert await outcomes(server) == (3, 0, 0)


async def test_a_huge_jump_is_an_anomaly_and_the_numbers_after_it_count_from_there(
        server: Client, gateway: FakeGateway) -> None:
    await dealt_with(gateway, 1)
    far = 1 + 10**12
    gateway.publish(batch(GW, [card_read(GW, far, ts=T0), card_read(GW, far + 1, ts=T0)]))
    assert (await gateway.next_ack()).committed == [(far, far + 1)]
    gateway.publish(wire.encode_event(card_read(GW, far + 4, ts=T0)).encode())
    assert (await gateway.next_ack(lambda a: a.resend)).resend == [(far + 2, far + 3)]

    (record,) = await dead_letters_of(server)
    assert record["reason"].startswith(f"sequence jump: seq {far} leaves {far - 2} numbers unused after 1")
    (gap,) = (await api(server, "/api/v1/gaps"))["gaps"]
    assert (gap["first_seq"], gap["last_seq"], gap["state"]) == (far + 2, far + 3, "open")
    assert (await metrics(server))["seq_jumps_total"] == 1


async def test_every_message_received_is_counted_once_by_its_outcome(server: Client,
                                                                     gateway: FakeGateway) -> None:
    gateway.publish(batch(GW, [card_read(GW, 2, ts=T0), card_read(GW, 3, ts=T0)]))   # stored
    gateway.publish(batch(GW, [card_read(GW, 2, ts=T0)]))                              # duplicate
    gateway.publish(b"\x00 not json")                                                  # dead-lettered
    gateway.publish(wire.GatewayStatus(gw=GW, state="online").model_dump_json().encode(), leaf="status")  # stored
    await dealt_with(gateway, 1)                                                       # stored

    m = await metrics(server)
    assert await outcomes(server) == (3, 1, 1)
    assert m["messages_received_total"] == 5 and m["pending_messages"] == 0


async def test_a_dead_letter_the_database_cannot_take_yet_is_retried_not_dropped(
        settings: ServerSettings, sqlite_engine: sa.Engine, gateway: FakeGateway,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore(sqlite_engine)
    real_commit, real_dead_letter = store.commit, store.dead_letter_messages
    poison = batch(GW, [card_read(GW, 7, ts=T0)])
    refusals = {"dead letter": 2}

    def commit(messages: list[Any], **kw: Any) -> Any:
        if any(payload == poison for _, payload, _ in messages):
            raise ValueError("the database refuses this message")  # not transient: dead-letter it
        return real_commit(messages, **kw)

    def dead_letter(messages: list[Any], reason: str, **kw: Any) -> Any:
        if refusals["dead letter"]:
            refusals["dead letter"] -= 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is down"))
        return real_dead_letter(messages, reason, **kw)

    monkeypatch.setattr(store, "commit", commit)
    monkeypatch.setattr(store, "dead_letter_messages", dead_letter)
    service = IngestService(settings.model_copy(update={"commit_retry_max_s": 0.2}), store)
    task = asyncio.create_task(service.run(), name="test-ingest")
    try:
        assert (await gateway.server_status()).state == "online"  # subscribed, so it gets what follows
        gateway.publish(poison)
        # Rejected only once the dead letter is committed, after two failed tries.
        assert (await gateway.next_ack()).rejected == [(7, 7)]
    finally:
        service.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert refusals["dead letter"] == 0 and service.metrics.commit_errors == 3
    assert service.metrics.outcomes["dead_lettered"] == 1
    with sqlite_engine.connect() as conn:
        (reason,) = conn.execute(sa.select(dead_letters.c.reason)).scalars()
    assert reason == "database refused: the database refuses this message"


