"""Reading a stored snapshot for a view (the API route and the pages):
the bytes of the event's picture, or None when there is none to show."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.appkeys import SETTINGS
from server.db.read_pool import read_only, with_retry
from server.media.errors import MediaUnavailable
from server.snapshots.store import snapshot_files, stored_sha256

# Faces: never kept by any cache, shared or the browser's.
HEADERS = {"Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff",
           "Content-Disposition": "inline"}


async def snapshot_bytes(request: web.Request, event_id: int) -> bytes | None:
    """The picture of the event; None when the event has none stored (or its
    file is gone). Whether the caller may see it, the route policy has
    decided (server/auth/scopes.py, kind "event")."""
    def sha() -> str | None:
        with read_only(request.app) as conn:
            return stored_sha256(conn, event_id)

    found = await asyncio.to_thread(with_retry, sha)
    if found is None:
        return None
    try:
        files = snapshot_files(request.app[SETTINGS])
    except MediaUnavailable:
        return None
    return await asyncio.to_thread(files.read, found)


def jpeg_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="image/jpeg", headers=HEADERS)
