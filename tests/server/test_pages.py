"""The status page at ``/``: Chinese by default, English on request, cards masked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.ingest.store import EventStore
from server.pages.dashboard import mask_card
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user
from tests.server.helpers import batch, card_read, message

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(sqlite_engine: sa.Engine, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    EventStore(sqlite_engine).commit([message("gw-a", batch("gw-a", [card_read("gw-a", 1, door="east-gate")]))])
    admin = make_user(sqlite_engine)
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False),
                                headers=bearer(admin.token))


async def test_page_is_chinese_by_default_and_shows_the_swipe_masked(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    assert '<html lang="zh-CN">' in html
    assert "最近进出记录" in html and "刷卡" in html and "east-gate" in html
    assert "0A1B2C3D4E" not in html
    assert mask_card("0A1B2C3D4E") in html
    assert 'name="viewport"' in html  # usable on a phone


@pytest.mark.parametrize("how", [{"params": {"lang": "en"}}, {"headers": {"Accept-Language": "en-GB,en;q=0.9"}}])
async def test_page_switches_to_english(client: Client, how: dict[str, dict[str, str]]) -> None:
    html = await (await client.get("/", **how)).text()  # type: ignore[arg-type]
    assert '<html lang="en">' in html and "Recent entries" in html and "card read" in html


async def test_chinese_browser_that_also_accepts_english_stays_chinese(client: Client) -> None:
    html = await (await client.get("/", headers={"Accept-Language": "en-US,zh-CN;q=0.8"})).text()
    assert '<html lang="zh-CN">' in html


@pytest.mark.parametrize("value, masked", [("0A1B2C3D4E", "0A1B****4E"), ("90:324", "****24"), ("ABC", "***"),
                                           ("", "")])
def test_card_numbers_are_masked(value: str, masked: str) -> None:
    assert mask_card(value) == masked


async def test_decisions_and_door_alarms_are_shown_in_words(sqlite_engine: sa.Engine, sqlite_url: str,
                                                            aiohttp_client: MakeClient) -> None:
    from rentgate import wire
    from tests.server.helpers import T0

    denied = wire.CardRead(gw="gw-a", seq=2, device="r", door="east-gate", ts=T0, decision="denied",
                           reason="revoked", credential=wire.Credential(format="wiegand26", value="90:999"))
    forced = wire.DoorState(gw="gw-a", seq=3, device="r", door="east-gate", ts=T0, state="forced")
    EventStore(sqlite_engine).commit([message("gw-a", batch("gw-a", [denied, forced]))])
    coordinator = make_user(sqlite_engine, role="coordinator")
    client = await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False),
                                  headers=bearer(coordinator.token))
    html = await (await client.get("/")).text()
    assert "拒绝: 已注销" in html and "强行开门（报警）" in html
    html = await (await client.get("/", params={"lang": "en"})).text()
    assert "denied: revoked" in html and "forced open (alarm)" in html
