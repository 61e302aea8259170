"""Who sees a snapshot: an administrator, a coordinator of the building's
grid, police of its jurisdiction with a purpose; everybody else gets the
answer a missing event gets. Every view is in the audit log."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from server.db.models import audit_log
from tests.server.auth_helpers import bearer, make_police_client
from tests.server.scan.world import Client, ScanWorld
from tests.server.snapshots.world import GW, UNIDENTIFIED_SEQ, Door

JPEG = {"Content-Type": "image/jpeg"}
MISSING_EVENT = 987654321
PURPOSE = {"purpose": "criminal_investigation", "legal_basis": "《刑事诉讼法》第一百一十五条", "case_ref": "2026-0042"}


def snapshot_url(event_id: int) -> str:
    return f"/api/v1/events/{event_id}/snapshot"


async def upload(client: Client, door: Door) -> None:
    response = await client.put(f"/api/v1/gateways/{GW}/events/{UNIDENTIFIED_SEQ}/snapshot", data=door.unidentified,
                                headers=JPEG)
    assert response.status == 201, await response.text()


def views(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.record).where(audit_log.c.action == "pii.view")
                            .order_by(audit_log.c.seq)).scalars().all()
    return [json.loads(r) for r in rows]


async def answer(client: Client, path: str, token: str, **query: str) -> tuple[int, bytes]:
    response = await client.get(path, headers=bearer(token), params=query or None)
    return response.status, await response.read()


async def test_admin_and_the_grids_coordinator_see_it_and_each_view_is_audited(
        client: Client, world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    await upload(client, door)
    for user in (world.admin, world.coordinator, world.coordinator):
        response = await client.get(snapshot_url(door.unidentified_id), headers=bearer(user.token))
        assert response.status == 200
        assert await response.read() == door.unidentified
        assert response.content_type == "image/jpeg"
        assert "no-store" in response.headers["Cache-Control"] and "private" in response.headers["Cache-Control"]
    records = views(engine)
    assert [r["actor"] for r in records] == [f"user:{world.admin.id}", f"user:{world.coordinator.id}",
                                             f"user:{world.coordinator.id}"]
    for record in records:
        assert record["subject"] == f"event:{door.unidentified_id}" and record["status"] == 200
        assert record["detail"] == {"what": "snapshot", "event_id": door.unidentified_id, "via": "api"}


async def test_callers_outside_the_scope_get_the_answer_a_missing_event_gets(
        client: Client, world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    await upload(client, door)
    # A coordinator of another grid: 404, word for word as for no event at all.
    outside = await answer(client, snapshot_url(door.unidentified_id), world.other_coordinator.token)
    assert outside == await answer(client, snapshot_url(MISSING_EVENT), world.other_coordinator.token)
    assert outside[0] == 404
    # A landlord, even of this very building: the role may not, whatever the event.
    landlord = await answer(client, snapshot_url(door.unidentified_id), world.landlord.token)
    assert landlord == await answer(client, snapshot_url(MISSING_EVENT), world.landlord.token)
    assert landlord[0] == 403
    # Nobody logged in.
    assert (await client.get(snapshot_url(door.unidentified_id))).status == 401
    # Police of another jurisdiction, with a good purpose.
    far = make_police_client(engine, jurisdiction="G2")
    away = await answer(client, snapshot_url(door.unidentified_id), far.token, **PURPOSE)
    assert away == await answer(client, snapshot_url(MISSING_EVENT), far.token, **PURPOSE)
    assert away[0] == 404
    assert [r for r in views(engine) if r["status"] == 200] == []


async def test_an_event_without_a_stored_picture_shows_nothing(client: Client, world: ScanWorld, door: Door,
                                                               engine: sa.Engine) -> None:
    # The tailgating names a picture that has not been uploaded yet.
    status, body = await answer(client, snapshot_url(door.tailgating_id), world.coordinator.token)
    assert status == 404 and json.loads(body)["error"] == "not_found"
    assert views(engine) == []


async def test_police_of_the_jurisdiction_need_a_purpose_and_are_audited_with_it(
        client: Client, door: Door, engine: sa.Engine) -> None:
    await upload(client, door)
    police = make_police_client(engine, jurisdiction="G1")
    status, body = await answer(client, snapshot_url(door.unidentified_id), police.token)
    assert status == 400 and json.loads(body)["field"] == "query"  # where the purpose goes
    # A purpose that does not permit door events.
    status, _ = await answer(client, snapshot_url(door.unidentified_id), police.token,
                             **{**PURPOSE, "purpose": "residence_verification"})
    assert status == 400
    status, body = await answer(client, snapshot_url(door.unidentified_id), police.token, **PURPOSE)
    assert status == 200 and body == door.unidentified
    shown = [r for r in views(engine) if r["status"] == 200]
    assert len(shown) == 1
    assert shown[0]["actor"] == f"client:{police.username}"
    assert shown[0]["subject"] == f"event:{door.unidentified_id}"
    assert shown[0]["purpose"]["code"] == "criminal_investigation" and shown[0]["purpose"]["case_ref"] == "2026-0042"
    assert shown[0]["detail"]["what"] == "snapshot"
    # A police account without the events scope is refused, and that is audited too.
    lookup_only = make_police_client(engine, scopes="lookup", jurisdiction="G1")
    status, _ = await answer(client, snapshot_url(door.unidentified_id), lookup_only.token, **PURPOSE)
    assert status == 403
    assert any(r["actor"] == f"client:{lookup_only.username}" and r["status"] == 403 for r in views(engine))
