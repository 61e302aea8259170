"""The watchdog of last resort for a terminal's sync task: a bug that escapes
a pass is logged and the sync starts again after a growing, jittered pause,
without taking the gateway (and its doors) down with it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def restart_on_crash(run: Callable[[], Awaitable[None]], *, what: str, crashed: Callable[[], None],
                           pause_max_s: float) -> None:
    """Run ``run()`` for ever; after each crash call ``crashed()`` (to say so
    in the terminal's health) and wait before the next start."""
    failures = 0
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the watchdog of last resort
            failures += 1
            log.exception("%s crashed (%d); restarting", what, failures)
            crashed()
            pause = min(pause_max_s, 2.0 ** min(failures, 6))
            await asyncio.sleep(pause * random.uniform(0.5, 1))  # noqa: S311 - not for secrets
