"""The doors API: which unit a gateway's door serves, for unit door cameras."""

from __future__ import annotations

from tests.server.registry.api_helpers import Api, City

DOORS = "/api/v1/registry/gateways/gw-a/doors"


async def test_the_landlord_maps_a_door_to_a_unit_lists_and_removes_it_with_history(api: Api, city: City) -> None:
    t = city.landlord.token
    door = await api.call("PUT", f"{DOORS}/unit-301", {"unit_id": city.unit}, token=t)
    assert (door["door"], door["unit_id"], door["unit_number"], door["camera"]) == ("unit-301", city.unit, "301", True)
    await api.call("PUT", f"{DOORS}/entrance", {"unit_id": None, "camera": False}, token=t)
    listed = await api.call("GET", DOORS, token=t)
    assert [(d["door"], d["unit_id"]) for d in listed["doors"]] == [("entrance", None), ("unit-301", city.unit)]
    # Moving the camera's door to the other unit is an update, recorded as one.
    await api.call("PUT", f"{DOORS}/unit-301", {"unit_id": city.unit2}, token=t)
    assert (await api.call("DELETE", f"{DOORS}/entrance", token=t))["removed"] is True
    await api.call("DELETE", f"{DOORS}/entrance", status=404, token=t)
    history = await api.call("GET", "/api/v1/registry/history", token=city.admin.token, entity="door")
    actions = sorted(h["action"] for h in history["history"])
    assert actions == ["created", "created", "removed", "updated"]
    updated = next(h for h in history["history"] if h["action"] == "updated")
    assert updated["changes"]["unit_id"] == [city.unit, city.unit2]


async def test_another_landlord_cannot_map_or_see_the_door_and_learns_nothing(api: Api, city: City) -> None:
    other = city.other_landlord.token
    refused = await api.call("PUT", f"{DOORS}/unit-301", {"unit_id": city.unit}, 404, token=other)
    missing = await api.call("PUT", "/api/v1/registry/gateways/gw-nowhere/doors/unit-301", {"unit_id": city.unit},
                             404, token=other)
    assert refused == missing == {"error": "not_found", "detail": "no such gateway"}
    assert await api.call("GET", DOORS, status=404, token=other) == missing
    # Naming a unit of another landlord at one's own gateway: as if it did not exist.
    own = await api.call("PUT", f"{DOORS}/unit-301", {"unit_id": city.other_unit}, 400, token=city.landlord.token)
    nowhere = await api.call("PUT", f"{DOORS}/unit-301", {"unit_id": 2**40}, 400, token=city.landlord.token)
    assert own == nowhere
    await api.call("GET", DOORS, status=403, token=city.coordinator.token)


async def test_a_unit_of_another_building_or_a_gateway_in_none_is_refused_with_the_reason(
        api: Api, city: City) -> None:
    a = city.admin.token
    wrong = await api.call("PUT", f"{DOORS}/unit-101", {"unit_id": city.other_unit}, 400, token=a)
    assert wrong["field"] == "unit_id" and "gateway's building" in wrong["detail"]
    await api.call("PUT", "/api/v1/gateways/gw-free/building", {"building_id": None}, token=a)
    unplaced = await api.call("PUT", "/api/v1/registry/gateways/gw-free/doors/d1", {"unit_id": None}, 409, token=a)
    assert "no building" in unplaced["detail"]
    await api.call("PUT", f"{DOORS}/d1", {"unit_id": city.unit, "colour": "red"}, 400, token=a)
    too_long = await api.call("PUT", f"{DOORS}/{'x' * 65}", {"unit_id": city.unit}, 400, token=a)
    assert too_long["field"] == "door"
