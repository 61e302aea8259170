"""One soak gateway as a process of its own, so that the soak can SIGKILL it:
a real ``GatewayApp`` (the real outbox, sender and MQTT link) fed by a load
generator instead of card readers.

    python bench/soak_gateway.py --gateway-id soak-gw-0 --mqtt-url mqtt://127.0.0.1:PORT \\
        --data-dir DIR --incarnation 1 --rate 40 --burst-size 2000 --burst-every 60

The load is a steady ``--rate`` of card reads a second plus, every
``--burst-every`` seconds (jittered), ``--burst-size`` reads as fast as the
outbox commits them. Every append is journalled (bench/soak_journal.py).
SIGUSR1 stops the load and keeps the gateway delivering; SIGTERM stops it
cleanly. Twice a second one JSON line on stdout says where it stands (outbox
depth, reads generated, link up); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_journal import JournalWriter, credential_value
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.outbox import EventMaker
from rentgate import wire

_TICK_S = 0.05
_APPEND_MAX = 500  # reads per append while catching up or bursting
_STATUS_S = 0.5

log = logging.getLogger("bench.soak_gateway")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--mqtt-url", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--incarnation", type=int, required=True, help="numbers this process's reads (soak-K-i)")
    p.add_argument("--rate", type=float, default=40.0, help="steady card reads a second")
    p.add_argument("--burst-size", type=int, default=0)
    p.add_argument("--burst-every", type=float, default=60.0, help="mean seconds between bursts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-load", action="store_true", help="only deliver what the outbox holds")
    return p.parse_args(argv)


class Load:
    """The generator: journal, append, journal, at the steady rate plus bursts."""

    def __init__(self, app: GatewayApp, journal: JournalWriter, args: argparse.Namespace) -> None:
        self.app = app
        self.journal = journal
        self.rate = args.rate
        self.burst_size = args.burst_size
        self.burst_every = args.burst_every
        self.random = random.Random(f"{args.seed}-{args.gateway_id}-{args.incarnation}")
        self.generated = 0
        self.running = not args.no_load
        self.stopped = asyncio.Event()
        if not self.running:
            self.stopped.set()

    def stop(self) -> None:
        self.running = False

    async def run(self) -> None:
        started = time.monotonic()
        steady = 0  # steady reads due so far
        next_burst = started + self.random.expovariate(1 / self.burst_every) if self.burst_size else float("inf")
        try:
            while self.running:
                now = time.monotonic()
                due = int((now - started) * self.rate) - steady
                if due > 0:
                    await self._append(min(due, _APPEND_MAX))
                    steady += min(due, _APPEND_MAX)
                    continue
                if now >= next_burst:
                    left = self.burst_size
                    while left > 0 and self.running:
                        await self._append(min(left, _APPEND_MAX))
                        left -= _APPEND_MAX
                    next_burst = time.monotonic() + self.random.expovariate(1 / self.burst_every)
                    # The steady load does not make up for the burst's time.
                    started = time.monotonic() - steady / self.rate if self.rate else started
                    continue
                await asyncio.sleep(_TICK_S)
        finally:
            self.stopped.set()

    async def _append(self, count: int) -> None:
        assert self.app.outbox is not None
        first_i = self.generated
        gw, inc = self.app.gateway_id, self.journal.incarnation
        makers = [_card_read(gw, credential_value(inc, i)) for i in range(first_i, first_i + count)]
        self.journal.attempt(first_i, count)
        seqs = await self.app.outbox.append(makers)
        self.journal.committed(first_i, count, seqs[0])
        self.generated += count


def _card_read(gw: str, value: str) -> EventMaker:
    credential = wire.Credential(format="raw", value=value)
    return lambda seq: wire.CardRead(gw=gw, seq=seq, device="soak-reader", door="soak-door",
                                     ts=datetime.now(UTC), credential=credential)


async def report(app: GatewayApp, load: Load) -> None:
    while True:
        sender, link = app.sender, app.link
        status = {
            "t": round(time.time(), 3),
            "depth": app.outbox.depth() if app.outbox is not None else None,
            "generated": load.generated,
            "load": not load.stopped.is_set(),
            "connected": bool(link is not None and link.connected.is_set()),
            "inflight": sender.inflight if sender is not None else 0,
            "replays": sender.stats.replays if sender is not None else 0,
            "published": sender.stats.published_events if sender is not None else 0,
            "holding": bool(sender is not None and sender.holding),
        }
        sys.stdout.write(json.dumps(status) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(_STATUS_S)


async def run(args: argparse.Namespace) -> None:
    config = GatewayConfig(gateway_id=args.gateway_id, mqtt_url=args.mqtt_url, data_dir=args.data_dir,
                           heartbeat_s=5)
    app = GatewayApp(config)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    journal = JournalWriter(args.data_dir / "journal.txt", args.incarnation)
    loop = asyncio.get_running_loop()
    gateway = asyncio.create_task(app.run(install_signal_handlers=True), name="gateway")
    ready = asyncio.create_task(app.ready.wait())
    await asyncio.wait([ready, gateway], return_when=asyncio.FIRST_COMPLETED)
    if gateway.done():
        ready.cancel()
        gateway.result()
        return
    load = Load(app, journal, args)
    loop.add_signal_handler(signal.SIGUSR1, load.stop)
    tasks = [asyncio.create_task(load.run(), name="load"), asyncio.create_task(report(app, load), name="report")]
    try:
        await gateway
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        journal.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
