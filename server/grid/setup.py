"""Wires grid work (the tasks API, grids and assignments) into the application."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    pass
