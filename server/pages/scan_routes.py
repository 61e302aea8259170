"""Routes of the plate scan pages (public) and the coordinator's unit and
patrol pages."""

from __future__ import annotations

from aiohttp import web


def add_routes(r: web.UrlDispatcher) -> None:
    pass
