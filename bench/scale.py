"""Scale-out benchmark: events/s stored by 1, 2 and 4 ingest workers, per
engine, and what each worker, the broker and the database spent per event.

``python bench/scale.py --json``; ``--quick`` for a smoke test. Progress goes
to stderr; one JSON object is the last line of stdout.

Each run starts from an empty database and a backlog already in the
gateways' outboxes (written while they were offline), then starts N
``rentgate server --role ingest`` processes and the gateways, and times the
drain: from the gateways starting to every outbox empty, which is every
event committed and acknowledged (a gateway deletes an event only on the
server's acknowledgement, which follows the commit). A backlog is the
heaviest steady load ingest meets (a building coming back after an outage,
or the whole city after a broker restart) and it makes the figure
independent of how fast this process can invent events.

Engines:
- ``mosquitto``: one Mosquitto; the workers share the events through an
  MQTT shared subscription (``RENTGATE_INGEST_SHARE_GROUP``).
- ``nats``: a three-node NATS cluster with JetStream; gateways speak MQTT to
  the nodes in turn, the workers pull from one JetStream work queue
  (``RENTGATE_INGEST_SOURCE=jetstream``; docs/clustering.md).

What the figures mean, and the sizing table built from them, are in
docs/scaling.md. On a machine with fewer cores than workers + broker +
database, more workers cannot run at once: the figures then show where the
machine saturates, not how far the design scales; the JSON says how many
CPUs there were.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gateways as gws
from bench.measure import count_stored, print_result, process_cpu_s
from bench.stack import REPO, BenchError
from rentgate import __version__
from tests.services import Mosquitto, PostgresCluster, ServiceError, free_port

log = logging.getLogger("bench.scale")

PHASE = "scale"
SHARE_GROUP = "rentgate-scale"


def progress(text: str, *args: object) -> None:
    print(f"[scale] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated (default 1,2,4)")
    p.add_argument("--engines", default="mosquitto,nats", help="engines to run, comma-separated")
    p.add_argument("--gateways", type=int, default=8, help="gateways replaying at once")
    p.add_argument("--events", type=int, default=200_000, help="events in the backlog, over all gateways")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    p.add_argument("--workdir", type=Path, help="keep logs and data here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.gateways, args.workers = 6000, 3, "1,2"
    try:
        args.worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        p.error("--workers takes numbers separated by commas, e.g. 1,2,4")
    if not args.worker_counts or min(args.worker_counts) < 1 or max(args.worker_counts) > 32:
        p.error("--workers: each count must be between 1 and 32")
    args.engine_names = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engine_names) - set(ENGINES)
    if unknown or not args.engine_names:
        p.error(f"--engines: choose from {', '.join(ENGINES)}")
    if args.events < args.gateways or args.gateways < 1:
        p.error("--events must be at least --gateways, and --gateways at least 1")
    return args


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """A running broker: where gateways and workers connect, its processes."""

    name: str
    gateway_urls: list[str]
    worker_env: dict[str, str]
    pids: Callable[[], list[int]]
    nodes: int = 1


@contextlib.contextmanager
def mosquitto_engine(workdir: Path) -> Iterator[Engine]:
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    try:
        yield Engine("mosquitto", [broker.url],
                     {"RENTGATE_MQTT_URL": broker.url, "RENTGATE_INGEST_SHARE_GROUP": SHARE_GROUP},
                     lambda: [pid] if (pid := broker.pid) is not None else [])
    finally:
        broker.stop()


@contextlib.contextmanager
def nats_engine(workdir: Path) -> Iterator[Engine]:
    from tests.services import NatsCluster

    cluster = NatsCluster(workdir / "nats", size=3)
    try:
        cluster.start()
        mqtt = [node.mqtt_url for node in cluster.nodes]

        def pids() -> list[int]:
            return [pid for node in cluster.nodes if (pid := node.pid) is not None]

        yield Engine("nats", mqtt,
                     {"RENTGATE_MQTT_URL": mqtt[0], "RENTGATE_INGEST_SOURCE": "jetstream",
                      "RENTGATE_NATS_URL": cluster.nats_url,
                      # Below the nodes' max_file_store (tests/services.py nats_config).
                      "RENTGATE_NATS_STREAM_MAX_BYTES": str(512 * 1024 * 1024)},
                     pids, nodes=len(cluster.nodes))
    finally:
        cluster.stop()


ENGINES: dict[str, Callable[[Path], contextlib.AbstractContextManager[Engine]]] = {
    "mosquitto": mosquitto_engine,
    "nats": nats_engine,
}


# --------------------------------------------------------------------------- workers


@dataclass
class Worker:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    cpu_start: float = 0.0


def start_worker(name: str, database_url: str, env_extra: dict[str, str], workdir: Path,
                 log_files: contextlib.ExitStack) -> Worker:
    port = free_port()
    log_path = workdir / f"{name}.log"
    out: IO[bytes] = log_files.enter_context(open(log_path, "ab"))
    env = dict(os.environ, RENTGATE_MQTT_CLIENT_ID=name, RENTGATE_LOG_LEVEL="WARNING", **env_extra)
    cmd = [sys.executable, "-m", "rentgate", "server", "--role", "ingest", "--database-url", database_url,
           "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True)
    return Worker(name, port, proc, log_path)


def wait_ready(worker: Worker, timeout: float = 60.0) -> None:
    """A worker is ready when its /healthz says the database and the broker are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise BenchError(f"{worker.name} exited with {worker.proc.returncode}:\n{_tail(worker.log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{worker.name} not ready after {timeout:g} s:\n{_tail(worker.log_path)}")


def stop_worker(worker: Worker, timeout: float = 30.0) -> None:
    if worker.proc.poll() is None:
        worker.proc.send_signal(signal.SIGTERM)
    try:
        worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait(5)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def upgrade(database_url: str) -> None:
    """Once, before the workers start: several processes migrating at once would race."""
    done = subprocess.run([sys.executable, "-m", "rentgate", "db", "upgrade", "--database-url", database_url],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"rentgate db upgrade failed:\n{done.stderr[-3000:]}")


def events_bytes(db: Any) -> int:
    """The events table with its indexes and TOAST, partitions included
    (a partitioned parent holds no rows of its own)."""
    import sqlalchemy as sa

    with db.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT pg_total_relation_size('events'::regclass) + COALESCE((SELECT sum(pg_total_relation_size("
            "inhrelid)) FROM pg_inherits WHERE inhparent = 'events'::regclass), 0)")).scalar_one())


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += process_cpu_s(pid)
    return total


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster (first line of its postmaster.pid) and its children:
    backends, WAL writer, checkpointer, autovacuum launcher (those that live
    through the run; an autovacuum worker that ends within it is not counted)."""
    try:
        root = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    found = [root]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == root:
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    workers: int
    events: int
    seconds: float
    worker_cpu_s: list[float]
    broker_cpu_s: float
    database_cpu_s: float
    lost: int
    duplicates: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        per_s = self.events / self.seconds if self.seconds else 0.0
        total_worker = sum(self.worker_cpu_s)
        return {
            "workers": self.workers,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(per_s),
            "worker_cpu_s": [round(c, 2) for c in self.worker_cpu_s],
            # CPU per 1,000 events: what sizing multiplies by the city's rate.
            "worker_cpu_ms_per_1k_events": round(total_worker / self.events * 1e6, 1),
            "broker_cpu_ms_per_1k_events": round(self.broker_cpu_s / self.events * 1e6, 1),
            "database_cpu_ms_per_1k_events": round(self.database_cpu_s / self.events * 1e6, 1),
            "lost": self.lost,
            "duplicates": self.duplicates,
            **self.extra,
        }


async def one_run(args: argparse.Namespace, engine: Engine, cluster: PostgresCluster, workers: int,
                  workdir: Path) -> RunResult:
    run_dir = workdir / f"{engine.name}-{workers}"
    run_dir.mkdir(parents=True, exist_ok=True)
    database_url = cluster.url(cluster.create_database(f"scale_{engine.name}_{workers}"))
    await asyncio.to_thread(upgrade, database_url)
    names = [f"bench-{PHASE}-{i}" for i in range(args.gateways)]
    per_gw = args.events // args.gateways
    total = per_gw * args.gateways
    progress("%s x%d: backlog of %d events in %d outboxes", engine.name, workers, total, args.gateways)
    for gw in names:
        await asyncio.to_thread(gws.build_backlog, PHASE, gw, run_dir, per_gw)
    from server.db.engine import create_engine

    db = create_engine(database_url)
    with contextlib.ExitStack() as logs:
        procs = [start_worker(f"rentgate-scale-{engine.name}-{workers}-{i}", database_url, engine.worker_env,
                              run_dir, logs) for i in range(workers)]
        try:
            for w in procs:
                await asyncio.to_thread(wait_ready, w)
            apps = [gws.make_app(gw, engine.gateway_urls[i % len(engine.gateway_urls)], run_dir, batch_max=500)
                    for i, gw in enumerate(names)]
            fleet = gws.Fleet(apps)
            for w in procs:
                w.cpu_start = process_cpu_s(w.proc.pid)
            broker0 = cpu_of(engine.pids())
            db_pids = postgres_pids(cluster)
            db0 = cpu_of(db_pids)
            started = time.perf_counter()
            await fleet.start()
            try:
                ended = await fleet.drained(1800)
            finally:
                await fleet.stop()
            worker_cpu = [process_cpu_s(w.proc.pid) - w.cpu_start for w in procs]
            broker_cpu = cpu_of(engine.pids()) - broker0
            db_cpu = cpu_of(db_pids) - db0
        finally:
            for w in procs:
                stop_worker(w)
    rows, distinct = count_stored(db, gws.credential_prefix(PHASE))
    size = events_bytes(db)
    db.dispose()
    cluster.drop_database(f"scale_{engine.name}_{workers}")
    result = RunResult(workers, total, ended - started, worker_cpu, broker_cpu, db_cpu,
                       lost=total - distinct, duplicates=rows - distinct,
                       extra={"database_bytes_per_event": round(size / rows) if rows else None})
    progress("%s x%d: %.0f events/s (%.1f s), worker CPU %s s, lost %d, duplicates %d", engine.name, workers,
             total / (ended - started), ended - started, [round(c, 1) for c in worker_cpu], result.lost,
             result.duplicates)
    return result


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"engines": {}}
    cluster = PostgresCluster()
    try:
        cluster.start()
        for name in args.engine_names:
            try:
                with ENGINES[name](workdir / name) as engine:
                    runs = [await one_run(args, engine, cluster, n, workdir / name) for n in args.worker_counts]
            except (ServiceError, ImportError, AttributeError) as exc:
                progress("%s: not run: %s", name, exc)
                out["engines"][name] = {"error": str(exc)}
                continue
            out["engines"][name] = {"nodes": engine.nodes,
                                    "runs": {str(r.workers): r.as_json() for r in runs}}
    finally:
        cluster.destroy()
    runs_all = [r for e in out["engines"].values() for r in e.get("runs", {}).values()]
    out.update(
        gateways=args.gateways, events=args.events, quick=args.quick,
        lost=sum(r["lost"] for r in runs_all), duplicates=sum(r["duplicates"] for r in runs_all),
        rentgate=__version__, python=platform.python_version(), cpus=len(os.sched_getaffinity(0)),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="rentgate-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(run(args, workdir))
        except (BenchError, ServiceError, TimeoutError) as exc:
            progress("failed: %s", exc)
            if args.json:
                print(json.dumps({"error": str(exc)}))
            return 1
    print_result(result, as_json=args.json)
    failed = any("error" in e for e in result["engines"].values())
    return 1 if failed or result["lost"] or result["duplicates"] else 0


if __name__ == "__main__":
    sys.exit(main())
