"""rentgate.aio.wait_event: a cancellation that lands while the event is
being set still cancels (Python 3.11's wait_for swallows it, gh-86296, and
service loops built on it hung in stop())."""

from __future__ import annotations

import asyncio

import pytest

from rentgate.aio import wait_event


async def test_a_cancel_at_the_moment_the_event_is_set_is_not_lost() -> None:
    event = asyncio.Event()
    woke = 0

    async def service() -> None:
        nonlocal woke
        while True:
            await wait_event(event, 10.0)
            woke += 1
            event.clear()

    task = asyncio.create_task(service())
    await asyncio.sleep(0)  # the service waits
    # Both in the same turn of the loop: the race wait_for loses.
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)
    assert woke == 0


async def test_it_says_whether_the_event_came_or_the_time_ran_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, None) is True
