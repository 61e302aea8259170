"""A small world for the watch tests: a police client with a webhook, a
building with a gateway, a person with a card, door reads stored through
the real ingest store, and a webhook receiver on a free port that can
answer 503, be down, and come back."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.auth.sessions import start_session
from server.auth.users import create_user
from server.db.models import buildings, credentials, gateways, persons, police_principals
from server.ingest.store import CommitResult, EventStore
from server.registry.idnumber import make_id_number, mask_id_number
from server.registry.pii import PiiVault
from tests.services import free_port

VAULT = PiiVault.from_master(b"w" * 32)
_names = itertools.count(1)
_seqs = itertools.count(1)


@dataclass(frozen=True)
class PoliceClient:
    user_id: int
    client_id: str
    token: str


def police_client(engine: sa.Engine, *, webhook_url: str | None = "http://127.0.0.1:9/hook",
                  scopes: tuple[str, ...] = ("lookup", "watch"), rate_per_min: int = 600,
                  daily_quota: int = 1000, jurisdiction: str | None = None) -> PoliceClient:
    """A police client (role police + its principal row) with a bearer token."""
    n = next(_names)
    now = datetime.now(UTC)
    client_id = f"pc_test{n}_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        user_id = create_user(conn, now, username=f"police-client-{n}-{secrets.token_hex(3)}",
                              password=secrets.token_hex(8), role="police", display_name=f"client {n}")
        conn.execute(police_principals.insert().values(
            user_id=user_id, kind="client", client_id=client_id, scopes=list(scopes), rate_per_min=rate_per_min,
            daily_quota=daily_quota, jurisdiction=jurisdiction, webhook_url=webhook_url, created_at=now))
        token = start_session(conn, now, user_id, kind="token", ttl=timedelta(hours=1), label="test")
    return PoliceClient(user_id, client_id, token)


def set_webhook(engine: sa.Engine, user_id: int, url: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(police_principals.update().where(police_principals.c.user_id == user_id)
                     .values(webhook_url=url))


@dataclass(frozen=True)
class Place:
    building_id: int
    gateway_id: str
    code: str


def building_with_gateway(engine: sa.Engine, *, code: str | None = None) -> Place:
    n = next(_names)
    now = datetime.now(UTC)
    code = code or f"B{n:04d}"
    gateway_id = f"gw-watch-{n}-{secrets.token_hex(3)}"
    with engine.begin() as conn:
        building_id = conn.execute(buildings.insert().values(
            name=f"Building {n}", code=code, address=f"{n} Watch Road", created_at=now, is_rental=True)
            .returning(buildings.c.id)).scalar_one()
        conn.execute(gateways.insert().values(id=gateway_id, first_seen=now, last_seen=now, max_seq=0,
                                              building_id=building_id))
    return Place(int(building_id), gateway_id, code)


def id_number(n: int) -> str:
    return make_id_number("440106", datetime(1990, 1, 1).date(), 100 + n)


def person_with_card(engine: sa.Engine, place: Place, number: str, card: str, *,
                     revoked: bool = False) -> int:
    """A person (digest and masked number as the registry keeps them) with an em4100 card."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        person_id = conn.execute(persons.insert().values(
            display_name="Watched Person", created_at=now, id_digest=VAULT.digest(number),
            id_masked=mask_id_number(number)).returning(persons.c.id)).scalar_one()
        add_card(conn, int(person_id), place, card, revoked=revoked)
    return int(person_id)


def add_card(conn: sa.Connection, person_id: int, place: Place, card: str, *, revoked: bool = False) -> None:
    now = datetime.now(UTC)
    conn.execute(credentials.insert().values(
        person_id=person_id, building_id=place.building_id, format="em4100", value=card, doors=[],
        issued_at=now - timedelta(days=30), revoked_at=now - timedelta(days=1) if revoked else None,
        revoked_reason="moved_out" if revoked else None))


def store_reads(engine: sa.Engine, place: Place, cards: list[str], *, door: str = "front",
                at: datetime | None = None) -> CommitResult:
    """Card reads committed by the real ingest store, as one batch."""
    when = at or datetime.now(UTC)
    reads = [wire.CardRead(gw=place.gateway_id, seq=next(_seqs), device="reader-1", door=door, ts=when,
                           credential=wire.Credential(format="em4100", value=card)) for card in cards]
    payload = wire.batch_json(place.gateway_id, [wire.encode_event(e) for e in reads])
    topic = f"{wire.TOPIC_ROOT}/gw/{place.gateway_id}/events"
    return EventStore(engine).commit([(topic, payload, datetime.now(UTC))])


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float
    doc: dict[str, Any] = field(default_factory=dict)


class Receiver:
    """A webhook receiver on 127.0.0.1: ``status`` is what it answers
    (a callable gets the request count), ``start``/``stop`` bring it up and
    down on the same port. ``received`` holds what it acknowledged (2xx),
    ``attempts`` everything that reached it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status: Callable[[int], int] = lambda n: 200
        self.received: list[Received] = []
        self.attempts = 0
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        status = self.status(self.attempts)
        if 200 <= status < 300:
            self.received.append(Received(body, dict(request.headers), asyncio.get_running_loop().time(),
                                          json.loads(body)))
        self.changed.set()
        return web.Response(status=status, text="ok" if status < 300 else "unavailable")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until ``predicate()`` holds after something arrived (no fixed sleeps)."""
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)
