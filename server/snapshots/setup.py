"""Wires the snapshots slice into the application: the gateways' upload
route (with its per-address limit) and the entitled view."""

from __future__ import annotations

from aiohttp import web

from server.snapshots import upload, view
from server.snapshots.appkeys import UPLOAD_LIMITER
from server.web.ratelimit import RateLimiter


def setup(app: web.Application) -> None:
    app[UPLOAD_LIMITER] = RateLimiter(upload.UPLOADS_PER_MINUTE, 60.0)
    upload.add_routes(app)
    view.add_routes(app)
