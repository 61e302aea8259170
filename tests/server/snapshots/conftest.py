"""The scan world with camera alerts, and a client of its server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web

from server.app import make_app
from tests.server.scan.world import Client, ScanWorld, build
from tests.server.snapshots.world import Door, add_camera_events

MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def world(engine: sa.Engine, tmp_path: Path) -> ScanWorld:
    return build(engine, tmp_path)


@pytest.fixture
def door(world: ScanWorld, engine: sa.Engine) -> Door:
    return add_camera_events(world, engine)


@pytest.fixture
async def client(world: ScanWorld, door: Door, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(world.settings, ingest=False))
