"""The fleet page /fleet over HTTP: who may open it, a landlord's gateways
only (another landlord's never appear), sorting by trouble, the filter and
the pages, every value in words in Chinese and English, bad queries as 400
pages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.db.models import gateway_configs, gateways
from server.settings import ServerSettings
from tests.browser.seed import World, seed

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
ROW = re.compile(r'<tr class="gateway" data-gateway="([^"]+)" data-state="(\w+)">')
MB = 1024 * 1024


@pytest.fixture
def world(sqlite_engine: sa.Engine, sqlite_url: str) -> World:
    world = seed(sqlite_engine, sqlite_url)
    now = datetime.now(UTC)
    heard = now - timedelta(seconds=30)

    def gw(gid: str, building: int | None, **values: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"id": gid, "first_seen": now - timedelta(days=9), "last_seen": heard, "max_seq": 0,
                                "building_id": building, "online": True, "status_at": heard, "outbox_depth": 0,
                                "oldest_unsent_age_s": None, "clock_skew_s": 0.2, "hostname": None,
                                "disk_free_bytes": 8 * 1024 * MB, "disk_total_bytes": 16 * 1024 * MB,
                                "mem_rss_bytes": 80 * MB, "mem_available_bytes": 900 * MB,
                                "devices_health": [{"id": "1号读卡器", "type": "reader", "state": "ok"}],
                                "config_version": 2, "config_attempted": 2, "config_state": "applied",
                                "config_error": None, "revoked_at": None}
        return {**base, **values}

    rows = [
        gw("gw-fine", world.building_id, hostname="门口网关"),
        gw("gw-dead", world.building_id, online=False, last_seen=now - timedelta(minutes=3)),
        gw("gw-slow", world.building_id, outbox_depth=25_000, oldest_unsent_age_s=1800),
        gw("gw-cam", world.building_id, clock_skew_s=-75.0,
           devices_health=[{"id": "1号读卡器", "type": "reader", "state": "ok"},
                           {"id": "正门摄像头", "type": "camera", "state": "no_frames",
                            "detail": "/dev/video0: no frames"}]),
        gw("gw-conf", world.building_id, config_attempted=3, config_state="rolled_back",
           config_error="健康检查失败：1号读卡器 30 秒无心跳"),
        gw("gw-cut", world.building_id, revoked_at=now, online=False),
        gw("gw-theirs", world.other_building_id, online=False),
    ]
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.insert(), rows)
        for version in (1, 2, 3):
            conn.execute(gateway_configs.insert().values(
                gateway_id="gw-conf", version=version, settings={}, gate_s=30.0, payload="{}", key_id="k",
                signature="s", created_at=now))
    return world


@pytest.fixture
async def client(world: World, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False))


async def login(client: Client, username: str) -> None:
    response = await client.post("/login", data={"username": username, "password": "pw-secret-1", "next": ""},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()


def visible(html: str) -> str:
    text = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", text))


async def test_a_landlord_sees_only_their_own_gateways_in_trouble_order(client: Client, world: World) -> None:
    await login(client, "landlord-a")
    response = await client.get("/fleet")
    assert response.status == 200
    html = await response.text()
    assert ROW.findall(html) == [("gw-dead", "offline"), ("gw-slow", "backlog"), ("gw-conf", "config_failed"),
                                 ("gw-cam", "degraded"), ("gw-fine", "online"), ("gw-cut", "revoked")]
    assert "gw-theirs" not in html and "别人楼" not in html
    text = visible(html)
    for words in ("终端状态", "告警", "门口网关", "幸福楼", "离线", "积压", "配置失败", "有故障", "已吊销",
                  "3 分钟前", "25000 条", "最早一条已等待 30 分钟", "快 75 秒", "正门摄像头：没有画面",
                  "第 3 版已自动回滚", "网关给出的原因：健康检查失败：1号读卡器 30 秒无心跳", "运行第 2 版",
                  "剩余 8.0 GB（共 16.0 GB）", "占用 80.0 MB，可用 900 MB", "全部正常（1 台）"):
        assert words in text, words
    # The device's own detail (a path) and Python's values never show.
    assert "/dev/video0" not in text
    assert not re.search(r"\b(None|True|False)\b", text)
    # The landlord's rows link to their building's terminals and to each configuration.
    assert f'href="/landlord/buildings/{world.building_id}/terminals"' in html
    assert 'href="/landlord/gateways/gw-dead/config"' in html
    assert 'href="/landlord/gateways/gw-cut/config"' not in html  # revoked: nothing to configure
    # The alerts: offline, backlog, configuration; newest heard first.
    alerts = re.findall(r'<li class="alert" data-state="(\w+)">', html)
    assert sorted(alerts) == ["backlog", "config_failed", "offline"]
    assert "门口网关" in text and "终端状态" in text


async def test_an_administrator_sees_every_gateway_without_the_landlords_link(client: Client) -> None:
    await login(client, "admin-1")
    html = await (await client.get("/fleet?sort=name")).text()
    ids = [gid for gid, _ in ROW.findall(html)]
    assert set(ids) == {"gw-fine", "gw-dead", "gw-slow", "gw-cam", "gw-conf", "gw-cut", "gw-theirs"}
    assert ids[0] == "gw-cam" and ids[-1] == "gw-fine"  # by id, and "门口网关" sorts after the ids
    assert "/terminals" not in html
    assert 'href="/fleet"' in html  # in the navigation


async def test_filter_by_state_and_the_language_switch(client: Client) -> None:
    await login(client, "landlord-a")
    html = await (await client.get("/fleet?state=offline")).text()
    assert ROW.findall(html) == [("gw-dead", "offline")]
    html = await (await client.get("/fleet?state=online&lang=en")).text()
    assert ROW.findall(html) == [("gw-fine", "online")]
    text = visible(html)
    assert "Fleet" in text and "all working (1)" in text and "ago" in text and '<html lang="en">' in html
    html = await (await client.get("/fleet?state=never_seen&lang=zh")).text()
    assert ROW.findall(html) == [] and "没有处于这个状态的网关" in visible(html)


@pytest.mark.parametrize("query", ["state=nope", "sort=id", "page=0", "page=abc", "page=999999999999",
                                   "page=%EF%BC%91"])
async def test_a_bad_query_is_a_400_page(client: Client, query: str) -> None:
    await login(client, "landlord-a")
    response = await client.get(f"/fleet?{query}")
    assert response.status == 400
    assert "text/html" in response.headers["Content-Type"]


@pytest.mark.parametrize("username", ["coord-1", "police-1"])
async def test_coordinators_and_police_are_refused(client: Client, username: str) -> None:
    await login(client, username)
    response = await client.get("/fleet")
    assert response.status == 403
    assert "gw-" not in await response.text()


async def test_anonymous_visitors_go_to_login(client: Client) -> None:
    response = await client.get("/fleet", allow_redirects=False)
    assert response.status in (302, 303) and response.headers["Location"].startswith("/login")


async def test_pages_of_many_gateways(client: Client, sqlite_engine: sa.Engine, world: World) -> None:
    now = datetime.now(UTC)
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.insert(), [
            {"id": f"gw-many-{i:03d}", "first_seen": now, "last_seen": now, "max_seq": 0,
             "building_id": world.building_id, "online": True, "status_at": now} for i in range(60)])
    await login(client, "landlord-a")
    first = await (await client.get("/fleet")).text()
    assert len(ROW.findall(first)) == 50 and "第 1/2 页，共 66 台" in visible(first)
    assert 'href="/fleet?page=2"' in first
    second = await (await client.get("/fleet?page=2")).text()
    assert len(ROW.findall(second)) == 16
    assert not set(ROW.findall(first)) & set(ROW.findall(second))


DOOR_TERMINALS = [
    {"id": "大门", "reachable": True, "version_held": 9, "pending": 0, "writes_refused": 0},
    {"id": "后门", "reachable": False, "version_held": 9, "pending": 0, "writes_refused": 0,
     "last_error": "http://192.168.1.64/ISAPI: connection refused"},
    {"id": "车库", "reachable": True, "version_held": 8, "pending": 0, "writes_refused": 0, "clock_offset_s": 10830.5},
    {"id": "天台", "reachable": True, "version_held": 9, "pending": 0, "writes_refused": 2}]


def _door_terminals(engine: sa.Engine, world: World) -> list[dict[str, Any]]:
    """Gateway gw-term of the first landlord's building, with four door
    terminals: one holds list 9, three do not (and one clock is 3 h fast)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(gateways.insert().values(
            id="gw-term", first_seen=now - timedelta(days=2), last_seen=now - timedelta(seconds=10), max_seq=0,
            building_id=world.building_id, online=True, status_at=now - timedelta(seconds=10), outbox_depth=0,
            clock_skew_s=0.1, devices_health=[{"id": "1号读卡器", "type": "reader", "state": "ok"}],
            devices_online=5, devices_total=5, hostname="门禁网关",
            allowlist_version=9, terminals_health=DOOR_TERMINALS, terminals_behind=3))
    return DOOR_TERMINALS


async def test_door_terminals_that_do_not_hold_the_list_are_named_with_why(client: Client, world: World,
                                                                           sqlite_engine: sa.Engine) -> None:
    """A terminal that decides at the door from its own list can let a
    deregistered tenant in until it holds the gateway's list: the fleet page
    names each one that does not, in words, and the gateway is degraded."""
    terminals = _door_terminals(sqlite_engine, world)
    await login(client, "landlord-a")
    html = await (await client.get("/fleet?state=degraded")).text()
    assert ("gw-term", "degraded") in ROW.findall(html)
    text = visible(html)
    for words in ("全部正常（1 台）", "终端 后门：连不上，已注销的人可能仍能开门", "终端 车库：名单不是最新（版本 8，应为 9）",
                  "终端 天台：拒绝写入 2 次，已注销的人可能仍能开门", "终端 车库：时钟快了 3 小时，请校准时间"):
        assert words in text, words
    assert "大门" not in text  # it holds the list: nothing to say about it
    assert "192.168.1.64" not in text and "ISAPI" not in text  # the gateway's error text stays in its log
    # Someone deregistered may still get in: a person should act, as on an offline gateway.
    assert re.findall(r'<li class="alert" data-state="(\w+)">', html).count("degraded") == 1
    assert "有 3 台门禁终端没有最新名单，已注销的人可能仍能开门" in text
    text = visible(await (await client.get("/fleet?state=degraded&lang=en")).text())
    assert "terminal 车库: holds an old list (version 8, current 9)" in text
    assert "terminal 车库: its clock is 3 h fast; set it" in text
    assert "3 door terminals do not hold the current list, so someone deregistered may still get in" in text
    # Once all of them hold the list, one line says so.
    fixed = [{**t, "reachable": True, "version_held": 9, "writes_refused": 0} for t in terminals]
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.update().where(gateways.c.id == "gw-term").values(terminals_health=fixed,
                                                                               terminals_behind=0))
    html = await (await client.get("/fleet?state=online&lang=zh")).text()
    assert ("gw-term", "online") in ROW.findall(html)
    assert "门禁终端 4 台均已是最新名单" in visible(html)
    assert "degraded" not in re.findall(r'<li class="alert" data-state="(\w+)">', html)


async def test_the_buildings_terminals_page_names_door_terminals_without_the_list(
        client: Client, world: World, sqlite_engine: sa.Engine) -> None:
    """The landlord who installs the terminals sees, on the building's own
    terminals page, the same words as the fleet page: which door terminal
    does not hold the current list and why, and a clock that is off."""
    _door_terminals(sqlite_engine, world)
    await login(client, "landlord-a")
    html = await (await client.get(f"/landlord/buildings/{world.building_id}/terminals")).text()
    text = visible(html)
    for words in ("终端 后门：连不上，已注销的人可能仍能开门", "终端 车库：名单不是最新（版本 8，应为 9）",
                  "终端 天台：拒绝写入 2 次，已注销的人可能仍能开门", "终端 车库：时钟快了 3 小时，请校准时间"):
        assert words in text, words
    assert 'class="door-terminals attention"' in html
    assert "192.168.1.64" not in text and "ISAPI" not in text
    english = visible(await (await client.get(
        f"/landlord/buildings/{world.building_id}/terminals?lang=en")).text())
    assert "terminal 车库: holds an old list (version 8, current 9)" in english
    # Once all hold the list, one calm line, not marked.
    fixed = [{**t, "reachable": True, "version_held": 9, "writes_refused": 0, "clock_offset_s": 0.0}
             for t in DOOR_TERMINALS]
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.update().where(gateways.c.id == "gw-term").values(terminals_health=fixed,
                                                                               terminals_behind=0))
    html = await (await client.get(f"/landlord/buildings/{world.building_id}/terminals?lang=zh")).text()
    assert "门禁终端 4 台均已是最新名单" in visible(html)
    assert 'class="door-terminals attention"' not in html
    # Offline: what it said last is shown as that, not as the state now.
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.update().where(gateways.c.id == "gw-term").values(
            online=False, last_seen=datetime.now(UTC) - timedelta(hours=2)))
    text = visible(await (await client.get(f"/landlord/buildings/{world.building_id}/terminals")).text())
    assert "网关离线前最后一次报告： 门禁终端 4 台均已是最新名单" in re.sub(r"\s+", " ", text)
    # A stopped gateway's terminals no longer get its lists: nothing is said of them.
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.update().where(gateways.c.id == "gw-term").values(revoked_at=datetime.now(UTC)))
    html = await (await client.get(f"/landlord/buildings/{world.building_id}/terminals")).text()
    assert "门禁终端 4 台" not in visible(html)
