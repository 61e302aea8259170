"""Which source addresses may talk to a listening adapter (``allowed_ips``):
one check for every adapter that serves terminals on the building's LAN, so
that they agree on what an empty list and an unreadable address mean."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

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
