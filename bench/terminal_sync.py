"""How fast the gateway brings a Hikvision terminal's own user list in line
with its allowlist, against the project's simulated DS-K1T terminal
(firmware_sim/isapi_terminal.py: digest authentication, its own validation
and lock) on a real socket in this process.

    .venv/bin/python bench/terminal_sync.py --json             # 10,000 users
    .venv/bin/python bench/terminal_sync.py --users 2000 --json

Figures (the last line of stdout with --json is one JSON object):

* ``initial_sync_s``: empty terminal -> it holds every user and card
  (one HTTP request per user and per card, digest authentication preemptive);
* ``revoke_during_sync_ms``: a card revoked once 10 % of the initial sync is
  written -> the terminal answered its delete;
* ``revoke_ms_p50``/``revoke_ms_max``: ten revocations on an idle, synced
  terminal, each from the allowlist delta applied to the terminal's answer;
* ``reconcile_s``: a fresh gateway start against the full terminal (the whole
  list read page by page, compared, nothing to write);
* ``catch_up_events``/``catch_up_s``: that many card reads the terminal kept
  while the gateway could not reach it -> every one fetched by the catch-up
  (AcsEvent search, 30 a page) and handed over, timed from the sync finding
  the terminal reachable again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_sim.isapi_store import Capacity  # noqa: E402
from firmware_sim.isapi_terminal import IsapiTerminalSim  # noqa: E402
from gateway.terminals import TerminalSync, TerminalSyncConfig, supervise  # noqa: E402
from tests.gateway.access.helpers import delta, open_store, snapshot  # noqa: E402

PASSWORD = "Passw0rd!"


async def _until(predicate: object, timeout: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("bench condition not reached")
        await asyncio.sleep(0.001)


async def run(users: int, folder: Path, events: int = 2000) -> dict[str, float | int]:
    cards = [f"{0x1400000000 + i:010X}" for i in range(users)]
    store = open_store(folder)
    store.apply(snapshot(1, *cards))
    (folder / "pw").write_text(PASSWORD)
    capacity = Capacity(users=users + 10, cards=users + 10)
    async with IsapiTerminalSim(password=PASSWORD, capacity=capacity) as sim:
        config = TerminalSyncConfig.model_validate({
            "id": "k1t", "url": sim.url, "password_file": str(folder / "pw"), "doors": ["front"],
            "probe_interval_s": 5})

        def start() -> tuple[TerminalSync, asyncio.Task[None]]:
            sync = TerminalSync(config, store, folder / "terminals")
            return sync, asyncio.create_task(supervise(sync), name="terminal-sync-k1t")

        sync, task = start()
        started = time.monotonic()
        await _until(lambda: len(sim.store.users) >= users // 10, 600)
        first = str(int(cards[0], 16))
        revoked_at = time.monotonic()
        store.apply(delta(1, 2, removals=(cards[0],)))
        sync.changed()
        await _until(lambda: first not in sim.store.cards, 60)
        during_ms = (time.monotonic() - revoked_at) * 1000
        await _until(lambda: sync.health.version_held == 2 and sync.health.pending == 0, 600)
        initial_s = time.monotonic() - started
        latencies = []
        for i in range(1, 11):
            card = str(int(cards[i], 16))
            t0 = time.monotonic()
            store.apply(delta(i + 1, i + 2, removals=(cards[i],)))
            sync.changed()
            await _until(lambda card=card: card not in sim.store.cards, 30)
            latencies.append((time.monotonic() - t0) * 1000)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sync, task = start()
        t0 = time.monotonic()
        await _until(lambda: sync.health.last_full_at is not None and sync.health.version_held == 12
                     and sync.health.pending == 0 and sync.synced.is_set(), 600)
        reconcile_s = time.monotonic() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        catch_up_s = await _catch_up(sim, config, store, folder, events)
    return {"users": users, "initial_sync_s": round(initial_s, 2), "revoke_during_sync_ms": round(during_ms, 1),
            "revoke_ms_p50": round(statistics.median(latencies), 1), "revoke_ms_max": round(max(latencies), 1),
            "reconcile_s": round(reconcile_s, 2), "catch_up_events": events, "catch_up_s": round(catch_up_s, 2)}


async def _catch_up(sim: IsapiTerminalSim, config: TerminalSyncConfig, store: object, folder: Path,
                    events: int) -> float:
    from devices.hikvision_isapi import AcsEventRecord

    got: list[AcsEventRecord] = []
    fast = config.model_copy(update={"probe_interval_s": 0.5, "retry_max_s": 0.5})
    sync = TerminalSync(fast, store, folder / "terminals", deliver=got.append)  # type: ignore[arg-type]
    task = asyncio.create_task(supervise(sync), name="terminal-sync-k1t")
    try:
        await _until(lambda: sync.caught_up_to is not None and sync.synced.is_set(), 600)
        await sim.network_down()
        await _until(lambda: sync.health.reachable is False, 60)
        for i in range(events):
            await sim.present_card(str(10**9 + i))
        await sim.network_restore()
        await _until(lambda: sync.health.reachable is True, 60)
        t0 = time.monotonic()
        await _until(lambda: len(got) >= events, 600)
        elapsed = time.monotonic() - t0
        if len({e.serial_no for e in got}) != events:
            raise RuntimeError(f"caught up {len(got)} events, {len({e.serial_no for e in got})} distinct")
        return elapsed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2000, help="card reads kept during an outage, caught up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.users, Path(tmp), args.events))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
