"""(being written: issue 14)"""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application, *, run_service: bool) -> None:
    return None
