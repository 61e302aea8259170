"""The whole server (role ``all``) through a database outage: every part
that meets it says so once when it starts and once when it ends, and none
logs a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.db import migrate
from server.db.engine import create_engine
from server.ingest.appkeys import INGEST
from tests.server.helpers import batch, card_read
from tests.server.mqtt_gateway import TIMEOUT, FakeGateway
from tests.server.registry.api_helpers import settings_for
from tests.services import Mosquitto, PostgresCluster, wait_for

Client = TestClient[web.Request, web.Application]
GW = "gw-quiet-1"
OUTAGE_S = 4.0


@pytest.fixture
def cluster(own_pg_cluster: PostgresCluster) -> PostgresCluster:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    return own_pg_cluster


def stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one())


async def test_the_server_rides_out_a_database_outage_quietly(
        cluster: PostgresCluster, tmp_path: Path, mosquitto: Mosquitto,
        aiohttp_client: Callable[..., Awaitable[Client]], caplog: pytest.LogCaptureFixture) -> None:
    url = cluster.url(cluster.create_database())
    engine = create_engine(url)
    migrate.upgrade(engine)
    settings = settings_for(url, tmp_path).model_copy(update={"mqtt_url": mosquitto.url,
                                                              "mqtt_client_id": "quiet-server"})
    client = await aiohttp_client(make_app(settings))
    ingest = client.app[INGEST]
    gateway = FakeGateway(mosquitto.url, GW)
    try:
        await asyncio.to_thread(ingest.link.wait_subscribed, TIMEOUT)
        gateway.publish(batch(GW, [card_read(GW, 1)]))
        await gateway.next_ack(lambda a: a.committed)
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="server")

        await asyncio.to_thread(cluster.stop)
        seq = 1
        loop = asyncio.get_running_loop()
        end = loop.time() + OUTAGE_S
        while loop.time() < end:  # events keep coming during the outage
            seq += 1
            gateway.publish(batch(GW, [card_read(GW, seq)]))
            await asyncio.sleep(0.1)
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(wait_for, lambda: stored(engine) == seq, TIMEOUT, what="every event stored")
        await asyncio.to_thread(wait_for, lambda: not ingest.outage.down, TIMEOUT, what="the outage's end")
        said: Any = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        gateway.close()
        engine.dispose()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    per_logger = Counter(name for name, _, _ in said)
    assert per_logger["server.ingest.consumer"] == 2, said
    # Whatever else met the outage said it once each way, not per retry.
    assert all(n <= 2 for n in per_logger.values()), said
