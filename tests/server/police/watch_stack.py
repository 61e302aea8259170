"""The real path for watch alerts, shared by the end-to-end test and
bench/watch_alert.py: the server process with every key a PostgreSQL
server needs (tests/integration/harness.py's AccessServer plus the audit
log's and the police webhooks' signing keys), a police client's calls, and
a webhook receiver in a thread that stamps each request."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rentgate import signing
from tests.integration.harness import AccessServer, System, _environment
from tests.services import free_port


class WatchServer(AccessServer):
    """The access server with the two signing keys a PostgreSQL server needs
    besides: the audit log's and the police webhooks'."""

    def __init__(self, system: System, *, database_url: str, mqtt_url: str) -> None:
        super().__init__(system, database_url=database_url, mqtt_url=mqtt_url)
        self.extra_keys: dict[str, str] = {}
        for variable in ("RENTGATE_AUDIT_KEY_FILE", "RENTGATE_POLICE_SIGNING_KEY_FILE"):
            path = system.workdir / f"{variable.lower()}.pem"
            path.write_text(signing.private_key_pem(signing.generate_private_key()))
            self.extra_keys[variable] = str(path)

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        with _environment(**self.extra_keys):
            super().start(wait=wait, timeout=timeout)

    def police(self, method: str, path: str, token: str, body: object = None) -> tuple[int, Any]:
        """``(status, JSON answer)`` of a police client's call."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def add_watch_server(system: System, *, database_url: str, mqtt_url: str) -> WatchServer:
    server = WatchServer(system, database_url=database_url, mqtt_url=mqtt_url)
    system.server = server
    system._database_url = database_url
    system.procs.append(server)
    return server


@dataclass
class Delivered:
    at: float  # time.time() when the request had been read
    headers: dict[str, str]
    body: bytes


@dataclass
class Hook:
    """A webhook receiver in a thread, on a port chosen before it listens
    (so a client can be pointed at it while it is still down)."""

    port: int = field(default_factory=free_port)
    received: list[Delivered] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(Delivered(time.time(), dict(self.headers.items()), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
