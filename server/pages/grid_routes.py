"""Routes of the coordinator's task queue, task steps, overdue list and
workload pages."""

from __future__ import annotations

from aiohttp import web


def add_routes(r: web.UrlDispatcher) -> None:
    pass
