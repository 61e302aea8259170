"""``rentgate server`` as real processes for the scaling and ingest tests
(tests/server/test_ingest_workers.py, tests/server/ingest_engines/): each
with its own log file, started with a role and settings (as arguments or as
RENTGATE_* variables), frozen with SIGSTOP and thawed with SIGCONT, killed
with SIGKILL or stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.services import free_port, wait_for

LOG_TAIL_CHARS = 3000
STOP_TIMEOUT_S = 20.0


class ServerProc:
    """One ``rentgate server --role <role>`` child, its HTTP port on
    127.0.0.1 and its log at ``<workdir>/<name>.log`` (appended to, so a
    restart keeps the first run's lines). ``database_url`` and ``mqtt_url``
    go on the command line when given; otherwise the server takes them from
    ``env`` (RENTGATE_DATABASE_URL, RENTGATE_MQTT_URL, ...). The MQTT client
    id is ``name`` unless ``env`` names another."""

    def __init__(self, workdir: Path, name: str, *, role: str = "ingest", database_url: str | None = None,
                 mqtt_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.args = ["server", "--role", role, "--host", "127.0.0.1", "--port", str(self.port)]
        if database_url is not None:
            self.args += ["--database-url", database_url]
        if mqtt_url is not None:
            self.args += ["--mqtt-url", mqtt_url]
        self.env = {**os.environ, "RENTGATE_MQTT_CLIENT_ID": name, **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> ServerProc:
        # The child keeps its own copy of the descriptor; ours closes at once.
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen([sys.executable, "-m", "rentgate", *self.args], env=self.env,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        return self

    def check(self) -> None:
        """Fail with the log's tail if the process ended by itself (a SIGKILL
        from ``kill`` is not a failure)."""
        if self.popen is not None and self.popen.poll() is not None and self.popen.returncode != -signal.SIGKILL:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, str] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None

    def health(self) -> dict[str, Any] | None:
        answer = self.get("/healthz")
        return json.loads(answer[1]) if answer is not None else None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            answer = self.get("/healthz")
            return answer is not None and answer[0] == 200
        wait_for(healthy, timeout, what=f"{self.name} healthy")

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples on /metrics."""
        answer = self.get("/metrics")
        assert answer is not None and answer[0] == 200, f"{self.name}: no /metrics"
        total = 0.0
        for line in answer[1].splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections and what it fetched,
        but reads nothing (a hung worker)."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no goodbye, no last commit (what a crash or the OOM killer does)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self) -> None:
        """SIGTERM, without waiting: stop several at once, then ``stop`` each."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)  # a paused one must be able to act on it
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait; SIGKILL if it has not ended within ``timeout``."""
        self.terminate()
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "<no log>"
        return f"----- {self.name}\n{text}"
