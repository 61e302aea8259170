"""A small world for the remote-configuration tests: two landlords, each
with a building and gateways in it, an administrator, and an application
whose allowlist key is a file (PostgreSQL has no generated one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rentgate import signing
from server.access.keys import SigningKey, load_signing_key
from server.db.models import buildings, gateways
from server.settings import ServerSettings
from tests.server.auth_helpers import UserCreds, make_user
from tests.server.registry.api_helpers import settings_for

# Settings a gateway takes (gateway.config.REMOTE_KEYS).
# What a landlord may set (the outbox and the broker are an administrator's: test_configs_api).
GOOD = {"heartbeat_s": 15, "cameras": {"follow_s": 4.0}}


@dataclass(frozen=True)
class World:
    admin: UserCreds
    landlord_a: UserCreds
    landlord_b: UserCreds
    building_a: int
    building_b: int
    # gw-a1, gw-a2 in building A; gw-b1 in building B.
    gateways: tuple[str, ...] = ("gw-a1", "gw-a2", "gw-b1")


def config_settings(database_url: str, tmp_path: Path, **extra: Any) -> ServerSettings:
    key = tmp_path / "allowlist.pem"
    if not key.exists():
        key.write_text(signing.private_key_pem(signing.generate_private_key()))
    return settings_for(database_url, tmp_path).model_copy(update={"allowlist_key_file": str(key), **extra})


def signing_key(settings: ServerSettings) -> SigningKey:
    return load_signing_key(settings)


def add_gateway(engine: sa.Engine, gateway_id: str, building_id: int | None, *, revoked: bool = False) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(gateways).values(id=gateway_id, first_seen=now, last_seen=now, building_id=building_id,
                                                revoked_at=now if revoked else None))


def seed(engine: sa.Engine) -> World:
    admin = make_user(engine, "admin")
    a, b = make_user(engine, "landlord"), make_user(engine, "landlord")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = [int(conn.execute(sa.insert(buildings).values(name=name, created_at=now, landlord_user_id=owner.id)
                                .returning(buildings.c.id)).scalar_one())
               for name, owner in (("A", a), ("B", b))]
    for gw, building in (("gw-a1", ids[0]), ("gw-a2", ids[0]), ("gw-b1", ids[1])):
        add_gateway(engine, gw, building)
    return World(admin, a, b, ids[0], ids[1])


def report_status(engine: sa.Engine, gateway_id: str, *, running: int | None, attempted: int | None,
                  state: str | None, error: str | None = None) -> None:
    """What ingest stores from a gateway's status (wire.GatewayStatus)."""
    with engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id == gateway_id).values(
            config_version=running, config_attempted=attempted, config_state=state, config_error=error))
