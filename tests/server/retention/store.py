"""Raw events written straight into the database for the retention tests
(Core inserts: any time, gateway, door or card), and the reconciliation
watermarks set by hand."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.db.models import buildings, event_daily, events, gateways, reconcile_state
from server.reconcile.marks import mark_of_event
from server.reconcile.watermarks import EVERY_FOLD

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The test's "now": 2025-07-01 12:00 in Shanghai.
NOW = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)


def local(day: date, hour: float = 10.0) -> datetime:
    """An instant on a local (Shanghai) day, ``hour`` hours after its midnight."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC) + timedelta(hours=hour)


@dataclass
class Events:
    engine: sa.Engine
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Gateway id -> its building's id.
    buildings: dict[str, int | None] = field(default_factory=dict)

    def gateway(self, gateway_id: str, *, building: str | None = None) -> int | None:
        """A gateway, in a new building when ``building`` names one."""
        with self.engine.begin() as conn:
            building_id = None
            if building is not None:
                building_id = int(conn.execute(sa.insert(buildings).values(name=building, created_at=NOW)
                                               .returning(buildings.c.id)).scalar_one())
            conn.execute(sa.insert(gateways).values(id=gateway_id, first_seen=NOW, last_seen=NOW, max_seq=0,
                                                    building_id=building_id))
        self.buildings[gateway_id] = building_id
        return building_id

    def add(self, at: datetime, *, gateway: str = "gw-1", card: str | None = "C1", kind: str | None = None,
            door: str | None = "door-1") -> int:
        return self.many([dict(at=at, gateway=gateway, card=card, kind=kind, door=door)])[-1]

    def many(self, specs: list[dict[str, Any]]) -> list[int]:
        """Inserts in the given order (ids ascending); each spec as add()'s arguments."""
        rows = []
        for s in specs:
            card, at = s.get("card", "C1"), s["at"]
            rows.append({"gateway_id": s.get("gateway", "gw-1"), "seq": next(self._seq),
                         "kind": s.get("kind") or ("card_read" if card is not None else "door_state"),
                         "device": "reader-1", "door": s.get("door", "door-1"), "occurred_at": at,
                         "received_at": at, "stored_at": at, "credential_format": "em4100" if card else None,
                         "credential_value": card, "data": {}})
        with self.engine.begin() as conn:
            ids = conn.execute(sa.insert(events).returning(events.c.id, sort_by_parameter_order=True), rows)
            return [int(i) for i in ids.scalars()]

    def reconciled_upto(self, event_id: int, *, folds: Sequence[str] = EVERY_FOLD) -> None:
        """Every fold named (by default all: card reads and cameras) has read up to ``event_id``."""
        with self.engine.begin() as conn:
            # The fold's mark at that event (server/reconcile/marks.py): these
            # inserts come one transaction after another, so that is every
            # event up to it.
            mark = mark_of_event(conn, event_id)
            for name in folds:
                conn.execute(sa.delete(reconcile_state).where(reconcile_state.c.name == name))
                conn.execute(sa.insert(reconcile_state).values(name=name, last_txid=mark.txid, last_event_id=mark.id,
                                                               updated_at=NOW))

    def all_reconciled(self) -> None:
        with self.engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0
        self.reconciled_upto(int(newest))

    def ids(self) -> set[int]:
        with self.engine.connect() as conn:
            return {int(i) for i in conn.execute(sa.select(events.c.id)).scalars()}

    def daily(self) -> dict[tuple[date, str, str, str], tuple[int, int, int | None]]:
        """(day, gateway, door, kind) -> (events, credentials, building_id)."""
        with self.engine.connect() as conn:
            return {(r.day, r.gateway_id, r.door, r.kind): (int(r.events), int(r.credentials), r.building_id)
                    for r in conn.execute(sa.select(event_daily))}
