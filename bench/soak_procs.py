"""The processes a soak runs and kills: PostgreSQL, rentgate server processes
by role, and soak gateways (bench/soak_gateway.py). Mosquitto is
``tests.services.Mosquitto`` as it is (its ``kill()`` is a SIGKILL).

Every child runs in a session of its own, so a Ctrl-C on the soak reaches
the soak only, and a kill of its process group takes its children with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.services import PostgresCluster, free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


class ChaosPostgres(PostgresCluster):
    """A throwaway cluster the soak can crash.

    ``kill()`` SIGKILLs the postmaster's whole process group (every backend
    with it, as the OOM killer or a power cut would; a postmaster killed alone
    leaves backends that keep the shared memory and block the restart). The
    test cluster turns ``fsync`` off, which a process kill does not care about
    (the page cache survives it), but also ``synchronous_commit``, which it
    does: a commit would then return before its WAL left PostgreSQL's shared
    memory, and a kill would lose events the server had already acknowledged.
    :meth:`make_durable` turns it back on for the soak's database.
    """

    kills = 0

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self._close_log()
        self.kills += 1

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def make_durable(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(dbname)))


def server_supports_roles() -> bool:
    """True once ``rentgate server --help`` offers ``--role`` (issue 15's
    ingest workers); until then the soak runs one ``all`` process."""
    done = subprocess.run([sys.executable, "-m", "rentgate", "server", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return "--role" in done.stdout


class ServerProc:
    """One ``rentgate server`` process of one role; restarted with the same
    port and MQTT client id, as a supervisor would."""

    def __init__(self, name: str, role: str | None, *, database_url: str, mqtt_url: str, logdir: Path,
                 share_group: str | None) -> None:
        self.name = name
        self.kind = "ingest" if role in (None, "all", "ingest") else role
        self.role = role
        self.port = free_port()
        self.database_url = database_url
        self.mqtt_url = mqtt_url
        self.share_group = share_group
        self.log_path = logdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self._log: IO[bytes] | None = None

    @property
    def serves_pages(self) -> bool:
        return self.role in (None, "all", "web")

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.running and self.popen is not None else None

    def start(self, *, upgrade: bool = False) -> None:
        if self.running:
            return
        self._close_log()
        self.incarnation += 1
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        cmd = [sys.executable, "-m", "rentgate", "server", *(["--upgrade"] if upgrade else []),
               "--database-url", self.database_url, "--mqtt-url", self.mqtt_url,
               "--host", "127.0.0.1", "--port", str(self.port), *(["--role", self.role] if self.role else [])]
        self._log.write(f"===== soak start #{self.incarnation}: {' '.join(cmd[1:])}\n".encode())
        self._log.flush()
        env = dict(os.environ, RENTGATE_MQTT_CLIENT_ID=f"rentgate-{self.name}")
        if self.share_group:
            env["RENTGATE_INGEST_SHARE_GROUP"] = self.share_group
        self.popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=self._log, start_new_session=True)

    def kill(self) -> None:
        self._end(signal.SIGKILL, 10)

    def stop(self) -> None:
        self._end(signal.SIGTERM, 30)

    def healthy(self) -> bool:
        """Alive, and ``/healthz`` (which every role serves) says 200: its
        database and broker reachable, its ingest committing."""
        if not self.running:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=3) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def died(self) -> int | None:
        """The exit code if it exited on its own (not killed by the soak)."""
        return self.popen.poll() if self.popen is not None else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def _end(self, sig: int, timeout: float) -> None:
        proc = self.popen
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored signal %d for %g s; killing it", self.name, sig, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class GatewaySpec:
    gateway_id: str
    rate: float
    burst_size: int
    burst_every: float


@dataclass
class GatewayProc:
    """One soak gateway process; ``status`` is its last JSON line."""

    spec: GatewaySpec
    mqtt_url: str
    data_dir: Path
    logdir: Path
    seed: int
    incarnation: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float = 0.0
    proc: asyncio.subprocess.Process | None = None
    load_stopped: bool = False
    _reader: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.gateway_id

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    @property
    def depth(self) -> int | None:
        value = self.status.get("depth") if self.running else None
        return int(value) if value is not None else None

    async def start(self) -> None:
        if self.running:
            return
        self.incarnation += 1
        self.status = {}
        s = self.spec
        cmd = [sys.executable, str(REPO / "bench" / "soak_gateway.py"), "--gateway-id", s.gateway_id,
               "--mqtt-url", self.mqtt_url, "--data-dir", str(self.data_dir), "--incarnation", str(self.incarnation),
               "--rate", str(s.rate), "--burst-size", str(s.burst_size), "--burst-every", str(s.burst_every),
               "--seed", str(self.seed), *(["--no-load"] if self.load_stopped else [])]
        with open(self.logdir / f"{s.gateway_id}.log", "ab") as log_file:
            log_file.write(f"===== soak start #{self.incarnation}\n".encode())
            log_file.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                start_new_session=True, limit=1 << 20)
        self._reader = asyncio.create_task(self._read(self.proc), name=f"read-{s.gateway_id}")

    async def wait_ready(self, timeout: float) -> None:
        """Until its first status line (outbox open, app running)."""
        deadline = time.monotonic() + timeout
        while not self.status:
            if not self.running:
                raise RuntimeError(f"gateway {self.name} exited with {self.proc.returncode if self.proc else None}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway {self.name} gave no status within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            if proc is self.proc:
                self.status = status
                self.status_at = time.monotonic()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop_load(self) -> None:
        """SIGUSR1: no more reads; a restart from now on comes up without load."""
        self.load_stopped = True
        self.signal(signal.SIGUSR1)

    async def kill(self) -> None:
        await self._end(signal.SIGKILL, 10)

    async def stop(self) -> None:
        await self._end(signal.SIGTERM, 30)

    async def _end(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            self.signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        self.status = {}

    def kill_now(self) -> None:
        """Last resort on the way out (no loop needed)."""
        self.signal(signal.SIGKILL)
