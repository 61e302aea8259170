"""Patrol benchmark: the coordinator's unit page (what one scan of a door
plate opens) under 100 concurrent phones on a city of 100,000 units and
300,000 people, the public scan page, and plate rendering.

``python bench/patrol.py --json``; ``--quick`` for a smoke test (1,000 units,
8 clients, well under a minute). Progress goes to stderr, one JSON object is
the last stdout line.
See docs/bench-patrol.md for what is generated and what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import print_result, process_cpu_s
from bench.patrol_data import City, Sizes, generate, progress
from bench.patrol_load import Request, run_load, summary, timing_values
from bench.stack import REPO, BenchError, _stop_process, throwaway_postgres
from server.auth.sessions import SESSION_COOKIE
from tests.services import free_port

log = logging.getLogger("bench.patrol")
TARGET_P99_MS = 50.0
UNIT_PATH = "/c/units/{unit_id}"
QUICK = {"units": 1000, "clients": 8, "requests": 400, "public_requests": 200, "plates": 12, "profile_units": 30}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--quick", action="store_true", help="a few hundred units and a few clients, for a smoke test")
    p.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    p.add_argument("--units", type=int, default=100_000)
    p.add_argument("--people", type=int, help="persons, each with one registration (default: 3 per unit)")
    p.add_argument("--events-per-card", type=int, default=10,
                   help="door events of every card over the last 30 days (the page shows a unit's latest)")
    p.add_argument("--clients", type=int, default=100, help="concurrent phones")
    p.add_argument("--requests", type=int, default=20_000, help="unit pages measured (after the warm-up)")
    p.add_argument("--warmup", type=int, help="unit pages requested first and not measured (default: a tenth)")
    p.add_argument("--public-requests", type=int, default=5_000, help="public scan pages measured (0: skip)")
    p.add_argument("--plates", type=int, default=500, help="plates rendered to one PDF (0: skip)")
    p.add_argument("--profile-units", type=int, default=300,
                   help="unit pages read one at a time in-process, every query timed (0: skip)")
    p.add_argument("--unit-path", default=UNIT_PATH,
                   help="the page measured, {unit_id} filled in (to compare another page under the same load)")
    p.add_argument("--server-threads", type=int,
                   help="the server's asyncio.to_thread pool size (default: Python's; an experiment)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, help="keep the server log and the plates here")
    args = p.parse_args(argv)
    if args.quick:
        # Smaller defaults; options given explicitly still win.
        for name, value in QUICK.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if args.people is None:
        args.people = 3 * args.units
    if args.warmup is None:
        args.warmup = max(args.clients * 2, args.requests // 10)
    return args


# ---------------------------------------------------------------- server


@contextlib.contextmanager
def running_server(url: str, workdir: Path, keys: dict[str, Path], threads: int | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """bench/patrol_server.py (the real application without MQTT ingest) as a
    subprocess, so that it has a GIL of its own; stopped on the way out."""
    port = free_port()
    env = dict(os.environ, RENTGATE_DATABASE_URL=url, RENTGATE_PII_KEY_FILE=str(keys["pii"]),
               RENTGATE_PLATE_KEY_FILE=str(keys["plates"]), RENTGATE_MEDIA_DIR=str(workdir / "media"),
               RENTGATE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    # BENCH_PROFILE_SERVER=file.pstats runs the server under cProfile, as bench/stack.py does.
    profile = os.environ.get("BENCH_PROFILE_SERVER")
    cmd = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "bench.patrol_server",
           "--port", str(port), *(["--threads", str(threads)] if threads else [])]
    log_path = workdir / "server.log"
    with open(log_path, "ab") as log_file:
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=log_file, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_http(base + "/healthz", server, log_path)
            yield base, server
        finally:
            _stop_process(server, "server")


def _wait_http(url: str, server: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own loopback server
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            raise BenchError(f"{url} answered {exc.code}: {exc.read()[:300]!r}") from exc
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"server did not start (exit code {server.poll()}):\n"
                             f"{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _get(url: str, token: str | None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": "text/html", **(
        {"Cookie": f"{SESSION_COOKIE}={token}"} if token else {})})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, resp.read().decode(errors="replace"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# ---------------------------------------------------------------- phases


def unit_requests(city: City, n: int, rng: random.Random, path: str = UNIT_PATH) -> list[Request]:
    """Random units across the whole city, each asked for by its own grid's
    coordinator (who may work it), every 20th by the administrator."""
    out = []
    for i in range(n):
        unit_id = rng.choice(city.unit_ids)
        token = city.admin_token if i % 20 == 0 else city.grid_tokens[city.unit_grid[unit_id]]
        out.append(Request(path.format(unit_id=unit_id), token))
    return out


def check_page(base: str, path: str, token: str | None, what: str) -> dict[str, str]:
    """One request before the load: fail early and clearly if the page is missing or broken."""
    status, body, headers = _get(base + path, token)
    if status != 200:
        raise BenchError(f"{what} {path} answered {status}: {body[:500]}")
    return headers


async def scan_phase(args: argparse.Namespace, base: str, city: City, server_pid: int,
                     rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = check_page(base, args.unit_path.format(unit_id=city.unit_ids[0]), city.admin_token,
                         "coordinator unit page")
    if "Server-Timing" not in headers:
        progress("warning: the unit page sends no Server-Timing header; only client times are reported")
    # Other work on the machine inflates every figure: say how busy it was.
    out["loadavg_1m_before"] = round(os.getloadavg()[0], 2)
    progress("warm-up: %s unit pages, %s clients", args.warmup, args.clients)
    warm = await run_load(base, unit_requests(city, args.warmup, rng, args.unit_path), args.clients)
    if warm.errors:
        raise BenchError(f"warm-up: {warm.errors} answers were not 200, e.g. {warm.failures}")
    progress("measuring: %s unit pages, %s clients", args.requests, args.clients)
    cpu0, client0 = process_cpu_s(server_pid), process_cpu_s(os.getpid())
    result = await run_load(base, unit_requests(city, args.requests, rng, args.unit_path), args.clients)
    out["server_cpu_s_scan"] = round(process_cpu_s(server_pid) - cpu0, 2)
    out["server_cpu_ms_per_page"] = round(out["server_cpu_s_scan"] * 1000 / max(1, len(result.samples)), 2)
    out["client_cpu_s_scan"] = round(process_cpu_s(os.getpid()) - client0, 2)
    samples = result.samples
    out.update(summary("scan_page_ms", timing_values(samples, "db", "render")))
    out.update(summary("scan_page_db_ms", timing_values(samples, "db")))
    out.update(summary("scan_page_render_ms", timing_values(samples, "render")))
    out.update(summary("scan_page_total_ms", timing_values(samples, "total")))
    out.update(summary("client_ms", [s.client_ms for s in samples if s.status == 200]))
    out["requests"] = len(samples)
    out["requests_per_s"] = round(result.per_s, 1)
    out["errors"] = result.errors
    if result.failures:
        out["error_examples"] = result.failures
    progress("unit page: p50 %s ms, p99 %s ms (db+render); total p99 %s ms; client p99 %s ms; %s/s; %s errors",
             out["scan_page_ms_p50"], out["scan_page_ms_p99"], out["scan_page_total_ms_p99"], out["client_ms_p99"],
             out["requests_per_s"], out["errors"])
    return out


async def public_phase(args: argparse.Namespace, base: str, city: City, rng: random.Random) -> dict[str, Any]:
    """The page a tenant's phone opens from a plate: no login."""
    if args.public_requests <= 0 or not city.plate_tokens:
        return {}
    tokens = list(city.plate_tokens.values())
    try:
        check_page(base, "/p/" + tokens[0], None, "public scan page")
    except BenchError as exc:
        progress("public page skipped: %s", exc)
        return {"public_page_error": str(exc)[:300]}
    warm = [Request("/p/" + rng.choice(tokens)) for _ in range(max(args.clients, args.public_requests // 10))]
    await run_load(base, warm, args.clients)
    result = await run_load(base, [Request("/p/" + rng.choice(tokens)) for _ in range(args.public_requests)],
                            args.clients)
    out: dict[str, Any] = {"public_requests": len(result.samples), "public_errors": result.errors,
                           "public_requests_per_s": round(result.per_s, 1)}
    # Server time when the page sends Server-Timing, else what the client waited.
    server = timing_values(result.samples, "db", "render") or timing_values(result.samples, "total")
    out["public_page_ms_source"] = "server" if server else "client"
    out.update(summary("public_page_ms", server or [s.client_ms for s in result.samples if s.status == 200]))
    out.update(summary("public_client_ms", [s.client_ms for s in result.samples if s.status == 200]))
    progress("public page: p50 %s ms, p99 %s ms (%s); client p99 %s ms; %s errors", out["public_page_ms_p50"],
             out["public_page_ms_p99"], out["public_page_ms_source"], out["public_client_ms_p99"], out["public_errors"])
    return out


def write_keys(workdir: Path) -> dict[str, Path]:
    from server.plates.keys import rotate
    from server.registry.pii import write_key_file

    keys = {"pii": workdir / "pii.key", "plates": workdir / "plate-keys"}
    if not keys["pii"].exists():
        write_key_file(keys["pii"])
    if not keys["plates"].exists():
        rotate(keys["plates"])
    return keys


async def run(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    from server.db import migrate
    from server.db.engine import create_engine
    from server.plates.keys import read_keyring
    from server.registry.pii import read_key_file

    sizes = Sizes(units=args.units, people=args.people, events_per_card=args.events_per_card)
    out: dict[str, Any] = {"units": sizes.units, "people": sizes.people, "buildings": sizes.buildings,
                           "grids": sizes.grids, "events_per_card": sizes.events_per_card, "clients": args.clients,
                           "quick": args.quick,
                           "unit_path": args.unit_path, "server_threads": args.server_threads}
    keys = write_keys(workdir)
    keyring = read_keyring(keys["plates"])
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        migrate.upgrade(engine)
        out["migrate_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        city, steps = generate(engine, sizes, read_key_file(keys["pii"]), (keyring.current_id, keyring.current_key),
                               datetime.now(UTC).replace(microsecond=0), seed=args.seed)
        out["generate_s"] = round(time.perf_counter() - started, 1)
        out["generate_steps_s"] = steps
        out["rows"] = city.counts
        progress("generated in %.1fs: %s", out["generate_s"], city.counts)
        rng = random.Random(args.seed)
        started = time.perf_counter()
        with running_server(url, workdir, keys, args.server_threads) as (base, server):
            out["server_start_s"] = round(time.perf_counter() - started, 2)
            out.update(await scan_phase(args, base, city, server.pid, rng))
            out.update(await public_phase(args, base, city, rng))
        if args.profile_units > 0:
            from bench.patrol_profile import profile_unit_view

            out.update(profile_unit_view(engine, city.unit_ids, args.profile_units, rng, workdir))
        if args.plates > 0:
            from bench.patrol_plates import plate_figures

            out.update(plate_figures(engine, city, keyring, args.plates, workdir, rng))
    finally:
        engine.dispose()
    out["targets_met"] = {"scan_page_ms_p99<=50": (out.get("scan_page_ms_p99") or 1e9) <= TARGET_P99_MS,
                          "errors==0": out.get("errors") == 0}
    out.update(_versions())
    return out


def _versions() -> dict[str, Any]:
    import aiohttp
    import sqlalchemy

    from rentgate import __version__

    return {"rentgate": __version__, "python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "sqlalchemy": sqlalchemy.__version__, "cpus": len(os.sched_getaffinity(0)),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="rentgate-patrol-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with throwaway_postgres(args.database_url, "bench") as url:
                result = asyncio.run(run(args, url, workdir))
        except Exception as exc:  # noqa: BLE001 - a bench reports its failure as JSON too
            log.exception("bench failed")
            if args.json:
                print(json.dumps({"error": str(exc)[:2000]}))
            return 1
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

