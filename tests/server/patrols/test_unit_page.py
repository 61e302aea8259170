"""The coordinator's unit page and the patrol form over HTTP: what the page
shows (masked), who may open it, Server-Timing, recording a patrol (last
patrol date, problems become tasks once), resolving and escalating cases,
confirming a self-declaration."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import sqlalchemy as sa

from server.db.models import cases, events, history, patrols, registrations, tasks, units
from server.pages.masks import mask_card
from server.patrols.unit_view import DOOR_EVENT_DAYS
from server.registry.idnumber import mask_id_number
from tests.server.auth_helpers import bearer
from tests.server.scan.world import (
    CARD,
    DECLARANT_ID,
    SQLITE_ONLY,
    TENANT_ID,
    Client,
    ScanWorld,
    gif_bytes,
    jpeg_bytes,
    login,
    png_bytes,
    post_multipart,
)

_TIMING = re.compile(r"db;dur=(\d+\.\d+), render;dur=(\d+\.\d+), total;dur=(\d+\.\d+)")


def visible_text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S)))


async def test_unit_page_shows_the_record_the_evidence_and_what_is_open(client: Client, world: ScanWorld) -> None:
    response = await client.get(f"/c/units/{world.unit_id}", headers=bearer(world.coordinator.token))
    assert response.status == 200
    html = await response.text()
    assert "越秀区北京街12号 101" in html and "重点" in html and "一网格" in html
    assert "王五" in html and mask_id_number(TENANT_ID) in html and TENANT_ID not in html
    assert "李四" in html and mask_id_number(DECLARANT_ID) in html and DECLARANT_ID not in html
    assert f'/c/units/{world.unit_id}/registrations/' in html  # confirm / reject the declaration
    assert "未登记的门卡" in html and "c-999" not in html and "东门" in html
    assert mask_card(CARD) in html and CARD not in html
    assert "有人居住但未登记" in html and f"/cases/{world.case_id}/escalate" in html
    assert "从未巡查" in html and "还没有巡查记录" in html and "记录巡查" in html
    # The landlord's phone is masked like every phone, and one tap still calls it.
    assert "138****1234" in html and 'href="tel:13812341234"' in html
    assert "13812341234" not in visible_text(html)
    timing = _TIMING.fullmatch(response.headers["Server-Timing"])
    assert timing, response.headers["Server-Timing"]
    db, render, total = (float(x) for x in timing.groups())
    assert db > 0 and render > 0 and total >= db + render
    assert response.headers["Cache-Control"] == "no-store"



async def test_the_door_events_are_those_of_the_last_days_only(client: Client, world: ScanWorld,
                                                                engine: sa.Engine) -> None:
    """The card's events of the last DOOR_EVENT_DAYS days are shown; an
    older one is not, although the card has fewer events than the page
    would show (the bound is what lets PostgreSQL read only the newest
    daily partitions of events)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for seq, door, age in ((10, "北门", timedelta(days=DOOR_EVENT_DAYS) - timedelta(hours=1)),
                               (11, "西门", timedelta(days=DOOR_EVENT_DAYS) + timedelta(hours=1))):
            at = now - age
            conn.execute(sa.insert(events).values(
                gateway_id="gw-xf", seq=seq, kind="card_read", device="r1", door=door, occurred_at=at,
                received_at=at, stored_at=at, credential_format="em4100", credential_value=CARD,
                data={"decision": "granted"}))
    html = await (await client.get(f"/c/units/{world.unit_id}", headers=bearer(world.coordinator.token))).text()
    shown = re.findall(r'<li class="door-event">.*?</li>', html)
    assert len(shown) == 4, shown  # the world's three of the last hours and the one of 北门
    assert "北门" in html and "西门" not in html

async def test_only_who_may_work_the_unit_opens_its_pages(client: Client, world: ScanWorld) -> None:
    unit = f"/c/units/{world.unit_id}"
    # A landlord's role may not work units (403); another grid's coordinator
    # is told the unit does not exist, as for any unit outside their grids.
    for user, status, words in ((world.other_coordinator, 404, "页面不存在"), (world.landlord, 403, "无权访问")):
        for path in (unit, f"{unit}/patrol"):
            response = await client.get(path, headers=bearer(user.token))
            assert response.status == status, (user.username, path)
            assert words in await response.text()
        response = await post_multipart(client, f"{unit}/patrol", {"fire_safety": "problem"},
                                        headers=bearer(user.token))
        assert response.status == status
        response = await client.post(f"{unit}/cases/{world.case_id}/escalate", data={"note": "x"},
                                     headers=bearer(user.token))
        assert response.status == status
    assert (await client.get(unit, headers=bearer(world.admin.token))).status == 200
    response = await client.get(unit, headers={"Accept": "text/html"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    assert (await client.get("/c/units/999999", headers=bearer(world.admin.token))).status == 404
    # A case of another unit cannot be worked through this unit's address.
    response = await client.post(f"/c/units/{world.quiet_unit_id}/cases/{world.case_id}/resolve",
                                 data={"resolution": "fixed"}, headers=bearer(world.coordinator.token))
    assert response.status == 404


async def test_recording_a_patrol(client: Client, world: ScanWorld, engine: sa.Engine) -> None:
    headers = bearer(world.coordinator.token)
    form_html = await (await client.get(f"/c/units/{world.unit_id}/patrol", headers=headers)).text()
    assert 'name="seen"' in form_html and "王五" in form_html and 'value="ok" checked' in form_html
    before = datetime.now(UTC)
    response = await post_multipart(client, f"/c/units/{world.unit_id}/patrol", {
        "occupants_observed": "3", "seen": [str(world.tenant_person_id)], "fire_safety": "problem",
        "overcrowding": "ok", "unregistered": "problem", "pledge": "n/a", "notes": "走廊堆放电动车电池",
        "photos": [("a.jpg", jpeg_bytes(gps=True), "image/jpeg"), ("b.png", png_bytes(), "image/png")],
    }, headers=headers)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"/c/units/{world.unit_id}?ok=patrol_ok"
    with engine.connect() as conn:
        patrol = conn.execute(sa.select(patrols)).mappings().one()
        last = conn.execute(sa.select(units.c.last_patrol_at).where(units.c.id == world.unit_id)).scalar_one()
        made = conn.execute(sa.select(tasks.c.kind, tasks.c.source, tasks.c.patrol_id, tasks.c.unit_id)
                            .where(tasks.c.source == "patrol").order_by(tasks.c.kind)).all()
        trail = conn.execute(sa.select(history.c.action).where(history.c.entity == "patrol")).scalars().all()
    assert patrol["occupants_observed"] == 3 and patrol["seen_person_ids"] == [world.tenant_person_id]
    assert patrol["checklist"] == {"fire_safety": "problem", "overcrowding": "ok", "unregistered": "problem",
                                   "pledge": "n/a"}
    assert patrol["user_id"] == world.coordinator.id and len(patrol["attachment_ids"]) == 2
    assert last is not None and last >= before
    assert [tuple(r) for r in made] == [("patrol_fire_safety", "patrol", patrol["id"], world.unit_id),
                                        ("patrol_unregistered", "patrol", patrol["id"], world.unit_id)]
    assert trail == ["recorded"]
    html = await (await client.get(response.headers["Location"], headers=headers)).text()
    assert "巡查已记录" in html and "走廊堆放电动车电池" in html and 'data-value="problem"' in html
    assert "巡查发现：消防安全" in html and "/c/tasks/" in html
    for attachment_id in patrol["attachment_ids"]:
        assert f'src="/media/{attachment_id}"' in html
        assert (await client.get(f"/media/{attachment_id}", headers=headers)).status == 200
        assert (await client.get(f"/media/{attachment_id}",
                                 headers=bearer(world.other_coordinator.token))).status == 404
    # The same problem found again: no second task while the first is open.
    response = await post_multipart(client, f"/c/units/{world.unit_id}/patrol", {"fire_safety": "problem"},
                                    headers=headers)
    assert response.status == 303
    with engine.connect() as conn:
        fire = conn.execute(sa.select(sa.func.count()).select_from(tasks)
                            .where(tasks.c.kind == "patrol_fire_safety")).scalar()
        assert fire == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(patrols)).scalar() == 2


@SQLITE_ONLY
async def test_patrol_form_errors_keep_what_was_typed(client: Client, world: ScanWorld, engine: sa.Engine) -> None:
    path, headers = f"/c/units/{world.unit_id}/patrol", bearer(world.coordinator.token)
    cases_: list[tuple[dict[str, object], int, str]] = [({"seen": "424242", "notes": "第一次"}, 400, "只能选择本房间的登记住户"),
              ({"occupants_observed": "很多", "notes": "第二次"}, 400, "请填写 0 到 200 之间的整数"),
              ({"fire_safety": "maybe", "notes": "第三次"}, 400, "选项不正确"),
              ({"notes": "第四次", "photos": [("a.jpg", gif_bytes(), "image/jpeg")]}, 415, "只接受 JPEG 或 PNG"),
              ({"notes": "第五次", "photos": [(f"{n}.jpg", jpeg_bytes(), "image/jpeg") for n in range(5)]}, 400,
               "最多4张照片"),
              ({"notes": "第六次", "photos": [("big.jpg", jpeg_bytes() + b"\0" * (6 << 20), "image/jpeg")]}, 413,
               "照片太大")]
    for data, status, words in cases_:
        response = await post_multipart(client, path, data, headers=headers)
        assert response.status == status, data
        html = await response.text()
        assert words in html and str(data["notes"]) in html
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(patrols)).scalar() == 0


async def test_cases_are_escalated_and_resolved_from_the_unit_page(client: Client, world: ScanWorld,
                                                                   engine: sa.Engine) -> None:
    headers, base = bearer(world.coordinator.token), f"/c/units/{world.unit_id}"
    response = await client.post(f"{base}/cases/{world.case_id}/escalate", data={"note": "需要派出所协助"},
                                 headers=headers, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"{base}?ok=case_escalated_ok"
    with engine.connect() as conn:
        task = conn.execute(sa.select(tasks.c.id, tasks.c.kind).where(tasks.c.case_id == world.case_id)).one()
    assert task.kind == "unregistered_occupant"
    html = await (await client.get(response.headers["Location"], headers=headers)).text()
    assert "已上报为工单" in html and f'href="/c/tasks/{task.id}"' in html
    response = await client.post(f"{base}/cases/{world.case_id}/resolve", data={"resolution": "nonsense"},
                                 headers=headers)
    assert response.status == 400
    response = await client.post(f"{base}/cases/{world.case_id}/resolve",
                                 data={"resolution": "registered", "note": "已补登记"}, headers=headers,
                                 allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"{base}?ok=case_resolved_ok"
    with engine.connect() as conn:
        assert conn.execute(sa.select(cases.c.state).where(cases.c.id == world.case_id)).scalar() == "resolved"
    response = await client.post(f"{base}/cases/{world.case_id}/resolve", data={"resolution": "fixed"},
                                 headers=headers)
    assert response.status == 409  # already resolved: said on the page


async def test_a_declaration_is_confirmed_from_the_unit_page_with_the_csrf_token(
        client: Client, world: ScanWorld, engine: sa.Engine) -> None:
    csrf = await login(client, world.coordinator)
    with engine.connect() as conn:
        reg_id = conn.execute(sa.select(registrations.c.id).where(registrations.c.status == "pending")).scalar_one()
    path = f"/c/units/{world.unit_id}/registrations/{reg_id}/confirm"
    assert (await client.post(path, data={})).status == 403  # no CSRF token
    response = await client.post(path, data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"/c/units/{world.unit_id}?ok=confirmed_ok"
    with engine.connect() as conn:
        assert conn.execute(sa.select(registrations.c.status).where(registrations.c.id == reg_id)).scalar() == "active"
    response = await post_multipart(client, f"/c/units/{world.unit_id}/patrol", {"notes": "无 CSRF"})
    assert response.status == 403
