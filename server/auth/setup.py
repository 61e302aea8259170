"""Wires authentication into the application (middleware, session routes)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Filled in by the auth work: middleware and /api/v1/session."""
