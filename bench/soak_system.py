"""Everything one soak runs, brought up together and taken down together:
Mosquitto, PostgreSQL, the rentgate server processes, one proxy and one
gateway process per simulated building. :meth:`System.close` stops and
removes all of it, whatever state the soak left it in.

The fault operations here are the mechanics (kill, wait, start again); when
and on whom is bench/soak_chaos.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.soak_procs import REPO, ChaosPostgres, GatewayProc, GatewaySpec, ServerProc, server_supports_roles
from bench.soak_proxy import ProxyHost
from tests.services import Mosquitto

log = logging.getLogger(__name__)

SHARE_GROUP = "soak"


@dataclass(frozen=True)
class Topology:
    gateways: list[GatewaySpec]
    ingest_workers: int
    web_processes: int


class System:
    def __init__(self, workdir: Path, topology: Topology, seed: int) -> None:
        self.workdir = workdir
        self.topology = topology
        self.seed = seed
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(workdir / "mosquitto")
        self.postgres: ChaosPostgres | None = None
        self.database_url = ""
        self.proxies = ProxyHost()
        self.servers: list[ServerProc] = []
        self.gateways: list[GatewayProc] = []
        self.roles = False
        # Names the soak took down on purpose; any other process that is not
        # running exited by itself, which the soak reports.
        self.down: set[str] = set()
        self.unexpected_exits: list[str] = []

    # ------------------------------------------------------------------ up

    async def start(self) -> None:
        await asyncio.to_thread(self.broker.start)
        self.postgres = ChaosPostgres()
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.postgres.create_database, "soak")
        await asyncio.to_thread(self.postgres.make_durable, "soak")
        self.database_url = self.postgres.url("soak")
        await asyncio.to_thread(self._migrate)
        self.roles = await asyncio.to_thread(server_supports_roles)
        self.servers = self._server_procs()
        for server in self.servers:
            server.start()
        await self.wait_servers_healthy(120)
        for spec in self.topology.gateways:
            proxy = self.proxies.add(spec.gateway_id, (self.broker.host, self.broker.port))
            self.gateways.append(GatewayProc(spec, f"mqtt://127.0.0.1:{proxy.port}", self.workdir / spec.gateway_id,
                                             self.logdir, self.seed))
        for gateway in self.gateways:
            await gateway.start()
        for gateway in self.gateways:
            await gateway.wait_ready(60)

    def _migrate(self) -> None:
        done = subprocess.run([sys.executable, "-m", "rentgate", "db", "upgrade", "--database-url", self.database_url],
                              cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"rentgate db upgrade failed:\n{done.stderr[-3000:]}")

    def _server_procs(self) -> list[ServerProc]:
        def make(name: str, role: str | None, group: str | None = None) -> ServerProc:
            return ServerProc(name, role, database_url=self.database_url, mqtt_url=self.broker.url,
                              logdir=self.logdir, share_group=group)

        if not self.roles:
            log.warning("rentgate server has no --role yet: one server process (role all) stands for ingest and web")
            return [make("server-0", None)]
        n = self.topology.ingest_workers
        procs = [make(f"ingest-{i}", "ingest", SHARE_GROUP if n > 1 else None) for i in range(n)]
        procs += [make(f"web-{i}", "web") for i in range(self.topology.web_processes)]
        return [*procs, make("reconcile-0", "reconcile")]

    async def wait_servers_healthy(self, timeout: float, *, restart_dead: bool = False) -> None:
        """Until every server process answers /healthz with 200. A process
        that exited is a failure at start-up; later (``restart_dead``) it is
        noted as an unexpected exit and started again."""
        deadline = time.monotonic() + timeout
        while True:
            sick = [s.name for s in self.servers if not await asyncio.to_thread(s.healthy)]
            if not sick:
                return
            if restart_dead:
                await self.watch_exits()
            for server in self.servers:
                if server.died() is not None and server.name not in self.down:
                    raise RuntimeError(f"{server.name} exited with {server.died()}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout:g} s: {', '.join(sick)}")
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ who is what

    def ingest_servers(self) -> list[ServerProc]:
        return [s for s in self.servers if s.kind == "ingest"]

    def web_servers(self) -> list[ServerProc]:
        """Processes that serve the pages: ``web`` ones, or the one ``all`` process."""
        return [s for s in self.servers if s.serves_pages]

    def gateway(self, name: str) -> GatewayProc:
        return next(g for g in self.gateways if g.name == name)

    # ------------------------------------------------------------------ faults (mechanics)

    @contextlib.contextmanager
    def _taken_down(self, name: str) -> Iterator[None]:
        self.down.add(name)
        try:
            yield
        finally:
            self.down.discard(name)

    async def kill_broker(self, down_s: float) -> None:
        with self._taken_down("mosquitto"):
            await asyncio.to_thread(self.broker.kill)
            await asyncio.sleep(down_s)
            await asyncio.to_thread(self.broker.start)

    async def kill_postgres(self, down_s: float) -> None:
        assert self.postgres is not None
        with self._taken_down("postgresql"):
            await asyncio.to_thread(self.postgres.kill)
            await asyncio.sleep(down_s)
            await asyncio.to_thread(self.postgres.start, 120)

    async def kill_server(self, server: ServerProc, down_s: float) -> None:
        with self._taken_down(server.name):
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(down_s)
            server.start()

    async def kill_gateway(self, gateway: GatewayProc, down_s: float) -> None:
        with self._taken_down(gateway.name):
            await gateway.kill()
            await asyncio.sleep(down_s)
            await gateway.start()
            await gateway.wait_ready(60)

    async def watch_exits(self) -> None:
        """Restarts a process that exited without the soak killing it, and notes it."""
        for server in self.servers:
            code = server.died()
            if code is not None and server.name not in self.down:
                self.unexpected_exits.append(f"{server.name}#{server.incarnation} exit {code}")
                log.error("%s exited by itself with %s; restarting it. Its log ends:\n%s", server.name, code,
                          server.log_tail(1500))
                server.start()
        for gateway in self.gateways:
            proc = gateway.proc
            if proc is not None and proc.returncode is not None and gateway.name not in self.down:
                self.unexpected_exits.append(f"{gateway.name}#{gateway.incarnation} exit {proc.returncode}")
                log.error("%s exited by itself with %s; restarting it", gateway.name, proc.returncode)
                await gateway.start()
        if not self.broker.running and "mosquitto" not in self.down:
            self.unexpected_exits.append("mosquitto")
            await asyncio.to_thread(self.broker.start)

    # ------------------------------------------------------------------ down

    async def stop_gateways(self) -> None:
        await asyncio.gather(*(g.stop() for g in self.gateways), return_exceptions=True)

    def close(self) -> None:
        """Stop and remove everything; safe to call twice and after any failure."""
        for gateway in self.gateways:
            gateway.kill_now()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.kill()
        with contextlib.suppress(Exception):
            self.proxies.close()
        with contextlib.suppress(Exception):
            self.broker.kill()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.kill()
            shutil.rmtree(self.postgres.basedir, ignore_errors=True)
