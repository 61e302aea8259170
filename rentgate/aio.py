"""Waiting for an asyncio event with a timeout, without losing a cancellation.

Python 3.11's ``asyncio.wait_for(event.wait(), timeout)`` returns normally
when the task is cancelled at the moment the event is set: the cancellation
is swallowed (CPython gh-86296, fixed in 3.12 by rebuilding wait_for on
``asyncio.timeout``). A service loop of the form ``while True: ... await
wait_for(wake.wait(), t)`` then never ends, and whoever awaits the cancelled
task waits for ever. It happened: a gateway's heartbeat and the police
webhook deliverer hung in stop() on a loaded machine. ``asyncio.timeout``
tells its own cancellation from another's, so it loses none."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True when ``event`` is set within ``timeout`` seconds (None: no
    limit), False when the time ran out. A cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
