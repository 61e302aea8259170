"""The grid API as an administrator, coordinators and a landlord meet it:
tasks (list, detail, actions with their refusals), coordinators of a grid,
overdue patrols and workload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.db.models import areas
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer
from tests.server.grid.scene import Scene

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(sqlite_scene: Scene, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False))


class Api:
    def __init__(self, client: Client, scene: Scene) -> None:
        self.client, self.scene = client, scene

    async def call(self, method: str, path: str, who: str, body: Any = None, status: int = 200,
                   **params: Any) -> Any:
        response = await self.client.request(method, path, json=body, params=params,
                                             headers=bearer(self.scene.users[who].token))
        doc = await response.json()
        assert response.status == status, doc
        return doc


@pytest.fixture
def api(client: Client, sqlite_scene: Scene) -> Api:
    return Api(client, sqlite_scene)


async def test_a_task_through_the_api_with_its_refusals(api: Api, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    task_id = scene.task("G1-101", now=datetime.now(UTC))
    base = f"/api/v1/tasks/{task_id}"
    detail = await api.call("GET", base, "chen")
    assert detail["state"] == "reported" and detail["allowed_actions"] == ["claim"]
    assert [e["action"] for e in detail["events"]] == ["reported"]
    # Another grid's task is answered like one that does not exist.
    assert await api.call("GET", base, "wang", status=404) == await api.call("GET", "/api/v1/tasks/424242", "wang",
                                                                              status=404)
    await api.call("GET", "/api/v1/tasks/424242", "admin", status=404)
    refused = await api.call("POST", f"{base}/dispatch", "chen", {"assignee_username": "li"}, 403)
    assert refused["error"] == "forbidden"
    bad = await api.call("POST", f"{base}/dispatch", "admin", {"assignee_username": "wang"}, 400)
    assert bad == {"error": "bad_parameter", "field": "assignee",
                   "detail": "is not a coordinator of the task's grid"}
    assert (await api.call("POST", f"{base}/dispatch", "admin", {"assignee_username": "nobody"}, 400)
            )["field"] == "assignee_username"
    assert (await api.call("POST", f"{base}/dispatch", "admin", {"colour": "red"}, 400))["field"] == "colour"
    done = await api.call("POST", f"{base}/dispatch", "admin", {"assignee_username": "chen", "note": "today"})
    assert done["state"] == "dispatched" and done["assignee_username"] == "chen"
    assert done["allowed_actions"] == ["reassign"]  # an administrator hands over, the assignee handles
    illegal = await api.call("POST", f"{base}/claim", "li", None, 409)
    assert "'claim' is not allowed when the task is 'dispatched'" in illegal["detail"]
    unknown = await api.call("POST", f"{base}/teleport", "admin", None, 409)
    assert "unknown action" in unknown["detail"]
    await api.call("POST", f"{base}/handle", "chen", {"note": ""}, 400)
    await api.call("POST", f"{base}/handle", "chen", {"note": "visited"})
    await api.call("POST", f"{base}/verify", "chen", {}, 403)  # four-eyes
    await api.call("POST", f"{base}/verify", "li", {})
    await api.call("POST", f"{base}/evaluate", "admin", {"evaluation": "excellent", "note": "x"}, 400)
    await api.call("POST", f"{base}/evaluate", "admin", {"evaluation": "good", "note": "ok"})
    final = await api.call("POST", f"{base}/archive", "admin")
    assert final["state"] == "archived" and len(final["events"]) == 6
    await api.call("POST", f"{base}/archive", "landlord", None, 403)  # role checked first


async def test_task_lists_filter_and_page(api: Api, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    ids = [scene.task(unit) for unit in ("G1-101", "G1-102", "G2-101", "G1-101")]
    everything = await api.call("GET", "/api/v1/tasks", "admin", limit=3)
    assert [t["id"] for t in everything["tasks"]] == ids[::-1][:3] and everything["next"]
    rest = await api.call("GET", "/api/v1/tasks", "admin", limit=3, cursor=everything["next"])
    assert [t["id"] for t in rest["tasks"]] == [ids[0]] and rest["next"] is None
    chen = await api.call("GET", "/api/v1/tasks", "chen", state="open", sort="due")
    assert {t["id"] for t in chen["tasks"]} == {ids[0], ids[1], ids[3]}
    overdue = await api.call("GET", "/api/v1/tasks", "admin", overdue="1")  # created long ago: all late
    assert len(overdue["tasks"]) == 4 and all(t["overdue"] for t in overdue["tasks"])
    await api.call("POST", f"/api/v1/tasks/{ids[1]}/claim", "li")
    mine = await api.call("GET", "/api/v1/tasks", "li", mine="1")
    assert [t["id"] for t in mine["tasks"]] == [ids[1]]
    for params, field in (({"state": "gone"}, "state"), ({"limit": "0"}, "limit"), ({"colour": "x"}, "colour"),
                          ({"overdue": "perhaps"}, "overdue")):
        assert (await api.call("GET", "/api/v1/tasks", "admin", None, 400, **params))["field"] == field
    await api.call("GET", "/api/v1/tasks", "landlord", status=403)


async def test_coordinators_of_a_grid_are_managed_by_administrators(api: Api, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    g3 = f"/api/v1/grids/{scene.grids['G3']}/coordinators"
    assert (await api.call("GET", g3, "admin")) == {"coordinators": []}
    added = await api.call("POST", g3, "admin", {"username": "wang"}, 201)
    assert [c["username"] for c in added["coordinators"]] == ["wang"]
    assert (await api.call("POST", g3, "admin", {"user_id": scene.users["wang"].id}, 200))["coordinators"]
    refused = await api.call("POST", g3, "admin", {"username": "landlord"}, 400)
    assert "only coordinators" in refused["detail"]
    with scene.engine.connect() as conn:
        community = conn.execute(sa.select(areas.c.id).where(areas.c.code == "C")).scalar_one()
    await api.call("POST", f"/api/v1/grids/{community}/coordinators", "admin", {"username": "wang"}, 400)
    await api.call("POST", "/api/v1/grids/999999/coordinators", "admin", {"username": "wang"}, 404)
    await api.call("GET", g3, "chen", status=403)
    await api.call("POST", g3, "chen", {"username": "chen"}, 403)
    left = await api.call("DELETE", g3, "admin", None, 200, username="wang")
    assert left == {"coordinators": []}
    await api.call("DELETE", g3, "admin", None, 404, username="wang")
    await api.call("DELETE", g3, "admin", None, 400)
    # Scope follows the assignment at once: wang no longer reaches G3.
    task_id = scene.task("G3-101")
    await api.call("POST", f"/api/v1/tasks/{task_id}/claim", "wang", None, 404)


async def test_overdue_patrols_and_workload_by_scope(api: Api, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    scene.resident("G1-101")
    everything = await api.call("GET", "/api/v1/patrols/overdue", "admin", limit=4)
    assert everything["total"] == 6 and len(everything["units"]) == 4 and everything["next_offset"] == 4
    assert everything["units"][0]["days_overdue"] > 0
    chen = await api.call("GET", "/api/v1/patrols/overdue", "chen")
    assert {u["grid_code"] for u in chen["units"]} == {"G1"} and chen["next_offset"] is None
    await api.call("GET", "/api/v1/patrols/overdue", "chen", None, 400, grid_id=scene.grids["G2"])
    load = await api.call("GET", "/api/v1/workload", "chen")
    assert [g["code"] for g in load["grids"]] == ["G1"]
    assert load["grids"][0]["residents"] == 1 and load["grids"][0]["coordinators"] == 2
    assert {c["username"] for c in load["coordinators"]} == {"chen", "li"}
    whole = await api.call("GET", "/api/v1/workload", "admin")
    assert [g["code"] for g in whole["grids"]] == ["G1", "G2", "G3"] and whole["ratio"] == 500
    await api.call("GET", "/api/v1/workload", "landlord", status=403)


async def test_numbers_no_database_holds_are_answers_not_errors(api: Api, sqlite_scene: Scene) -> None:
    huge = 2**70
    task_id = sqlite_scene.task()
    await api.call("GET", f"/api/v1/tasks/{huge}", "admin", status=404)
    await api.call("POST", f"/api/v1/tasks/{huge}/claim", "admin", status=404)
    bad = await api.call("POST", f"/api/v1/tasks/{task_id}/dispatch", "admin", {"assignee_user_id": huge}, 400)
    # The body's model (server/web/ids.DbId) refuses it, naming the field as sent.
    assert bad["field"] == "assignee_user_id"
    await api.call("GET", "/api/v1/tasks", "admin", None, 400, cursor=str(huge))
    await api.call("POST", f"/api/v1/grids/{huge}/coordinators", "admin", {"user_id": 1}, 404)
    await api.call("POST", f"/api/v1/grids/{sqlite_scene.grids['G1']}/coordinators", "admin", {"user_id": huge}, 400)
