"""Every view of a snapshot goes into the audit log the way a view of a
full identity number does (action ``pii.view``, docs/audit.md): who, which
event, through what (the API or a page), the purpose when the caller gave
one; appended and durable before the picture is sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web

from server.audit.appkeys import AUDIT
from server.audit.entries import AuditEntry

log = logging.getLogger(__name__)

ACTION = "pii.view"
WHAT = "snapshot"


def view_entry(actor: str, event_id: int, *, via: str, status: int = 200,
               purpose: Mapping[str, str] | None = None) -> AuditEntry:
    return AuditEntry(actor=actor, action=ACTION, subject=f"event:{event_id}", status=status, purpose=purpose,
                      size=1 if status == 200 else 0, detail={"what": WHAT, "event_id": event_id, "via": via})


class AuditDown(web.HTTPServiceUnavailable):
    """The log cannot be written: the picture is not shown."""


async def audited(request: web.Request, entry: AuditEntry) -> None:
    """Appends ``entry`` and waits until it is committed; 503 when the log
    cannot be written (a view nobody could account for is not given)."""
    try:
        await request.app[AUDIT].append(entry)
    except Exception as exc:  # noqa: BLE001 - any failure to audit refuses the view
        log.warning("audit log unavailable, refusing a snapshot view: %s", exc)
        raise AuditDown(text=json.dumps({"error": "audit_unavailable",
                                         "detail": "the audit log cannot be written; try again shortly"}),
                        content_type="application/json") from None
