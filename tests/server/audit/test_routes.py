"""The audit log's public routes: anyone may fetch the newest signed
checkpoint and the key, and check one with the other."""

from __future__ import annotations

import base64
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.app import make_app
from server.audit.appkeys import AUDIT
from server.audit.entries import AuditEntry
from tests.server.registry.api_helpers import MakeClient, settings_for


async def test_anyone_can_fetch_and_check_the_newest_checkpoint(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False))
    none_yet = await client.get("/api/v1/audit/checkpoints/latest")
    assert none_yet.status == 404 and (await none_yet.json())["detail"] == "no such checkpoint"
    audit = client.app[AUDIT]
    await audit.append(AuditEntry(actor="test", action="test.one"), AuditEntry(actor="test", action="test.two"))
    await audit.checkpoint()
    key = await (await client.get("/api/v1/audit/public-key")).json()
    found = await client.get("/api/v1/audit/checkpoints/latest")
    checkpoint = await found.json()
    assert found.status == 200 and checkpoint["size"] == 2 and checkpoint["key_id"] == key["key_id"]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    # Raises InvalidSignature if the statement is not what was signed.
    public.verify(base64.b64decode(checkpoint["signature"]), checkpoint["statement"].encode("ascii"))
    assert str(checkpoint["size"]) in checkpoint["statement"] and checkpoint["head"] in checkpoint["statement"]
