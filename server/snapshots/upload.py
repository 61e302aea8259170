"""``PUT /api/v1/gateways/{gw}/events/{seq}/snapshot``: a gateway sends the
JPEG of a camera event after the event itself (docs/cameras-privacy.md).

The upload is authenticated by its content: the bytes are taken only when
that gateway's event ``seq`` is stored, is a camera event naming a snapshot,
names exactly the SHA-256 of these bytes, and is not older than the snapshot
retention period (or the events' own). The event came through the gateway's
own broker login, so it vouches for the picture; the route is public and
rate-limited per address.

An enrolled gateway (docs/enrolment.md) also proves who it is: HTTP Basic
with its gateway id and broker password, checked against the hash kept at
enrolment. Its uploads without that login are refused with the same 404 as
any other refusal, so a stolen event hash is not enough; a wrong login is a
401 whatever the gateway id (it says nothing of which ids exist). A revoked
gateway's uploads are refused. Gateways configured by hand before enrolment
existed keep the content check alone.

Every refusal that is about the event (none, another kind, another hash,
too old) is one identical 404, so a caller without the picture learns
nothing of the gateway's events. An identical upload again is a success
(200; the first is 201): the gateway retries until it hears one.

Checked in the order that reveals least: the path (400), the declared type
(415), the size (413, read with a bound of its own), the bytes (415/413),
then the event (404). The bytes are stored exactly as sent."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.appkeys import ENGINE, SETTINGS
from server.auth.passwords import verify_password
from server.auth.policy import public
from server.db.models import gateways
from server.media.errors import MediaUnavailable
from server.settings import ServerSettings
from server.snapshots.appkeys import UPLOAD_LIMITER
from server.snapshots.check import CONTENT_TYPE, MAX_SNAPSHOT_BYTES, CheckedJpeg, check_jpeg
from server.snapshots.errors import NotAJpeg, NotWaiting, SnapshotTooLarge
from server.snapshots.store import Waiting, record, save_file, snapshot_files, waiting_event
from server.web.openapi import Out, api
from server.web.ratelimit import retry_after_header
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

# Uploads per client address and minute: a gateway sends one per alert, a
# busy door a few a minute, a gateway catching up after an outage more;
# a script trying hashes far more.
UPLOADS_PER_MINUTE = 120
NOT_WAITING = "no event of this gateway is waiting for this picture"
_CHUNK = 64 * 1024


class Stored(Out):
    status: str  # "stored" | "already_stored"
    sha256: str
    size_bytes: int


def _error(status: int, error: str, detail: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": error, "detail": detail}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _seq(raw: str) -> int | None:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= wire.MAX_INT else None


async def _read_bounded(request: web.Request) -> bytes | None:
    """The body, or None once it passes MAX_SNAPSHOT_BYTES (read no further)."""
    if request.content_length is not None and request.content_length > MAX_SNAPSHOT_BYTES:
        return None
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > MAX_SNAPSHOT_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _oldest_taken(settings_days: int, event_days: int, now: datetime) -> datetime:
    # A picture past its retention would be deleted by the next purge; one
    # of an event the event purge is about to take could block that purge.
    return now - timedelta(days=min(settings_days, event_days))


def _login(request: web.Request) -> tuple[str, str] | None | bool:
    """(user, password) from ``Authorization: Basic``; None without one;
    False for one that cannot be read."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or len(value) > 512:
        return False
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return (user, password) if sep else False


def _gateway_admits(engine: sa.Engine, gateway_id: str, login: tuple[str, str] | None) -> bool | None:
    """True: go on; False: the login is wrong (401); None: refuse like a
    missing event (404). Blocking (scrypt)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(gateways.c.secret_hash, gateways.c.revoked_at)
                           .where(gateways.c.id == gateway_id)).first()
    if login is not None:
        user, password = login
        good = (row is not None and row.revoked_at is None and row.secret_hash is not None
                and user == gateway_id and verify_password(password, row.secret_hash))
        return True if good else False
    if row is not None and (row.revoked_at is not None or row.secret_hash is not None):
        return None
    return True


def _store(engine: sa.Engine, settings: ServerSettings, gateway_id: str, seq: int, jpeg: CheckedJpeg) -> str:
    """"stored" or "already_stored"; NotWaiting otherwise (blocking)."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        found: Waiting | None = waiting_event(conn, gateway_id, seq)
    oldest = _oldest_taken(settings.snapshot_retention_days, settings.event_retention_days, now)
    if found is None or found.sha256 != jpeg.sha256 or found.occurred_at < oldest:
        raise NotWaiting(NOT_WAITING)
    if found.stored_sha256 is not None:
        return "already_stored"
    save_file(snapshot_files(settings), jpeg)
    try:
        with write_transaction(engine) as conn:
            fresh = record(conn, found.event_id, jpeg, gateway_id, now)
    except sa.exc.IntegrityError:
        # The event was purged between the look-up and the insert.
        raise NotWaiting(NOT_WAITING) from None
    return "stored" if fresh else "already_stored"


async def upload_handler(request: web.Request) -> web.StreamResponse:
    wait = request.app[UPLOAD_LIMITER].hit(request.remote or "unknown")
    if wait is not None:
        return _error(429, "too_many_requests", f"at most {UPLOADS_PER_MINUTE} snapshots a minute from one address",
                      headers={"Retry-After": retry_after_header(wait)})
    gateway_id = request.match_info["gw"]
    if not wire.is_gateway_id(gateway_id):
        return _error(400, "bad_parameter", "not a gateway id", "gw")
    seq = _seq(request.match_info["seq"])
    if seq is None:
        return _error(400, "bad_parameter", f"must be a whole number from 1 to {wire.MAX_INT}", "seq")
    login = _login(request)
    if login is False:
        return _error(401, "unauthorized", "send the gateway's login as HTTP Basic (gateway id and broker password)",
                      headers={"WWW-Authenticate": 'Basic realm="rentgate gateways"'})
    admits = await asyncio.to_thread(_gateway_admits, request.app[ENGINE], gateway_id,
                                     login if isinstance(login, tuple) else None)
    if admits is False:
        return _error(401, "unauthorized", "the gateway's login was refused",
                      headers={"WWW-Authenticate": 'Basic realm="rentgate gateways"'})
    if admits is None:
        return _error(404, "not_found", NOT_WAITING)
    declared = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if declared != CONTENT_TYPE:
        return _error(415, "unsupported_media_type", "send the JPEG's bytes with Content-Type: image/jpeg")
    raw = await _read_bounded(request)
    if raw is None:
        return _error(413, "too_large", f"a snapshot may have at most {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MiB")
    try:
        jpeg = await asyncio.to_thread(check_jpeg, raw)
    except SnapshotTooLarge as exc:
        return _error(413, "too_large", str(exc))
    except NotAJpeg as exc:
        return _error(415, "unsupported_media_type", str(exc))
    try:
        outcome = await asyncio.to_thread(_store, request.app[ENGINE], request.app[SETTINGS], gateway_id, seq, jpeg)
    except NotWaiting:
        return _error(404, "not_found", NOT_WAITING)
    except MediaUnavailable as exc:
        return _error(503, "media_unavailable", str(exc).replace("photos", "snapshots"))
    if outcome == "stored":
        log.info("snapshot of gateway %s event %s stored (%s bytes)", gateway_id, seq, len(jpeg.data))
    return web.json_response({"status": outcome, "sha256": jpeg.sha256, "size_bytes": len(jpeg.data)},
                             status=201 if outcome == "stored" else 200)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/v1/gateways/{gw}/events/{seq}/snapshot", public(
        "authenticated by content: taken only when the gateway's event names the SHA-256 of the bytes; an "
        "enrolled gateway also by its own login (HTTP Basic); one identical 404 for every refusal about the "
        "event; rate-limited per address")(
        api("A gateway uploads the JPEG of a camera event", tag="cameras", body_media=CONTENT_TYPE,
            body_schema={"type": "string", "format": "binary", "maxLength": MAX_SNAPSHOT_BYTES},
            description="Body: the JPEG's bytes (Content-Type: image/jpeg, at most 2 MiB, 16.7 megapixels), "
                        "stored exactly as sent. 201 stored, 200 already stored (an identical retry); 404 "
                        "(one answer) when no event of this gateway with this seq names the bytes' SHA-256; "
                        "415 not a JPEG; 413 too large.",
            responses={201: Stored, 200: Stored}, errors=(401, 413, 415, 429))(upload_handler)))
