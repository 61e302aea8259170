"""Typed application-state keys of the registry: the identity-number vault
and the city's rules. Shared by the registry API and the pages.

The vault key is absent from the application when no identity-number key
could be loaded (PostgreSQL without ``RENTGATE_PII_KEY_FILE``); VAULT_PROBLEM
then holds the reason, so person-writing endpoints can answer 503 with it."""

from __future__ import annotations

from aiohttp import web

from server.registry.pii import PiiVault
from server.rules import CityRules

VAULT = web.AppKey("pii_vault", PiiVault)
VAULT_PROBLEM = web.AppKey("pii_vault_problem", str)
RULES = web.AppKey("city_rules", CityRules)
