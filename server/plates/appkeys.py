"""What the application holds for plate scans: the keyring, loaded once
at startup (like the pages' identity-number vault) so a scan costs no file
read, and the budget of refused scans that get logged.

PLATE_KEYS is always present once the application has started; its
``keyring`` is None when no key could be loaded (PostgreSQL without
``RENTGATE_PLATE_KEY_FILE``, an unreadable file) and ``problem`` says why,
so the scan pages can answer 503 with a clear page instead of failing."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from server.appkeys import SETTINGS
from server.plates.errors import REJECTION_REASONS, PlateKeyUnavailable
from server.plates.keys import Keyring, load_keyring
from server.web.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Refused scans written to scan_rejections (and the log): per client
# address, and for everyone together, in a ten-minute window. Past either,
# a refused scan still gets its page but is only counted (metrics), so a
# flood of forged tokens cannot fill the table or the log.
LOGGED_PER_CLIENT = 20
LOGGED_IN_ALL = 600
LOG_WINDOW_S = 600.0


@dataclass
class RejectionBudget:
    per_client: RateLimiter = field(default_factory=lambda: RateLimiter(LOGGED_PER_CLIENT, LOG_WINDOW_S))
    in_all: RateLimiter = field(default_factory=lambda: RateLimiter(LOGGED_IN_ALL, LOG_WINDOW_S))
    logged: Counter[str] = field(default_factory=Counter)
    not_logged: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str, reason: str) -> bool:
        """Whether this refused scan is written to the table; counted either way."""
        if self.per_client.hit(client) is None and self.in_all.hit("*") is None:
            self.logged[reason] += 1
            return True
        self.not_logged[reason] += 1
        return False

    def metrics(self) -> str:
        """Lines for the Prometheus /metrics text."""
        lines = ["# HELP rentgate_plate_scans_refused_total Refused plate scans, by reason and whether logged.",
                 "# TYPE rentgate_plate_scans_refused_total counter"]
        for reason in REJECTION_REASONS:
            lines.append(f'rentgate_plate_scans_refused_total{{reason="{reason}",logged="true"}} '
                         f'{self.logged[reason]}')
            lines.append(f'rentgate_plate_scans_refused_total{{reason="{reason}",logged="false"}} '
                         f'{self.not_logged[reason]}')
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlateKeys:
    keyring: Keyring | None
    problem: str | None
    rejections: RejectionBudget = field(default_factory=RejectionBudget)


PLATE_KEYS = web.AppKey("plate_keys", PlateKeys)


async def plate_keys_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    try:
        keyring: Keyring | None = await asyncio.to_thread(load_keyring, settings.plate_key_file,
                                                          settings.database_url)
        problem = None
    except PlateKeyUnavailable as exc:
        keyring, problem = None, str(exc)
        log.error("plate scans cannot be checked: %s", problem)
    app[PLATE_KEYS] = PlateKeys(keyring, problem)
    yield
