"""Wires grid work (the tasks API, grids and assignments, overdue patrols,
workload) into the application."""

from __future__ import annotations

from aiohttp import web

from server.grid import routes


def setup(app: web.Application) -> None:
    routes.add_routes(app)
