"""Runs the real parts of rentgate as real processes for end-to-end tests.

Each part is ``python -m rentgate ...`` in its own session with its own log
file in the test's tmp dir. :class:`System` owns them: it kills every child
at teardown even when the test failed, and every assertion helper here puts
the tail of each log into its failure message so a CI failure can be read
without rerunning it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import sqlalchemy as sa

from firmware_sim.building import BuildingSim
from firmware_sim.config import BuildingConfig, DoorConfig, NoiseConfig, SwipesConfig, TenantsConfig
from tests.services import free_port, port_open

T = TypeVar("T")

GATEWAY_ID = "it-bldg-0001"
DOORS = ("door-a", "door-b")
LOG_TAIL_CHARS = 2500

Read = tuple[str, str]
"""``(door, credential_value)`` of one card read."""


class HarnessError(AssertionError):
    """A part did not come up, died, or a wait ran out; the message carries the logs."""


# --------------------------------------------------------------------------- processes


class Proc:
    """One ``rentgate`` subprocess that can be stopped, killed, frozen and restarted."""

    def __init__(self, system: System, name: str, args: list[str], ready: Callable[[], bool]) -> None:
        self.system = system
        self.name = name
        self.args = args
        self.ready = ready
        self.log_path = system.workdir / "logs" / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        self._close_log()
        self.starts += 1
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._log.write(f"===== start #{self.starts}: rentgate {' '.join(self.args)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "rentgate", *self.args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            # Our own signals only: a Ctrl-C on pytest must not reach the children first.
            start_new_session=True,
        )
        if wait:
            self.system.wait_for(self.ready, timeout, f"{self.name} to be ready")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the graceful shutdown an operator's ``systemctl stop`` does."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash or a power cut of this process."""
        return self._end(signal.SIGKILL, 10.0)

    def restart(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        self.stop()
        self.start(wait=wait, timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP: the process is frozen (a stalled VM, a long GC), its sockets stay open."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGCONT)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        if not self.log_path.exists():
            return "<no log>"
        return self.log_path.read_text(errors="replace")[-chars:]

    def _end(self, sig: int, timeout: float) -> int | None:
        proc = self.popen
        if proc is None:
            return None
        if proc.poll() is None:
            if sig != signal.SIGKILL:
                proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                self._close_log()
                raise HarnessError(f"{self.name} ignored signal {sig} for {timeout:g} s; killed it")
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Server(Proc):
    def __init__(self, system: System, *, database_url: str, mqtt_url: str) -> None:
        self.port = free_port()
        self.database_url = database_url
        super().__init__(system, "server", [
            "server", "--upgrade", "--database-url", database_url, "--mqtt-url", mqtt_url,
            "--host", "127.0.0.1", "--port", str(self.port),
        ], ready=self.healthy)
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """An administrator's bearer token, created in the server's database on
        first use (the server has migrated it by then)."""
        if self._token is None:
            self._token = admin_token(self.database_url)
        return self._token

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> tuple[int, Any] | None:
        """``(status, JSON body)``, or None when nothing answers."""
        headers = {} if path in ("/healthz", "/metrics") else self.auth_headers()
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers),
                                        timeout=5) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def healthy(self) -> bool:
        answer = self.get("/healthz")
        return answer is not None and answer[0] == 200

    def wait_gateway(self, gateway_id: str = GATEWAY_ID, timeout: float = 10.0) -> dict[str, Any]:
        """The gateway as ``GET /api/v1/gateways`` lists it, once it is listed."""
        found: list[dict[str, Any]] = []

        def listed() -> bool:
            gw = self.gateway(gateway_id)
            if gw is not None:
                found.append(gw)
            return gw is not None

        self.system.wait_for(listed, timeout, f"gateway {gateway_id} in /api/v1/gateways")
        return found[-1]

    def gateway(self, gateway_id: str = GATEWAY_ID) -> dict[str, Any] | None:
        answer = self.get("/api/v1/gateways")
        if answer is None or answer[0] != 200:
            return None
        return next((dict(g) for g in answer[1]["gateways"] if g["id"] == gateway_id), None)


class Gateway(Proc):
    def __init__(self, system: System, *, mqtt_url: str, ports: dict[str, str], ack_timeout_s: float) -> None:
        self.data_dir = system.workdir / "gateway"
        self.outbox_path = self.data_dir / "outbox.sqlite3"
        devices = "".join(
            f'\n[[devices]]\ntype = "em4100"\nid = "reader-{door}"\ndoor = "{door}"\nport = "{port}"\n'
            for door, port in ports.items()
        )
        config = system.workdir / "gateway.toml"
        config.write_text(
            f'gateway_id = "{GATEWAY_ID}"\nmqtt_url = "{mqtt_url}"\ndata_dir = "{self.data_dir}"\n'
            f"heartbeat_s = 1\n\n[outbox]\nack_timeout_s = {ack_timeout_s}\n{devices}"
        )
        self.devices = [f"reader-{door}" for door in ports]
        super().__init__(system, "gateway", ["gateway", "--config", str(config)], ready=self._devices_opened)
        self._online_before: Counter[str] = Counter()

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        self._online_before = self.system.device_online_events()
        super().start(wait=wait, timeout=timeout)

    def _devices_opened(self) -> bool:
        # The reader reports itself online once its port is open (and pyserial
        # has flushed what was buffered): only then does a swipe reach the gateway.
        now = self.system.device_online_events()
        return all(now[d] > self._online_before[d] for d in self.devices)

    def outbox_seqs(self, kind: str | None = None) -> set[int]:
        """Sequence numbers still in the gateway's outbox (read beside the running gateway: WAL allows it)."""
        if not self.outbox_path.exists():
            return set()
        db = sqlite3.connect(f"file:{self.outbox_path}?mode=ro", uri=True, timeout=5)
        try:
            if kind is None:
                rows = db.execute("SELECT seq FROM events").fetchall()
            else:
                rows = db.execute("SELECT seq FROM events WHERE json LIKE ?", (f'%"kind":"{kind}"%',)).fetchall()
        except sqlite3.OperationalError:
            return set()  # not created yet
        finally:
            db.close()
        return {int(r[0]) for r in rows}


class Broker(Proc):
    """``rentgate broker``: the embedded amqtt broker."""

    def __init__(self, system: System) -> None:
        self.port = free_port()
        super().__init__(system, "broker", ["broker", "--host", "127.0.0.1", "--port", str(self.port)],
                         ready=lambda: port_open("127.0.0.1", self.port))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------- the system


class System:
    """Every process and the building of one test; ``close()`` kills what is left."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.extra_logs: dict[str, Callable[[], str]] = {}
        self.sims: list[BuildingSim] = []
        self._engine: sa.Engine | None = None
        self._database_url: str | None = None
        self.server: Server | None = None
        self.gateway: Gateway | None = None

    # ------------------------------------------------------------------ parts

    def add_broker(self) -> Broker:
        broker = Broker(self)
        self.procs.append(broker)
        return broker

    def add_server(self, *, database_url: str, mqtt_url: str) -> Server:
        self.server = Server(self, database_url=database_url, mqtt_url=mqtt_url)
        self._database_url = database_url
        self.procs.append(self.server)
        return self.server

    def add_gateway(self, *, mqtt_url: str, sim: BuildingSim, ack_timeout_s: float = 15.0) -> Gateway:
        self.gateway = Gateway(self, mqtt_url=mqtt_url, ports=sim.ports(), ack_timeout_s=ack_timeout_s)
        self.procs.append(self.gateway)
        return self.gateway

    def add_building(self, config: BuildingConfig) -> BuildingSim:
        sim = BuildingSim(config)
        self.sims.append(sim)
        return sim

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            assert self._database_url is not None, "add a server first"
            self._engine = sa.create_engine(self._database_url)
        return self._engine

    def close(self) -> None:
        """Teardown: stop the building, kill every child still running (no grace: the test is over)."""
        for sim in self.sims:
            sim.close()
        for proc in self.procs:
            if proc.popen is not None and proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(10)
            proc._close_log()
        if self._engine is not None:
            self._engine.dispose()

    # ------------------------------------------------------------------ observations

    def logs(self) -> str:
        parts = [f"----- {p.name} ({p.log_path}) -----\n{p.log_tail()}" for p in self.procs]
        parts += [f"----- {name} -----\n{text()[-LOG_TAIL_CHARS:]}" for name, text in self.extra_logs.items()]
        return "\n".join(parts)

    def fail(self, message: str) -> HarnessError:
        return HarnessError(f"{message}\n\n{self.logs()}")

    def check(self, condition: object, message: str) -> None:
        """``assert`` with every process's log tail in the failure message."""
        if not condition:
            raise self.fail(message)

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """Poll until ``predicate`` is truthy; fail with every log if a part dies or time runs out.
        A part counts as dead only if it was running and exited on its own."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.procs:
                if proc.popen is not None and proc.popen.returncode is None and proc.popen.poll() is not None:
                    raise self.fail(f"{proc.name} exited with code {proc.popen.returncode} "
                                    f"while waiting for {what}")
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise self.fail(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.02)

    def device_online_events(self) -> Counter[str]:
        """How many times each device reported its port open, as stored by the server."""
        query = sa.select(sa.text("device, data")).select_from(sa.text("events")).where(
            sa.text("gateway_id = :gw AND kind = 'device_status'")
        )
        counts: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for device, data in conn.execute(query, {"gw": GATEWAY_ID}):
                doc = json.loads(data) if isinstance(data, str) else data
                if doc.get("online"):
                    counts[device] += 1
        return counts

    def stored_reads(self) -> list[Read]:
        return stored_reads(self.engine, GATEWAY_ID)

    def stored_read_seqs(self) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT seq FROM events WHERE gateway_id = :gw AND kind = 'card_read'"),
                                {"gw": GATEWAY_ID})
            return {int(r[0]) for r in rows}

    def open_gaps(self) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT first_seq, last_seq FROM seq_gaps WHERE gateway_id = :gw AND state = 'open'"
            ), {"gw": GATEWAY_ID})
            return [(int(a), int(b)) for a, b in rows]

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT topic, gateway_id, seq, reason, payload_size FROM dead_letters ORDER BY id"
            ))
            return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------------ end-of-test checks

    def wait_delivered(self, sim: BuildingSim, timeout: float = 60.0) -> list[Read]:
        """Wait for the building to finish and for the server to hold every read
        it should; then return what is stored (the caller asserts exactly-once)."""
        if not sim.wait(timeout):
            raise self.fail(f"the building did not finish its swipes within {timeout:g} s")
        expected = len(sim.stats().expected_reads)
        self.wait_for(lambda: len(self.stored_reads()) >= expected, timeout,
                      f"{expected} card reads in the database")
        gateway = self.gateway
        assert gateway is not None, "add a gateway first"
        # Drained: nothing is left to resend, so no late duplicate can still be
        # on its way when the caller compares.
        self.wait_for(lambda: not gateway.outbox_seqs(), timeout, "the gateway's outbox to drain")
        return self.stored_reads()

    def assert_exactly_once(self, expected: Iterable[Read], stored: Iterable[Read]) -> None:
        try:
            assert_exactly_once(expected, stored)
        except AssertionError as exc:
            raise self.fail(str(exc)) from None


@contextmanager
def running_system(workdir: Path) -> Iterator[System]:
    system = System(workdir)
    try:
        yield system
    finally:
        system.close()


# --------------------------------------------------------------------------- the building


def building_config(root: Path, *, total: int, pattern: str = "burst", noisy: bool = False,
                    tenants: int = 24, seed: int = 11, rate_per_min: float = 240.0,
                    burst_gap_s: float = 0.15) -> BuildingConfig:
    """Two doors with stable links under ``root``; swipes start as soon as :meth:`BuildingSim.start`
    is called (the tests start it once the gateway has its ports open)."""
    noise = NoiseConfig(bad_checksum=0.03, split=0.2, garbage=0.03, extra_repeats=0.2) if noisy else NoiseConfig()
    return BuildingConfig(
        name="integration building",
        seed=seed,
        doors=[DoorConfig(id=door, link=str(root / door)) for door in DOORS],
        tenants=TenantsConfig(count=tenants),
        swipes=SwipesConfig.model_validate({
            "pattern": pattern, "total": total, "rate_per_min": rate_per_min, "burst_gap_s": burst_gap_s,
            "repeats": 3, "repeat_interval_s": 0.05,
        }),
        noise=noise,
    )


@contextmanager
def readers_paused(sim: BuildingSim) -> Iterator[None]:
    """No swipe is in progress while inside: every simulated reader is held
    between two presentations (tenants wait at the door).

    Used around a gateway crash: a swipe whose first frame was stored before
    the kill and whose repeats are read after the restart would be two reads
    to any gateway (its debounce memory died with it), and pyserial flushes
    whatever the pty buffered while nobody had it open. Neither is about
    delivery, so the crash is placed between swipes.
    """
    with sim.paused():
        yield


def pty_drained(sim: BuildingSim) -> bool:
    return all(door.reader.unread_bytes == 0 for door in sim.stats().doors.values())


# --------------------------------------------------------------------------- assertions


def stored_reads(engine_or_url: sa.Engine | str, gateway_id: str = GATEWAY_ID) -> list[Read]:
    """``(door, credential_value)`` of every ``card_read`` the server stored for ``gateway_id``."""
    engine = sa.create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT door, credential_value FROM events"
                " WHERE gateway_id = :gw AND kind = 'card_read' ORDER BY seq"
            ), {"gw": gateway_id})
            return [(str(door), str(value)) for door, value in rows]
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def assert_exactly_once(expected_reads: Iterable[Read], stored_reads: Iterable[Read]) -> None:
    """Same multiset; otherwise say which reads are missing and which are extra."""
    expected, stored = Counter(expected_reads), Counter(stored_reads)
    if expected == stored:
        return
    missing, extra = expected - stored, stored - expected
    lines = [
        f"stored reads differ from the swipes: {sum(expected.values())} expected, "
        f"{sum(stored.values())} stored, {sum(missing.values())} missing, {sum(extra.values())} extra",
    ]
    lines += [f"  missing x{n}: door={door} card={card}" for (door, card), n in sorted(missing.items())]
    lines += [f"  extra   x{n}: door={door} card={card}" for (door, card), n in sorted(extra.items())]
    raise AssertionError("\n".join(lines))


# --------------------------------------------------------------------------- access control


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set while a child is spawned (children inherit it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def admin_token(database_url: str) -> str:
    """Creates an administrator and returns a bearer token for it."""
    from datetime import UTC, datetime

    from server.auth.sessions import start_session
    from server.auth.users import create_user
    from server.db.engine import create_engine

    engine = create_engine(database_url)
    try:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            user_id = create_user(conn, now, username=f"harness-{os.getpid()}-{time.monotonic_ns()}",
                                  password=os.urandom(12).hex(), role="admin", display_name="test harness")
            return start_session(conn, now, user_id, kind="token", ttl=None, label="harness")
    finally:
        engine.dispose()


class AccessServer(Server):
    """A :class:`Server` that signs allowlists with a key of the test's own,
    keeps identity numbers under another (the registry API needs one on
    PostgreSQL), and is driven through its HTTP API like a landlord's tool would."""

    def __init__(self, system: System, *, database_url: str, mqtt_url: str) -> None:
        super().__init__(system, database_url=database_url, mqtt_url=mqtt_url)
        from rentgate import signing
        from server.registry.pii import write_key_file

        self.key_file = system.workdir / "allowlist-key.pem"
        self.key_file.write_text(signing.private_key_pem(signing.generate_private_key()))
        self.pii_key_file = system.workdir / "pii.key"
        write_key_file(self.pii_key_file)

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        with _environment(RENTGATE_ALLOWLIST_KEY_FILE=str(self.key_file),
                          RENTGATE_PII_KEY_FILE=str(self.pii_key_file)):
            super().start(wait=wait, timeout=timeout)

    def call(self, method: str, path: str, body: object = None, *, expect: int | None = None) -> Any:
        """The JSON answer of ``method path``; fails with every log if the status is not ``expect``
        (any 2xx when None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **self.auth_headers()})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        answer = json.loads(raw or b"null")
        ok = status == expect if expect is not None else 200 <= status < 300
        self.system.check(ok, f"{method} {path} {body!r} answered {status}: {answer}")
        return answer

    def public_keys(self) -> dict[str, str]:
        """What a gateway's ``[access] public_keys`` should hold."""
        return dict(self.call("GET", "/api/v1/allowlist-keys")["keys"])


class AccessGateway(Gateway):
    """A :class:`Gateway` with one OSDP line (readers ``{reader id: door}`` at
    addresses 1, 2, ...) and an ``[access]`` table: it decides at the door."""

    def __init__(self, system: System, *, mqtt_url: str, port: str, readers: dict[str, str],
                 public_keys: dict[str, str], ack_timeout_s: float = 5.0, unlock_pulse_ms: int = 300,
                 held_open_s: float = 30.0) -> None:
        self.data_dir = system.workdir / "gateway"
        self.outbox_path = self.data_dir / "outbox.sqlite3"
        self.allowlist_path = self.data_dir / "allowlist.sqlite3"
        keys = ", ".join(f'"{key_id}" = "{b64}"' for key_id, b64 in public_keys.items())
        reader_tables = "".join(
            f'\n[[devices.readers]]\nid = "{reader}"\ndoor = "{door}"\naddress = {address}\n'
            for address, (reader, door) in enumerate(readers.items(), start=1)
        )
        config = system.workdir / "gateway.toml"
        config.write_text(
            f'gateway_id = "{GATEWAY_ID}"\nmqtt_url = "{mqtt_url}"\ndata_dir = "{self.data_dir}"\n'
            f"heartbeat_s = 1\n\n[outbox]\nack_timeout_s = {ack_timeout_s}\n\n"
            f"[access]\npublic_keys = {{ {keys} }}\nunlock_pulse_ms = {unlock_pulse_ms}\n"
            f"held_open_s = {held_open_s}\n\n"
            f'[[devices]]\ntype = "osdp"\nid = "osdp-line-1"\nport = "{port}"\nchannel_id = 1\n{reader_tables}'
        )
        self.devices = list(readers)
        Proc.__init__(self, system, "gateway", ["gateway", "--config", str(config)], ready=self._devices_opened)
        self._online_before = Counter()

    def allowlist_version(self) -> int:
        """The version of the allowlist the gateway holds on disk (0: none yet)."""
        if not self.allowlist_path.exists():
            return 0
        db = sqlite3.connect(f"file:{self.allowlist_path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        except sqlite3.OperationalError:
            return 0  # not created yet
        finally:
            db.close()
        return int(row[0]) if row else 0

    def wait_allowlist(self, version: int, timeout: float = 10.0) -> float:
        """Wait until the gateway holds ``version`` or newer; the seconds it took."""
        started = time.monotonic()
        self.system.wait_for(lambda: self.allowlist_version() >= version, timeout,
                             f"allowlist version {version} at the gateway")
        return time.monotonic() - started


def add_access_server(system: System, *, database_url: str, mqtt_url: str) -> AccessServer:
    server = AccessServer(system, database_url=database_url, mqtt_url=mqtt_url)
    system.server = server
    system._database_url = database_url
    system.procs.append(server)
    return server


def add_access_gateway(system: System, *, mqtt_url: str, port: str, readers: dict[str, str],
                       public_keys: dict[str, str], **options: Any) -> AccessGateway:
    gateway = AccessGateway(system, mqtt_url=mqtt_url, port=port, readers=readers, public_keys=public_keys,
                            **options)
    system.gateway = gateway
    system.procs.append(gateway)
    return gateway


Decided = tuple[str, str | None, str | None]
"""``(credential_value, decision, reason)`` of one stored card read."""


def stored_decisions(engine: sa.Engine, gateway_id: str = GATEWAY_ID) -> list[Decided]:
    """Every ``card_read`` the server stored for ``gateway_id``, in sequence order, with its decision."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT credential_value, data FROM events WHERE gateway_id = :gw AND kind = 'card_read' ORDER BY seq"
        ), {"gw": gateway_id})
        decided: list[Decided] = []
        for value, data in rows:
            doc = json.loads(data) if isinstance(data, str) else data
            decided.append((str(value), doc.get("decision"), doc.get("reason")))
        return decided


def stored_door_states(engine: sa.Engine, gateway_id: str = GATEWAY_ID) -> list[tuple[str | None, str]]:
    """``(door, state)`` of every ``door_state`` event stored for ``gateway_id``, in sequence order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT door, data FROM events WHERE gateway_id = :gw AND kind = 'door_state' ORDER BY seq"
        ), {"gw": gateway_id})
        return [(door, str((json.loads(d) if isinstance(d, str) else d)["state"])) for door, d in rows]
