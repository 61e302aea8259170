"""The page ``GET /media/{attachment_id}`` (the photos themselves are kept by
server/media): a stored photo, for a logged-in administrator
or a coordinator who may work the unit the photo belongs to (a problem
report's or a patrol's). Nobody else, and never cached by shared caches."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import AuthUser, allow, can_manage_building
from server.auth.scopes import attachment_building
from server.db.models import attachments
from server.media.errors import MediaUnavailable
from server.media.store import media_store
from server.pages.guard import page_user
from server.pages.layout import forbidden, not_found

MEDIA_ROLES = ("admin", "coordinator")


def _load(engine: sa.Engine, user: AuthUser, attachment_id: int) -> tuple[str, str | None]:
    """("missing" | "forbidden" | "ok", sha256)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(attachments).where(attachments.c.id == attachment_id)).mappings().first()
        if row is None:
            return "missing", None
        building_id = attachment_building(conn, attachment_id)
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
