"""Shared by the remote-configuration tests: a gateway settings file that
trusts a test key, configurations signed with it, a runner under test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.remote.local import LocalSettings, load_local
from gateway.remote.runner import Runner
from rentgate import signing, wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW

KEY = signing.generate_private_key()
KEY_ID = "test-key"
OTHER_KEY = signing.generate_private_key()


def write_settings(folder: Path, mqtt_url: str, *, extra: str = "") -> Path:
    """A gateway settings file in ``folder`` with its data in ``folder/data``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    path.write_text(
        f'gateway_id = "{GW}"\nmqtt_url = "{mqtt_url}"\ndata_dir = "data"\nheartbeat_s = 0.5\n{extra}\n'
        f'[outbox]\nack_timeout_s = 5\n\n'
        f'[access.public_keys]\n"{KEY_ID}" = "{signing.public_key_b64(KEY.public_key())}"\n',
        encoding="utf-8")
    return path


def local_settings(folder: Path, mqtt_url: str) -> LocalSettings:
    return load_local(write_settings(folder, mqtt_url))


def signed(version: int, settings: dict[str, Any], *, gw: str = GW, gate_s: float = 5.0,
           key: signing.Ed25519PrivateKey = KEY, key_id: str = KEY_ID) -> bytes:
    config = wire.RemoteConfig(gw=gw, version=version, issued_at=wire.utcnow(), gate_s=gate_s, settings=settings)
    payload = wire.config_payload(config)
    return wire.signed_config_json(payload, key_id, signing.sign(payload.encode(), key))


def sign_text(payload: str, key: signing.Ed25519PrivateKey = KEY) -> bytes:
    """Any text signed properly: for payloads that are not a valid configuration."""
    return wire.signed_config_json(payload, KEY_ID, signing.sign(payload.encode(), key))


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
                   task: asyncio.Task[None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if task is not None and task.done():
            task.result()
            raise AssertionError(f"the runner ended while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(local: LocalSettings) -> AsyncIterator[tuple[Runner, asyncio.Task[None]]]:
    """A runner whose app is connected to the broker."""
    runner = Runner(local)
    task = asyncio.create_task(runner.run(), name="runner-under-test")
    await wait_for(lambda: runner.app is not None and runner.app.link is not None
                   and runner.app.link.connected.is_set(), 15, "the gateway connected", task)
    try:
        yield runner, task
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


def last_status(server: FakeServer, predicate: Callable[[wire.GatewayStatus], bool]) -> wire.GatewayStatus | None:
    return next((s for s in reversed(list(server.statuses)) if predicate(s)), None)
