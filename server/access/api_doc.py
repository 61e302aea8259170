"""What the access routes answer, for the OpenAPI document
(server/web/openapi.py). The models describe the dicts
server/access/registry.py and routes.py build; they never build them."""

from __future__ import annotations

from datetime import datetime

from server.web.openapi import Out


class GatewayAssigned(Out):
    gateway: str
    building_id: int | None
    allowlist_version: int | None
    published: bool


class Allowlist(Out):
    gateway: str
    building_id: int | None
    version: int | None
    published_version: int | None
    published_at: datetime | None
    entries: list[dict[str, object]]
    revoked: list[dict[str, object]]


class AllowlistKeys(Out):
    # key id -> Ed25519 public key, base64
    keys: dict[str, str]
    active: str
