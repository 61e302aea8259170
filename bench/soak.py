"""The chaos soak: gateways under load while everything they depend on is killed.

``python bench/soak.py --json`` (30 minutes) or ``--short`` (about two
minutes, for CI). Several simulated gateways (real ``GatewayApp``s with real
outboxes, each a process of its own: bench/soak_gateway.py) send a steady load
plus bursts through a proxy each (bench/soak_proxy.py) to a real Mosquitto,
rentgate server processes (ingest workers on a shared subscription, web, and
reconcile) store them in a real PostgreSQL; meanwhile bench/soak_chaos.py
SIGKILLs and restarts the broker, ingest workers, web processes, PostgreSQL
and gateways, cuts gateways off the network, and keeps one gateway cut off
until its outbox holds hundreds of thousands of events. At the end the load
stops, every outbox drains, and bench/soak_check.py compares what each
gateway generated with what the database holds. docs/soak.md says what is
injected and measured, and the figures of a full run.

Progress goes to stderr; with ``--json`` the last line of stdout is one JSON
object. The exit status is 0 only when nothing was lost or doubled, no
process died by itself, and memory stayed flat (``ok``). Everything it
starts it stops and removes, on Ctrl-C and on failure too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_chaos import ALL_FAULTS, Chaos, ChaosPlan
from bench.soak_check import GatewayTally, check_gateway, dead_letters, open_gaps, read_outbox_meta
from bench.soak_journal import read_journal
from bench.soak_memory import MemoryLog, rss_mb
from bench.soak_procs import GatewaySpec
from bench.soak_system import System, Topology
from rentgate import __version__

log = logging.getLogger("bench.soak")


def progress(text: str, *args: object) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--short", action="store_true", help="the CI form: about two minutes, tens of thousands of "
                                                        "events in the long outage")
    p.add_argument("--duration", type=float, help="seconds of load and chaos (1800; --short 70)")
    p.add_argument("--gateways", type=int, help="simulated gateways (4; --short 3)")
    p.add_argument("--ingest-workers", type=int, default=2)
    p.add_argument("--web", type=int, default=1, help="web processes")
    p.add_argument("--rate", type=float, help="steady card reads a second per gateway (40; --short 30)")
    p.add_argument("--burst-size", type=int, help="reads per burst (3000; --short 1000)")
    p.add_argument("--burst-every", type=float, help="mean seconds between a gateway's bursts (120; --short 25)")
    p.add_argument("--long-outage-events", type=int,
                   help="the long outage lasts until the gateway's outbox holds this many (200000; --short 20000)")
    p.add_argument("--sample-s", type=float, help="seconds between memory samples (5; --short 2)")
    p.add_argument("--warmup-s", type=float, help="memory samples before this are not fitted (300; --short 20); "
                                                  "nor those before the long outage's catch-up ended")
    p.add_argument("--max-rss-slope", type=float,
                   help="MiB/h above which memory is not flat (30; --short 2000, which only a gross leak passes)")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--workdir", type=Path, help="keep logs, outboxes, journals and memory.csv (every memory "
                                                "sample) here (default: a temporary directory, removed)")
    args = p.parse_args(argv)
    short = args.short
    defaults = {"duration": (1800.0, 70.0), "gateways": (4, 3), "rate": (40.0, 30.0),
                "burst_size": (3000, 1000), "burst_every": (120.0, 25.0),
                "long_outage_events": (200_000, 20_000), "sample_s": (5.0, 2.0), "warmup_s": (300.0, 20.0),
                "max_rss_slope": (30.0, 2000.0)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if short else full)
    if args.gateways < 2:
        p.error("--gateways: at least 2 (one is never killed, one has the long outage)")
    return args


def make_topology(args: argparse.Namespace) -> tuple[Topology, ChaosPlan]:
    d = args.duration
    # The long outage starts at a tenth of the run and should reach its
    # depth by half of it: the busy gateway's steady rate is set for that.
    heavy_rate = max(args.rate, math.ceil(args.long_outage_events / (0.4 * d)))
    specs = [GatewaySpec(f"soak-gw-{i}", heavy_rate if i == 1 else args.rate, args.burst_size, args.burst_every)
             for i in range(args.gateways)]
    topology = Topology(specs, args.ingest_workers, args.web)
    if args.short:
        plan = ChaosPlan(duration_s=d, fault_gap_s=(2.0, 4.0), down_s=(1.0, 3.0), net_gap_s=(4.0, 8.0),
                         net_cut_s=(3.0, 8.0), long_outage_at_s=0.1 * d, long_outage_events=args.long_outage_events,
                         long_outage_max_s=0.6 * d, long_outage_gateway="soak-gw-1")
    else:
        plan = ChaosPlan(duration_s=d, fault_gap_s=(15.0, 60.0), down_s=(2.0, 30.0), net_gap_s=(20.0, 90.0),
                         net_cut_s=(10.0, 120.0), long_outage_at_s=0.1 * d,
                         long_outage_events=args.long_outage_events, long_outage_max_s=0.7 * d,
                         long_outage_gateway="soak-gw-1")
    return topology, plan


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.topology, self.plan = make_topology(args)
        self.system = System(workdir, self.topology, args.seed)
        self.memory = MemoryLog()
        self.max_depth = 0
        self.t0 = self.started_wall = time.monotonic()
        self.open_gaps = -1
        self.dead_letters: dict[str, int] = {}

    async def sample(self) -> None:
        """Outbox depths twice a second, memory every ``--sample-s``, dead processes every second."""
        next_rss = next_watch = 0.0
        while True:
            now = time.monotonic()
            for g in self.system.gateways:
                self.max_depth = max(self.max_depth, g.depth or 0)
            if now >= next_rss:
                next_rss = now + self.args.sample_s
                t = now - self.t0
                for g in self.system.gateways:
                    self._rss("gateway", g.name, g.incarnation, g.pid, t)
                for s in self.system.servers:
                    self._rss("server", s.name, s.incarnation, s.pid, t)
                self._rss("broker", "mosquitto", 0, self.system.broker.pid if self.system.broker.running else None, t)
            if now >= next_watch:
                next_watch = now + 1.0
                await self.system.watch_exits()
            await asyncio.sleep(0.5)

    def _rss(self, kind: str, name: str, incarnation: int, pid: int | None, t: float) -> None:
        if pid is not None and (mb := rss_mb(pid)) is not None:
            self.memory.add(kind, name, incarnation, t, mb)

    async def run(self) -> dict[str, Any]:
        a, s = self.args, self.system
        progress("starting Mosquitto, PostgreSQL, the servers and %d gateways in %s", len(self.topology.gateways),
                 s.workdir)
        await s.start()
        progress("servers: %s (roles %s)", ", ".join(x.name for x in s.servers), "yes" if s.roles else "not yet")
        self.t0 = time.monotonic()
        chaos = Chaos(s, self.plan, random.Random(a.seed), started=self.t0)
        sampler = asyncio.create_task(self.sample(), name="sampler")
        loops = [asyncio.create_task(chaos.process_faults(), name="process-faults"),
                 asyncio.create_task(chaos.net_cuts(), name="net-cuts"),
                 asyncio.create_task(chaos.long_outage_run(), name="long-outage")]
        progress("load and chaos for %.0f s", a.duration)
        try:
            done, _ = await asyncio.wait(loops, timeout=a.duration, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            chaos.stopping.set()
            progress("chaos stopping; waiting for the faults in progress to heal")
            for task in loops:
                await task
            chaos_s = time.monotonic() - self.t0
            await self.settle()
            drain_s = await self.drain()
        finally:
            sampler.cancel()
            for task in loops:
                task.cancel()
        progress("stopping the gateways and checking the database")
        await s.stop_gateways()
        self.memory.write_csv(s.workdir / "memory.csv")
        tallies = await asyncio.to_thread(self.check)
        return self.result(chaos, tallies, chaos_s, drain_s)

    async def settle(self) -> None:
        """Everything up and every link restored before the load stops."""
        s = self.system
        for name in s.proxies.proxies:
            s.proxies.cut(name, None)
        await s.watch_exits()
        await s.wait_servers_healthy(300, restart_dead=True)
        for g in s.gateways:
            g.stop_load()
        deadline = time.monotonic() + 60
        while any(g.status.get("load", True) for g in s.gateways):
            await s.watch_exits()
            if time.monotonic() > deadline:
                raise TimeoutError("gateways did not stop their load within 60 s")
            await asyncio.sleep(0.2)

    async def drain(self) -> float | None:
        """Until every outbox is empty (each event committed and acknowledged); None if it timed out."""
        s = self.system
        started = time.monotonic()
        left = sum(g.depth or 0 for g in s.gateways)
        timeout = max(300.0, left / 500)
        progress("load stopped; %d events in the outboxes, draining (up to %.0f s)", left, timeout)
        last_report = started
        while True:
            depths = [g.depth for g in s.gateways]
            if all(d == 0 for d in depths):
                return round(time.monotonic() - started, 1)
            now = time.monotonic()
            if now - started > timeout:
                progress("drain timed out: depths %s", depths)
                return None
            if now - last_report > 10:
                progress("draining: depths %s", depths)
                last_report = now
            await asyncio.sleep(0.2)

    def check(self) -> list[GatewayTally]:
        from server.db.engine import create_engine

        engine = create_engine(self.system.database_url)
        try:
            tallies = []
            for g in self.system.gateways:
                meta = read_outbox_meta(g.data_dir / "outbox.sqlite3")
                tallies.append(check_gateway(engine, g.name, read_journal(g.data_dir / "journal.txt"), meta))
            self.open_gaps = open_gaps(engine)
            self.dead_letters = dead_letters(engine)
            return tallies
        finally:
            engine.dispose()

    def result(self, chaos: Chaos, tallies: list[GatewayTally], chaos_s: float,
               drain_s: float | None) -> dict[str, Any]:
        a = self.args
        outage = chaos.long_outage
        # The catch-up's peak is the long outage's cost (the maxima show it), not a trend.
        warm = max(a.warmup_s, outage.get("caught_up_at_s") or 0.0)
        slopes, lives = {}, {}
        for kind in ("gateway", "server"):
            life, slope, n = self.memory.slope(kind, warm)
            slopes[kind] = slope
            lives[kind] = {"life": life, "samples": n}
        flat = all(v is not None and v <= a.max_rss_slope for v in slopes.values())
        lost = sum(t.lost for t in tallies)
        duplicates = sum(t.duplicate_seq_rows + t.duplicate_reads for t in tallies)
        holes = sum(t.seq_holes for t in tallies)
        strays = sum(t.unexpected + t.wrong_value for t in tallies)
        faults = {kind: chaos.counts.get(kind, 0) for kind in ALL_FAULTS}
        r: dict[str, Any] = {
            "events_generated": sum(t.generated for t in tallies),
            "events_stored": sum(t.stored for t in tallies),
            "lost": lost,
            "duplicates": duplicates,
            "seq_holes": holes,
            "stray_rows": strays,
            "open_gaps": self.open_gaps,
            "dead_letters": self.dead_letters,
            "faults_injected": faults,
            "faults_total": sum(faults.values()),
            "unexpected_exits": self.system.unexpected_exits,
            "max_outbox_depth": self.max_depth,
            "long_outage": {k: v for k, v in outage.items() if k != "active"},
            "catchup_s": outage.get("catchup_s"),
            "drain_s": drain_s,
            "gateway_rss_mb_max": self.memory.max_mb("gateway"),
            "server_rss_mb_max": self.memory.max_mb("server"),
            "broker_rss_mb_max": self.memory.max_mb("broker"),
            "rss_slope_mb_per_h": slopes,
            "rss_slope_fitted": lives | {"after_s": round(warm, 1)},
            "rss_slope_max_mb_per_h": a.max_rss_slope,
            "memory_flat": flat,
            "duration_s": round(time.monotonic() - self.started_wall, 1),
            "chaos_s": round(chaos_s, 1),
            "per_gateway": [t.as_dict() for t in tallies],
            "chaos_log": chaos.events,
            "gateways": len(self.topology.gateways),
            "gateway_rates": {g.gateway_id: g.rate for g in self.topology.gateways},
            "server_processes": [x.name for x in self.system.servers],
            "short": a.short, "seed": a.seed,
            "rentgate": __version__, "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        r["ok"] = bool(lost == 0 and duplicates == 0 and holes == 0 and strays == 0 and drain_s is not None
                       and not self.system.unexpected_exits and flat)
        return r


async def _main(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    soak = Soak(args, workdir)
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if me is not None:
        loop.add_signal_handler(signal.SIGTERM, me.cancel)
    try:
        return await soak.run()
    finally:
        progress("stopping and removing everything the soak started")
        await asyncio.to_thread(soak.system.close)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="rentgate-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(_main(args, workdir))
        except (KeyboardInterrupt, asyncio.CancelledError) as exc:
            progress("%s; everything stopped", "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated")
            if args.json:
                print(json.dumps({"error": "interrupted", "ok": False}))
            return 130 if isinstance(exc, KeyboardInterrupt) else 143
        except Exception as exc:  # noqa: BLE001 - any failure is reported as one JSON line, after the clean-up
            progress("failed: %r", exc)
            if args.json:
                print(json.dumps({"error": str(exc), "ok": False}))
            return 1
    progress("ok=%s: %d generated, %d stored, %d lost, %d duplicates, faults %s", result["ok"],
             result["events_generated"], result["events_stored"], result["lost"], result["duplicates"],
             result["faults_injected"])
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
