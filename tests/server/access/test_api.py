"""The access API without MQTT: the rules a landlord meets, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from server.app import make_app
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(engine: sa.Engine, database_url: str, aiohttp_client: MakeClient) -> Client:
    admin = make_user(engine)
    return await aiohttp_client(make_app(ServerSettings(database_url=database_url), ingest=False),
                                headers=bearer(admin.token))


async def call(client: Client, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = await client.request(method, path, json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def tenant(client: Client, gw: str = "gw-a", **registration: Any) -> dict[str, Any]:
    building = await call(client, "POST", "/api/v1/buildings", {"name": "Block 7"}, 201)
    await call(client, "PUT", f"/api/v1/gateways/{gw}/building", {"building_id": building["id"]})
    person = await call(client, "POST", "/api/v1/persons", {"display_name": "Li Wei"}, 201)
    reg = await call(client, "POST", "/api/v1/registrations",
                     {"person_id": person["id"], "building_id": building["id"], **registration}, 201)
    return {"building": building["id"], "person": person["id"], "registration": reg["id"]}


async def issue(client: Client, registration: int, value: str = "14008ec793", status: int = 201,
                **extra: Any) -> Any:
    return await call(client, "POST", "/api/v1/credentials",
                      {"registration_id": registration, "format": "em4100", "value": value, **extra}, status)


async def allowlist(client: Client, gw: str = "gw-a") -> Any:
    return await call(client, "GET", f"/api/v1/gateways/{gw}/allowlist")


async def test_an_issued_card_is_in_the_gateways_list_with_the_registrations_validity(client: Client) -> None:
    until = datetime.now(UTC) + timedelta(days=300)
    t = await tenant(client, valid_until=until.isoformat())
    cred = await issue(client, t["registration"], doors=["door-a"])
    assert cred["value"] == "14008EC793"

    doc = await allowlist(client)
    assert doc["building_id"] == t["building"] and doc["version"] == 2
    [entry] = [wire.AllowlistEntry.model_validate(e) for e in doc["entries"]]
    assert entry.credential == wire.Credential(format="em4100", value="14008EC793")
    assert entry.person == f"p-{t['person']}" and entry.doors == ["door-a"]
    assert entry.valid_until == until


async def test_cards_are_only_issued_under_an_active_registration(client: Client) -> None:
    later = await tenant(client, valid_from=(datetime.now(UTC) + timedelta(days=3)).isoformat())
    problem = await issue(client, later["registration"], status=400)
    assert problem["field"] == "registration_id" and "not valid before" in problem["detail"]

    t = await tenant(client, gw="gw-b")
    await call(client, "POST", f"/api/v1/registrations/{t['registration']}/end")
    problem = await issue(client, t["registration"], status=400)
    assert problem["field"] == "registration_id" and "ended" in problem["detail"]

    problem = await issue(client, 999, status=400)
    assert problem["field"] == "registration_id"


async def test_ending_a_registration_revokes_its_cards(client: Client) -> None:
    t = await tenant(client)
    first = await issue(client, t["registration"], "0000000001")
    await issue(client, t["registration"], "0000000002")
    await call(client, "POST", f"/api/v1/credentials/{first['id']}/revoke")

    ended = await call(client, "POST", f"/api/v1/registrations/{t['registration']}/end")
    assert ended["revoked_credentials"] == 1
    doc = await allowlist(client)
    assert doc["entries"] == []
    assert sorted(c["value"] for c in doc["revoked"]) == ["0000000001", "0000000002"]
    await call(client, "POST", f"/api/v1/registrations/{t['registration']}/end", status=409)


async def test_one_active_card_per_number_and_building(client: Client) -> None:
    t = await tenant(client)
    first = await issue(client, t["registration"])
    await issue(client, t["registration"], status=409)
    await call(client, "POST", f"/api/v1/credentials/{first['id']}/revoke")
    await call(client, "POST", f"/api/v1/credentials/{first['id']}/revoke", status=409)
    await issue(client, t["registration"])
    doc = await allowlist(client)
    # Reissued: granted again, not listed as revoked.
    assert len(doc["entries"]) == 1 and doc["revoked"] == []


async def test_bad_input_names_the_field_and_unknown_ids_are_404(client: Client) -> None:
    t = await tenant(client)
    cases = [
        ("POST", "/api/v1/buildings", {"name": ""}, "name"),
        ("POST", "/api/v1/buildings", {"name": "x", "floor": 3}, "floor"),
        ("POST", "/api/v1/persons", {}, "display_name"),
        ("POST", "/api/v1/registrations", {"person_id": 999, "building_id": t["building"]}, "person_id"),
        ("POST", "/api/v1/registrations", {"person_id": t["person"], "building_id": t["building"],
                                           "valid_from": "2025-01-01T00:00:00"}, "valid_from"),
        ("POST", "/api/v1/registrations", {"person_id": t["person"], "building_id": t["building"],
                                           "valid_from": "2025-02-01T00:00:00Z",
                                           "valid_until": "2025-01-01T00:00:00Z"}, "valid_until"),
        ("POST", "/api/v1/credentials", {"registration_id": t["registration"], "format": "em4100",
                                         "value": "XYZ"}, "value"),
        ("POST", "/api/v1/credentials", {"registration_id": t["registration"], "format": "barcode",
                                         "value": "1"}, "format"),
        ("PUT", "/api/v1/gateways/gw-a/building", {"building_id": 999}, "building_id"),
        ("PUT", "/api/v1/gateways/bad%20id/building", {"building_id": t["building"]}, "gateway"),
    ]
    for method, path, body, field in cases:
        problem = await call(client, method, path, body, 400)
        assert problem["field"] == field, (path, body, problem)
    response = await client.post("/api/v1/buildings", data=b"{not json")
    assert response.status == 400 and (await response.json())["field"] == "body"

    for method, path in [("POST", "/api/v1/registrations/999/end"), ("POST", "/api/v1/credentials/999/revoke"),
                         ("GET", "/api/v1/gateways/gw-nobody/allowlist")]:
        assert (await call(client, method, path, status=404))["error"] == "not_found"


async def test_versions_only_grow_and_a_new_gateway_gets_its_row(client: Client) -> None:
    t = await tenant(client)
    versions = [(await allowlist(client))["version"]]
    for n in range(3):
        cred = await issue(client, t["registration"], f"000000000{n}")
        versions.append(cred["allowlist_versions"]["gw-a"])
    await call(client, "PUT", "/api/v1/gateways/gw-a/building", {"building_id": None})
    doc = await allowlist(client)
    versions.append(doc["version"])
    assert versions == sorted(set(versions))
    assert doc["entries"] == [] and doc["building_id"] is None
    gateways = (await call(client, "GET", "/api/v1/gateways"))["gateways"]
    assert [g["id"] for g in gateways] == ["gw-a"]
