"""The audit log's two public routes: the newest signed checkpoint, which an
oversight body fetches regularly and keeps (a checkpoint kept outside the
server is what makes a rewritten log detectable), and the key that signs
them. Neither holds personal data: a checkpoint is a count and a hash."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.appkeys import ENGINE
from server.audit.appkeys import AUDIT
from server.audit.public import latest_checkpoint, public_key_info
from server.auth.policy import public
from server.db.read_pool import with_retry
from server.web.errors import NotFound
from server.web.http import answer, api_errors
from server.web.openapi import Out, api


class Checkpoint(Out):
    size: int
    head: str
    at: str
    key_id: str
    signature: str
    algorithm: str
    statement: str


class PublicKey(Out):
    algorithm: str
    key_id: str
    public_key: str
    public_key_pem: str
    statement: str
    format: str


@api_errors
async def checkpoint(request: web.Request) -> web.Response:
    def read() -> dict[str, object] | None:
        with request.app[ENGINE].connect() as conn:
            return latest_checkpoint(conn)

    found = await asyncio.to_thread(with_retry, read)
    if found is None:
        raise NotFound("checkpoint")
    return answer(found)


@api_errors
async def public_key(request: web.Request) -> web.Response:
    return answer(public_key_info(request.app[AUDIT].key))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/audit/checkpoints/latest", public("a count and a hash, signed; no personal data")(
        api("The newest signed checkpoint of the audit log (docs/audit.md)", tag="audit",
            responses={200: Checkpoint}, errors=(404,))(checkpoint)))
    r.add_get("/api/v1/audit/public-key", public("the public key that verifies checkpoints")(
        api("The key that signs the audit log's checkpoints", tag="audit", responses={200: PublicKey})(public_key)))
