"""Fleet benchmark: enrolment, configuration on many gateways, rollback, revocation.

``python bench/fleet.py --json`` starts a real Mosquitto with the dynamic
security plugin and a TLS listener that wants client certificates from the
gateway CA (tests/services.py), the rentgate server as a subprocess on SQLite
(or ``--database postgresql``), and enrols real gateways through the real path:

- ``enroll_s``: the landlord's code is made, then ``rentgate gateway enroll``
  and ``rentgate gateway --config`` run as the installer would type them (two
  subprocesses, interpreter start-up included), until the landlord's view of
  the enrolment (``GET /api/v1/enrolments/{id}``) says online.
- ``config_apply_s``: one rollout to every gateway (share 1.0, ``--gateways``,
  100 by default, most of them run by ``--workers`` processes of 25 or so
  gateways each); from the POST until the server has each gateway's status
  saying it runs the new version (so the health gate, ``--gate-s``, is inside).
- ``rollback_s``: a configuration whose broker address is a closed port; from
  the PUT until the server hears the gateway say it rolled back (the gateway
  must get back onto the broker to say it, so this is "back on the last good
  one and reachable").
- ``revoke_cutoff_s``: from the revoke request until the broker refuses the
  gateway's own login (its live connection is dropped in the same step).

Targets (issue 14): enrolment ≤ 10 s, configuration on 100 gateways ≤ 30 s,
rollback ≤ gate + 10 s, revocation ≤ 2 s. Progress goes to stderr; with
``--json`` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (bench, tests.services, rentgate).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from bench.measure import percentile as _percentile
from tests.services import Mosquitto, PostgresCluster, free_port, wait_for

log = logging.getLogger("bench.fleet")
REPO = Path(__file__).resolve().parent.parent
TARGETS = {"enroll_s_p99": 10.0, "config_apply_s_p99": 30.0, "revoke_cutoff_s": 2.0}
POLL_S = 0.05


def percentile(values: list[float], pct: float) -> float:
    found = _percentile(values, pct)
    if found is None:
        raise BenchError("nothing measured")
    return found


class BenchError(Exception):
    """The benchmark could not run; the message says which part failed."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--gateways", type=int, default=100, help="gateways in the fleet (configuration phase)")
    p.add_argument("--enrol-samples", type=int, default=10,
                   help="enrolments timed through the real command line (part of the fleet)")
    p.add_argument("--workers", type=int, default=4, help="processes that run the rest of the fleet")
    p.add_argument("--gate-s", type=float, default=5.0, help="the health gate of the new configurations")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    p.add_argument("--worker", nargs="+", metavar="SETTINGS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.gateways, args.enrol_samples, args.workers = 6, 2, 1
    if not 1 <= args.enrol_samples <= args.gateways:
        p.error("--enrol-samples must be between 1 and --gateways")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    return args


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    broker: Mosquitto
    database_url: str
    base_url: str
    server: subprocess.Popen[bytes]
    engine: sa.Engine
    landlord_token: str = ""
    admin_token: str = ""
    building_ids: list[int] = field(default_factory=list)


@contextlib.contextmanager
def running_stack(workdir: Path, database: str) -> Iterator[Stack]:
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(workdir / "mosquitto", dynsec=True)
        broker.start()
        stack.callback(broker.stop)
        assert broker.dynsec is not None
        if database == "postgresql":
            cluster = PostgresCluster()
            stack.callback(cluster.destroy)
            cluster.start()
            url = cluster.url(cluster.create_database("fleet"))
        else:
            url = f"sqlite:///{workdir / 'server.sqlite3'}"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        allowlist_key = workdir / "allowlist.pem"
        from rentgate import signing

        allowlist_key.write_text(signing.private_key_pem(signing.generate_private_key()))
        env = dict(
            os.environ,
            RENTGATE_MQTT_CLIENT_ID="rentgate-bench-fleet",
            RENTGATE_BROKER_ADMIN_URL=broker.admin_url,
            RENTGATE_GATEWAY_MQTT_URL=broker.gateway_url,
            RENTGATE_GATEWAY_CA_DIR=str(broker.dynsec.ca_dir),
            RENTGATE_ALLOWLIST_KEY_FILE=str(allowlist_key),
            RENTGATE_PUBLIC_URL=base_url,
            RENTGATE_MEDIA_DIR=str(workdir / "media"),
            # One installer enrolling a whole fleet from one address.
            RENTGATE_ENROL_ATTEMPTS_PER_ADDRESS="10000",
            RENTGATE_ENROL_ATTEMPTS_PER_MINUTE="10000",
        )
        for name in ("RENTGATE_PII_KEY_FILE", "RENTGATE_PLATE_KEY_FILE", "RENTGATE_AUDIT_KEY_FILE",
                     "RENTGATE_POLICE_SIGNING_KEY_FILE"):
            if database == "postgresql":
                env[name] = str(_key_file(workdir, name))
        log_file = stack.enter_context(open(workdir / "server.log", "ab"))
        cmd = [sys.executable, "-m", "rentgate", "server", "--upgrade", "--database-url", url,
               "--mqtt-url", broker.server_url, "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=log_file, start_new_session=True)
        stack.callback(_stop, server)
        try:
            wait_for(lambda: _http_ok(base_url + "/healthz") or server.poll() is not None, 60,
                     what="the server to answer")
        except Exception as exc:
            raise BenchError(f"the server did not start: see {workdir / 'server.log'}") from exc
        if server.poll() is not None:
            raise BenchError(f"the server stopped at start: {(workdir / 'server.log').read_text()[-2000:]}")
        from server.db.engine import create_engine

        engine = create_engine(url)
        stack.callback(engine.dispose)
        yield Stack(broker, url, base_url, server, engine)


def _key_file(workdir: Path, name: str) -> Path:
    path = workdir / (name.lower() + ".key")
    if name == "RENTGATE_PII_KEY_FILE":
        import base64

        path.write_text(base64.b64encode(os.urandom(32)).decode())
    elif name == "RENTGATE_PLATE_KEY_FILE":
        subprocess.run([sys.executable, "-m", "rentgate", "keys", "plates", "--rotate", "--file", str(path)],
                       cwd=REPO, check=True, capture_output=True)
    else:
        from rentgate import signing

        path.write_text(signing.private_key_pem(signing.generate_private_key()))
    return path


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def call(stack: Stack, method: str, path: str, token: str, body: Any = None, expect: int = 200) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(stack.base_url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    if status != expect:
        raise BenchError(f"{method} {path}: {status} {text[:300]!r}")
    return json.loads(text) if text else None


def seed(stack: Stack, buildings: int) -> None:
    """A landlord with ``buildings`` buildings (a code per building may be live
    at most 5 at a time) and an administrator, with API tokens."""
    from server.auth.sessions import start_session
    from server.auth.users import create_user
    from server.db.models import buildings as buildings_t

    now = datetime.now(UTC)
    with stack.engine.begin() as conn:
        landlord = create_user(conn, now, username="bench-landlord", password="bench-pw-1", role="landlord",
                               display_name="Bench landlord")
        admin = create_user(conn, now, username="bench-admin", password="bench-pw-1", role="admin",
                            display_name="Bench admin")
        stack.landlord_token = start_session(conn, now, landlord, kind="token", ttl=None, label="bench")
        stack.admin_token = start_session(conn, now, admin, kind="token", ttl=None, label="bench")
        for i in range(buildings):
            stack.building_ids.append(int(conn.execute(
                sa.insert(buildings_t).values(name=f"Bench building {i + 1}", created_at=now,
                                              landlord_user_id=landlord).returning(buildings_t.c.id)).scalar_one()))


# --------------------------------------------------------------------------- phases


@dataclass
class Fleet:
    folders: dict[str, Path] = field(default_factory=dict)  # gateway id -> its folder
    cli_gateways: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


def new_code(stack: Stack, building: int) -> dict[str, Any]:
    made: dict[str, Any] = call(stack, "POST", f"/api/v1/buildings/{building}/enrolments", stack.landlord_token,
                                expect=201)
    return made


def timed_enrolments(stack: Stack, fleet: Fleet, workdir: Path, samples: int, logs: list[IO[bytes]]) -> list[float]:
    """Through the real command line, one at a time: code → online."""
    times = []
    for i in range(samples):
        made = new_code(stack, stack.building_ids[i % len(stack.building_ids)])
        folder = workdir / "gateways" / f"cli-{i}"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "rentgate", "--lang", "en", "gateway", "enroll", made["code"],
                               "--server", stack.base_url, "--dir", str(folder), "--json"],
                              cwd=REPO, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BenchError(f"gateway enroll failed: {done.stderr.decode(errors='replace')[-1500:]}")
        gateway_id = json.loads(done.stdout.decode().strip().splitlines()[-1])["gateway_id"]
        log_file = open(workdir / f"gateway-cli-{i}.log", "ab")  # noqa: SIM115 - closed at the end
        logs.append(log_file)
        fleet.cli_gateways[gateway_id] = subprocess.Popen(
            [sys.executable, "-m", "rentgate", "gateway", "--config", str(folder / "gateway.toml")], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
        fleet.folders[gateway_id] = folder
        deadline = started + 60
        while True:
            state = call(stack, "GET", f"/api/v1/enrolments/{made['enrolment']}", stack.landlord_token)["state"]
            if state == "online":
                break
            if time.monotonic() > deadline:
                raise BenchError(f"enrolment {i + 1} not online after 60 s (state {state})")
            time.sleep(POLL_S)
        times.append(time.monotonic() - started)
        log.info("enrolment %d/%d: %.2f s", i + 1, samples, times[-1])
    return times


def enrol_quietly(stack: Stack, fleet: Fleet, workdir: Path, count: int) -> list[str]:
    """The rest of the fleet, through the same enrolment code path in-process."""
    from gateway.enrol.flow import Options, enrol

    made_ids = []
    for i in range(count):
        made = new_code(stack, stack.building_ids[i % len(stack.building_ids)])
        folder = workdir / "gateways" / f"w-{i}"
        result = enrol(Options(code=made["code"], folder=folder, server=stack.base_url), lambda _text: None)
        fleet.folders[result.gateway_id] = folder
        made_ids.append(result.gateway_id)
    return made_ids


def start_workers(fleet: Fleet, gateway_ids: list[str], workers: int, workdir: Path,
                  logs: list[IO[bytes]]) -> None:
    share = math.ceil(len(gateway_ids) / workers) if gateway_ids else 0
    for w in range(workers):
        mine = gateway_ids[w * share:(w + 1) * share]
        if not mine:
            continue
        log_file = open(workdir / f"worker-{w}.log", "ab")  # noqa: SIM115 - closed at the end
        logs.append(log_file)
        fleet.workers.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker",
             *[str(fleet.folders[g] / "gateway.toml") for g in mine]],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True))


def online_count(stack: Stack, gateway_ids: list[str]) -> int:
    from server.db.models import gateways

    with stack.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            gateways.c.id.in_(gateway_ids), gateways.c.online.is_(True))).scalar_one())


def config_rollout(stack: Stack, gateway_ids: list[str], gate_s: float) -> tuple[list[float], float]:
    """Every gateway gets a new version in one rollout; per gateway the time
    until its status says it runs that version."""
    from server.db.models import gateway_configs, gateways

    started = time.monotonic()
    rollout = call(stack, "POST", "/api/v1/fleet/rollouts", stack.admin_token, expect=201, body={
        "changes": {"heartbeat_s": 7}, "gateways": gateway_ids, "share": 1.0, "gate_s": gate_s,
        "comment": "bench: heartbeat every 7 s"})
    with stack.engine.connect() as conn:
        wanted: dict[str, int] = {str(gw): int(v) for gw, v in conn.execute(
            sa.select(gateway_configs.c.gateway_id, gateway_configs.c.version).where(
                gateway_configs.c.rollout_id == rollout["id"])).all()}
    if len(wanted) != len(gateway_ids):
        raise BenchError(f"the rollout made {len(wanted)} versions for {len(gateway_ids)} gateways")
    seen: dict[str, float] = {}
    deadline = started + 120 + gate_s
    while len(seen) < len(wanted):
        with stack.engine.connect() as conn:
            rows = conn.execute(sa.select(gateways.c.id, gateways.c.config_version, gateways.c.config_state).where(
                gateways.c.id.in_([g for g in wanted if g not in seen]))).all()
        now = time.monotonic()
        for gw, version, state in rows:
            if version is not None and version >= wanted[gw] and state == "applied":
                seen[gw] = now - started
        if time.monotonic() > deadline:
            raise BenchError(f"{len(wanted) - len(seen)} gateways did not apply the rollout within "
                             f"{deadline - started:.0f} s")
        time.sleep(POLL_S * 2)
    return sorted(seen.values()), max(seen.values())


def rollback(stack: Stack, gateway_id: str, gate_s: float) -> float:
    from server.db.models import gateways

    started = time.monotonic()
    # Moving the broker is an administrator's change (server/fleet/configs.py ADMIN_ONLY_KEYS).
    made = call(stack, "PUT", f"/api/v1/gateways/{gateway_id}/config", stack.admin_token, expect=201, body={
        "settings": {"broker_url": f"mqtts://127.0.0.1:{free_port()}"}, "gate_s": gate_s,
        "comment": "bench: a broker address that answers nothing"})
    version = made["version"]
    deadline = started + gate_s + 60
    while True:
        with stack.engine.connect() as conn:
            row = conn.execute(sa.select(gateways.c.config_attempted, gateways.c.config_state, gateways.c.online)
                               .where(gateways.c.id == gateway_id)).one()
        if row.config_attempted == version and row.config_state == "rolled_back" and row.online:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise BenchError(f"no rollback heard within {deadline - started:.0f} s: {tuple(row)}")
        time.sleep(POLL_S)


def revoke(stack: Stack, gateway_id: str, folder: Path) -> tuple[float, float]:
    """From the revoke request until the broker refuses the gateway's login."""
    password = (folder / "secrets" / "mqtt_password").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    ctx.load_cert_chain(str(folder / "gateway.crt"), str(folder / "secrets" / "gateway.key"))
    if not _login_answer(stack.broker, gateway_id, password, ctx) == 0:
        raise BenchError("the gateway's own login is refused before the revocation")
    started = time.monotonic()
    call(stack, "POST", f"/api/v1/gateways/{gateway_id}/revoke", stack.landlord_token)
    answered = time.monotonic() - started
    while _login_answer(stack.broker, gateway_id, password, ctx) == 0:
        if time.monotonic() - started > 30:
            raise BenchError("the broker still accepts the revoked gateway after 30 s")
        time.sleep(POLL_S)
    return time.monotonic() - started, answered


def _login_answer(broker: Mosquitto, gateway_id: str, password: str, ctx: ssl.SSLContext) -> int:
    """The broker's CONNACK code for this login (a probe client id, so the
    running gateway is not kicked off by the test itself)."""
    answered = threading.Event()
    code: list[int] = []

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        code.append(int(reason.value) if hasattr(reason, "value") else int(reason))
        answered.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"rentgate-gw-{gateway_id}")
    client.username_pw_set(gateway_id, password)
    client.tls_set_context(ctx)
    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.tls_port, keepalive=10)
    except OSError:
        return -1
    client.loop_start()
    try:
        if not answered.wait(5):
            return -1
    finally:
        client.disconnect()
        client.loop_stop()
    return code[0]


# --------------------------------------------------------------------------- worker mode


def _stop_all(runners: list[Any]) -> None:
    for runner in runners:
        runner.stop()


def run_worker(settings_files: list[str]) -> int:
    """Runs several gateways' runners in one process until SIGTERM."""
    from gateway.remote.local import load_local
    from gateway.remote.runner import Runner

    async def main() -> None:
        runners = [Runner(load_local(path)) for path in settings_files]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_all, runners)
        async with asyncio.TaskGroup() as tg:
            for i, runner in enumerate(runners):
                tg.create_task(runner.run(), name=f"gateway-{i}")

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    logs: list[IO[bytes]] = []
    fleet = Fleet()
    try:
        with running_stack(workdir, args.database) as stack:
            seed(stack, buildings=max(1, math.ceil(args.gateways / 20)))
            log.info("enrolling %d gateways through the command line, one at a time", args.enrol_samples)
            enrol_times = timed_enrolments(stack, fleet, workdir, args.enrol_samples, logs)
            rest = args.gateways - args.enrol_samples
            log.info("enrolling %d more gateways for the fleet", rest)
            quiet_ids = enrol_quietly(stack, fleet, workdir, rest)
            start_workers(fleet, quiet_ids, args.workers, workdir, logs)
            all_ids = list(fleet.folders)
            wait_for(lambda: online_count(stack, all_ids) == len(all_ids) or
                     any(w.poll() is not None for w in fleet.workers), 120, what="the whole fleet online")
            if any(w.poll() is not None for w in fleet.workers):
                raise BenchError(f"a worker stopped: see {workdir}/worker-*.log")
            log.info("%d gateways online; one rollout to all of them (gate %.0f s)", len(all_ids), args.gate_s)
            apply_times, apply_all = config_rollout(stack, all_ids, args.gate_s)
            target = quiet_ids[0] if quiet_ids else all_ids[-1]
            log.info("a configuration that cannot reach the broker, on %s", target)
            rollback_s = rollback(stack, target, args.gate_s)
            victim = next(iter(fleet.cli_gateways))
            log.info("revoking %s", victim)
            revoke_s, revoke_answer_s = revoke(stack, victim, fleet.folders[victim])
            result = {
                "bench": "fleet",
                "database": args.database,
                "gateways": len(all_ids),
                "workers": len(fleet.workers),
                "gate_s": args.gate_s,
                "enroll_samples": len(enrol_times),
                "enroll_s_p50": round(percentile(enrol_times, 50), 3),
                "enroll_s_p99": round(percentile(enrol_times, 99), 3),
                "enroll_s_max": round(max(enrol_times), 3),
                "config_apply_s_p50": round(percentile(apply_times, 50), 3),
                "config_apply_s_p99": round(percentile(apply_times, 99), 3),
                "config_apply_all_s": round(apply_all, 3),
                "rollback_s": round(rollback_s, 3),
                "rollback_target_s": args.gate_s + 10,
                "revoke_cutoff_s": round(revoke_s, 3),
                "revoke_answer_s": round(revoke_answer_s, 3),
            }
            result["targets"] = {**TARGETS, "rollback_s": args.gate_s + 10}
            result["met"] = {name: result[name] <= limit for name, limit in result["targets"].items()}
            result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
            return result
    finally:
        for proc in [*fleet.workers, *fleet.cli_gateways.values()]:
            _stop(proc)
        for f in logs:
            f.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="rentgate-fleet-") as tmp:
        try:
            result = run(args, Path(tmp))
        except BenchError as exc:
            print(f"bench/fleet.py: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
