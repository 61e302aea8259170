"""A recording client for the registry API and a small seeded city: areas,
a building owned by a landlord user, its unit and a gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import signing
from server.plates.appkeys import PLATE_KEYS
from server.plates.keys import rotate
from server.plates.service import ensure_plates
from server.registry.idnumber import make_id_number
from server.registry.pii import write_key_file
from server.settings import ServerSettings
from tests.server.auth_helpers import UserCreds, bearer, make_user

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

ID_A = make_id_number("440106", date(1990, 5, 17), 123)
ID_B = make_id_number("320102", date(1985, 11, 2), 48)


def settings_for(database_url: str, tmp_path: Path) -> ServerSettings:
    key = tmp_path / "pii.key"
    write_key_file(key)
    plate_keys = tmp_path / "plate-keys"
    if not plate_keys.exists():
        rotate(plate_keys)
    # The audit log's and the police webhooks' signing keys, which a
    # PostgreSQL server must be given (SQLite ones are generated).
    signing_keys: dict[str, str] = {}
    for name in ("audit_key_file", "police_signing_key_file"):
        path = tmp_path / f"{name}.pem"
        if not path.exists():
            path.write_text(signing.private_key_pem(signing.generate_private_key()))
        signing_keys[name] = str(path)
    return ServerSettings(database_url=database_url, pii_key_file=str(key), plate_key_file=str(plate_keys),
                          audit_key_file=signing_keys["audit_key_file"],
                          police_signing_key_file=signing_keys["police_signing_key_file"])


@dataclass
class Api:
    client: Client
    # Every response body seen, to prove no identity number leaks.
    seen: list[str] = field(default_factory=list)

    async def call(self, method: str, path: str, body: Any = None, status: int = 200, *,
                   token: str | None = None, **params: Any) -> Any:
        headers = bearer(token) if token else {}
        response = await self.client.request(method, path, json=body, headers=headers, params=params or None)
        text = await response.text()
        self.seen.append(text)
        assert response.status == status, f"{method} {path}: {response.status} {text}"
        return await response.json()


@dataclass(frozen=True)
class City:
    admin: UserCreds
    landlord: UserCreds
    other_landlord: UserCreds
    coordinator: UserCreds
    police: UserCreds
    building: int
    unit: int
    unit2: int
    other_building: int
    other_unit: int
    # The door-plate tokens of unit and unit2 (self-declarations name a plate).
    plates: dict[int, str] = field(default_factory=dict)


async def seed_city(api: Api, engine: sa.Engine) -> City:
    admin = make_user(engine, "admin")
    landlord = make_user(engine, "landlord")
    other = make_user(engine, "landlord")
    coordinator = make_user(engine, "coordinator")
    police = make_user(engine, "police")
    a = admin.token
    for level, code, parent in (("district", "440106", None), ("street", "440106-01", "440106"),
                                ("community", "440106-01-03", "440106-01"), ("grid", "G-0301", "440106-01-03")):
        area = await api.call("POST", "/api/v1/areas", {"level": level, "code": code, "name": f"{level} {code}",
                                                        "parent_code": parent}, 201, token=a)
    # Coordinators work the buildings of their grids: this one has G-0301.
    await api.call("POST", f"/api/v1/grids/{area['id']}/coordinators", {"username": coordinator.username}, 201,
                   token=a)
    building = await api.call("POST", "/api/v1/registry/buildings", {
        "name": "Tangxia 12", "code": "B-12", "address": "Tangxia Rd 12", "grid_code": "G-0301",
        "landlord_name": "Chen", "landlord_phone": "13800138000", "landlord_username": landlord.username,
        "is_rental": True, "pledge_signed_at": "2025-01-10", "rooms": 12}, 201, token=a)
    unit = await api.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                          {"number": "301", "area_m2": 24.5, "rooms": 2, "floor": 3}, 201, token=a)
    unit2 = await api.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                           {"number": "302", "area_m2": 30, "rooms": 2, "floor": 3}, 201, token=a)
    other_b = await api.call("POST", "/api/v1/registry/buildings", {
        "name": "Other", "grid_code": "G-0301", "landlord_username": other.username}, 201, token=a)
    other_u = await api.call("POST", f"/api/v1/registry/buildings/{other_b['id']}/units",
                             {"number": "101", "area_m2": 40, "rooms": 3}, 201, token=a)
    await api.call("PUT", "/api/v1/gateways/gw-a/building", {"building_id": building["id"]}, token=a)
    return City(admin, landlord, other, coordinator, police, building["id"], unit["id"], unit2["id"],
                other_b["id"], other_u["id"], plates=issue_plates(api, engine, [unit["id"], unit2["id"]]))


def issue_plates(api: Api, engine: sa.Engine, unit_ids: list[int]) -> dict[int, str]:
    """Door plates for the units, signed with the running app's keyring."""
    keyring = api.client.app[PLATE_KEYS].keyring
    if keyring is None:  # PostgreSQL without RENTGATE_PLATE_KEY_FILE: no plates
        return {}
    with engine.begin() as conn:
        return ensure_plates(conn, datetime.now(UTC), keyring, unit_ids, valid_days=365, actor="test")


def person(number: str = ID_A, name: str = "Li Wei", **extra: Any) -> dict[str, Any]:
    return {"id_number": number, "name": name, **extra}
