"""Throughput of EventStore.commit: ``python -m tests.server.bench_store URL``.

Not collected by pytest; run by hand and quote the numbers in docs.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from rentgate import wire
from server.db import migrate
from server.db.engine import create_engine
from server.ingest.store import EventStore


def card_reads(gw: str, first: int, count: int) -> list[str]:
    ts = datetime.now(UTC)
    return [
        wire.encode_event(wire.CardRead(gw=gw, seq=s, device="reader-1", door="door-1", ts=ts,
                                        credential=wire.Credential(format="em4100", value="0A1B2C3D4E")))
        for s in range(first, first + count)
    ]


def run(url: str, *, batch: int, messages: int, per_message: int) -> float:
    engine = create_engine(url)
    migrate.upgrade(engine)
    store = EventStore(engine)
    gw = f"bench-{int(time.time() * 1000) % 10**9}-{per_message}"
    topic = wire.events_topic(gw)
    seq = 1
    payloads = []
    for _ in range(messages):
        payloads.append(wire.batch_json(gw, card_reads(gw, seq, per_message)))
        seq += per_message
    now = datetime.now(UTC)
    started = time.perf_counter()
    for i in range(0, len(payloads), batch):
        store.commit([(topic, p, now) for p in payloads[i:i + batch]])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return (seq - 1) / elapsed


def main() -> None:
    url = sys.argv[1]
    rate = run(url, batch=4, messages=200, per_message=500)
    print(f"{url.split(':')[0]}: batches of 500 events/message, 4 messages/commit: {rate:,.0f} events/s")
    rate = run(url, batch=1000, messages=20000, per_message=1)
    print(f"{url.split(':')[0]}: single-event messages, 1000 messages/commit: {rate:,.0f} events/s")


if __name__ == "__main__":
    main()
