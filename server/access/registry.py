"""What the access side keeps of the registry: the ``Outcome`` of a change
(its answer, and the allowlist ``Change``s to publish after commit) and
pointing a gateway at a building. Buildings, persons, registrations and
credentials are written by the registry service (server/registry/service.py),
which leaves a ``history`` row for every change (docs/registry.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access import allowlists
from server.access.allowlists import Change
from server.db.models import buildings, gateways
from server.web.errors import InvalidInput

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    body: JsonObj
    changes: list[Change] = field(default_factory=list)


def assign_gateway(conn: sa.Connection, now: datetime, gateway_id: str, building_id: int | None) -> Outcome:
    """Point a gateway at a building (None: at none, its list empties). A
    gateway that has not reported yet gets its row now."""
    if building_id is not None and conn.execute(
            sa.select(buildings.c.id).where(buildings.c.id == building_id)).first() is None:
        raise InvalidInput("building_id", "no such building")
    updated = conn.execute(sa.update(gateways).where(gateways.c.id == gateway_id)
                           .values(building_id=building_id)).rowcount
    if not updated:
        conn.execute(sa.insert(gateways).values(id=gateway_id, first_seen=now, last_seen=now, max_seq=0,
                                                building_id=building_id))
    changes = allowlists.bump(conn, [gateway_id], now, snapshot_only=True)
    return Outcome({"gateway": gateway_id, "building_id": building_id,
                    "allowlist_version": changes[0].version}, changes)
