"""A coordinator reaches the buildings of their own grids, in lists as in
single objects: the outside test found one refused a building's page who
could still list that building (with the landlord's phone), its
registrations with names, its persons and the whole registry history."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa

from server.app import make_app
from server.registry.idnumber import make_id_number
from tests.server.auth.test_policy_matrix import World, seed_world
from tests.server.registry.api_helpers import Api, MakeClient, settings_for

ID_A = make_id_number("440106", date(1990, 1, 1), 11)  # the tenant of side A (seed_world)
ID_B = make_id_number("320102", date(1990, 1, 1), 22)


async def _world(engine: sa.Engine, url: str, tmp_path: Path, aiohttp_client: MakeClient) -> tuple[Api, World]:
    api = Api(await aiohttp_client(make_app(settings_for(url, tmp_path), ingest=False)))
    return api, await seed_world(api, engine)


async def test_a_coordinator_lists_only_their_grids(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
                                                    aiohttp_client: MakeClient) -> None:
    api, world = await _world(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    token = world.a.coordinator.token
    listed = await api.call("GET", "/api/v1/registry/buildings", token=token)
    assert [b["id"] for b in listed["buildings"]] == [world.a.objects["building"]]
    everything = await api.call("GET", "/api/v1/registry/buildings", token=world.admin.token)
    assert len(everything["buildings"]) == 2
    registrations = await api.call("GET", "/api/v1/registry/registrations", token=token)
    assert [r["id"] for r in registrations["registrations"]] == [world.a.objects["registration"]]
    assert "Tenant B" not in str(registrations)
    # Naming the other grid's building, unit or person in the query: as for one that does not exist.
    for name, kind in (("building_id", "building"), ("unit_id", "unit"), ("person_id", "person")):
        theirs = await api.call("GET", "/api/v1/registry/registrations", None, 400, token=token,
                                **{name: world.b.objects[kind]})
        assert theirs == await api.call("GET", "/api/v1/registry/registrations", None, 400, token=token,
                                        **{name: 2**40})


async def test_a_coordinator_reads_no_person_or_history_outside_their_grids(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api, world = await _world(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    token = world.a.coordinator.token
    await api.call("GET", f"/api/v1/registry/persons/{world.a.objects['person']}", token=token)
    theirs = await api.call("GET", f"/api/v1/registry/persons/{world.b.objects['person']}", None, 404, token=token)
    assert theirs == await api.call("GET", "/api/v1/registry/persons/999999", None, 404, token=token)
    # Identity-number look-up: the other grid's tenant is "no such number".
    found = await api.call("POST", "/api/v1/persons/lookup", {"id_number": ID_A}, token=token)
    assert found["id"] == world.a.objects["person"]
    unknown = make_id_number("110101", date(1970, 1, 1), 5)
    refused = await api.call("POST", "/api/v1/persons/lookup", {"id_number": ID_B}, 404, token=token)
    assert refused == await api.call("POST", "/api/v1/persons/lookup", {"id_number": unknown}, 404, token=token)
    # History: one entity at a time, in their grids.
    await api.call("GET", "/api/v1/registry/history", None, 400, token=token)
    mine = await api.call("GET", "/api/v1/registry/history", token=token, entity="building",
                          entity_id=world.a.objects["building"])
    assert mine["history"]
    refused = await api.call("GET", "/api/v1/registry/history", None, 400, token=token, entity="building",
                             entity_id=world.b.objects["building"])
    assert refused == await api.call("GET", "/api/v1/registry/history", None, 400, token=token,
                                     entity="building", entity_id=2**40)
    # An administrator reads everything.
    assert (await api.call("GET", "/api/v1/registry/history", token=world.admin.token))["history"]


async def test_a_full_width_grid_code_finds_the_same_grid(sqlite_engine: sa.Engine, sqlite_url: str,
                                                          tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api, world = await _world(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    ascii_code = await api.call("GET", "/api/v1/registry/buildings", token=world.admin.token, grid="G-A")
    full_width = await api.call("GET", "/api/v1/registry/buildings", token=world.admin.token, grid="Ｇ－Ａ")
    assert full_width == ascii_code and len(ascii_code["buildings"]) == 1
