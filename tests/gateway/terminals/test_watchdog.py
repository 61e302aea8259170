"""A terminal's sync that crashes is started again, and says so, without
taking the gateway down (gateway/terminals/watchdog.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.terminals.watchdog import restart_on_crash
from tests.gateway.helpers import wait_until


async def test_a_crashing_sync_is_started_again_after_saying_so(caplog: pytest.LogCaptureFixture) -> None:
    starts: list[int] = []
    crashes: list[int] = []
    forever = asyncio.Event()

    async def run() -> None:
        starts.append(len(starts))
        if len(starts) <= 2:
            raise RuntimeError("a bug")
        await forever.wait()

    task = asyncio.create_task(restart_on_crash(run, what="terminal k1t: sync", crashed=lambda: crashes.append(1),
                                                pause_max_s=0.01), name="watchdog-under-test")
    try:
        await wait_until(lambda: len(starts) == 3, what="the third start")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(crashes) == 2 and task.cancelled()
    assert "terminal k1t: sync crashed (2); restarting" in caplog.text
