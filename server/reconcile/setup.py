"""Wires reconciliation into the application (service task, routes)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application, *, run_service: bool) -> None:
    """Filled in by the reconciliation work."""
