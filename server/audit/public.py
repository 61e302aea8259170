"""What may be shown to anyone, for the routes that publish it (they live
with the route policy, not here): the latest signed checkpoint and the key
that signs them. An oversight body fetches the checkpoint regularly and
keeps it; docs/audit.md says why that matters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.audit import store
from server.audit.errors import AuditKeyUnavailable
from server.audit.keys import AuditKey
from server.audit.keys import public_key_info as _key_info


def latest_checkpoint(conn: sa.Connection) -> dict[str, Any] | None:
    """``{"size", "head", "at", "key_id", "signature", "statement"}`` of the
    newest checkpoint (``statement``: the exact text its signature covers),
    or None before the first."""
    cp = store.latest_checkpoint(conn)
    if cp is None:
        return None
    return cp.as_json() | {"algorithm": "Ed25519", "statement": cp.message().decode("ascii")}


def public_key_info(key: AuditKey | None) -> dict[str, Any]:
    """The signing key's public half (``AUDIT``'s ``key``). Raises
    AuditKeyUnavailable (a 503) when the server has none."""
    if key is None:
        raise AuditKeyUnavailable("this server has no audit signing key; see docs/audit.md, Keys")
    return _key_info(key)
