"""What the registry API refuses, and how it says so: bad input naming the
field, who may do what, the declaration limit and a missing identity key."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import make_app
from server.db import migrate
from server.db.engine import create_engine
from server.plates.declare_api import DECLARATIONS_PER_HOUR
from server.registry.idnumber import check_character, make_id_number
from server.settings import ServerSettings
from tests.server.registry.api_helpers import ID_A, Api, City, MakeClient, person, seed_city, settings_for


@pytest.fixture
async def api(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Api:
    return Api(await aiohttp_client(make_app(settings_for(sqlite_url, tmp_path), ingest=False)))


@pytest.fixture
async def city(api: Api, sqlite_engine: sa.Engine) -> City:
    return await seed_city(api, sqlite_engine)


def _with_check(first17: str) -> str:
    return first17 + check_character(first17)


TOMORROW = date.today() + timedelta(days=2)
BAD_NUMBERS = {
    "wrong check character": ID_A[:17] + ("0" if ID_A[17] != "0" else "1"),
    "birth date is not a real date": _with_check("44010619900230123"),
    "birth date is impossible": _with_check(f"440106{TOMORROW:%Y%m%d}123"),
    "must be 18 characters, got 15": "440106900517123",
    "must be 17 digits and a digit or X": "4401061990051712A4",
    "unknown province code 99": _with_check("99010619900517123"),
    "sequence number 000 is not issued": _with_check("44010619900517000"),
}


@pytest.mark.parametrize("reason", sorted(BAD_NUMBERS))
async def test_invalid_identity_numbers_say_why_without_repeating_them(api: Api, city: City, reason: str) -> None:
    number = BAD_NUMBERS[reason]
    for path, token, where in (("/api/v1/registry/registrations", city.landlord.token, {"unit_id": city.unit}),
                               ("/api/v1/declarations", None, {"plate": city.plates[city.unit]})):
        problem = await api.call("POST", path, {**where, "person": person(number),
                                                "arrived_at": "2025-01-01"}, 400, token=token)
        assert problem["field"] == "person.id_number" and problem["detail"] == reason
    assert number not in "".join(api.seen)


def _arrival(value: str) -> dict[str, Any]:
    return {"unit_id": 0, "person": person(), "arrived_at": value}


@pytest.mark.parametrize(("path", "body", "field", "status"), [
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2025-01-01", "unit_id": 999},
     "unit_id", 400),
    # An id that cannot be one is refused before anything else is read.
    ("/api/v1/registry/registrations", {"arrived_at": "2025-01-01", "unit_id": -1}, "unit_id", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2026-02-30"}, "arrived_at", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2025-01-01T08:00:00"}, "arrived_at", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "yesterday!"}, "arrived_at", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2999-01-01"}, "arrived_at", 400),
    ("/api/v1/registry/registrations", {"person": person(phone="call me"), "arrived_at": "2025-01-01"},
     "person.phone", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2025-01-01", "colour": "red"},
     "colour", 400),
    ("/api/v1/registry/registrations", {"person": person(), "arrived_at": "2025-01-01",
                                        "credential": {"format": "em4100", "value": "XYZ"}}, "credential.value", 400),
    ("/api/v1/registry/buildings", {"name": "X", "grid_code": "NOPE"}, "grid_code", 400),
    ("/api/v1/registry/buildings", {"name": "X", "grid_code": "440106"}, "grid_code", 400),
    ("/api/v1/registry/buildings", {"name": "X", "landlord_username": "nobody"}, "landlord_username", 400),
    ("/api/v1/registry/buildings", {"name": "X", "pledge_signed_at": "2025-13-01"}, "pledge_signed_at", 400),
    ("/api/v1/areas", {"level": "grid", "code": "G-9", "name": "g", "parent_code": "NOPE"}, "parent_code", 400),
    ("/api/v1/areas", {"level": "planet", "code": "P", "name": "p"}, "level", 400),
    ("/api/v1/registry/buildings/999/units", {"number": "1", "area_m2": 10, "rooms": 1}, None, 404),
])
async def test_bad_input_names_the_field(api: Api, city: City, path: str, body: dict[str, Any], field: str | None,
                                         status: int) -> None:
    if path.endswith("registrations"):
        body = {"unit_id": city.unit, **body}
    problem = await api.call("POST", path, body, status, token=city.admin.token)
    if field is not None:
        assert problem["field"] == field, problem


async def test_departure_before_arrival_and_unknown_ids(api: Api, city: City) -> None:
    reg = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(), "arrived_at": "2025-03-10"}, 201, token=city.landlord.token)
    problem = await api.call("POST", f"/api/v1/registry/registrations/{reg['id']}/end",
                             {"departed_at": "2025-03-09"}, 400, token=city.landlord.token)
    assert problem["field"] == "departed_at"
    problem = await api.call("POST", f"/api/v1/registry/registrations/{reg['id']}/end",
                             {"reason": "Gone Away!"}, 400, token=city.landlord.token)
    assert problem["field"] == "reason"
    await api.call("POST", "/api/v1/registry/registrations/999/end", {}, 404, token=city.admin.token)
    await api.call("GET", "/api/v1/registry/units/999", None, 404, token=city.admin.token)
    await api.call("GET", "/api/v1/registry/persons/999", None, 404, token=city.admin.token)
    await api.call("DELETE", "/api/v1/registry/credentials/999", None, 404, token=city.admin.token)
    await api.call("GET", "/api/v1/areas", None, 404, token=city.admin.token, parent="NOPE")
    problem = await api.call("GET", "/api/v1/registry/buildings", None, 400, token=city.admin.token, grid="NOPE")
    assert problem["field"] == "grid"
    problem = await api.call("POST", "/api/v1/registry/buildings",
                             {"name": "X", "landlord_username": city.coordinator.username}, 400, token=city.admin.token)
    assert problem["field"] == "landlord_username" and "not a landlord" in problem["detail"]


async def test_who_may_do_what(api: Api, city: City) -> None:
    register = {"unit_id": city.other_unit, "person": person(), "arrived_at": "2025-01-01"}
    # Another landlord's building, unit or card is answered like one that
    # does not exist: in the body a 400 naming the field, in the path a 404.
    problem = await api.call("POST", "/api/v1/registry/registrations", register, 400, token=city.landlord.token)
    assert problem == {"error": "bad_parameter", "field": "unit_id", "detail": "no such unit"}
    await api.call("GET", f"/api/v1/registry/buildings/{city.other_building}", None, 404, token=city.landlord.token)
    await api.call("GET", f"/api/v1/registry/units/{city.other_unit}", None, 404, token=city.landlord.token)
    await api.call("POST", f"/api/v1/registry/units/{city.other_unit}/credentials",
                   {"format": "em4100", "value": "0000000001"}, 404, token=city.landlord.token)
    await api.call("GET", "/api/v1/registry/history", None, 400, token=city.landlord.token,
                   entity="building", entity_id=city.other_building)
    await api.call("POST", "/api/v1/registry/buildings", {"name": "Mine"}, 403, token=city.landlord.token)
    own = await api.call("GET", "/api/v1/registry/buildings", token=city.landlord.token)
    assert [b["id"] for b in own["buildings"]] == [city.building]
    everything = await api.call("GET", "/api/v1/registry/buildings", token=city.coordinator.token)
    assert len(everything["buildings"]) == 2
    in_grid = await api.call("GET", "/api/v1/registry/buildings", token=city.admin.token, grid="G-0301")
    assert len(in_grid["buildings"]) == 2

    # A coordinator registers anywhere in their grid; police see none of this.
    reg = await api.call("POST", "/api/v1/registry/registrations", register, 201, token=city.coordinator.token)
    assert reg["source"] == "coordinator"
    await api.call("POST", f"/api/v1/registry/registrations/{reg['id']}/end", {}, 404, token=city.landlord.token)
    for method, path in (("GET", "/api/v1/registry/buildings"), ("GET", f"/api/v1/registry/units/{city.unit}"),
                         ("GET", "/api/v1/registry/registrations"), ("GET", "/api/v1/registry/history")):
        await api.call(method, path, None, 403, token=city.police.token)
    await api.call("POST", "/api/v1/registry/registrations", register, 403, token=city.police.token)

    # Nobody logged in: 401 everywhere but the self-declaration.
    for method, path in (("GET", "/api/v1/registry/buildings"), ("POST", "/api/v1/registry/registrations"),
                         ("POST", "/api/v1/persons/lookup"), ("GET", "/api/v1/areas"),
                         ("DELETE", "/api/v1/registry/credentials/1")):
        response = await api.client.request(method, path, json={})
        assert response.status == 401, path


async def test_declarations_are_limited_per_address(api: Api, city: City) -> None:
    for _ in range(DECLARATIONS_PER_HOUR):
        await api.call("POST", "/api/v1/declarations", {}, 400)
    response = await api.client.post("/api/v1/declarations", json={
        "plate": city.plates[city.unit], "person": person(), "arrived_at": "2025-01-01"})
    assert response.status == 429
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    # Staff are not limited by it.
    await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(), "arrived_at": "2025-01-01"}, 201, token=city.landlord.token)


async def test_without_an_identity_key_on_postgresql_persons_answer_503(
        postgres_url: str, aiohttp_client: MakeClient) -> None:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    try:
        api = Api(await aiohttp_client(make_app(ServerSettings(database_url=postgres_url), ingest=False)))
        city = await seed_city(api, engine)
        number = make_id_number("110101", date(2000, 1, 1), 7)
        for path, token in (("/api/v1/registry/registrations", city.landlord.token),
                            ("/api/v1/declarations", None)):
            problem = await api.call("POST", path, {"unit_id": city.unit, "person": person(number),
                                                    "arrived_at": datetime.now(UTC).isoformat()}, 503, token=token)
            assert problem["error"] == "pii_key_unavailable" and "RENTGATE_PII_KEY_FILE" in problem["detail"]
        await api.call("POST", "/api/v1/persons/lookup", {"id_number": number}, 503, token=city.admin.token)
        # The rest of the registry still works.
        building = await api.call("GET", f"/api/v1/registry/buildings/{city.building}", token=city.landlord.token)
        assert [u["number"] for u in building["units"]] == ["301", "302"]
    finally:
        engine.dispose()
