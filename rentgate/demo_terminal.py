"""The demo's face and card terminal: a simulated Hikvision DS-K1T at the
building's main door that opens the lock itself from its own user list
(firmware_sim/isapi_terminal.py), kept equal to the gateway's signed
allowlist by the gateway (gateway/terminals/, docs/terminal-sync.md).

The story it tells: a tenant registered with a card is let in by the
terminal; their registration ends at the server; the terminal itself then
refuses the card, without asking anyone, seconds later (人走注销 where the
city can see it)."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rentgate.demo_osdp import _call

TERMINAL_ID = "lobby-terminal"
USER = "admin"
# The tenant of the story: a card of the kind the terminal reads (EM4100, as
# hex, which the server keeps), registered in 201, which has room for a third
# tenant (a third in 101, whose capacity is two, would make it overcrowded and
# change its grade on the printed plates).
CARD = "0C3A5E7F91"
UNIT = "201"
TIMEOUT_S = 30.0


def sim_args(port: int, password_file: Path) -> list[str]:
    return ["sim", "isapi-terminal", "--host", "127.0.0.1", "--port", str(port), "--password-file",
            str(password_file)]


def gateway_config(port: int, password_file: Path, door: str) -> str:
    """The ``[[terminals]]`` table of the demo gateway."""
    return f"""
[[terminals]]
id = "{TERMINAL_ID}"
url = "http://127.0.0.1:{port}"
username = "{USER}"
password_file = "{password_file}"
doors = ["{door}"]
probe_interval_s = 2
retry_max_s = 2
"""


def present(port: int, password: str, card_hex: str) -> bool:
    """The card held to the terminal: whether its own lock opened."""
    import aiohttp

    async def ask() -> bool:
        middleware = aiohttp.DigestAuthMiddleware(USER, password)
        async with aiohttp.ClientSession(middlewares=(middleware,),
                                         timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"http://127.0.0.1:{port}/sim/present",
                                    json={"card": str(int(card_hex, 16))}) as response:
                response.raise_for_status()
                return bool((await response.json())["granted"])

    return asyncio.run(ask())


def _until(check: Any, want: bool) -> float | None:
    """Seconds until ``check()`` gives ``want`` (asked every 0.2 s), None after TIMEOUT_S."""
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT_S:
        if check() == want:
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def story(base: str, token: str, unit_id: int, port: int, password: str) -> dict[str, Any]:
    """Register the tenant with the card, wait until the terminal lets them
    in, end the registration, and time until the terminal refuses them."""
    from server.registry.idnumber import make_id_number

    person = {"id_number": make_id_number("430521", date(1994, 5, 17), 317), "name": "王海",
              "phone": "13922220001", "origin": "湖南省"}
    registration = _call(base, token, "POST", "/api/v1/registry/registrations", {
        "unit_id": unit_id, "person": person, "arrived_at": (date.today() - timedelta(days=3)).isoformat(),
        "credential": {"format": "em4100", "value": CARD}})
    granted_after = _until(lambda: present(port, password, CARD), True)
    ended = time.monotonic()
    _call(base, token, "POST", f"/api/v1/registry/registrations/{registration['id']}/end", {"reason": "moved_out"})
    refused_after = _until(lambda: present(port, password, CARD), False)
    return {"card": CARD, "granted_before_end": granted_after is not None,
            "granted_after_s": None if granted_after is None else round(granted_after, 2),
            "refused_after_end": refused_after is not None,
            "refused_after_s": None if refused_after is None else round(time.monotonic() - ended, 2)}
