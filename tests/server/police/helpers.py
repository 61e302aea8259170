"""A small registry with police callers: clients with chosen scopes and
jurisdictions (made through the real CLI service), tokens from the real
OAuth2 endpoint, and persons registered, evidenced or unknown."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import audit_log, events, persons, presence
from server.police.clients import add_client
from server.registry.idnumber import make_id_number
from tests.server.registry.api_helpers import ID_A, ID_B, Api, City, person, seed_city

ID_UNKNOWN = make_id_number("110105", date(1979, 3, 4), 77)
ID_EVIDENCED = ID_B
ID_REGISTERED = ID_A
PURPOSE = {"code": "criminal_investigation", "legal_basis": "《刑事诉讼法》第52条", "case_ref": "GZ-2026-0042"}
MATCH_ONLY = {"code": "residence_verification", "legal_basis": "《居住证暂行条例》第8条", "case_ref": "HC-7"}


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    token: str


@dataclass
class PoliceWorld:
    city: City
    full: Client          # every scope, jurisdiction: the city's district
    lookup: Client        # lookup only
    elsewhere: Client     # every scope, jurisdiction: another district
    registered_person: int
    evidenced_person: int


def make_client(engine: sa.Engine, **options: Any) -> tuple[str, str]:
    with engine.begin() as conn:
        return add_client(conn, datetime.now(UTC), **{"name": "测试分局", "scopes": "lookup", **options})


async def get_token(api: Api, client_id: str, secret: str, *, status: int = 200) -> dict[str, Any]:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = await api.client.post("/api/v1/police/token", data={"grant_type": "client_credentials"},
                                     headers={"Authorization": f"Basic {basic}"})
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def client(api: Api, engine: sa.Engine, **options: Any) -> Client:
    client_id, secret = make_client(engine, **options)
    return Client(client_id, secret, (await get_token(api, client_id, secret))["access_token"])


async def seed_police(api: Api, engine: sa.Engine) -> PoliceWorld:
    city = await seed_city(api, engine)
    a = city.admin.token
    await api.call("POST", "/api/v1/areas", {"level": "district", "code": "320102", "name": "elsewhere"}, 201,
                   token=a)
    registered = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "arrived_at": "2025-03-01", "person": person(ID_REGISTERED, "李伟"),
        "credential": {"format": "em4100", "value": "00000000A1"}}, 201, token=a)
    gone = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit2, "arrived_at": "2025-01-01", "person": person(ID_EVIDENCED, "王芳"),
        "credential": {"format": "em4100", "value": "00000000B2"}}, 201, token=a)
    await api.call("POST", f"/api/v1/registry/registrations/{gone['id']}/end",
                   {"departed_at": "2025-06-01", "reason": "deregistered"}, token=a)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        # The ended tenant still comes in (reconciliation's presence), and
        # the registered one was read at the door yesterday.
        for person_id, unit_id, value in ((gone["person_id"], city.unit2, "00000000B2"),
                                          (registered["person_id"], city.unit, "00000000A1")):
            conn.execute(sa.insert(presence).values(
                unit_id=unit_id, building_id=city.building, subject=f"p{person_id}", person_id=person_id,
                first_seen_at=now - timedelta(days=20), last_seen_at=now - timedelta(days=1), last_day=0,
                days_seen=12, events=30))
        conn.execute(sa.insert(events).values(
            gateway_id="gw-a", seq=1, kind="card_read", device="door-a", door="front",
            occurred_at=now - timedelta(days=1), received_at=now, stored_at=now, credential_format="em4100",
            credential_value="00000000A1", data={"decision": "granted"}))
    return PoliceWorld(
        city,
        full=await client(api, engine, scopes="lookup detail events batch watch", jurisdiction="440106"),
        lookup=await client(api, engine, scopes="lookup"),
        elsewhere=await client(api, engine, scopes="lookup detail events batch watch", jurisdiction="320102"),
        registered_person=registered["person_id"], evidenced_person=gone["person_id"])


def audit_rows(engine: sa.Engine, action: str | None = None) -> list[Any]:
    with engine.connect() as conn:
        query = sa.select(audit_log).order_by(audit_log.c.seq)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        return list(conn.execute(query))


def digest_of(engine: sa.Engine, person_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(persons.c.id_digest).where(persons.c.id == person_id)).scalar_one())



