"""A small city for the grid tests: district > street > community > grids
G1, G2 (and G3 with nobody), one rental building per grid with units, an
administrator, coordinators (two in G1, one in G2), a landlord. Written with
the registry's functions and Core inserts; times are the test's."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.auth.passwords import hash_password
from server.auth.policy import AuthUser
from server.auth.sessions import start_session
from server.db.models import areas, buildings, cases, persons, registrations, tasks, units, users
from server.grid import grids, service
from server.grid.tasks import create_task
from server.rules import CityRules
from server.web.transactions import write_transaction
from tests.server.auth_helpers import UserCreds

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
PASSWORD = "pw-secret-1"


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


@functools.cache
def _password_hash() -> str:
    """One scrypt hash for every scene user (hashing costs ~0.1 s each)."""
    return hash_password(PASSWORD)


def _user(conn: sa.Connection, name: str, role: str) -> UserCreds:
    user_id = conn.execute(sa.insert(users).values(username=name, password_hash=_password_hash(), role=role,
                                                   display_name=name, created_at=T0).returning(users.c.id)).scalar_one()
    token = start_session(conn, datetime.now(UTC), user_id, kind="token", ttl=None, label="test")
    return UserCreds(id=int(user_id), username=name, password=PASSWORD, token=token)


@dataclass
class Scene:
    engine: sa.Engine
    rules: CityRules = field(default_factory=CityRules)
    grids: dict[str, int] = field(default_factory=dict)
    buildings: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    users: dict[str, UserCreds] = field(default_factory=dict)

    def build(self) -> Scene:
        with write_transaction(self.engine) as conn:
            parent = None
            for level, code in (("district", "D"), ("street", "S"), ("community", "C")):
                parent = self._insert(conn, areas, level=level, code=code, name=code, parent_id=parent, created_at=T0)
            for code in ("G1", "G2", "G3"):
                self.grids[code] = self._insert(conn, areas, level="grid", code=code, name=f"网格{code}",
                                                parent_id=parent, created_at=T0)
            for code in ("G1", "G2", "G3"):
                b = self._insert(conn, buildings, name=f"楼{code}", address=f"路{code}号", created_at=T0,
                                 grid_id=self.grids[code], is_rental=True)
                self.buildings[code] = b
                for n in ("101", "102"):
                    self.units[f"{code}-{n}"] = self._insert(conn, units, building_id=b, number=n, area_m2=20.0,
                                                             rooms=1, capacity=2, created_at=T0)
        with write_transaction(self.engine) as conn:
            for name, role in (("admin", "admin"), ("admin2", "admin"), ("chen", "coordinator"),
                               ("li", "coordinator"), ("wang", "coordinator"), ("landlord", "landlord")):
                self.users[name] = _user(conn, name, role)
        with write_transaction(self.engine) as conn:
            for name, grid in (("chen", "G1"), ("li", "G1"), ("wang", "G2")):
                grids.assign(conn, T0, "test", self.grids[grid], self.users[name].id)
        return self

    @staticmethod
    def _insert(conn: sa.Connection, table: sa.Table, **values: Any) -> int:
        return int(conn.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one())

    def auth(self, name: str) -> AuthUser:
        creds = self.users[name]
        role = {"admin": "admin", "admin2": "admin", "landlord": "landlord"}.get(name, "coordinator")
        return AuthUser(creds.id, creds.username, role, creds.username)

    def task(self, unit: str = "G1-101", *, now: datetime = T0, kind: str = "manual_check",
             case_id: int | None = None) -> int:
        with write_transaction(self.engine) as conn:
            return create_task(conn, now, "test", self.rules, kind=kind, source="manual" if case_id is None else "case",
                               summary="check it", unit_id=self.units[unit], case_id=case_id)

    def act(self, name: str, task_id: int, action: str, now: datetime = T0, **given: Any) -> dict[str, Any]:
        with write_transaction(self.engine) as conn:
            return service.apply_action(conn, now, self.rules, self.auth(name), task_id, action,
                                        service.ActionInput(**given))

    def row(self, task_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).mappings().one())

    def case(self, unit: str = "G1-101", kind: str = "overcrowding", *, state: str = "open",
             now: datetime = T0) -> int:
        with write_transaction(self.engine) as conn:
            return self._insert(conn, cases, kind=kind, subject=f"u{self.units[unit]}-{kind}-{now.timestamp()}",
                                state=state, building_id=self.buildings[unit[:2]], unit_id=self.units[unit],
                                evidence={}, opened_at=now, updated_at=now)

    def resident(self, unit: str, *, status: str = "active") -> int:
        with write_transaction(self.engine) as conn:
            person = self._insert(conn, persons, display_name="P", created_at=T0)
            return self._insert(conn, registrations, person_id=person, building_id=self.buildings[unit[:2]],
                                unit_id=self.units[unit], valid_from=T0, created_at=T0, status=status,
                                source="landlord")
