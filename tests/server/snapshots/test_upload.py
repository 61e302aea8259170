"""The gateways' upload: accepted only for the bytes an event of that
gateway names, one identical 404 for every refusal about the event, and
the bounds on everything else."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from PIL import Image

from server.app import make_app
from server.db.models import event_snapshots
from server.media.store import MediaStore
from server.snapshots.appkeys import UPLOAD_LIMITER
from server.snapshots.check import MAX_SNAPSHOT_BYTES
from server.web.ratelimit import RateLimiter
from tests.server.scan.world import SQLITE_ONLY, Client, ScanWorld, png_bytes
from tests.server.snapshots.conftest import MakeClient
from tests.server.snapshots.world import (
    CARD_SEQ,
    FAR_GW,
    GW,
    OUT_SEQ,
    TAILGATING_SEQ,
    UNIDENTIFIED_SEQ,
    Door,
    noise_jpeg,
    sha,
)

JPEG = {"Content-Type": "image/jpeg"}
NOT_WAITING = {"error": "not_found", "detail": "no event of this gateway is waiting for this picture"}


def url(gw: str, seq: int | str) -> str:
    return f"/api/v1/gateways/{gw}/events/{seq}/snapshot"


def stored_rows(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(event_snapshots.c.event_id, event_snapshots.c.sha256)).tuples().all())


def stored_file(world: ScanWorld, sha256: str) -> Path:
    assert world.settings.media_dir is not None
    return MediaStore(Path(world.settings.media_dir) / "snapshots").path_for(sha256)


async def test_the_named_bytes_are_stored_as_sent_and_a_retry_is_a_success(
        client: Client, world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=JPEG)
    assert response.status == 201, await response.text()
    assert await response.json() == {"status": "stored", "sha256": sha(door.unidentified),
                                     "size_bytes": len(door.unidentified)}
    assert stored_rows(engine) == {door.unidentified_id: sha(door.unidentified)}
    # Not re-encoded: the file still hashes to what the event names.
    assert stored_file(world, sha(door.unidentified)).read_bytes() == door.unidentified

    again = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=JPEG)
    assert again.status == 200 and (await again.json())["status"] == "already_stored"
    assert stored_rows(engine) == {door.unidentified_id: sha(door.unidentified)}


async def test_every_refusal_about_the_event_is_one_identical_404(
        client: Client, door: Door, engine: sa.Engine) -> None:
    attempts = [
        (url(GW, UNIDENTIFIED_SEQ), door.tailgating),   # another event's picture
        (url(GW, 999), door.unidentified),              # no such seq
        (url(FAR_GW, TAILGATING_SEQ), door.tailgating),  # the other gateway has no such event
        (url(FAR_GW, UNIDENTIFIED_SEQ), door.unidentified),  # its event names another picture
        (url("gw-nobody", UNIDENTIFIED_SEQ), door.unidentified),  # no such gateway
        (url(GW, CARD_SEQ), door.unidentified),         # a card read names it: not a camera event
        (url(GW, OUT_SEQ), door.unidentified),          # a walk-out without a picture
    ]
    answers = []
    for path, data in attempts:
        response = await client.put(path, data=data, headers=JPEG)
        answers.append((response.status, await response.read()))
    assert all(status == 404 for status, _ in answers), answers
    assert len({body for _, body in answers}) == 1
    assert json.loads(answers[0][1]) == NOT_WAITING
    assert stored_rows(engine) == {}


@SQLITE_ONLY
@pytest.mark.parametrize("gw, seq, field", [
    (GW, "0", "seq"), (GW, "-1", "seq"), (GW, "abc", "seq"), (GW, str(2**63), "seq"), (GW, "1" * 40, "seq"),
    ("bad%20id", "10", "gw"), ("g" * 65, "10", "gw"), ("-gw", "10", "gw"),
])
async def test_absurd_paths_are_refused_with_the_field_named(client: Client, door: Door, gw: str, seq: str,
                                                             field: str) -> None:
    response = await client.put(url(gw, seq), data=door.unidentified, headers=JPEG)
    assert response.status == 400
    assert (await response.json())["field"] == field


@SQLITE_ONLY
async def test_what_is_not_a_jpeg_is_refused(client: Client, door: Door, engine: sa.Engine) -> None:
    cases = [
        (png_bytes(), JPEG),                                    # a PNG declared as JPEG
        (door.unidentified, {"Content-Type": "image/png"}),    # a JPEG declared as something else
        (door.unidentified, {"Content-Type": "application/octet-stream"}),
        (door.unidentified[: len(door.unidentified) // 2], JPEG),  # truncated
        (b"\xff\xd8\xff" + b"\x00" * 200, JPEG),                # the signature and garbage
    ]
    for data, headers in cases:
        response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=data, headers=headers)
        assert response.status == 415, (headers, await response.text())
        assert (await response.json())["error"] == "unsupported_media_type"
    assert stored_rows(engine) == {}


@SQLITE_ONLY
async def test_oversize_bodies_and_pixel_bombs_are_refused(client: Client, door: Door, engine: sa.Engine) -> None:
    too_big = door.unidentified + b"\x00" * (MAX_SNAPSHOT_BYTES + 1 - len(door.unidentified))
    response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=too_big, headers=JPEG)
    assert response.status == 413 and "2 MiB" in (await response.json())["detail"]

    # The same without a declared length (chunked): read up to the bound only.
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(too_big), 256 * 1024):
            yield too_big[i:i + 256 * 1024]
    response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=chunks(), headers=JPEG)
    assert response.status == 413

    out = io.BytesIO()
    Image.new("L", (5000, 4000)).save(out, "JPEG")  # 20 megapixels in a small file
    assert len(out.getvalue()) < MAX_SNAPSHOT_BYTES
    response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=out.getvalue(), headers=JPEG)
    assert response.status == 413 and "pixels" in (await response.json())["detail"]
    assert stored_rows(engine) == {}


@SQLITE_ONLY
async def test_a_picture_over_the_other_routes_1_mib_is_taken(
        world: ScanWorld, engine: sa.Engine, aiohttp_client: MakeClient) -> None:
    from tests.server.snapshots.world import add_camera_events

    big = noise_jpeg(1300, 1000)
    assert 1024 * 1024 < len(big) < MAX_SNAPSHOT_BYTES
    door = add_camera_events(world, engine, big=big)
    client = await aiohttp_client(make_app(world.settings, ingest=False))
    response = await client.put(url(GW, TAILGATING_SEQ), data=big, headers=JPEG)
    assert response.status == 201, await response.text()
    assert stored_rows(engine) == {door.tailgating_id: sha(big)}


@SQLITE_ONLY
async def test_uploads_are_limited_per_address(world: ScanWorld, door: Door, aiohttp_client: MakeClient) -> None:
    app: web.Application = make_app(world.settings, ingest=False)
    app[UPLOAD_LIMITER] = RateLimiter(3, 60.0)
    client = await aiohttp_client(app)
    statuses = [(await client.put(url(GW, 999), data=door.unidentified, headers=JPEG)).status for _ in range(3)]
    assert statuses == [404, 404, 404]
    response = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=JPEG)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1


def _enrol(engine: sa.Engine, gw: str, password: str) -> None:
    """What enrolment leaves on the gateway's row: a hash of its broker password."""
    from server.auth.passwords import hash_password
    from server.db.models import gateways

    with engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id == gw).values(secret_hash=hash_password(password)))


def _basic(user: str, password: str) -> dict[str, str]:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {**JPEG, "Authorization": f"Basic {token}"}


async def test_an_enrolled_gateway_uploads_only_with_its_own_login(
        client: Client, door: Door, engine: sa.Engine) -> None:
    _enrol(engine, GW, "the-gateways-broker-password")
    # The picture's hash alone no longer does: the same 404 as any refusal.
    anonymous = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=JPEG)
    assert anonymous.status == 404 and await anonymous.json() == NOT_WAITING
    for headers in (_basic(GW, "a-guess"), _basic(FAR_GW, "the-gateways-broker-password"),
                    {**JPEG, "Authorization": "Basic !!!"}, {**JPEG, "Authorization": "Bearer x" * 3}):
        refused = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=headers)
        assert refused.status == 401, headers
        assert "WWW-Authenticate" in refused.headers
    # A wrong login is the same 401 for a gateway that does not exist: no oracle of ids.
    nobody = await client.put(url("gw-nobody", UNIDENTIFIED_SEQ), data=door.unidentified,
                              headers=_basic("gw-nobody", "x"))
    assert nobody.status == 401
    assert stored_rows(engine) == {}
    good = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified,
                            headers=_basic(GW, "the-gateways-broker-password"))
    assert good.status == 201, await good.text()
    assert stored_rows(engine) == {door.unidentified_id: sha(door.unidentified)}


async def test_a_revoked_gateway_uploads_nothing(client: Client, door: Door, engine: sa.Engine) -> None:
    from datetime import UTC, datetime

    from server.db.models import gateways

    _enrol(engine, GW, "the-gateways-broker-password")
    with engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id == GW).values(
            revoked_at=datetime.now(UTC), secret_hash=None))
    with_login = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified,
                                  headers=_basic(GW, "the-gateways-broker-password"))
    assert with_login.status == 401
    without = await client.put(url(GW, UNIDENTIFIED_SEQ), data=door.unidentified, headers=JPEG)
    assert without.status == 404 and await without.json() == NOT_WAITING
    assert stored_rows(engine) == {}
