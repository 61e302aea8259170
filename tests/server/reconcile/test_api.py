"""The cases and rates API as a landlord, a coordinator and an admin meet it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from server.app import make_app
from server.db.models import grid_coordinators, registrations
from tests.server.auth_helpers import make_user
from tests.server.reconcile.world import T0, World, day
from tests.server.registry.api_helpers import Api, MakeClient, settings_for


@pytest.fixture
async def api(engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Api:
    return Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))


class Scene:
    def __init__(self, world: World) -> None:
        engine = world.engine
        self.admin = make_user(engine, "admin")
        self.coordinator = make_user(engine, "coordinator")
        self.landlord = make_user(engine, "landlord")
        self.other = make_user(engine, "landlord")
        self.police = make_user(engine, "police")
        self.mine = world.building("mine", grid="G1", landlord_user_id=self.landlord.id)
        self.theirs = world.building("theirs", grid="G2", landlord_user_id=self.other.id)
        unit = world.unit(self.mine)
        self.registration = world.register(world.person(), unit, card="R1")
        world.read(self.mine, "R1", day(1))
        world.read(self.mine, "UNK-1", day(39))
        world.read(self.theirs, "UNK-2", day(39))
        world.sweep(day(40))  # unknown cards in both buildings, a presumed departure in mine
        cases = {(c["kind"], c["building_id"]): c["id"] for c in world.open_cases()}
        self.unknown_mine = cases[("unknown_credential", self.mine)]
        self.unknown_theirs = cases[("unknown_credential", self.theirs)]
        self.departure = cases[("presumed_departure", self.mine)]
        # The coordinator works both grids; another works only the second.
        self.other_coordinator = make_user(engine, "coordinator")
        with engine.begin() as conn:
            conn.execute(sa.insert(grid_coordinators), [
                {"grid_id": world.grids["G1"], "user_id": self.coordinator.id, "assigned_at": T0, "assigned_by": "test"},
                {"grid_id": world.grids["G2"], "user_id": self.coordinator.id, "assigned_at": T0, "assigned_by": "test"},
                {"grid_id": world.grids["G2"], "user_id": self.other_coordinator.id, "assigned_at": T0, "assigned_by": "test"}])


@pytest.fixture
def scene(world: World) -> Scene:
    return Scene(world)


async def test_landlord_sees_and_acts_on_own_buildings_only(api: Api, scene: Scene) -> None:
    token = scene.landlord.token
    listed = await api.call("GET", "/api/v1/cases", token=token, state="active")
    assert {c["id"] for c in listed["items"]} == {scene.unknown_mine, scene.departure}
    everything = await api.call("GET", "/api/v1/cases", token=scene.coordinator.token)
    assert len(everything["items"]) == 3
    # A coordinator lists only the cases of their own grids.
    second_grid = await api.call("GET", "/api/v1/cases", token=scene.other_coordinator.token)
    assert [c["id"] for c in second_grid["items"]] == [scene.unknown_theirs]
    # Another landlord's case is answered like one that does not exist.
    theirs = await api.call("GET", f"/api/v1/cases/{scene.unknown_theirs}", status=404, token=token)
    assert theirs == await api.call("GET", "/api/v1/cases/987654321", status=404, token=token)
    await api.call("POST", f"/api/v1/cases/{scene.unknown_theirs}/acknowledge", status=404, token=token)
    mine = await api.call("POST", f"/api/v1/cases/{scene.unknown_mine}/acknowledge", token=token)
    assert mine["state"] == "acknowledged"
    # Resolving is staff work.
    await api.call("POST", f"/api/v1/cases/{scene.unknown_mine}/resolve", {"resolution": "fixed"}, 403,
                   token=token)
    done = await api.call("POST", f"/api/v1/cases/{scene.unknown_mine}/resolve",
                          {"resolution": "false_alarm", "note": "the cleaner"}, token=scene.coordinator.token)
    assert done["resolution"] == "false_alarm"
    await api.call("POST", f"/api/v1/cases/{scene.unknown_mine}/resolve", {"resolution": "fixed"}, 409,
                   token=scene.coordinator.token)
    detail = await api.call("GET", f"/api/v1/cases/{scene.unknown_mine}", token=token)
    assert [h["action"] for h in detail["history"]] == ["opened", "acknowledged", "resolved"]
    await api.call("GET", "/api/v1/cases", status=401)
    await api.call("GET", "/api/v1/cases/999999", status=404, token=scene.admin.token)


async def test_paging_through_cases(api: Api, scene: Scene) -> None:
    first = await api.call("GET", "/api/v1/cases", token=scene.admin.token, limit=2)
    assert len(first["items"]) == 2 and first["next_before_id"] == first["items"][-1]["id"]
    rest = await api.call("GET", "/api/v1/cases", token=scene.admin.token, limit=2,
                          before_id=first["next_before_id"])
    assert len(rest["items"]) == 1
    assert (await api.call("GET", "/api/v1/cases", status=400, token=scene.admin.token, kind="nope"))[
        "field"] == "kind"


async def test_landlord_answers_a_departure(api: Api, scene: Scene, world: World) -> None:
    path = f"/api/v1/cases/{scene.departure}/answer"
    await api.call("POST", path, {}, 400, token=scene.landlord.token)
    await api.call("POST", path, {"still_living": False}, 404, token=scene.other.token)
    body = await api.call("POST", path, {"still_living": False, "departed_at": day(3).isoformat()},
                          token=scene.landlord.token)
    assert body["resolution"] == "departure_confirmed"
    with world.engine.connect() as conn:
        status = conn.execute(sa.select(registrations.c.status, registrations.c.end_reason)
                              .where(registrations.c.id == scene.registration)).one()
    assert tuple(status) == ("ended", "departure_confirmed")
    await api.call("POST", path, {"still_living": True}, 409, token=scene.landlord.token)


async def test_rates_for_staff_and_police_not_landlords(api: Api, scene: Scene) -> None:
    body = await api.call("GET", "/api/v1/rates", token=scene.police.token, level="district")
    [district] = body["items"]
    assert district["code"] == "D" and district["pledge"] == {"numerator": 0, "denominator": 2, "value": 0.0}
    one = await api.call("GET", "/api/v1/rates", token=scene.admin.token, code="G1")
    assert one["items"][0]["consistency"]["denominator"] == 1
    await api.call("GET", "/api/v1/rates", status=404, token=scene.admin.token, code="nowhere")
    await api.call("GET", "/api/v1/rates", status=403, token=scene.landlord.token)
    history = await api.call("GET", "/api/v1/rates/history", token=scene.admin.token, code="D", days=3650)
    assert history["code"] == "D"  # the snapshot was taken in 2024: within ten years
    assert history["items"][0]["day"] == day(40).date().isoformat()


async def test_engine_status_for_staff(api: Api, scene: Scene) -> None:
    body = await api.call("GET", "/api/v1/reconcile/status", token=scene.admin.token)
    assert body["open_cases"] == {"presumed_departure": 1, "unknown_credential": 2}
    assert body["watermark_lag"] == 0
