"""``rentgate server`` as real processes for the scaling tests: each with its
own log file, started with a role and settings, killed with SIGKILL or
stopped with SIGTERM, and always reaped at teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.services import free_port, wait_for

LOG_TAIL_CHARS = 3000


class ServerProc:
    def __init__(self, workdir: Path, name: str, *, role: str, database_url: str, mqtt_url: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.args = ["server", "--role", role, "--database-url", database_url, "--mqtt-url", mqtt_url,
                     "--port", str(self.port)]
        self.env = {**os.environ, "RENTGATE_MQTT_CLIENT_ID": name, **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.popen = subprocess.Popen([sys.executable, "-m", "rentgate", *self.args], env=self.env,
                                      stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                      start_new_session=True)

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
        """SIGSTOP: the process holds its connections but reads nothing (a
        hung worker)."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

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

    def stop(self) -> None:
        self.terminate()
        if self.popen is not None:
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"----- {self.name}\n{text[-chars:]}"
