"""Snapshots on the pages: the coordinator's unit page lists the building's
camera alerts with a thumbnail behind an entitled, audited route; the
dashboard names camera events; landlords and tenants never see one."""

from __future__ import annotations

import json

import sqlalchemy as sa

from server.db.models import audit_log
from tests.server.auth_helpers import bearer
from tests.server.scan.world import Client, ScanWorld, login
from tests.server.snapshots.world import GW, UNIDENTIFIED_SEQ, Door

JPEG = {"Content-Type": "image/jpeg"}
HTML = {"Accept": "text/html"}


async def upload(client: Client, door: Door) -> None:
    response = await client.put(f"/api/v1/gateways/{GW}/events/{UNIDENTIFIED_SEQ}/snapshot", data=door.unidentified,
                                headers=JPEG)
    assert response.status == 201


def page_views(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.record).where(audit_log.c.action == "pii.view")).scalars().all()
    return [json.loads(r) for r in rows]


async def test_the_coordinator_sees_the_alerts_and_opens_the_snapshot_audited(
        client: Client, world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    await upload(client, door)
    await login(client, world.coordinator)
    html = await (await client.get(f"/c/units/{world.unit_id}")).text()
    assert "门口摄像头" in html and "身份不明进入" in html and "尾随进入" in html
    link = f"/c/events/{door.unidentified_id}/snapshot"
    assert f'href="{link}"' in html and 'loading="lazy"' in html
    # The tailgating's picture has not arrived: no link, a note instead.
    assert f"/c/events/{door.tailgating_id}/snapshot" not in html and "无抓拍" in html
    # The other grid's alert is not on this building's page.
    assert f"/c/events/{door.far_id}/" not in html
    # Showing the page views no picture; opening the thumbnail does, audited.
    assert page_views(engine) == []
    response = await client.get(link)
    assert response.status == 200 and await response.read() == door.unidentified
    assert "no-store" in response.headers["Cache-Control"]
    [view] = page_views(engine)
    assert view["actor"] == f"user:{world.coordinator.id}" and view["subject"] == f"event:{door.unidentified_id}"
    assert view["detail"] == {"what": "snapshot", "event_id": door.unidentified_id, "via": "page"}

    english = await (await client.get(f"/c/units/{world.unit_id}?lang=en")).text()
    assert "Door camera" in english and "unidentified entry" in english and "tailgating" in english


async def test_the_snapshot_page_route_refuses_like_a_missing_event(client: Client, world: ScanWorld,
                                                                      door: Door) -> None:
    await upload(client, door)
    link = f"/c/events/{door.unidentified_id}/snapshot"
    other = await client.get(link, headers={**HTML, **bearer(world.other_coordinator.token)})
    missing = await client.get("/c/events/987654321/snapshot", headers={**HTML, **bearer(world.other_coordinator.token)})
    assert other.status == missing.status == 404
    assert (await other.text()).replace(link, "") == (await missing.text()).replace("/c/events/987654321/snapshot", "")
    landlord = await client.get(link, headers={**HTML, **bearer(world.landlord.token)})
    assert landlord.status == 403 and door.unidentified not in await landlord.read()


async def test_landlords_and_tenants_never_see_a_snapshot(client: Client, world: ScanWorld, door: Door) -> None:
    await upload(client, door)
    pages = [(f"/landlord/buildings/{world.building_id}", bearer(world.landlord.token)),
             (f"/landlord/units/{world.unit_id}", bearer(world.landlord.token)),
             (f"/p/{world.tokens[world.unit_id]}", {})]
    for path, headers in pages:
        response = await client.get(path, headers={**HTML, **headers})
        assert response.status == 200, path
        html = await response.text()
        assert "/snapshot" not in html and "门口摄像头" not in html and "<img" not in html, path


async def test_the_dashboard_names_camera_events(client: Client, world: ScanWorld, door: Door) -> None:
    html = await (await client.get("/", headers={**HTML, **bearer(world.admin.token)})).text()
    assert "身份不明进入" in html and "尾随进入" in html and "出门" in html
    # The dashboard refreshes itself: it shows no picture, so it audits none.
    assert "/snapshot" not in html
