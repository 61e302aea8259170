"""The grid pages over HTTP with cookie logins: the coordinator's home,
a task's page with its steps and forms (CSRF), refusals in words, the
dispatch view, the overdue list and the workload."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.db.models import units
from server.grid.case_tasks import create_case_tasks
from server.settings import ServerSettings
from server.web.transactions import write_transaction
from tests.server.grid.scene import Scene

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def client(sqlite_scene: Scene, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False))


async def login(client: Client, username: str) -> None:
    client.session.cookie_jar.clear()
    response = await client.post("/login", data={"username": username, "password": "pw-secret-1", "next": ""},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path)
    html = await response.text()
    assert response.status == status, html
    return html


async def post(client: Client, path: str, form: dict[str, str], status: int = 303,
               csrf_from: str | None = None) -> ClientResponse:
    html = await page(client, csrf_from or path.rsplit("/", 1)[0])
    token = _CSRF.search(html)
    assert token, html
    response = await client.post(path, data={**form, "csrf": token.group(1)}, allow_redirects=False)
    assert response.status == status, await response.text()
    return response


def case_task(scene: Scene, unit: str = "G1-101", kind: str = "overcrowding") -> int:
    scene.case(unit, kind)
    with write_transaction(scene.engine) as conn:
        create_case_tasks(conn, datetime.now(UTC), scene.rules)
        from server.db.models import tasks

        return int(conn.execute(sa.select(sa.func.max(tasks.c.id))).scalar_one())


async def test_pages_need_a_coordinator_or_admin(client: Client) -> None:
    response = await client.get("/c", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/c"
    await login(client, "landlord")
    for path in ("/c", "/c/overdue", "/c/workload", "/c/tasks/1"):
        assert "无权访问" in await page(client, path, 403)


async def test_a_coordinator_takes_a_case_task_through_their_steps(client: Client, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    task_id = case_task(scene)
    await login(client, "chen")
    home = await page(client, "/c")
    assert 'href="/c"' in home and "本网格待认领 (1)" in home and "超员（群租）" in home
    assert f'href="/c/tasks/{task_id}"' in home
    detail = await page(client, f"/c/tasks/{task_id}")
    assert 'class="current" data-step="reported" aria-current="step"' in detail
    assert f'href="/c/units/{scene.units["G1-101"]}"' in detail and 'data-action="claim"' in detail
    assert 'data-action="dispatch"' not in detail  # dispatching is the administrator's
    response = await post(client, f"/c/tasks/{task_id}/claim", {})
    assert response.headers["Location"] == f"/c/tasks/{task_id}?ok=task.claim_ok"
    detail = await page(client, f"/c/tasks/{task_id}?ok=task.claim_ok")
    assert "已认领" in detail and 'class="current" data-step="dispatched"' in detail
    assert 'class="done" data-step="reported"' in detail
    # Handling needs a note: refused on the page, in words, nothing written.
    refused = await post(client, f"/c/tasks/{task_id}/handle", {"note": "  "}, 400)
    assert "说明：必须填写" in await refused.text()
    await post(client, f"/c/tasks/{task_id}/handle", {"note": "查看了房间，已清退两人"})
    detail = await page(client, f"/c/tasks/{task_id}")
    assert 'data-step="handled" aria-current="step"' in detail and "查看了房间，已清退两人" in detail
    assert "当前没有您可执行的操作" in detail  # four-eyes: not chen's to verify
    forbidden = await post(client, f"/c/tasks/{task_id}/verify", {}, 403)
    assert "双人复核" in await forbidden.text()
    await login(client, "li")
    assert 'data-action="verify"' in await page(client, f"/c/tasks/{task_id}")
    await post(client, f"/c/tasks/{task_id}/verify", {"note": "核实无误"})
    again = await post(client, f"/c/tasks/{task_id}/verify", {}, 409)
    assert "“核查”步骤" in await again.text()


async def test_another_grids_task_looks_exactly_like_one_that_does_not_exist(client: Client,
                                                                             sqlite_scene: Scene) -> None:
    task_id = case_task(sqlite_scene)
    await login(client, "wang")
    theirs = await page(client, f"/c/tasks/{task_id}", 404)
    missing = await page(client, "/c/tasks/999999", 404)
    assert theirs.replace(f"/c/tasks/{task_id}", "P") == missing.replace("/c/tasks/999999", "P")
    assert "本网格待认领 (0)" in await page(client, "/c")


async def test_the_administrator_dispatches_from_home_and_finishes_the_task(client: Client,
                                                                           sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    task_id = case_task(scene, "G1-102", "unregistered_occupant")
    await login(client, "admin")
    home = await page(client, "/c")
    assert "待派遣（上报） (1)" in home and f'action="/c/tasks/{task_id}/dispatch"' in home
    response = await post(client, f"/c/tasks/{task_id}/dispatch",
                          {"assignee_user_id": str(scene.users["li"].id), "back": "/c"}, csrf_from="/c")
    assert response.headers["Location"] == "/c?ok=task.dispatch_ok"
    assert "已派遣" in await page(client, "/c?ok=task.dispatch_ok")
    bad = await post(client, f"/c/tasks/{task_id}/reassign", {"assignee_user_id": str(scene.users["wang"].id)},
                     400)
    assert "只能派给本网格的网格员或管理员" in await bad.text()
    scene.act("li", task_id, "handle", note="done")
    await post(client, f"/c/tasks/{task_id}/verify", {})
    await post(client, f"/c/tasks/{task_id}/evaluate", {"evaluation": "good", "note": "及时"})
    await post(client, f"/c/tasks/{task_id}/archive", {})
    detail = await page(client, f"/c/tasks/{task_id}?lang=en")
    assert 'class="current" data-step="archived"' in detail and "Archived" in detail
    for action in ("reported", "dispatch", "handle", "verify", "evaluate", "archive"):
        assert f'<li data-action="{action}">' in detail


async def test_overdue_patrols_most_overdue_first_in_the_coordinators_grids(client: Client,
                                                                           sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    now = datetime.now(UTC)
    with write_transaction(scene.engine) as conn:
        for unit, grade, last in (("G1-101", "strict", now - timedelta(days=5)),  # 2 days late
                                  ("G1-102", "trusted", now - timedelta(days=40)),  # 19 days late
                                  ("G2-101", "watch", now - timedelta(days=30))):
            conn.execute(sa.update(units).where(units.c.id == scene.units[unit]).values(grade=grade,
                                                                                          last_patrol_at=last))
        conn.execute(sa.update(units).where(units.c.id.in_([scene.units["G2-102"], scene.units["G3-101"],
                                                            scene.units["G3-102"]])).values(last_patrol_at=now))
    await login(client, "chen")
    html = await page(client, "/c/overdue")
    order = re.findall(r'data-unit="(\d+)"', html)
    assert order == [str(scene.units["G1-102"]), str(scene.units["G1-101"])]
    assert "逾期 19 天" in html and "逾期 2 天" in html and "每 3 天" in html
    assert re.search(r'id="overdue-patrols"[^>]*><strong>2</strong>', await page(client, "/c"))
    await login(client, "admin")
    assert len(re.findall(r'data-unit="', await page(client, "/c/overdue"))) == 3


async def test_workload_shows_staffing_against_the_ratio(client: Client, sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    for _ in range(3):
        scene.resident("G2-101")
    scene.resident("G3-101")
    await login(client, "admin")
    html = await page(client, "/c/workload")
    assert "每名网格员 500 名居民" in html
    g3 = html[html.index('data-grid="G3"'):]
    assert 'data-status="unstaffed"' in g3[:400]
    await login(client, "wang")
    mine = await page(client, "/c/workload")
    assert 'data-grid="G2"' in mine and 'data-grid="G1"' not in mine


async def test_a_coordinators_building_list_is_their_grids(client: Client) -> None:
    await login(client, "chen")
    html = await page(client, "/landlord")
    assert "楼G1" in html and "楼G2" not in html and "楼G3" not in html
    await login(client, "admin")
    html = await page(client, "/landlord")
    assert all(f"楼G{n}" in html for n in (1, 2, 3))
