"""Database reads behind the API. Synchronous: the routes run them in a thread."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.api.params import EventFilter, Page
from server.db.models import dead_letters, events, gateways, seq_gaps


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _page(rows: list[dict[str, Any]], page: Page) -> dict[str, Any]:
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return {"next": str(rows[-1]["id"]) if more else None, "rows": rows}


def list_events(engine: sa.Engine, f: EventFilter) -> dict[str, Any]:
    c = events.c
    query = sa.select(events).order_by(c.id).limit(f.page.limit + 1)
    if f.page.after is not None:
        query = query.where(c.id > f.page.after)
    for column, value in ((c.gateway_id, f.gateway), (c.door, f.door), (c.device, f.device), (c.kind, f.kind)):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(c.occurred_at >= f.since)
    if f.until is not None:
        query = query.where(c.occurred_at < f.until)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    page = _page(rows, f.page)
    return {"events": [_event_json(r) for r in page["rows"]], "next": page["next"]}


def _event_json(r: dict[str, Any]) -> dict[str, Any]:
    credential = None
    if r["credential_format"] is not None:
        credential = {"format": r["credential_format"], "value": r["credential_value"]}
    return {
        "id": r["id"], "gateway_id": r["gateway_id"], "seq": r["seq"], "kind": r["kind"],
        "device": r["device"], "door": r["door"], "occurred_at": _iso(r["occurred_at"]),
        "received_at": _iso(r["received_at"]), "stored_at": _iso(r["stored_at"]),
        "credential": credential, "data": r["data"],
    }


def list_gateways(engine: sa.Engine) -> dict[str, Any]:
    open_gaps = (
        sa.select(sa.func.count()).select_from(seq_gaps)
        .where(seq_gaps.c.gateway_id == gateways.c.id, seq_gaps.c.state == "open")
        .scalar_subquery()
    )
    query = sa.select(gateways, open_gaps.label("open_gaps")).order_by(gateways.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {"gateways": [
        {
            "id": r["id"], "online": r["online"], "first_seen": _iso(r["first_seen"]),
            "last_seen": _iso(r["last_seen"]), "status_at": _iso(r["status_at"]), "version": r["version"],
            "outbox_depth": r["outbox_depth"], "oldest_unsent_age_s": r["oldest_unsent_age_s"],
            "dropped_total": r["dropped_total"], "rejected_total": r["rejected_total"],
            "devices_online": r["devices_online"], "devices_total": r["devices_total"],
            "allowlist_version": r["allowlist_version"],
            "max_seq": r["max_seq"], "open_gaps": r["open_gaps"],
        }
        for r in rows
    ]}


def list_dead_letters(engine: sa.Engine, page: Page) -> dict[str, Any]:
    query = sa.select(dead_letters).order_by(dead_letters.c.id).limit(page.limit + 1)
    if page.after is not None:
        query = query.where(dead_letters.c.id > page.after)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    result = _page(rows, page)
    for r in result["rows"]:
        r["received_at"] = _iso(r["received_at"])
    return {"dead_letters": result["rows"], "next": result["next"]}


def list_gaps(engine: sa.Engine, gateway: str | None, page: Page) -> dict[str, Any]:
    query = sa.select(seq_gaps).order_by(seq_gaps.c.id).limit(page.limit + 1)
    if gateway is not None:
        query = query.where(seq_gaps.c.gateway_id == gateway)
    if page.after is not None:
        query = query.where(seq_gaps.c.id > page.after)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    result = _page(rows, page)
    for r in result["rows"]:
        for key in ("detected_at", "last_requested_at", "closed_at"):
            r[key] = _iso(r[key])
    return {"gaps": result["rows"], "next": result["next"]}
