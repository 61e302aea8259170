"""The registry API tests' application, on both databases (each file that
needs SQLite only, or another seed, defines its own ``api`` or ``city``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from server.app import make_app
from tests.server.registry.api_helpers import Api, City, MakeClient, seed_city, settings_for


@pytest.fixture
async def api(engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Api:
    return Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))


@pytest.fixture
async def city(api: Api, engine: sa.Engine) -> City:
    return await seed_city(api, engine)
