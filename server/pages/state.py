"""What the pages keep for the application's life: the identity-number vault
(shared with the registry API through server.registry.appkeys.VAULT) and the
city's rules (for the local time zone of dates on forms)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from server.appkeys import SETTINGS
from server.registry.appkeys import RULES, VAULT, VAULT_PROBLEM
from server.registry.pii import PiiKeyUnavailable, PiiVault, load_vault
from server.rules import CityRules, load_rules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PagesState:
    vault: PiiVault | None
    vault_problem: str | None
    rules: CityRules


PAGES = web.AppKey("pages_state", PagesState)


async def pages_ctx(app: web.Application) -> AsyncIterator[None]:
    """Reuses the registry's vault and rules when its setup loaded them
    (it runs first); loads them itself otherwise, once per application."""
    settings = app[SETTINGS]
    vault = app.get(VAULT)
    problem = app.get(VAULT_PROBLEM)
    if vault is None and problem is None:
        try:
            vault = await asyncio.to_thread(load_vault, settings.pii_key_file, settings.database_url)
            app[VAULT] = vault
        except PiiKeyUnavailable as exc:
            problem = str(exc)
            log.error("pages cannot register persons: %s", problem)
    rules = app.get(RULES)
    if rules is None:
        rules = await asyncio.to_thread(load_rules, settings.rules_file)
    app[PAGES] = PagesState(vault, problem, rules)
    yield
