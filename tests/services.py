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
import shutil
import signal
import socket
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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


def mosquitto_config(port: int, workdir: Path, *, run_as_root: bool, extra: str = "") -> str:
    """A mosquitto.conf for one test broker: loopback only, anonymous, a
    persistent store in ``workdir``, queue limits far above what a test sends
    (the default of 1000 queued messages drops QoS 1 messages silently)."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
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


class Mosquitto:
    """One Mosquitto process. ``stop()``/``start()`` keep the port, the
    configuration and the persistent store, like restarting a real broker."""

    service = "mosquitto"
    hint = "install the Debian package mosquitto"

    def __init__(self, workdir: Path, *, binary: str | None = None, port: int | None = None,
                 extra_config: str = "") -> None:
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
        self.config_path.write_text(
            mosquitto_config(self.port, workdir, run_as_root=os.geteuid() == 0, extra=extra_config)
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

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

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistent store and exits."""
        if self._proc is not None:
            _terminate(self._proc, signal.SIGTERM, timeout)
        self._close_stderr()

    def kill(self) -> None:
        """SIGKILL: a crash; whatever was not yet saved is lost."""
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
                 will: tuple[str, bytes] | None = None) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:8]}"
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  clean_session=clean_session)
        self.client.max_inflight_messages_set(1000)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def connect(self, timeout: float = 5.0) -> MqttProbe:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        wait_for(self.client.is_connected, timeout, what=f"{self.client_id} to connect to {self.host}:{self.port}")
        return self

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
