"""End-to-end ingest benchmark: simulated gateways -> Mosquitto -> server -> database.

``python bench/ingest.py --json``; see bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (bench, tests.services, rentgate).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gateways as gws
from bench.acks import AckListener
from bench.baseline import run_baseline
from bench.measure import (
    Integrity,
    count_stored,
    first_ack_times,
    percentile,
    print_result,
    process_cpu_s,
    stored_times,
)
from bench.stack import BenchError, Stack, running_stack
from rentgate import __version__, wire

log = logging.getLogger("bench.ingest")


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--gateways", type=int, default=4)
    p.add_argument("--events", type=int, default=40_000, help="events in the throughput phase (all gateways)")
    p.add_argument("--replay-events", type=int, default=100_000, help="backlog drained in the replay phase")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--offered-rate", type=float, default=1000.0, help="events/s offered in the latency phase")
    p.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    p.add_argument("--workdir", type=Path, help="keep logs and data here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.replay_events, args.latency_seconds = 4000, 10_000, 3.0
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack, workdir: Path) -> None:
        self.args = args
        self.stack = stack
        self.workdir = workdir
        from server.db.engine import create_engine

        self.engine = create_engine(stack.database_url)
        self.result: dict[str, Any] = {}
        self.integrity: dict[str, Integrity] = {}

    def server_cpu(self) -> float:
        return process_cpu_s(self.stack.server.pid)

    def check(self, phase: str, injected: int) -> Integrity:
        rows, distinct = count_stored(self.engine, gws.credential_prefix(phase))
        found = Integrity(injected, rows, distinct)
        self.integrity[phase] = found
        return found

    # ------------------------------------------------------------------ phases

    def baseline(self) -> None:
        n = self.args.events
        payloads = [wire.batch_json("bench-baseline", [gws_json("bench-baseline", i)]) for i in range(n)]
        progress("baseline: %d messages, plain paho QoS 1 publisher -> subscriber", n)
        result = run_baseline(self.stack.broker.host, self.stack.broker.port, payloads)
        self.result["baseline_broker_per_s"] = round(result.per_s)
        progress("baseline: %.0f msg/s", result.per_s)

    async def throughput(self) -> None:
        a = self.args
        per_gw = a.events // a.gateways
        fleet = gws.Fleet(gws.make_apps("tp", a.gateways, self.stack.mqtt_url, self.workdir, batch_max=1))
        await fleet.start()
        try:
            await fleet.drained(60)  # each gateway_started event acked: connected end to end
            progress("throughput: %d gateways x %d events, batch_max=1", a.gateways, per_gw)
            cpu0 = self.server_cpu()
            started = time.perf_counter()
            await asyncio.gather(*(gws.flood(app, "tp", per_gw) for app in fleet.apps))
            appended = time.perf_counter()
            ended = await fleet.drained(600)
            cpu = self.server_cpu() - cpu0
        finally:
            await fleet.stop()
        elapsed = ended - started
        events = per_gw * a.gateways
        self.result.update(events=events, events_per_s=round(events / elapsed), throughput_seconds=round(elapsed, 3),
                           append_per_s=round(events / (appended - started)),
                           server_cpu_s_throughput=round(cpu, 2),
                           published_messages=sum(app.sender.stats.published_messages for app in fleet.apps
                                                  if app.sender is not None))
        progress("throughput: %.0f events/s (%.2f s; server CPU %.1f s)", events / elapsed, elapsed, cpu)
        self.check("tp", events)

    async def latency(self) -> None:
        a = self.args
        fleet = gws.Fleet(gws.make_apps("lat", a.gateways, self.stack.mqtt_url, self.workdir, batch_max=500))
        host, port = self.stack.broker.host, self.stack.broker.port
        with AckListener(host, port) as listener:
            await fleet.start()
            try:
                await fleet.drained(60)
                progress("latency: %.0f events/s offered over %d gateways for %.0f s", a.offered_rate, a.gateways,
                         a.latency_seconds)
                counts = await asyncio.gather(*(
                    gws.paced(app, "lat", a.offered_rate / a.gateways, a.latency_seconds)
                    for app in fleet.apps
                ))
                await fleet.drained(120)
            finally:
                await fleet.stop()
        injected = sum(counts)
        rows = stored_times(self.engine, gws.credential_prefix("lat"))
        acked = first_ack_times(listener.acks)
        to_ack = [(acked[(gw, seq)] - occ.timestamp()) * 1000 for gw, seq, occ, _ in rows if (gw, seq) in acked]
        in_db = [(sto - occ).total_seconds() * 1000 for _, _, occ, sto in rows]
        self.result.update(
            offered_events_per_s=a.offered_rate, latency_events=injected,
            latency_ms_p50=_r(percentile(to_ack, 50)), latency_ms_p99=_r(percentile(to_ack, 99)),
            latency_ms_max=_r(max(to_ack, default=None)),
            db_latency_ms_p50=_r(percentile(in_db, 50)), db_latency_ms_p99=_r(percentile(in_db, 99)),
        )
        progress("latency: p50 %s ms, p99 %s ms (to ack); in db p99 %s ms", self.result["latency_ms_p50"],
                 self.result["latency_ms_p99"], self.result["db_latency_ms_p99"])
        self.check("lat", injected)

    async def replay(self) -> None:
        n = self.args.replay_events
        gw = "bench-replay-0"
        progress("replay: building a backlog of %d events offline", n)
        await asyncio.to_thread(gws.build_backlog, "replay", gw, self.workdir, n)
        fleet = gws.Fleet([gws.make_app(gw, self.stack.mqtt_url, self.workdir, batch_max=500)])
        cpu0 = self.server_cpu()
        started = time.perf_counter()
        await fleet.start()
        try:
            ended = await fleet.drained(600)
        finally:
            await fleet.stop()
        cpu = self.server_cpu() - cpu0
        stats = fleet.apps[0].sender.stats if fleet.apps[0].sender is not None else None
        self.result.update(replay_published_events=stats.published_events if stats else None,
                           replay_replays=stats.replays if stats else None)
        self.result.update(replay_events=n, replay_events_per_s=round(n / (ended - started)),
                           replay_seconds=round(ended - started, 3), server_cpu_s_replay=round(cpu, 2))
        progress("replay: %.0f events/s (%.2f s)", n / (ended - started), ended - started)
        self.check("replay", n)

    def summary(self) -> dict[str, Any]:
        r = self.result
        if r.get("events_per_s") and r.get("baseline_broker_per_s"):
            r["ratio"] = round(r["events_per_s"] / r["baseline_broker_per_s"], 3)
        r["lost"] = sum(i.lost for i in self.integrity.values())
        r["duplicates"] = sum(i.duplicates for i in self.integrity.values())
        r["integrity"] = {k: {"injected": i.injected, "lost": i.lost, "duplicates": i.duplicates}
                          for k, i in self.integrity.items()}
        r["server_cpu_s"] = round(self.server_cpu(), 2)
        r["targets_met"] = {
            "ratio>=0.5": r.get("ratio", 0) >= 0.5,
            "replay>=50000/s": r.get("replay_events_per_s", 0) >= 50_000,
            "p99<=100ms": (r.get("latency_ms_p99") or 1e9) <= 100,
            "no loss, no duplicates": r["lost"] == 0 and r["duplicates"] == 0,
        }
        return r


def gws_json(gw: str, i: int) -> str:
    return wire.encode_event(gws.card_read(gw, gws.value_of("base", gw, i))(i + 1))


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with running_stack(workdir, args.database) as stack:
        bench = Bench(args, stack, workdir)
        try:
            bench.result.update(gateways=args.gateways, database=args.database, quick=args.quick)
            bench.baseline()
            await bench.throughput()
            await bench.latency()
            await bench.replay()
            return bench.summary() | _versions(stack)
        finally:
            bench.engine.dispose()


def _versions(stack: Stack) -> dict[str, Any]:
    import paho.mqtt
    import sqlalchemy

    out: dict[str, Any] = {"rentgate": __version__, "python": platform.python_version(),
                           "paho_mqtt": paho.mqtt.__version__, "sqlalchemy": sqlalchemy.__version__,
                           "cpus": _cpus(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        import subprocess

        text = subprocess.run([stack.broker.binary, "-h"], capture_output=True, text=True, timeout=5).stdout
        out["mosquitto"] = text.splitlines()[0].split()[-1] if text else None
    except (OSError, IndexError):
        out["mosquitto"] = None
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="rentgate-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(run(args, workdir))
        except (BenchError, TimeoutError) as exc:
            progress("failed: %s", exc)
            if args.json:
                print(json.dumps({"error": str(exc)}))
            return 1
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
