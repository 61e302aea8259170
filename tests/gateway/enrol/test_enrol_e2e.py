"""From the landlord's code to events at the server, with nothing faked: a
real server (SQLite) on a real port, Mosquitto as a fleet broker (dynamic
security, a TLS listener that wants a client certificate from the gateway
CA), the landlord's API call for a code, ``rentgate gateway enroll`` and
``rentgate gateway`` as the installer runs them (subprocesses of the real
command), and the server's own records of what the gateway sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from server.app import make_app
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import buildings, events, gateways
from tests.server.auth_helpers import UserCreds, bearer, make_user
from tests.server.registry.api_helpers import settings_for
from tests.services import Mosquitto, free_port

TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Fleet:
    url: str
    engine: sa.Engine
    landlord: UserCreds
    building_id: int
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, *, status: int = 200) -> Any:
        async with self.http.request(method, self.url + path, headers=bearer(self.landlord.token)) as resp:
            body = await resp.json()
            assert resp.status == status, body
            return body


@pytest.fixture
async def fleet(fleet_broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Fleet]:
    assert fleet_broker.dynsec is not None
    database_url = f"sqlite:///{tmp_path / 'server.db'}"
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    landlord = make_user(engine, "landlord")
    with engine.begin() as conn:
        building_id = int(conn.execute(sa.insert(buildings).values(
            name="Tangxia 12", address="Tangxia Rd 12", created_at=sa.func.now(), landlord_user_id=landlord.id)
            .returning(buildings.c.id)).scalar_one())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = settings_for(database_url, tmp_path).model_copy(update={
        "mqtt_url": fleet_broker.server_url, "broker_admin_url": fleet_broker.admin_url,
        "gateway_mqtt_url": fleet_broker.gateway_url, "gateway_ca_dir": str(fleet_broker.dynsec.ca_dir),
        "public_url": url})
    runner = web.AppRunner(make_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Fleet(url, engine, landlord, building_id, http)
    finally:
        await runner.cleanup()
        engine.dispose()


async def command(*args: str, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rentgate.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.1)
    return found


def stored(engine: sa.Engine, gateway_id: str, kind: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(events.c.seq).where(events.c.gateway_id == gateway_id,
                                                                events.c.kind == kind)).scalars())


def gateway_row(engine: sa.Engine, gateway_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(gateways).where(gateways.c.id == gateway_id)).first()


async def test_a_landlords_code_becomes_a_gateway_online_at_the_server(
        fleet: Fleet, fleet_broker: Mosquitto, tmp_path: Path) -> None:
    made = await fleet.call("POST", f"/api/v1/buildings/{fleet.building_id}/enrolments", status=201)
    folder = tmp_path / "box" / "rentgate"

    # The installer types what the QR holds (the camera path is test_qr.py's).
    started = time.monotonic()
    code, out, err = await command("--lang", "en", "gateway", "enroll", made["qr_text"], "--dir", str(folder),
                                   "--hostname", "box-1", "--json")
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    gw = result["gateway_id"]
    assert result["ok"] is True and result["building"].startswith("Tangxia 12")
    assert "not encrypted" in err  # plain http to 127.0.0.1: allowed, with the warning
    settings = tomllib.loads((folder / "gateway.toml").read_text())
    assert settings["mqtt_url"] == fleet_broker.gateway_url  # the TLS listener with the client certificate
    assert settings["cameras"]["server_url"] == fleet.url
    state = await fleet.call("GET", f"/api/v1/enrolments/{made['enrolment']}")
    assert state["state"] == "enrolled" and state["gateway"]["id"] == gw and state["gateway"]["hostname"] == "box-1"

    # The same code again gives nothing, and the folder is not touched.
    again, _out, err = await command("--lang", "en", "gateway", "enroll", made["qr_text"],
                                     "--dir", str(tmp_path / "other"))
    assert again == 2 and "ask the landlord for a new code" in err
    assert not (tmp_path / "other").exists()

    log = (tmp_path / "gateway.log").open("wb")
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rentgate.cli", "gateway", "--config", str(folder / "gateway.toml"),
        cwd=REPO, stdout=log, stderr=log)
    try:
        seqs = await until(lambda: stored(fleet.engine, gw, "gateway_started"), "the gateway_started event")
        state = await fleet.call("GET", f"/api/v1/enrolments/{made['enrolment']}")
        deadline = time.monotonic() + TIMEOUT
        while state["state"] != "online" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            state = await fleet.call("GET", f"/api/v1/enrolments/{made['enrolment']}")
        assert state["state"] == "online" and state["gateway"]["online"] is True
        online_after = time.monotonic() - started
        # Acknowledged (the outbox empties) and stored once, however often it was sent.
        await until(lambda: (row := gateway_row(fleet.engine, gw)) is not None and row.outbox_depth == 0,
                    "the gateway's outbox to empty")
        assert stored(fleet.engine, gw, "gateway_started") == seqs == [seqs[0]]
        # The first configuration, left by enrolment in remote/received.json, was taken up.
        await until(lambda: (row := gateway_row(fleet.engine, gw)) is not None and row.config_attempted == 1,
                    "configuration version 1 to be tried")
        assert not (folder / "remote" / "received.json").exists()
        # About 2.5 s on an idle machine; bench/fleet.py measures it (enroll_s_p99, target 10 s).
        print(f"code entered -> online at the server: {online_after:.1f} s")
    finally:
        if gateway.returncode is None:
            os.kill(gateway.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(gateway.wait(), 15)
            except TimeoutError:
                os.kill(gateway.pid, signal.SIGKILL)
                await gateway.wait()
        log.close()
    assert gateway.returncode == 0, (tmp_path / "gateway.log").read_text()[-3000:]
