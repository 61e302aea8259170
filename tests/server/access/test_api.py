"""Gateways' allowlists without MQTT, driven through the registry API (the
one write path for buildings, persons, registrations and cards): the rules a
landlord meets at the door, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from server.app import make_app
from server.registry.idnumber import make_id_number
from tests.server.auth_helpers import bearer, make_user
from tests.server.registry.api_helpers import settings_for

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Client:
    admin = make_user(engine)
    return await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False),
                                headers=bearer(admin.token))


async def call(client: Client, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = await client.request(method, path, json=body)
    assert response.status == status, await response.text()
    return await response.json()


def id_number(n: int) -> str:
    """The ``n``-th synthetic identity number (GB 11643, valid check character)."""
    return make_id_number("440106", date(1990, 5, 17), n)


def days_ago(n: float) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).isoformat()


async def tenant(client: Client, gw: str = "gw-a") -> dict[str, int]:
    """A building with one unit, ``gw`` pointed at it."""
    building = await call(client, "POST", "/api/v1/registry/buildings", {"name": "Block 7"}, 201)
    unit = await call(client, "POST", f"/api/v1/registry/buildings/{building['id']}/units",
                      {"number": "301", "area_m2": 24.5, "rooms": 2}, 201)
    await call(client, "PUT", f"/api/v1/gateways/{gw}/building", {"building_id": building["id"]})
    return {"building": building["id"], "unit": unit["id"]}


async def register(client: Client, unit: int, value: str | None = "14008ec793", *, person: int = 1,
                   arrived_at: str | None = None, status: int = 201, **extra: Any) -> Any:
    """Register the ``person``-th synthetic tenant at ``unit``, with an em4100 card ``value`` (None: none)."""
    body: dict[str, Any] = {"unit_id": unit, "person": {"id_number": id_number(person), "name": f"Tenant {person}"},
                            "arrived_at": arrived_at or days_ago(1), **extra}
    if value is not None:
        body["credential"] = {"format": "em4100", "value": value}
    return await call(client, "POST", "/api/v1/registry/registrations", body, status)


async def hand_out(client: Client, unit: int, value: str = "14008ec793", status: int = 201, **extra: Any) -> Any:
    """A card handed out for the unit, without a registration."""
    return await call(client, "POST", f"/api/v1/registry/units/{unit}/credentials",
                      {"format": "em4100", "value": value, **extra}, status)


async def end(client: Client, registration: int, status: int = 200, **body: Any) -> Any:
    return await call(client, "POST", f"/api/v1/registry/registrations/{registration}/end", body, status)


async def revoke(client: Client, credential: int, status: int = 200) -> Any:
    return await call(client, "DELETE", f"/api/v1/registry/credentials/{credential}", status=status)


async def allowlist(client: Client, gw: str = "gw-a") -> Any:
    return await call(client, "GET", f"/api/v1/gateways/{gw}/allowlist")


async def history(client: Client, entity: str, entity_id: int) -> list[str]:
    found = await call(client, "GET", f"/api/v1/registry/history?entity={entity}&entity_id={entity_id}")
    return [h["action"] for h in found["history"]]


async def test_a_registered_card_is_in_the_gateways_list_from_the_arrival(client: Client) -> None:
    t = await tenant(client)
    arrived = datetime.now(UTC) - timedelta(days=2)
    reg = await register(client, t["unit"], arrived_at=arrived.isoformat(), doors=["door-a"])
    assert reg["credential_id"] is not None and reg["allowlist_versions"] == {"gw-a": 2}

    doc = await allowlist(client)
    assert doc["building_id"] == t["building"] and doc["version"] == 2
    [entry] = [wire.AllowlistEntry.model_validate_json(json.dumps(e)) for e in doc["entries"]]
    assert entry.credential == wire.Credential(format="em4100", value="14008EC793")
    assert entry.person == f"p-{reg['person_id']}" and entry.doors == ["door-a"]
    assert entry.valid_from == arrived and entry.valid_until is None
    # The one write path leaves its trace of each step.
    assert await history(client, "registration", reg["id"]) == ["registered"]
    assert await history(client, "credential", reg["credential_id"]) == ["issued"]


async def test_cards_go_with_a_registration_or_a_unit(client: Client) -> None:
    t = await tenant(client)
    # An arrival more than a day ahead is refused, and its card with it.
    problem = await register(client, t["unit"], arrived_at=(datetime.now(UTC) + timedelta(days=3)).isoformat(),
                             status=400)
    assert problem["field"] == "arrived_at"
    problem = await register(client, t["unit"], None, doors=["door-a"], status=400)
    assert problem["field"] == "doors"
    assert (await allowlist(client))["entries"] == []

    # Once the registration ends its card opens nothing; registering again brings it back.
    reg = await register(client, t["unit"], arrived_at=days_ago(10))
    await end(client, reg["id"], departed_at=days_ago(2))
    doc = await allowlist(client)
    assert doc["entries"] == [] and doc["revoked"] == [{"format": "em4100", "value": "14008EC793"}]
    again = await register(client, t["unit"], arrived_at=days_ago(1))
    assert again["credential_id"] != reg["credential_id"]
    doc = await allowlist(client)
    assert [e["credential"]["value"] for e in doc["entries"]] == ["14008EC793"] and doc["revoked"] == []


async def test_ending_a_registration_revokes_its_cards(client: Client) -> None:
    t = await tenant(client)
    # The landlord hands a card to the unit, then registers its holder with it: linked.
    first = await hand_out(client, t["unit"], "0000000001")
    reg = await register(client, t["unit"], "0000000001")
    assert reg["credential_id"] == first["id"]
    assert await history(client, "credential", first["id"]) == ["linked", "issued"]
    # A second card for the same tenant goes with the registration too.
    second = await call(client, "POST", f"/api/v1/registry/registrations/{reg['id']}/credentials",
                        {"format": "em4100", "value": "0000000002"}, 201)
    assert second["registration_id"] == reg["id"] and second["person_id"] == reg["person_id"]
    # A card handed to the unit for the same person is not the registration's.
    third = await hand_out(client, t["unit"], "0000000003", person_id=reg["person_id"])

    ended = await end(client, reg["id"])
    assert ended["revoked_credentials"] == 2
    await revoke(client, third["id"])
    # No card goes with a registration that has ended.
    await call(client, "POST", f"/api/v1/registry/registrations/{reg['id']}/credentials",
               {"format": "em4100", "value": "0000000004"}, 409)
    doc = await allowlist(client)
    assert doc["entries"] == []
    assert sorted(c["value"] for c in doc["revoked"]) == ["0000000001", "0000000002", "0000000003"]
    await end(client, reg["id"], status=409)
    assert await history(client, "registration", reg["id"]) == ["ended", "registered"]
    assert await history(client, "credential", second["id"]) == ["revoked", "issued"]


async def test_one_active_card_per_number_and_building(client: Client) -> None:
    t = await tenant(client)
    first = await hand_out(client, t["unit"])
    await hand_out(client, t["unit"], status=409)
    # Registering its holder with it links the card rather than issuing it twice.
    assert (await register(client, t["unit"], person=2))["credential_id"] == first["id"]
    await revoke(client, first["id"])
    await revoke(client, first["id"], status=409)
    await hand_out(client, t["unit"])
    doc = await allowlist(client)
    # Reissued: granted again, not listed as revoked.
    assert len(doc["entries"]) == 1 and doc["revoked"] == []


async def test_bad_input_names_the_field_and_unknown_ids_are_404(client: Client) -> None:
    t = await tenant(client)
    reg = await register(client, t["unit"], None, arrived_at=days_ago(5))
    person = {"id_number": id_number(2), "name": "Wang Fang"}
    cases = [
        ("POST", "/api/v1/registry/buildings", {"name": ""}, "name"),
        ("POST", "/api/v1/registry/buildings", {"name": "x", "floor": 3}, "floor"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": t["unit"], "person": {"name": "No Number"},
                                                    "arrived_at": days_ago(1)}, "person.id_number"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": t["unit"], "person_id": 999,
                                                    "arrived_at": days_ago(1)}, "person_id"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": 999, "person": person,
                                                    "arrived_at": days_ago(1)}, "unit_id"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": t["unit"], "person": person,
                                                    "arrived_at": "2025-01-01T00:00:00"}, "arrived_at"),
        ("POST", f"/api/v1/registry/registrations/{reg['id']}/end", {"departed_at": days_ago(9)}, "departed_at"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": t["unit"], "person": person,
                                                    "arrived_at": days_ago(1),
                                                    "credential": {"format": "em4100", "value": "XYZ"}},
         "credential.value"),
        ("POST", "/api/v1/registry/registrations", {"unit_id": t["unit"], "person": person,
                                                    "arrived_at": days_ago(1),
                                                    "credential": {"format": "barcode", "value": "1"}},
         "credential.format"),
        ("POST", f"/api/v1/registry/units/{t['unit']}/credentials", {"format": "em4100", "value": "XYZ"}, "value"),
        ("PUT", "/api/v1/gateways/gw-a/building", {"building_id": 999}, "building_id"),
        ("PUT", "/api/v1/gateways/bad%20id/building", {"building_id": t["building"]}, "gateway"),
    ]
    for method, path, body, field in cases:
        problem = await call(client, method, path, body, 400)
        assert problem["field"] == field, (path, body, problem)
    response = await client.post("/api/v1/registry/buildings", data=b"{not json")
    assert response.status == 400 and (await response.json())["field"] == "body"

    for method, path in [("POST", "/api/v1/registry/registrations/999/end"),
                         ("DELETE", "/api/v1/registry/credentials/999"),
                         ("POST", "/api/v1/registry/units/999/credentials"),
                         ("GET", "/api/v1/gateways/gw-nobody/allowlist")]:
        body = {"format": "em4100", "value": "0000000001"} if path.endswith("/credentials") else None
        assert (await call(client, method, path, body, status=404))["error"] == "not_found"


async def test_versions_only_grow_and_a_new_gateway_gets_its_row(client: Client) -> None:
    t = await tenant(client)
    versions = [(await allowlist(client))["version"]]
    for n in range(3):
        cred = await hand_out(client, t["unit"], f"000000000{n}")
        versions.append(cred["allowlist_versions"]["gw-a"])
    await call(client, "PUT", "/api/v1/gateways/gw-a/building", {"building_id": None})
    doc = await allowlist(client)
    versions.append(doc["version"])
    assert versions == sorted(set(versions))
    assert doc["entries"] == [] and doc["building_id"] is None
    gateways = (await call(client, "GET", "/api/v1/gateways"))["gateways"]
    assert [g["id"] for g in gateways] == ["gw-a"]


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/buildings"), ("POST", "/api/v1/persons"), ("POST", "/api/v1/registrations"),
    ("POST", "/api/v1/registrations/1/end"), ("POST", "/api/v1/credentials"),
    ("POST", "/api/v1/credentials/1/revoke")])
async def test_the_second_write_path_is_gone(client: Client, method: str, path: str) -> None:
    """The older access API wrote the same tables without history rows; even
    an administrator finds nothing there now (docs/access.md says where to go)."""
    response = await client.request(method, path, json={"name": "x"})
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
