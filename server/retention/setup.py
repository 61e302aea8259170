"""Wires the purge job into the application (being written)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application, *, run_jobs: bool) -> None:
    """Adds nothing yet."""
