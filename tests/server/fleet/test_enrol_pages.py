"""The terminals pages' forms over real HTTP with a logged-in cookie session
and its CSRF token: add a terminal, cancel a code, the sixth live code
refused on the page, a used code that cannot be cancelled, another
landlord's building; and stopping a terminal while the real broker is down
(the page says what was done and offers the retry that finishes it)."""

from __future__ import annotations

import asyncio
import re
from html import unescape
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.db.models import gateway_enrolments, gateways
from server.fleet import broker
from server.fleet.appkeys import BROKER
from server.fleet.broker import DynsecProvisioner
from tests.server.fleet.enrol_helpers import CODE, csr_pem, enrol_settings, seed_landlords
from tests.server.registry.api_helpers import MakeClient
from tests.services import Mosquitto

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _login(client: TestClient, username: str) -> None:  # type: ignore[type-arg]
    response = await client.post("/login", data={"username": username, "password": "pw-secret-1"},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()


async def _csrf(client: TestClient, path: str) -> str:  # type: ignore[type-arg]
    html = await (await client.get(path)).text()
    found = CSRF.search(html)
    assert found, html[-500:]
    return found.group(1)


async def _gateway_enrols(client: TestClient, code: str) -> tuple[int, dict[str, object]]:  # type: ignore[type-arg]
    """As a gateway does: its own HTTP client, without the landlord's cookies."""
    async with aiohttp.ClientSession() as session, session.post(
            client.make_url("/api/v1/enrol"), json={"code": code, "csr": csr_pem()[0], "hostname": "door-box"}) as r:
        return r.status, await r.json()


def _text(html: str) -> str:
    html = re.sub(r"<(style|script)>.*?</\1>", "", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def test_add_cancel_and_the_limits_on_the_page(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
                                                     aiohttp_client: MakeClient) -> None:
    people = seed_landlords(sqlite_engine)
    client = await aiohttp_client(make_app(enrol_settings(sqlite_url, tmp_path), ingest=False))
    await _login(client, people.a.username)
    page = f"/landlord/buildings/{people.building_a}/terminals"
    csrf = await _csrf(client, page)
    # Without the CSRF field: refused, nothing made.
    refused = await client.post(page, data={})
    assert refused.status == 403
    response = await client.post(page, data={"csrf": csrf})
    html = await response.text()
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    code = re.search(r'id="enrol-code">([^<]+)<', html)
    assert code and CODE.fullmatch(code.group(1))
    poll = re.search(r'data-poll="/api/v1/enrolments/(\d+)"', html)
    assert poll
    enrolment = int(poll.group(1))
    assert f"rentgate gateway enroll <span>{code.group(1)}</span> --server https://rg.example" in html
    assert "还剩 10 分钟有效" in _text(html) and "<svg" in html
    # The list shows the waiting code's time left, never the code.
    listed = await (await client.get(page)).text()
    assert "还剩 10 分钟" in _text(listed) and code.group(1) not in listed
    # Cancel it.
    cancelled = await client.post(f"/landlord/enrolments/{enrolment}/cancel", data={"csrf": csrf},
                                  allow_redirects=False)
    assert cancelled.status == 303 and cancelled.headers["Location"].endswith("?ok=cancelled_ok")
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(gateway_enrolments.c.cancelled_at)).scalar() is not None
    assert "安装码已作废。" in _text(await (await client.get(cancelled.headers["Location"])).text())
    # Five live codes, then the page refuses a sixth in words.
    for _ in range(5):
        assert (await client.post(page, data={"csrf": csrf})).status == 200
    sixth = await client.post(page, data={"csrf": csrf})
    assert sixth.status == 409
    assert "这栋楼已有 5 个还有效的安装码" in _text(await sixth.text())
    # A used code cannot be cancelled.
    with sqlite_engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(gateway_enrolments.c.id))).scalar_one()
    made = await client.post(f"/api/v1/buildings/{people.building_a}/enrolments", headers={"X-CSRF-Token": csrf})
    assert made.status == 409  # still five
    with sqlite_engine.begin() as conn:
        conn.execute(sa.update(gateway_enrolments).where(gateway_enrolments.c.id == last).values(
            cancelled_at=sa.func.now()))
    fresh = await (await client.post(page, data={"csrf": csrf})).text()
    fresh_code = re.search(r'id="enrol-code">([^<]+)<', fresh)
    fresh_id = re.search(r'data-poll="/api/v1/enrolments/(\d+)"', fresh)
    assert fresh_code and fresh_id
    assert (await _gateway_enrols(client, fresh_code.group(1)))[0] == 200
    used = await client.post(f"/landlord/enrolments/{fresh_id.group(1)}/cancel", data={"csrf": csrf})
    assert used.status == 409 and "这个安装码已经用过了" in _text(await used.text())


async def test_another_landlord_can_neither_see_nor_add_nor_cancel(sqlite_engine: sa.Engine, sqlite_url: str,
                                                                  tmp_path: Path, aiohttp_client: MakeClient) -> None:
    people = seed_landlords(sqlite_engine)
    client = await aiohttp_client(make_app(enrol_settings(sqlite_url, tmp_path), ingest=False))
    await _login(client, people.b.username)
    csrf = await _csrf(client, f"/landlord/buildings/{people.building_b}/terminals")
    theirs = f"/landlord/buildings/{people.building_a}/terminals"
    nowhere = f"/landlord/buildings/{2**40}/terminals"
    for method in ("GET", "POST"):
        one = await client.request(method, theirs, data={"csrf": csrf})
        other = await client.request(method, nowhere, data={"csrf": csrf})
        assert one.status == other.status == 404
        assert (await one.text()).replace(theirs, "") == (await other.text()).replace(nowhere, "")
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_enrolments)).scalar_one() == 0
    # A coordinator is not a terminal's owner.
    await _login(client, people.coordinator.username)
    assert (await client.get(theirs)).status == 403


async def test_stopping_a_terminal_while_the_broker_is_down_says_so_and_the_retry_finishes(
        fleet_broker: Mosquitto, sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
        aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The broker is stopped on purpose: do not wait the production timeout for it.
    monkeypatch.setattr(broker, "COMMAND_TIMEOUT_S", 1.5)
    assert fleet_broker.dynsec is not None
    settings = enrol_settings(sqlite_url, tmp_path, broker_admin_url=fleet_broker.admin_url,
                              gateway_ca_dir=str(fleet_broker.dynsec.ca_dir), mqtt_url=fleet_broker.server_url)
    people = seed_landlords(sqlite_engine)
    client = await aiohttp_client(make_app(settings, ingest=False))
    await _login(client, people.a.username)
    page = f"/landlord/buildings/{people.building_a}/terminals"
    csrf = await _csrf(client, page)
    html = await (await client.post(page, data={"csrf": csrf})).text()
    code = re.search(r'id="enrol-code">([^<]+)<', html)
    assert code
    status, body = await _gateway_enrols(client, code.group(1))
    assert status == 200
    gw = body["gw"]
    await asyncio.to_thread(fleet_broker.stop)
    failed = await client.post(f"/landlord/gateways/{gw}/revoke", data={"csrf": csrf})
    text = _text(await failed.text())
    assert failed.status == 503 and "已记下停用" in text and "再试一次" in text
    assert "127.0.0.1" not in text  # the broker's address is in the log, not on the page
    await asyncio.to_thread(fleet_broker.start)
    # The landlord retries once the broker is back; the admin link's
    # reconnect (jittered, up to RECONNECT_MAX_S) can outlast this test's
    # short command timeout on a busy machine, so wait for the link itself.
    provisioner = client.app[BROKER]
    assert isinstance(provisioner, DynsecProvisioner)
    assert await asyncio.to_thread(provisioner.link.wait_subscribed, 30)
    again = await client.post(f"/landlord/gateways/{gw}/revoke", data={"csrf": csrf}, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == f"{page}?ok=stopped_ok"
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(gateways.c.revoked_at).where(gateways.c.id == gw)).scalar() is not None
    listed = _text(await (await client.get(again.headers["Location"])).text())
    assert "终端已停用。" in listed and "已停用" in listed
