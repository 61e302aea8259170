"""What every adapter that serves terminals over HTTP on the building's LAN
shares: which source addresses may talk to it (``allowed_ips``), so that they
agree on what an empty list and an unreadable address mean, and the server's
own life (bind, the port it got, clean-up)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_networks(value: list[str]) -> list[str]:
    """For a config validator: every item a network or an address (host bits allowed)."""
    for item in value:
        ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
    return value


class AllowedNetworks:
    """Empty: any source address is allowed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def allows(self, remote: str | None) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            # No peer address (a closed socket, a Unix socket): cannot be shown to be on the LAN.
            return False
        return any(address in network for network in self.networks)


@asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host``:``port`` (0: any free port) until the block
    ends; yields the port actually bound."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield next((int(a[1]) for a in runner.addresses if isinstance(a, tuple) and len(a) >= 2), port)
    finally:
        await runner.cleanup()
