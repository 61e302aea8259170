"""Wires the pages (login, landlord, overview) into the application."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Filled in by the pages work."""
