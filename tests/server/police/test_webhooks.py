"""The webhook deliverer against a real aiohttp receiver on a free port, on
SQLite and PostgreSQL: alerts arrive signed (the signature verifies with
the published key, and not once the body is changed), in order per watch,
retried with backoff while the receiver answers 503 or is down, delivered
when it comes back, never through a redirect, and what is left undelivered
at a stop is sent by the next deliverer."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rentgate import signing
from server.audit.log import AuditLog
from server.db.models import audit_log, police_alerts
from server.police import watches
from server.police.signing_key import MAX_AGE_S, WebhookKey, webhook_key
from server.police.watch_matcher import find_sightings, load_index, raise_alerts
from server.police.webhooks import WebhookDeliverer, backoff_s
from tests.server.police.watch_helpers import (
    VAULT,
    Place,
    Receiver,
    building_with_gateway,
    id_number,
    person_with_card,
    police_client,
    store_reads,
)

PURPOSE = {"code": "missing_person", "legal_basis": "《人民警察法》第21条", "case_ref": "SZ-2026-113"}
CARD = "00000000AB"


def verify(public_info: dict[str, Any], headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: parse the header, check the key id and the
    age, verify Ed25519 over ``t + "." + body`` with ``cryptography``."""
    fields = dict(part.split("=", 1) for part in headers["X-Rentgate-Signature"].split(","))
    if fields["kid"] != public_info["key_id"]:
        return False
    if abs(datetime.now(UTC).timestamp() - int(fields["t"])) > public_info["max_age_s"]:
        return False
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_info["public_key"]))
    try:
        key.verify(base64.b64decode(fields["sig"]), fields["t"].encode() + b"." + body)
    except InvalidSignature:
        return False
    return True


@dataclass
class World:
    engine: sa.Engine
    key: WebhookKey
    receiver: Receiver
    place: Place
    watch_id: str
    watch_db_id: int


@pytest.fixture
async def world(engine: sa.Engine) -> AsyncIterator[World]:
    receiver = Receiver()
    client = police_client(engine, webhook_url=receiver.url)
    place = building_with_gateway(engine, code="440106001")
    number = id_number(7)
    person_with_card(engine, place, number, CARD)
    with engine.begin() as conn:
        watch = watches.create_watch(conn, watches.WatchSpec(
            client.user_id, VAULT.digest(number), "4401**********0000", PURPOSE,
            datetime.now(UTC).replace(year=datetime.now(UTC).year + 1)), datetime.now(UTC), max_active=10)
    with engine.connect() as conn:
        watch_db_id = conn.execute(sa.text("SELECT id FROM police_watches WHERE public_id = :p"),
                                   {"p": watch["id"]}).scalar_one()
    yield World(engine, webhook_key(signing.generate_private_key()), receiver, place, watch["id"], int(watch_db_id))
    await receiver.stop()


def raise_reads(world: World, doors: list[str]) -> None:
    """One read per door, in that order, each its own batch, matched at once."""
    for door in doors:
        store_reads(world.engine, world.place, [CARD], door=door)
    with world.engine.connect() as conn:
        index = load_index(conn)
        found = find_sightings(conn, index, stored_since=index.oldest) if index.oldest else []
    with world.engine.begin() as conn:
        raise_alerts(conn, found, datetime.now(UTC))


def alerts(world: World) -> list[Any]:
    with world.engine.connect() as conn:
        return list(conn.execute(sa.select(police_alerts).order_by(police_alerts.c.id)))


async def wait_delivered(world: World, n: int, timeout: float = 10.0) -> None:
    """Until ``n`` alerts are marked delivered in the table (the receiver
    has them a moment before the deliverer records its 2xx)."""
    async def loop() -> None:
        while sum(a.delivered_at is not None for a in alerts(world)) < n:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(loop(), timeout)


def deliverer(world: World, **options: Any) -> WebhookDeliverer:
    settings: dict[str, Any] = {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "idle_poll_s": 0.2,
                                "timeout_s": 2.0, "stop_grace_s": 0.1, **options}
    return WebhookDeliverer(world.engine, world.key, audit=AuditLog(world.engine), **settings)


def audited(world: World) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        return [{**json.loads(r.record), "subject": r.subject, "actor": r.actor} for r in conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "police.watch_alert").order_by(audit_log.c.seq))]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    assert [backoff_s(n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(1, rng=lambda: 0.0) == 1.0  # jitter: the upper half of the step
    assert backoff_s(50, rng=lambda: 1.0) == 300.0
    assert backoff_s(10**6, rng=lambda: 0.5) == 225.0


async def test_an_alert_arrives_signed_and_the_signature_is_checkable(world: World) -> None:
    await world.receiver.start()
    raise_reads(world, ["front"])
    sender = deliverer(world)
    sender.start()
    try:
        await wait_delivered(world, 1)
    finally:
        await sender.stop()
    got = world.receiver.received[0]
    info = world.key.public_info()
    assert info["algorithm"] == "Ed25519" and info["max_age_s"] == MAX_AGE_S
    assert verify(info, got.headers, got.body)
    assert not verify(info, got.headers, got.body.replace(b'"front"', b'"back!"'))
    other = webhook_key(signing.generate_private_key()).public_info()
    assert not verify({**other, "key_id": info["key_id"]}, got.headers, got.body)
    stored = alerts(world)[0]
    assert got.doc == {
        "type": "rentgate.watch.alert", "alert_id": stored.public_id, "watch_id": world.watch_id,
        "event": "card_read", "seen_at": got.doc["seen_at"], "raised_at": got.doc["raised_at"], "door": "front",
        "place": {"in_jurisdiction": True, "building_code": "440106001", "address": got.doc["place"]["address"]},
        "purpose": {"code": "missing_person", "case_ref": "SZ-2026-113"},
    }
    assert got.headers["X-Rentgate-Alert"] == stored.public_id and got.headers["X-Rentgate-Attempt"] == "1"
    assert id_number(7) not in got.body.decode() and id_number(7)[-4:] not in json.dumps(got.doc["place"])
    assert (stored.attempts, stored.last_error, stored.delivered_at is not None) == (1, None, True)
    (entry,) = audited(world)
    assert (entry["subject"], entry["status"], entry["purpose"], entry["detail"]) == (
        f"watch:{world.watch_id}", 200, PURPOSE, {"alert_id": stored.public_id, "attempt": 1})
    assert entry["actor"].startswith("client:pc_test")


async def test_retried_while_the_receiver_answers_503_in_order(world: World) -> None:
    await world.receiver.start()
    world.receiver.status = lambda n: 503 if n <= 3 else 200
    raise_reads(world, ["door-1", "door-2", "door-3"])
    sender = deliverer(world)
    sender.start()
    try:
        await wait_delivered(world, 3)
    finally:
        await sender.stop()
    assert [r.doc["door"] for r in world.receiver.received] == ["door-1", "door-2", "door-3"]
    first, *rest = alerts(world)
    assert first.attempts == 4 and first.last_error is None and first.delivered_at is not None
    assert [a.attempts for a in rest] == [1, 1]
    assert sender.stats.failed_attempts == 3 and sender.stats.last_errors == ["HTTP 503"] * 3
    # One entry per alert delivered, none for the attempts that failed.
    assert [e["detail"]["attempt"] for e in audited(world)] == [4, 1, 1]


async def test_retried_while_the_receiver_is_down_and_delivered_when_it_is_back(world: World) -> None:
    raise_reads(world, ["front", "back"])
    sender = deliverer(world)
    sender.start()
    try:
        async def failed_twice() -> None:
            while True:
                rows = alerts(world)
                if rows[0].attempts >= 2 and rows[0].last_error:
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(failed_twice(), 10)
        head, follower = alerts(world)
        assert head.delivered_at is None and head.last_error.startswith("connection failed")
        assert follower.attempts == 0, "the second alert went before the first"
        await world.receiver.start()
        await wait_delivered(world, 2)
    finally:
        await sender.stop()
    assert [r.doc["door"] for r in world.receiver.received] == ["front", "back"]
    assert all(a.delivered_at is not None for a in alerts(world))


async def test_a_redirect_is_not_followed(world: World) -> None:
    other = Receiver()
    await other.start()

    async def redirect(request: web.Request) -> web.Response:
        world.receiver.attempts += 1
        world.receiver.changed.set()
        raise web.HTTPFound(other.url)

    app = web.Application()
    app.router.add_post("/hook", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", world.receiver.port).start()
    raise_reads(world, ["front"])
    sender = deliverer(world)
    sender.start()
    try:
        await world.receiver.wait_for(lambda: world.receiver.attempts >= 2)
    finally:
        await sender.stop()
        await runner.cleanup()
        await other.stop()
    assert other.attempts == 0
    (row,) = alerts(world)
    assert row.delivered_at is None and row.last_error == "HTTP 302: redirects are not followed"


async def test_a_slow_receiver_times_out(world: World) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        world.receiver.attempts += 1
        world.receiver.changed.set()
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", world.receiver.port).start()
    raise_reads(world, ["front"])
    sender = deliverer(world, timeout_s=0.3)
    sender.start()
    try:
        async def timed_out() -> None:
            while not (rows := alerts(world)) or not rows[0].last_error:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(timed_out(), 10)
    finally:
        release.set()
        await sender.stop()
        await runner.cleanup()
    assert alerts(world)[0].last_error == "no answer within 0.3 s"


async def test_an_attempt_cut_by_a_stop_is_sent_by_the_next_deliverer(world: World) -> None:
    """Stopped mid-request, the deliverer gives its claim back: the next one
    (after a restart, or another process) sends the alert at once rather
    than when the 60 s lease would have run out."""
    hang = asyncio.Event()
    world.receiver.status = lambda n: 200

    async def first_hangs(request: web.Request) -> web.Response:
        if world.receiver.attempts == 0:
            world.receiver.attempts += 1
            world.receiver.changed.set()
            await hang.wait()
        return await world.receiver._hook(request)

    app = web.Application()
    app.router.add_post("/hook", first_hangs)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", world.receiver.port).start()
    raise_reads(world, ["front"])
    first = deliverer(world, timeout_s=30.0)
    first.start()
    try:
        await world.receiver.wait_for(lambda: world.receiver.attempts == 1)
        await first.stop()
        (row,) = alerts(world)
        assert row.delivered_at is None and row.next_attempt_at <= datetime.now(UTC)
        second = deliverer(world, idle_poll_s=30.0)
        second.start()
        try:
            await wait_delivered(world, 1, timeout=5)
        finally:
            await second.stop()
    finally:
        hang.set()
        await runner.cleanup()
    (row,) = alerts(world)
    assert row.delivered_at is not None and row.attempts == 2


async def test_a_building_outside_the_client_s_jurisdiction_is_not_named(world: World) -> None:
    """The client's jurisdiction changed between raising and delivering
    (no alert is raised outside it: test_watches_service.py)."""
    from server.db.models import police_principals

    await world.receiver.start()
    raise_reads(world, ["front"])
    with world.engine.begin() as conn:
        conn.execute(police_principals.update().values(jurisdiction="320102"))
    sender = deliverer(world)
    sender.start()
    try:
        await wait_delivered(world, 1)
    finally:
        await sender.stop()
    doc = world.receiver.received[0].doc
    assert doc["place"] == {"in_jurisdiction": False} and doc["door"] is None
