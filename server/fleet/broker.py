"""(being written: issue 14) The broker's provisioner; see appkeys."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class Provisioner(Protocol):
    enforced: bool

    async def add_gateway(self, gateway_id: str, password: str) -> None: ...

    async def remove_gateway(self, gateway_id: str) -> None: ...


def setup(app: web.Application) -> None:
    return None
