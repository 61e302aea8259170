"""GET /media/{attachment_id}: a stored photo, for a logged-in administrator
or a coordinator who may work the unit the photo belongs to (a problem
report's or a patrol's). Nobody else, and never cached by shared caches."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import AuthUser, allow, can_manage_building
from server.db.models import attachments, patrols, problem_reports
from server.media.errors import MediaUnavailable
from server.media.store import media_store
from server.pages.guard import page_user
from server.pages.layout import forbidden, not_found

MEDIA_ROLES = ("admin", "coordinator")


def owning_building(conn: sa.Connection, attachment: sa.RowMapping) -> int | None:
    """The building of the report or patrol the photo came with. A patrol's
    photos carry its coordinator as actor and its moment as created_at
    (server/patrols/service.py), so ix_patrols_user_id_at finds the patrol."""
    found = conn.execute(sa.select(problem_reports.c.building_id)
                         .where(problem_reports.c.attachment_id == attachment["id"]).limit(1)).scalar()
    if found is not None:
        return int(found)
    actor = str(attachment["actor"])
    if actor.startswith("user:") and actor[5:].isdigit():
        rows = conn.execute(sa.select(patrols.c.building_id, patrols.c.attachment_ids)
                            .where(patrols.c.user_id == int(actor[5:]), patrols.c.at == attachment["created_at"]))
        for building_id, attachment_ids in rows:
            if attachment["id"] in (attachment_ids or []):
                return int(building_id)
    return None


def _load(engine: sa.Engine, user: AuthUser, attachment_id: int) -> tuple[str, str | None]:
    """("missing" | "forbidden" | "ok", sha256)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(attachments).where(attachments.c.id == attachment_id)).mappings().first()
        if row is None:
            return "missing", None
        building_id = owning_building(conn, row)
        if building_id is None:
            return ("ok", row["sha256"]) if user.role == "admin" else ("missing", None)
        if not can_manage_building(conn, user, building_id):
            return "forbidden", None
        return "ok", str(row["sha256"])


async def media_handler(request: web.Request) -> web.StreamResponse:
    ctx, user = page_user(request, *MEDIA_ROLES)
    attachment_id = int(request.match_info["id"])
    verdict, sha256 = await asyncio.to_thread(_load, request.app[ENGINE], user, attachment_id)
    if verdict == "forbidden":
        return forbidden(ctx)
    if verdict != "ok" or sha256 is None:
        return not_found(ctx)
    try:
        store = media_store(request.app[SETTINGS])
    except MediaUnavailable:
        return not_found(ctx)
    data = await asyncio.to_thread(store.read, sha256)
    if data is None:
        return not_found(ctx)
    # Content-addressed: the bytes behind an id never change, so the
    # browser may keep them; "private" keeps them out of shared caches.
    return web.Response(body=data, content_type="image/jpeg", headers={
        "Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(r"/media/{id:\d+}", allow(*MEDIA_ROLES, page=True, path={"id": "attachment"})(media_handler))
