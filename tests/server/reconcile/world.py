"""A small hand-made district for reconciliation tests, written with Core
inserts (no registry validation needed to set up a situation)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import areas, buildings, cases, credentials, events, gateways, persons, registrations, units
from server.reconcile.runner import Reconciler
from server.rules import CityRules

# 10:00 in Shanghai: local days are whole days after T0.
T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@dataclass
class World:
    engine: sa.Engine
    rules: CityRules = field(default_factory=CityRules)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    grids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reconciler = Reconciler(self.engine, self.rules)

    def _insert(self, table: sa.Table, **values: Any) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one())

    def areas(self) -> None:
        """District D > street S > community C > grids G1, G2."""
        parent = None
        for level, code in (("district", "D"), ("street", "S"), ("community", "C")):
            parent = self._insert(areas, level=level, code=code, name=code, parent_id=parent, created_at=T0)
        for code in ("G1", "G2"):
            self.grids[code] = self._insert(areas, level="grid", code=code, name=code, parent_id=parent,
                                            created_at=T0)

    def building(self, name: str = "B", *, grid: str | None = None, rental: bool = True, pledge: bool = False,
                 gateway: str | None = None, landlord_user_id: int | None = None) -> int:
        bid = self._insert(buildings, name=name, created_at=T0, grid_id=self.grids.get(grid or ""),
                           is_rental=rental, pledge_signed_at=T0 if pledge else None,
                           landlord_user_id=landlord_user_id)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(gateways).values(id=gateway or f"gw-{bid}", first_seen=T0, last_seen=T0,
                                                    max_seq=0, building_id=bid))
        return bid

    def unit(self, building_id: int, number: str = "101", *, capacity: int = 4) -> int:
        return self._insert(units, building_id=building_id, number=number, area_m2=capacity * 5.0,
                            rooms=max(1, capacity // 2), capacity=capacity, created_at=T0)

    def person(self, name: str = "P") -> int:
        return self._insert(persons, display_name=name, created_at=T0)

    def register(self, person_id: int, unit_id: int, *, at: datetime = T0, card: str | None = None,
                 status: str = "active") -> int:
        with self.engine.connect() as conn:
            building_id = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar_one()
        rid = self._insert(registrations, person_id=person_id, building_id=building_id, unit_id=unit_id,
                           valid_from=at, created_at=at, status=status, source="landlord")
        if card is not None:
            self._insert(credentials, person_id=person_id, registration_id=rid, building_id=building_id,
                         unit_id=unit_id, format="em4100", value=card, doors=[], issued_at=at)
        return rid

    def card(self, unit_id: int, value: str, *, person_id: int | None = None, at: datetime = T0) -> int:
        """A card handed to a unit without a registration."""
        with self.engine.connect() as conn:
            building_id = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar_one()
        return self._insert(credentials, person_id=person_id, building_id=building_id, unit_id=unit_id,
                            format="em4100", value=value, doors=[], issued_at=at)

    def read(self, building_id: int, card: str, at: datetime, *, gateway: str | None = None) -> None:
        seq = next(self._seq)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(events).values(
                gateway_id=gateway or f"gw-{building_id}", seq=seq, kind="card_read", device="reader-1",
                door="door-1", occurred_at=at, received_at=at, stored_at=at, credential_format="em4100",
                credential_value=card, data={}))

    def reads(self, building_id: int, card: str, first_day: float, n_days: int) -> None:
        for d in range(n_days):
            self.read(building_id, card, day(first_day + d))

    def open_cases(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(cases).where(cases.c.state.in_(("open", "acknowledged"))).order_by(cases.c.id)
        if kind is not None:
            query = query.where(cases.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def case(self, case_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(cases).where(cases.c.id == case_id)).mappings().one())

    def sweep(self, at: datetime) -> Any:
        return self.reconciler.sweep(at)
