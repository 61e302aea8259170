"""A TCP proxy between one gateway and the broker that the soak can cut.

Why a proxy and not network namespaces with veth pairs: it needs neither
root nor ``CAP_NET_ADMIN`` (the CI runners and a developer's laptop have
neither), leaves nothing behind on the host if the soak is killed, and can
make both kinds of outage a gateway meets:

- ``blackhole``: a pulled cable or a dead uplink. Nothing is forwarded in
  either direction and nothing is closed: open connections hang (each side
  finds out only through its own keep-alive), new ones are accepted and hang
  too. When the cut ends, what both sides wrote meanwhile flows on, on the
  connections still open.
- ``reset``: a router that reboots. Every connection is closed at once and
  new ones are closed as soon as they arrive, until the cut ends.

The proxies run on an event loop of their own in a thread (:class:`ProxyHost`),
so the soak's own waits never stall the gateways' traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

T = TypeVar("T")

CutMode = Literal["blackhole", "reset"]
_CHUNK = 256 * 1024


class Proxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``upstream``; on the host's loop."""

    def __init__(self, name: str, upstream: tuple[str, int]) -> None:
        self.name = name
        self.upstream = upstream
        self.port = 0
        self.cut: CutMode | None = None
        self.bytes_forwarded = 0
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        self._flowing.set()

    def set_cut(self, mode: CutMode | None) -> None:
        self.cut = mode
        if mode is None:
            self._flowing.set()
            return
        self._flowing.clear()
        if mode == "reset":
            self._close_all()

    def _resetting(self) -> bool:
        return self.cut == "reset"

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # RST, as a rebooting router's peer sees it
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.cut == "reset":
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a connection made during a blackhole hangs
            if self._resetting() or writer.transport.is_closing():
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return  # the broker is down: the gateway sees its connection close
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # Read before a blackhole began: held until it ends, like
                # packets queued in a switch.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # Either side gone: end both, as the far end's FIN or RST would.
            writer.transport.abort()


class ProxyHost:
    """An event loop in a daemon thread that runs the proxies."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soak-proxies", daemon=True)
        self._thread.start()
        self.proxies: dict[str, Proxy] = {}

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def add(self, name: str, upstream: tuple[str, int]) -> Proxy:
        async def make() -> Proxy:
            proxy = Proxy(name, upstream)
            await proxy.start()
            return proxy

        proxy = self._call(make())
        self.proxies[name] = proxy
        return proxy

    def cut(self, name: str, mode: CutMode | None) -> None:
        """Cut (``blackhole`` or ``reset``) or restore (None) one gateway's link."""
        proxy = self.proxies[name]

        async def apply() -> None:
            proxy.set_cut(mode)

        self._call(apply())

    def close(self) -> None:
        async def close_all() -> None:
            for proxy in self.proxies.values():
                await proxy.close()

        with contextlib.suppress(Exception):
            self._call(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
