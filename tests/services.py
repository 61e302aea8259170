"""Real Mosquitto and PostgreSQL servers for tests, started from the system's
binaries on free ports in temporary directories.

Services already running on the machine (a Mosquitto on 1883, a PostgreSQL on
5432) are never used: their configuration and contents are not ours.
``tests/conftest.py`` turns these classes into fixtures.
"""

from __future__ import annotations

import glob
import os
import pwd
import queue
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, LiteralString, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

T = TypeVar("T")

REQUIRE_ENV = "RENTGATE_REQUIRE_SERVICES"


class ServiceError(Exception):
    """A test service could not be found, started or stopped; ``service`` says which."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class ServiceMissing(ServiceError):
    """The binary is not installed; ``hint`` says how to install it."""

    def __init__(self, service: str, hint: str) -> None:
        super().__init__(service, f"not found: {hint}")
        self.hint = hint


# --------------------------------------------------------------------------- polling helpers


# Ports handed out by free_port: below the kernel's ephemeral range, one block
# per xdist worker. A port picked now is often bound only later (a broker
# restarted on its port, a receiver brought up mid-test); the kernel's own
# pick (bind to 0) comes from the ephemeral range, where the other worker's
# picks and every outgoing connection's local port come from too, and could
# take it meanwhile. Here neither can.
_PORT_FLOOR = 20_000
_PORT_BLOCK = 2_000
# The pytest process that owns the blocks (tests/conftest.py sets it): a
# subprocess inherits the variable but not the record of ports handed out,
# so it takes the kernel's pick.
PORT_OWNER_ENV = "PYTEST_PORT_OWNER_PID"  # not RENTGATE_*: the server refuses settings it does not know
_handed_out: set[int] = set()
_port_lock = threading.Lock()
_port_random = random.Random()  # not the global one, which tests may seed


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _port_block() -> range | None:
    """This process's block (gw0, gw1, ... each its own, the main process the
    one after them), or None where the blocks would not all fit below the
    ephemeral range or this process does not own them."""
    if os.environ.get(PORT_OWNER_ENV) != str(os.getpid()):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
        index = int(worker[2:]) if worker.startswith("gw") else workers
    except ValueError:
        return None
    if not 0 <= index <= workers or _PORT_FLOOR + (workers + 1) * _PORT_BLOCK > _ephemeral_floor():
        return None
    start = _PORT_FLOOR + index * _PORT_BLOCK
    return range(start, start + _PORT_BLOCK)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now and that nothing else in the
    test run will be given: from this worker's block below the ephemeral
    range, never the same one twice in a process. Where there is no block
    (see _port_block) or it is used up, the kernel's pick."""
    block = _port_block()
    if block is not None:
        with _port_lock:
            offset = _port_random.randrange(len(block))
            for i in range(len(block)):
                port = block[(offset + i) % len(block)]
                if port not in _handed_out and _bindable(host, port):
                    _handed_out.add(port)
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        picked: int = sock.getsockname()[1]
        return picked


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.
    Raises AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_port(host: str, port: int, timeout: float) -> None:
    wait_for(lambda: port_open(host, port), timeout, what=f"{host}:{port} to accept connections")


def _wait_started(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, service: str,
                  log: Callable[[], str]) -> None:
    """Like wait_for, but fails at once with the service's log if it exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        code = proc.poll()
        if code is not None:
            raise ServiceError(service, f"exited with code {code} while starting:\n{log()[-3000:]}")
        if time.monotonic() >= deadline:
            raise ServiceError(service, f"not ready after {timeout:g} s:\n{log()[-3000:]}")
        time.sleep(0.02)


def _terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def find_binary(name: str, *fallback_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in fallback_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_chromium() -> str:
    """The Chromium the browser tests drive through Playwright."""
    found = find_binary("chromium", "/usr/bin") or find_binary("chromium-browser", "/usr/bin")
    if found is None:
        raise ServiceMissing("chromium", "apt-get install chromium")
    return found


# --------------------------------------------------------------------------- Mosquitto


def mosquitto_config(port: int, workdir: Path, *, run_as_root: bool, extra: str = "",
                     anonymous: bool = True) -> str:
    """A mosquitto.conf for one test broker: loopback only, anonymous unless
    told otherwise, a persistent store in ``workdir``, queue limits far above
    what a test sends (the default of 1000 queued messages drops QoS 1
    messages silently)."""
    lines = [
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'true' if anonymous else 'false'}",
        "persistence true",
        # Mosquitto appends the file name to this path as it is: keep the slash.
        f"persistence_location {workdir}/",
        "persistence_file mosquitto.db",
        "max_queued_messages 100000",
        "max_inflight_messages 0",
        # Nagle on the broker side stalls a QoS 1 pipe to a few hundred msg/s.
        "set_tcp_nodelay true",
        f"log_dest file {workdir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %H:%M:%S",
    ]
    if run_as_root:
        # Mosquitto 2 started as root drops to the user "mosquitto", which may
        # not exist and could not read this directory anyway.
        lines.append("user root")
    if extra:
        lines.append(extra.strip())
    return "\n".join(lines) + "\n"


class _BrokerProcess:
    """What a broker started from its binary shares (Mosquitto, a NATS node):
    its process, its stderr file beside its log in ``workdir``, and how it
    is stopped (SIGTERM: a clean shutdown, Mosquitto saving its persistent
    store) or killed (SIGKILL: a crash, whatever was not saved is lost)."""

    workdir: Path
    log_path: Path
    _proc: subprocess.Popen[bytes] | None
    _stderr: IO[bytes] | None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            _terminate(self._proc, signal.SIGTERM, timeout)
        self._close_stderr()

    def kill(self) -> None:
        if self._proc is not None:
            _terminate(self._proc, signal.SIGKILL, 5)
        self._close_stderr()

    def log_text(self) -> str:
        parts = []
        for path in (self.log_path, self.workdir / "stderr.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class Mosquitto(_BrokerProcess):
    """One Mosquitto process. ``stop()``/``start()`` keep the port, the
    configuration and the persistent store, like restarting a real broker."""

    service = "mosquitto"
    hint = "install the Debian package mosquitto"

    def __init__(self, workdir: Path, *, binary: str | None = None, port: int | None = None,
                 extra_config: str = "", dynsec: bool = False) -> None:
        """``dynsec``: run like a production fleet broker (docs/mosquitto.md):
        Mosquitto's dynamic security plugin decides every login and topic,
        nobody connects anonymously, and a second listener speaks TLS and
        wants a client certificate signed by a test gateway CA (see
        ``DynsecSetup``)."""
        found = binary or find_binary("mosquitto", "/usr/sbin", "/usr/local/sbin")
        if found is None:
            raise ServiceMissing(self.service, self.hint)
        self.binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.dynsec: DynsecSetup | None = DynsecSetup(workdir) if dynsec else None
        if self.dynsec is not None:
            extra_config = self.dynsec.config() + extra_config
        self.config_path.write_text(
            mosquitto_config(self.port, workdir, run_as_root=os.geteuid() == 0, extra=extra_config,
                             anonymous=self.dynsec is None)
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The plain listener, no login (anonymous unless ``dynsec``)."""
        return f"mqtt://{self.host}:{self.port}"

    def _need_dynsec(self) -> DynsecSetup:
        if self.dynsec is None:
            raise ServiceError(self.service, "started without dynsec=True")
        return self.dynsec

    @property
    def admin_url(self) -> str:
        """The dynamic security plugin's administrator (RENTGATE_BROKER_ADMIN_URL)."""
        d = self._need_dynsec()
        return f"mqtt://{d.admin_username}:{d.admin_password}@{self.host}:{self.port}"

    @property
    def server_url(self) -> str:
        """The server's own login on the plain listener (RENTGATE_MQTT_URL)."""
        d = self._need_dynsec()
        return f"mqtt://{SERVER_USERNAME}:{d.server_password}@{self.host}:{self.port}"

    @property
    def tls_port(self) -> int:
        return self._need_dynsec().tls_port

    @property
    def gateway_url(self) -> str:
        """Where gateways connect: TLS with a client certificate (RENTGATE_GATEWAY_MQTT_URL)."""
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            raise ServiceError(self.service, f"already running on port {self.port}")
        self._close_stderr()
        self._stderr = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            start_new_session=True,
        )
        _wait_started(self._proc, lambda: port_open(self.host, self.port), timeout, self.service, self.log_text)
        if self.dynsec is not None:
            wait_port(self.host, self.dynsec.tls_port, timeout)
            self.dynsec.provision(self)



# --------------------------------------------------------------------------- Mosquitto's dynamic security

DYNSEC_PLUGIN_NAME = "mosquitto_dynamic_security.so"
DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
DYNSEC_HINT = "install the Debian package mosquitto (2.0 or later: it ships mosquitto_dynamic_security.so)"
SERVER_USERNAME = "rentgate-server"
SERVER_ROLE = "rentgate-server"


def find_dynsec_plugin() -> str | None:
    """Mosquitto's dynamic security plugin: the Debian path on any
    architecture, else where a source build puts it."""
    override = os.environ.get("RENTGATE_DYNSEC_PLUGIN")
    candidates = ([override] if override else []) + sorted(glob.glob(f"/usr/lib/*/{DYNSEC_PLUGIN_NAME}")) + [
        f"/usr/lib/{DYNSEC_PLUGIN_NAME}", f"/usr/lib/mosquitto/{DYNSEC_PLUGIN_NAME}",
        f"/usr/local/lib/{DYNSEC_PLUGIN_NAME}", f"/usr/local/lib/mosquitto/{DYNSEC_PLUGIN_NAME}",
    ]
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    return None


def server_role_acls() -> list[dict[str, object]]:
    """What rentgate's server may do on a fleet broker: read every gateway's
    events, status and allowlist requests; write acks, configurations,
    allowlists and its own status (rentgate/wire.py; server/ingest,
    server/access/publisher.py, server/fleet). The same list as
    ``server.fleet.broker.SERVER_ACLS``; kept here too so that the broker the
    tests run is set up independently of the code under test."""
    root = "rentgate/v1"
    acls: list[dict[str, object]] = []
    for leaf in ("events", "status", "allowlist_request"):
        acls.append({"acltype": "subscribePattern", "topic": f"{root}/gw/+/{leaf}", "allow": True})
        acls.append({"acltype": "publishClientReceive", "topic": f"{root}/gw/+/{leaf}", "allow": True})
    for leaf in ("ack", "config", "allowlist", "allowlist_delta"):
        acls.append({"acltype": "publishClientSend", "topic": f"{root}/gw/+/{leaf}", "allow": True})
    acls.append({"acltype": "publishClientSend", "topic": f"{root}/server/status", "allow": True})
    return acls


class DynsecSetup:
    """What a Mosquitto started with ``dynsec=True`` adds: the plugin's
    JSON store made by ``mosquitto_ctrl dynsec init`` (an admin login), a
    gateway CA made by rentgate's own GatewayCa (so these tests exercise the
    CA gateways will really get), a broker certificate from it for 127.0.0.1,
    a TLS listener that requires a client certificate from that CA, and once
    started the server's login ``rentgate-server`` with its role."""

    def __init__(self, workdir: Path) -> None:
        plugin = find_dynsec_plugin()
        ctrl = find_binary("mosquitto_ctrl", "/usr/bin", "/usr/local/bin")
        if plugin is None or ctrl is None:
            raise ServiceMissing("mosquitto dynamic security", DYNSEC_HINT)
        from server.fleet.ca import GatewayCa

        self.plugin = plugin
        self.tls_port = free_port()
        self.admin_username = "admin"
        self.admin_password = uuid.uuid4().hex
        self.server_password = uuid.uuid4().hex
        self.store_path = workdir / "dynamic-security.json"
        self.ca_dir = workdir / "gateway-ca"
        self.ca = GatewayCa.create(self.ca_dir)
        self.ca_file = self.ca_dir / "ca.pem"
        cert_pem, key_pem = self.ca.issue_server_cert(["127.0.0.1", "localhost"])
        self.server_cert_file = workdir / "broker.pem"
        self.server_key_file = workdir / "broker.key"
        self.server_cert_file.write_text(cert_pem)
        self.server_key_file.write_text(key_pem)
        self.server_key_file.chmod(0o600)
        done = subprocess.run([ctrl, "dynsec", "init", str(self.store_path), self.admin_username,
                               self.admin_password], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ServiceError("mosquitto_ctrl", f"dynsec init failed: {done.stderr.decode(errors='replace')}")
        self.provisioned = False

    def config(self) -> str:
        # Listener options apply to the listener line above them; the plugin
        # and its file are global (per_listener_settings false).
        return "\n".join([
            f"plugin {self.plugin}",
            f"plugin_opt_config_file {self.store_path}",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.ca_file}",
            f"certfile {self.server_cert_file}",
            f"keyfile {self.server_key_file}",
            "require_certificate true",
            "tls_version tlsv1.2",
        ]) + "\n"

    def provision(self, broker: Mosquitto) -> None:
        """Once per store: the server's login and role, and nothing for
        anyone else by default (a restart keeps what the store holds)."""
        if self.provisioned:
            return
        self.command(broker, [
            {"command": "setDefaultACLAccess", "acls": [
                {"acltype": "publishClientSend", "allow": False},
                {"acltype": "publishClientReceive", "allow": False},
                {"acltype": "subscribe", "allow": False},
                {"acltype": "unsubscribe", "allow": True}]},
            {"command": "createRole", "rolename": SERVER_ROLE, "acls": server_role_acls()},
            {"command": "createClient", "username": SERVER_USERNAME, "password": self.server_password,
             "roles": [{"rolename": SERVER_ROLE}]},
        ])
        self.provisioned = True

    def command(self, broker: Mosquitto, commands: list[dict[str, object]],
                timeout: float = 10.0) -> list[dict[str, object]]:
        """Send dynamic security commands as the admin and return the
        responses; AssertionError naming the first that failed."""
        import json

        responses: queue.Queue[bytes] = queue.Queue()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dynsec-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(self.admin_username, self.admin_password)
        client.on_message = lambda _c, _u, msg: responses.put(bytes(msg.payload))
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        try:
            wait_for(client.is_connected, timeout, what="the dynsec admin to connect")
            client.subscribe(f"{DYNSEC_TOPIC}/response", 1)
            if not subscribed.wait(timeout):
                raise AssertionError("no SUBACK for the dynsec responses")
            client.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}), qos=1)
            try:
                answer = json.loads(responses.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"no dynsec response within {timeout:g} s") from None
        finally:
            client.disconnect()
            client.loop_stop()
        results: list[dict[str, object]] = answer["responses"]
        for result in results:
            if result.get("error"):
                raise AssertionError(f"dynsec {result.get('command')}: {result['error']}")
        return results


# --------------------------------------------------------------------------- PostgreSQL


def find_postgres_bindir() -> Path | None:
    """The directory holding initdb and postgres: from PATH, else the highest
    version under /usr/lib/postgresql (Debian keeps them off PATH)."""
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(os.path.realpath(initdb)).parent
        if (bindir / "postgres").exists():
            return bindir
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
    )
    for candidate in reversed(versions):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def postgres_os_user() -> str | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root.

    PostgreSQL refuses to run as root. Rather than depend on runuser/setpriv
    and their signal forwarding, subprocess switches user in the child before
    exec, so the pid we hold is postgres itself. The Debian package creates the
    ``postgres`` system user; ``nobody`` is the fallback elsewhere (postgres
    only needs to write its own temporary directory).
    """
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("RENTGATE_PG_OS_USER"), "postgres", "nobody"):
        if name:
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            return name
    raise ServiceError("postgresql", "running as root and no unprivileged user (postgres, nobody) exists")


class PostgresCluster:
    """A throwaway PostgreSQL cluster: trust auth, loopback TCP on a free
    port, its unix socket in its own directory, durability off for speed."""

    service = "postgresql"
    hint = "install the Debian package postgresql"
    superuser = "rentgate"

    def __init__(self, *, bindir: Path | None = None, port: int | None = None) -> None:
        found = bindir or find_postgres_bindir()
        if found is None:
            raise ServiceMissing(self.service, self.hint)
        self.bindir = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.os_user = postgres_os_user()
        # Not pytest's tmp_path: its parents are mode 0700 and root-owned, so an
        # unprivileged postgres could not reach its data directory.
        self.basedir = Path(tempfile.mkdtemp(prefix="rentgate-pg-"))
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.basedir, entry.pw_uid, entry.pw_gid)
        self.datadir = self.basedir / "data"
        self.log_path = self.basedir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._initdb()

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of ``dbname`` in this cluster."""
        return f"postgresql+psycopg://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        """libpq URL (for psycopg.connect) of ``dbname``."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            raise ServiceError(self.service, f"already running on port {self.port}")
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        settings = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.basedir),
            # Test data is disposable: skip every flush to disk.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        self._proc = self._spawn(cmd, stdout=self._log)
        _wait_started(self._proc, self._accepts_queries, timeout, self.service, self.log_text)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown: sessions are cut, not waited for."""
        if self._proc is not None:
            _terminate(self._proc, signal.SIGINT, timeout)
        self._close_log()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._admin("CREATE DATABASE {}", name)
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a test that leaked a connection must not fail the next one.
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ------------------------------------------------------------------ internals

    def _initdb(self) -> None:
        cmd = [
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
            "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync",
        ]
        with open(self.basedir / "initdb.log", "wb") as out:
            code = self._spawn(cmd, stdout=out).wait(120)
        if code != 0:
            text = (self.basedir / "initdb.log").read_text(errors="replace")
            raise ServiceError(self.service, f"initdb failed with code {code}:\n{text[-3000:]}")

    def _spawn(self, cmd: list[str], stdout: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=self.basedir,
            user=self.os_user,
            group=pwd.getpwnam(self.os_user).pw_gid if self.os_user else None,
            extra_groups=[] if self.os_user else None,
            start_new_session=True,
        )

    def _accepts_queries(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def _admin(self, template: LiteralString, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL(template).format(sql.Identifier(dbname)))

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------- MQTT probe


class MqttProbe:
    """A plain paho client for assertions about a broker: every call waits for
    the broker's answer (CONNACK, SUBACK, PUBACK) so tests need no sleeps."""

    def __init__(self, host: str, port: int, *, client_id: str | None = None, clean_session: bool = True,
                 will: tuple[str, bytes] | None = None, username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:8]}"
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  clean_session=clean_session)
        self.client.max_inflight_messages_set(1000)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        # The broker's answer to each CONNECT, and when a connection ended.
        self.connacks: queue.Queue[str] = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnected_at: float | None = None  # time.monotonic() of the first lost connection
        self.client.on_connect = lambda _c, _u, _f, reason, _p=None: self.connacks.put(str(reason))
        self.client.on_disconnect = lambda *_args: self._lost()

    def connect(self, timeout: float = 5.0) -> MqttProbe:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        wait_for(self.client.is_connected, timeout, what=f"{self.client_id} to connect to {self.host}:{self.port}")
        return self

    def _lost(self) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def subscribe_result(self, topic: str, qos: int = 1, timeout: float = 5.0) -> int:
        """Subscribe and return the broker's SUBACK code: the granted QoS, or
        128 (0x80) when the broker refused the subscription."""
        codes: queue.Queue[int] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, reasons, _p=None: codes.put(int(reasons[0].value))
        self.client.subscribe(topic, qos)
        try:
            return codes.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic} within {timeout:g} s") from None

    def try_connect(self, timeout: float = 5.0) -> str:
        """Connect once without retrying and say how it went: "Success", the
        broker's refusal ("Not authorized", ...), or "no CONNACK: ..." when
        the connection ended before an answer (a TLS handshake the broker
        refused). Stops the client's loop unless it connected."""
        self.client.reconnect_delay_set(60, 60)
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            return f"no CONNACK: {exc}"
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self.connacks.get(timeout=0.05)
            except queue.Empty:
                if self.disconnected.is_set() and not self.client.is_connected():
                    self.client.loop_stop()
                    return "no CONNACK: connection closed"
                continue
            if answer != "Success":
                self.client.loop_stop()
            return answer
        self.client.loop_stop()
        return "no CONNACK: timed out"

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> None:
        acked = threading.Event()
        self.client.on_subscribe = lambda *_args: acked.set()
        self.client.subscribe(topic, qos)
        if not acked.wait(timeout):
            raise AssertionError(f"no SUBACK for {topic} within {timeout:g} s")

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout: float = 5.0) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"{topic}: not acknowledged within {timeout:g} s")

    def expect(self, timeout: float = 5.0) -> tuple[str, bytes, bool]:
        """The next message as (topic, payload, retained)."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout:g} s") from None
        return msg.topic, bytes(msg.payload), bool(msg.retain)

    def close(self) -> None:
        """A clean DISCONNECT: the broker discards the will."""
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, as a crashed gateway does:
        the broker publishes the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------- NATS with JetStream (docs/clustering.md)
#
# One block, kept together: the clustered engine's test servers. Each node has
# a client port (NATS protocol, JetStream), a route port (the cluster), an
# MQTT port (what gateways and the server's MQTT link speak) and a monitoring
# port (its /healthz says when JetStream is ready). A machine's own NATS on
# 4222 is never used.

NATS_HINT = "install the Debian package nats-server (2.9 or later: it has the MQTT listener)"


def nats_config(*, name: str, port: int, mqtt_port: int, http_port: int, store_dir: Path, log_file: Path,
                cluster_name: str | None = None, cluster_port: int | None = None,
                routes: list[int] | None = None) -> str:
    """A nats-server.conf for one test node, loopback only. In a cluster the
    MQTT sessions and retained messages are kept on three nodes
    (``stream_replicas``), like the events stream, so that losing a node
    loses none of them."""
    clustered = cluster_name is not None
    lines = [
        f"server_name: {name}",
        f"listen: 127.0.0.1:{port}",
        f"http: 127.0.0.1:{http_port}",
        f'log_file: "{log_file}"',
        # A test stream is small; the defaults take a share of the machine's
        # memory and disk, which a shared CI machine should keep.
        f'jetstream {{ store_dir: "{store_dir}", max_memory_store: 64MB, max_file_store: 1GB }}',
        f"mqtt {{ listen: 127.0.0.1:{mqtt_port}"
        + (", stream_replicas: 3, consumer_replicas: 3" if clustered else "") + " }",
    ]
    if clustered:
        assert cluster_port is not None and routes is not None
        route_urls = ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes)
        lines.append(f"cluster {{ name: {cluster_name}, listen: 127.0.0.1:{cluster_port}, routes: [{route_urls}] }}")
    return "\n".join(lines) + "\n"


class NatsServer(_BrokerProcess):
    """One nats-server process with JetStream and an MQTT listener.
    ``stop()``/``start()`` and ``kill()``/``start()`` keep its ports,
    configuration and JetStream store, like restarting a real node."""

    service = "nats-server"
    hint = NATS_HINT

    def __init__(self, workdir: Path, *, name: str = "n1", binary: str | None = None,
                 cluster_name: str | None = None, cluster_port: int | None = None,
                 routes: list[int] | None = None, port: int | None = None, mqtt_port: int | None = None) -> None:
        found = binary or find_binary("nats-server", "/usr/sbin", "/usr/local/sbin", "/usr/bin")
        if found is None:
            raise ServiceMissing(self.service, self.hint)
        self.binary = found
        self.name = name
        self.clustered = cluster_name is not None
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.mqtt_port = mqtt_port or free_port()
        self.http_port = free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_dir = workdir / "jetstream"
        self.config_path = workdir / "nats-server.conf"
        self.log_path = workdir / "nats-server.log"
        self.config_path.write_text(nats_config(
            name=name, port=self.port, mqtt_port=self.mqtt_port, http_port=self.http_port,
            store_dir=self.store_dir, log_file=self.log_path, cluster_name=cluster_name,
            cluster_port=cluster_port, routes=routes))
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The NATS protocol (RENTGATE_NATS_URL)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def mqtt_url(self) -> str:
        """The MQTT listener (a gateway's mqtt_url, RENTGATE_MQTT_URL)."""
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting (a cluster starts its nodes together)."""
        if self.running:
            raise ServiceError(self.service, f"{self.name} already running on port {self.port}")
        self._close_stderr()
        self._stderr = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                      stdout=self._stderr, stderr=self._stderr, start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers healthy and an MQTT client is accepted
        (the MQTT listener opens before JetStream can keep its sessions)."""
        assert self._proc is not None, "spawn() first"
        _wait_started(self._proc, lambda: self.healthy() and self.mqtt_accepts(), timeout,
                      f"{self.service} {self.name}", self.log_text)

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def healthy(self) -> bool:
        """JetStream is on and, in a cluster, this node knows the meta leader.
        Not the full /healthz: in 2.9 it stays failing after a restart while
        the node's old MQTT consumers are orphaned, though the node serves."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/jsz", timeout=1) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if not isinstance(doc, dict) or doc.get("disabled"):
            return False
        meta = doc.get("meta_cluster")
        return self.clustered is False or (isinstance(meta, dict) and bool(meta.get("leader")))

    def mqtt_accepts(self) -> bool:
        """One MQTT CONNECT with a clean session, answered with success."""
        probe = MqttProbe(self.host, self.mqtt_port, client_id=f"ready-{uuid.uuid4().hex[:8]}")
        answer = probe.try_connect(timeout=2.0)
        if answer == "Success":
            probe.close()
        return answer == "Success"



class NatsCluster:
    """``size`` NATS nodes routed into one JetStream cluster (three by default:
    the smallest that keeps a quorum when one node is lost), each with its own
    MQTT listener."""

    def __init__(self, workdir: Path, size: int = 3, *, binary: str | None = None) -> None:
        route_ports = [free_port() for _ in range(size)]
        self.name = f"rg-{uuid.uuid4().hex[:6]}"
        self.nodes = [
            NatsServer(workdir / f"n{i + 1}", name=f"n{i + 1}", binary=binary, cluster_name=self.name,
                       cluster_port=route_ports[i], routes=route_ports)
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def nats_url(self) -> str:
        """Every node, as RENTGATE_NATS_URL takes them."""
        return ",".join(self.urls)

    def start(self, timeout: float = 45.0) -> None:
        # Together: a node waits for its routes before JetStream elects a leader.
        for node in self.nodes:
            if not node.running:
                node.spawn()
        for node in self.nodes:
            node.wait_ready(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def log_text(self) -> str:
        return "".join(f"----- {node.name} -----\n{node.log_text()[-3000:]}\n" for node in self.nodes)
