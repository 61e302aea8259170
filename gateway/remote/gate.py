"""The health gate a new configuration must pass before the gateway keeps it.

Healthy means all of: the broker connection is up (the MQTT link's connected
state); the server's retained status has arrived over it (so the broker lets
this gateway read, not only connect); every reader and terminal is online;
every camera delivers pictures. The gate passes once all of that has held for
``hold_s`` without a break, and fails if that has not happened by ``gate_s``:
a configuration is judged by becoming healthy in time, not by waiting out the
whole gate (docs/config-rollback.md)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from rentgate.aio import wait_event

if TYPE_CHECKING:
    from gateway.app import GatewayApp

_POLL_S = 0.1


def hold_for(gate_s: float) -> float:
    """How long all must stay healthy: long enough to catch a broker that
    accepts and then drops us, short against the gate."""
    return min(2.0, gate_s / 4)


async def run_gate(app: GatewayApp, task: asyncio.Task[None], *, gate_s: float, deadline: float,
                   stopping: asyncio.Event) -> str | None:
    """None when ``app`` is healthy in time; otherwise why not (for the status)."""
    hold_s = hold_for(gate_s)
    healthy_since: float | None = None
    while True:
        if stopping.is_set():
            return "the gateway was stopped during the health gate"
        if task.done():
            return f"the gateway stopped during the health gate: {ended_why(task)}"
        problems = gate_problems(app, gate_s)
        now = time.monotonic()
        if problems:
            healthy_since = None
        else:
            healthy_since = now if healthy_since is None else healthy_since
            if now - healthy_since >= hold_s:
                return None
        if now >= deadline:
            # Healthy at the deadline, only not for the whole hold: it made it in time.
            return problems[0] if problems else None
        await wait_event(stopping, min(_POLL_S, deadline - now))


def gate_problems(app: GatewayApp, gate_s: float) -> list[str]:
    """What keeps ``app`` from being healthy now, worst first."""
    link = app.link
    if link is None or not link.connected.is_set():
        why = short_error(link.stats.last_error) if link is not None else None
        return [f"broker not reachable within {gate_s:g} s" + (f": {why}" if why else "")]
    if not app.server_seen:
        return [f"no server status received within {gate_s:g} s"]
    problems = []
    for device_id, online in sorted(app.devices_online.items()):
        if online:
            continue
        state, detail = app.devices.state_of(device_id)
        kind = next((d.type for d in app.config.devices if d.id == device_id), None)
        if kind == "camera":
            what = f"camera {device_id} delivers no pictures" if state in ("no_frames", "starting") \
                else f"camera {device_id} picture {state}"
        else:
            what = f"device {device_id} offline"
        problems.append(what + (f": {detail}" if detail else ""))
    return problems


def short_error(text: str | None) -> str | None:
    """``connect: [Errno 111] Connection refused`` -> ``connection refused``."""
    if not text:
        return None
    text = re.sub(r"^(connect|connack):\s*", "", text)
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text).strip()
    return (text[:1].lower() + text[1:])[:200] if text else None


def ended_why(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return "it ended"
    return describe_error(exc)


def describe_error(exc: BaseException) -> str:
    # An ExceptionGroup from the app's TaskGroup: the first real cause says most.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
