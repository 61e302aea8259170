"""The gateway's snapshot uploader (gateway/camera/uploads.py) against the
real server route: the picture an event names is stored and leaves the
gateway's spool; a picture no event waits for is retried (404) and stays."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import sqlalchemy as sa

from gateway.camera.spool import SnapshotSpool
from gateway.camera.uploads import SnapshotUploader
from server.db.models import event_snapshots
from tests.gateway.helpers import wait_until
from tests.server.scan.world import Client
from tests.server.snapshots.world import GW, TAILGATING_SEQ, Door


async def test_the_gateway_uploader_against_the_server(client: Client, door: Door, engine: sa.Engine,
                                                       tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "snapshots")
    stored_row, stored_sha = spool.store(door.tailgating, GW)
    spool.assign(stored_row, TAILGATING_SEQ)
    waiting_row, _ = spool.store(door.tailgating + b"\x00", GW)  # bytes no event names
    spool.assign(waiting_row, TAILGATING_SEQ + 1000)
    uploader = SnapshotUploader(spool, str(client.make_url("/")), timeout_s=5, retry_max_s=0.2, retry_base_s=0.05)
    task = asyncio.create_task(uploader.run())
    try:
        await wait_until(lambda: uploader.stats.stored == 1, timeout=10, what="the tailgating's picture stored")
        await wait_until(lambda: uploader.stats.retried >= 2, timeout=10, what="the other retried")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not spool.path_of(stored_sha).exists()
    assert [u.seq for u in spool.due(now=1e12)] == [TAILGATING_SEQ + 1000]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(event_snapshots)).scalar_one() == 1


async def test_an_enrolled_gateway_uploads_with_its_own_login(client: Client, door: Door, engine: sa.Engine,
                                                              tmp_path: Path) -> None:
    from server.auth.passwords import hash_password
    from server.db.models import gateways

    with engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id == GW).values(secret_hash=hash_password("pw-of-gw")))
    spool = SnapshotSpool(tmp_path / "snapshots")
    row, sha = spool.store(door.tailgating, GW)
    spool.assign(row, TAILGATING_SEQ)
    wrong = SnapshotUploader(spool, str(client.make_url("/")), timeout_s=5, retry_max_s=0.2, retry_base_s=0.05,
                             login=(GW, "not-its-password"))
    right = SnapshotUploader(spool, str(client.make_url("/")), timeout_s=5, retry_max_s=0.2, retry_base_s=0.05,
                             login=(GW, "pw-of-gw"))
    # The spool forgets the picture after the server's answer: wait for that, not the counter.
    for uploader, done in ((wrong, lambda: wrong.stats.retried >= 2),
                           (right, lambda: right.stats.stored == 1 and not spool.path_of(sha).exists())):
        task = asyncio.create_task(uploader.run())
        try:
            await wait_until(done, timeout=10, what="the uploader's answer")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert wrong.stats.stored == 0 and not spool.path_of(sha).exists()
