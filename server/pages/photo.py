"""The page ``GET /media/{attachment_id}`` (the photos themselves are kept by
server/media): a stored photo, for a logged-in administrator
or a coordinator who may work the unit the photo belongs to (a problem
report's or a patrol's). Nobody else, and never cached by shared caches."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import allow
from server.db.models import attachments
from server.media.errors import MediaUnavailable
from server.media.store import media_store
from server.pages.guard import page_user
from server.pages.layout import not_found

MEDIA_ROLES = ("admin", "coordinator")


def _sha256(engine: sa.Engine, attachment_id: int) -> str | None:
    """The photo's content address, or None. Whether the caller may see it
    (the building of its report or patrol in their scope; a photo of no
    building, administrators only) the route policy has decided already
    (server/auth/scopes.attachment_building)."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(attachments.c.sha256).where(attachments.c.id == attachment_id)).scalar()
        return str(found) if found is not None else None


async def media_handler(request: web.Request) -> web.StreamResponse:
    ctx, _ = page_user(request, *MEDIA_ROLES)
    sha256 = await asyncio.to_thread(_sha256, request.app[ENGINE], int(request.match_info["id"]))
    if sha256 is None:
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
