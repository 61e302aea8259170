"""(being written: issue 14)"""

from __future__ import annotations

from aiohttp import web


def add_routes(r: web.UrlDispatcher) -> None:
    return None
