"""Wires the registry API into the application: the identity-number vault
and the city's rules as application state, then the routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.appkeys import SETTINGS
from server.registry import doors, routes
from server.registry.appkeys import RULES, VAULT, VAULT_PROBLEM
from server.registry.pii import PiiKeyUnavailable, load_vault
from server.rules import load_rules

log = logging.getLogger(__name__)


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A bad rules file is a configuration error: let the server refuse to start.
    app[RULES] = await asyncio.to_thread(load_rules, settings.rules_file)
    try:
        app[VAULT] = await asyncio.to_thread(load_vault, settings.pii_key_file, settings.database_url)
    except PiiKeyUnavailable as exc:
        # Everything but writing and finding persons still works; those
        # endpoints answer 503 with this reason.
        app[VAULT_PROBLEM] = str(exc)
        log.error("registry cannot store persons: %s", exc)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_registry_ctx)
    routes.add_routes(app)
    doors.add_routes(app)
