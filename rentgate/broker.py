"""An MQTT broker inside the rentgate process, for demos and small buildings.

amqtt 0.12 carries it. It does QoS 1, retained messages and last wills, which
is all the gateway and server need, at roughly 2 k msg/s on one core (see
docs/mosquitto.md). A city runs Mosquitto instead.

Only the anonymous-auth plugin is loaded: amqtt's defaults add packet and
event loggers and a ``$SYS`` publisher that cost about 40 % of its throughput.
Listing plugins explicitly also keeps amqtt from loading entry-point plugins,
which is what its deprecation warnings are about.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_ANONYMOUS_AUTH = "amqtt.plugins.authentication.AnonymousAuthPlugin"


class BrokerError(Exception):
    """The embedded broker could not start or stop; ``address`` says which one."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(f"{message} ({address})")
        self.address = address


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt configuration: one TCP listener, anyone may connect, no ``$SYS``
    topics and no topic checks (no topic plugin is loaded)."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {_ANONYMOUS_AUTH: {"allow_anonymous": True}},
    }


class EmbeddedBroker:
    """An amqtt broker on ``host:port``; ``port=0`` picks a free port, read
    ``.port`` after ``start()``. Also an async context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        if self._broker is not None:
            return
        # Imported here so that commands which never run a broker do not pay
        # for amqtt's imports.
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError as AmqttBrokerError

        broker = Broker(broker_config(self.host, self.port))
        try:
            await broker.start()
        except (AmqttBrokerError, OSError) as exc:
            raise BrokerError(f"cannot start embedded MQTT broker: {exc}", address=self._address()) from exc
        self._broker = broker
        self.port = _bound_port(broker, self.port)
        log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await broker.shutdown()
        except Exception as exc:
            raise BrokerError(f"embedded MQTT broker did not stop cleanly: {exc}", address=self._address()) from exc
        log.info("embedded MQTT broker on %s stopped", self._address())

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _address(self) -> str:
        return f"{self.host}:{self.port}"


def _bound_port(broker: Any, requested: int) -> int:
    """The port the listener really got, which differs from ``requested`` only
    when that was 0. amqtt has no public accessor for it."""
    if requested != 0:
        return requested
    server = broker._servers["default"].instance  # noqa: SLF001
    port: int = server.sockets[0].getsockname()[1]
    return port


# --------------------------------------------------------------------------- command


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run a small MQTT broker until Ctrl-C (for demos and small sites)",
        description="A small MQTT broker that passes the gateways' events to the server, for demos and small "
                    "sites; use Mosquitto in production (docs/mosquitto.md). Runs until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on; 0.0.0.0 for every network (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="the TCP port (default: 1883)")
    parser.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve(args.host, args.port))
    except BrokerError as exc:
        log.error("%s", exc)
        return 1
    return 0


async def serve(host: str, port: int, *, stop: asyncio.Event | None = None) -> None:
    """Run a broker until ``stop`` is set or the process gets SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with EmbeddedBroker(host, port):
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
