"""The snapshot spool and its uploader against a real HTTP server on a free
port that plays the server's contract (server/snapshots/): 201 stored, 200
already stored, 404 while no event awaits the picture, 413, 415, 400."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.camera.config import CamerasConfig
from gateway.camera.errors import SpoolError
from gateway.camera.spool import SnapshotSpool
from gateway.camera.uploads import SnapshotUploader
from tests.gateway.helpers import wait_until
from tests.services import free_port

JPEG = b"\xff\xd8\xff\xe0" + b"door picture" * 100 + b"\xff\xd9"


class SnapshotServer:
    """Stores a picture for an event it knows (``events``: seq -> sha256)."""

    def __init__(self) -> None:
        self.events: dict[int, str] = {}
        self.stored: dict[int, bytes] = {}
        self.fail_with: int | None = None  # answer every PUT with this
        self.requests: list[tuple[int, int]] = []  # (seq, status)
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _put(self, request: web.Request) -> web.Response:
        status = await self._answer(request)
        self.requests.append((int(request.match_info["seq"]), status))
        return web.Response(status=status)

    async def _answer(self, request: web.Request) -> int:
        body = await request.read()
        if self.fail_with is not None:
            return self.fail_with
        if request.content_type != "image/jpeg":
            return 415
        seq = int(request.match_info["seq"])
        expected = self.events.get(seq)
        if expected is None:
            return 404
        if hashlib.sha256(body).hexdigest() != expected:
            return 400
        if seq in self.stored:
            return 200
        self.stored[seq] = body
        return 201

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/api/v1/gateways/{gw}/events/{seq}/snapshot", self._put)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def server() -> AsyncIterator[SnapshotServer]:
    srv = SnapshotServer()
    await srv.start()
    yield srv
    await srv.stop()


@contextlib.asynccontextmanager
async def running(uploader: SnapshotUploader) -> AsyncIterator[SnapshotUploader]:
    task = asyncio.create_task(uploader.run())
    try:
        yield uploader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def quick(spool: SnapshotSpool, url: str) -> SnapshotUploader:
    return SnapshotUploader(spool, url, timeout_s=2, retry_max_s=0.1, retry_base_s=0.02)


def spooled(spool: SnapshotSpool, seq: int, jpeg: bytes = JPEG) -> str:
    row, sha = spool.store(jpeg, "gw-1")
    spool.assign(row, seq)
    return sha


async def test_a_picture_is_uploaded_once_its_event_is_stored(server: SnapshotServer, tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "snapshots")
    sha = spooled(spool, 41)
    assert spool.path_of(sha).read_bytes() == JPEG
    async with running(quick(spool, server.url)) as uploader:
        # The event has not reached the server yet: 404, retried.
        await wait_until(lambda: uploader.stats.retried >= 2, what="404 retries")
        assert spool.path_of(sha).exists()
        server.events[41] = sha
        await wait_until(lambda: 41 in server.stored, what="the upload")
        await wait_until(lambda: spool.count() == 0, what="the spool to empty")
    assert server.stored[41] == JPEG
    assert not spool.path_of(sha).exists()
    assert [s for _, s in server.requests][-1] == 201 and 404 in [s for _, s in server.requests]


async def test_server_errors_are_retried_and_refusals_dropped(server: SnapshotServer, tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "snapshots")
    sha = spooled(spool, 7)
    server.events[7] = sha
    server.fail_with = 503
    async with running(quick(spool, server.url)) as uploader:
        await wait_until(lambda: uploader.stats.retried >= 2, what="5xx retries")
        server.fail_with = None
        await wait_until(lambda: 7 in server.stored, what="the upload after the outage")
        other = spooled(spool, 8, JPEG + b"x")
        server.events[8] = other
        server.fail_with = 413
        uploader.wake()
        await wait_until(lambda: uploader.stats.dropped == 1, what="the refusal")
    assert spool.count() == 0 and not spool.path_of(other).exists()
    assert 8 not in server.stored
    assert server.requests.count((8, 413)) == 1  # never retried


async def test_a_server_that_is_down_at_first_gets_the_picture_later(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "snapshots")
    sha = spooled(spool, 3)
    srv = SnapshotServer()
    srv.events[3] = sha
    async with running(quick(spool, srv.url)) as uploader:
        await wait_until(lambda: uploader.stats.retried >= 2, what="connection refused retries")
        await srv.start()
        try:
            await wait_until(lambda: 3 in srv.stored, what="the upload")
        finally:
            await srv.stop()


async def test_pending_uploads_survive_a_restart(server: SnapshotServer, tmp_path: Path) -> None:
    folder = tmp_path / "snapshots"
    spool = SnapshotSpool(folder)
    shas = [spooled(spool, seq, JPEG + bytes([seq])) for seq in (11, 12, 13)]
    async with running(quick(spool, server.url)) as uploader:
        await wait_until(lambda: uploader.stats.retried >= 3, what="the first tries")
    spool.close()  # the gateway stops with three pictures waiting

    spool = SnapshotSpool(folder)
    assert spool.count() == 3
    server.events.update({11: shas[0], 12: shas[1], 13: shas[2]})
    async with running(quick(spool, server.url)):
        await wait_until(lambda: len(server.stored) == 3, what="the uploads after the restart")
        await wait_until(lambda: spool.count() == 0, what="the spool to empty")
    assert sorted(p.name for p in folder.glob("*.jpg")) == []


def test_the_spool_is_bounded_by_age_and_count_and_deletes_only_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "snapshots"
    spool = SnapshotSpool(folder, keep_days=1, max_files=10)
    stranger = folder / ("f" * 64 + ".jpg")
    stranger.write_bytes(b"someone else's file")
    old_row, old_sha = spool.store(JPEG + b"old", "gw-1", now=1000.0)
    spool.assign(old_row, 1)
    for i in range(12):
        spooled(spool, 100 + i, JPEG + bytes([i]))
    # Twelve new plus one old over a bound of ten: the three oldest are gone.
    assert spool.count() == 10
    assert not spool.path_of(old_sha).exists()
    assert spool.prune(now=10**10) == 10
    assert spool.count() == 0
    assert stranger.exists()
    assert [p.name for p in folder.glob("*.jpg")] == [stranger.name]


def test_the_spool_refuses_what_is_not_a_jpeg_or_too_big(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "snapshots")
    with pytest.raises(SpoolError, match="not a JPEG"):
        spool.store(b"GIF89a...", "gw-1")
    with pytest.raises(SpoolError, match="bytes is over"):
        spool.store(b"\xff\xd8\xff" + bytes(2 * 1024 * 1024), "gw-1")
    assert spool.count() == 0


def test_the_cameras_settings_are_checked() -> None:
    assert CamerasConfig(server_url="https://rentgate.example.org/").server_url == "https://rentgate.example.org"
    for bad in ("ftp://x", "rentgate.example.org", "https://x/?a=1"):
        with pytest.raises(ValueError, match="server_url"):
            CamerasConfig(server_url=bad)
    with pytest.raises(ValueError, match="grant_before_s"):
        CamerasConfig(grant_before_s=-1)
