from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.sender import Sender
from gateway.writer import AsyncOutbox
from rentgate import wire
from tests.gateway.helpers import GW, cards, is_batch, seqs_in, wait_until


class FakeLink:
    """Stands in for MqttLink.publish: records messages, can be 'down'."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.up = True

    def publish(self, topic: str, payload: bytes, qos: int) -> bool:
        assert topic == wire.events_topic(GW) and qos == 1
        if not self.up:
            return False
        self.messages.append(payload)
        return True

    def take(self) -> list[list[int]]:
        out = [seqs_in(m) for m in self.messages]
        self.messages.clear()
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[AsyncOutbox]:
    box = await AsyncOutbox.open(str(tmp_path / "outbox.sqlite3"), gateway_id=GW)
    yield box
    await box.close()


def _sender(outbox: AsyncOutbox, link: FakeLink, clock: Clock | None = None, **kw: int) -> Sender:
    settings = {"batch_max": 10, "inflight_max": 100, "ack_timeout_s": 15} | kw
    return Sender(outbox, link.publish, gateway_id=GW, clock=clock or Clock(), **settings)


async def _remaining(outbox: AsyncOutbox) -> list[int]:
    return [s for s, _ in await outbox.pending(0, 1_000_000)]


async def test_live_events_go_one_per_message(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    sender = _sender(outbox, link)
    for _ in range(3):
        await outbox.append(cards(1))
        await sender.step()
    assert [is_batch(m) for m in link.messages] == [False, False, False]
    assert link.take() == [[1], [2], [3]]


async def test_backlog_goes_in_batches_in_order(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    await outbox.append(cards(25))
    await _sender(outbox, link).step()
    assert link.take() == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]


async def test_inflight_window_limits_unacked_events(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    await outbox.append(cards(50))
    sender = _sender(outbox, link, inflight_max=20)
    await sender.step()
    assert sum(len(m) for m in link.take()) == 20
    await sender.step()
    assert link.take() == []  # window full, nothing more until an ack
    sender.handle_ack(wire.Ack(committed=[(1, 15)]))
    await sender.step()
    assert link.take() == [list(range(21, 31)), list(range(31, 36))]
    assert sender.inflight == 20


async def test_only_the_servers_ack_deletes(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    await outbox.append(cards(5))
    sender = _sender(outbox, link)
    await sender.step()
    assert await _remaining(outbox) == [1, 2, 3, 4, 5]  # published is not enough
    sender.handle_ack(wire.Ack(committed=[(1, 2), (4, 4)]))
    await sender.step()
    assert await _remaining(outbox) == [3, 5]
    assert sender.stats.acked_events == 3


async def test_rejected_events_are_deleted_counted_and_logged(outbox: AsyncOutbox,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    link = FakeLink()
    await outbox.append(cards(4))
    sender = _sender(outbox, link)
    await sender.step()
    sender.handle_ack(wire.Ack(committed=[(1, 2)], rejected=[(3, 3)]))
    await sender.step()
    assert await _remaining(outbox) == [4]
    assert sender.stats.rejected_events == 1
    assert outbox.outbox.rejected_total == 1
    assert any(r.levelname == "ERROR" and "rejected events 3" in r.getMessage() for r in caplog.records)


async def test_resend_ranges_are_published_again(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    await outbox.append(cards(8))
    sender = _sender(outbox, link, batch_max=100)
    await sender.step()
    link.take()
    sender.handle_ack(wire.Ack(committed=[(1, 2), (5, 8)], resend=[(3, 4)]))
    await sender.step()
    assert link.take() == [[3, 4]]
    assert await _remaining(outbox) == [3, 4]


async def test_reconnect_replays_unacked_in_order(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    await outbox.append(cards(6))
    sender = _sender(outbox, link, batch_max=100)
    await sender.step()
    sender.handle_ack(wire.Ack(committed=[(2, 3)]))
    await sender.step()
    link.up = False
    await outbox.append(cards(2))
    await sender.step()  # link down: nothing goes, nothing is lost
    link.take()
    link.up = True
    sender.replay("reconnected")
    await sender.step()
    assert link.take() == [[1, 4, 5, 6, 7, 8]]


async def test_no_ack_progress_replays_after_the_timeout(outbox: AsyncOutbox) -> None:
    link, clock = FakeLink(), Clock()
    await outbox.append(cards(3))
    sender = _sender(outbox, link, clock)
    await sender.step()
    assert link.take() == [[1, 2, 3]]
    clock.now += 10
    sender.handle_ack(wire.Ack(committed=[(1, 1)]))  # progress resets the timer
    await sender.step()
    clock.now += 14
    await sender.step()
    assert link.take() == []
    clock.now += 2
    await sender.step()
    assert link.take() == [[2, 3]]
    assert sender.stats.last_replay_reason == "ack timeout"


async def test_server_offline_holds_publishing(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    sender = _sender(outbox, link)
    sender.set_server_online(False)
    await outbox.append(cards(2))
    await sender.step()
    assert link.take() == []
    sender.set_server_online(True)
    await sender.step()
    assert link.take() == [[1, 2]]


async def test_run_loop_sends_live_events_as_they_commit(outbox: AsyncOutbox) -> None:
    link = FakeLink()
    sender = Sender(outbox, link.publish, gateway_id=GW)
    outbox.on_commit(lambda seqs: sender.wake())
    task = asyncio.create_task(sender.run(), name="sender-under-test")
    try:
        await outbox.append(cards(1))
        await wait_until(lambda: len(link.messages) == 1, what="the live event")
        assert link.take() == [[1]]
    finally:
        task.cancel()


async def test_backlog_drains_fast(outbox: AsyncOutbox) -> None:
    n = 100_000
    for _ in range(10):
        await outbox.append(cards(n // 10))
    messages: list[bytes] = []

    def publish_and_ack(topic: str, payload: bytes, qos: int) -> bool:
        # A server that acks each batch at once (by its last seq: batches are full here).
        messages.append(payload)
        last = int(payload.rsplit(b'"seq":', 1)[1].split(b",", 1)[0])
        sender.handle_ack(wire.Ack(committed=[(last - 499, last)]))
        return True

    sender = Sender(outbox, publish_and_ack, gateway_id=GW, batch_max=500, inflight_max=20_000)
    started = time.perf_counter()
    while sender.stats.published_events < n:
        await sender.step()
    rate = n / (time.perf_counter() - started)
    print(f"backlog drained at {rate:.0f} events/s")
    assert len(messages) == n // 500
    assert rate > 50_000, f"only {rate:.0f} events/s"
    await sender.step()
    assert outbox.depth() == 0
