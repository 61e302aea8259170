"""What the enrolment tests share: an application with an allowlist key and
a gateway CA (PostgreSQL generates neither), two landlords with a building
each, and certificate signing requests as a gateway makes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rentgate import signing
from server.db.models import buildings
from server.fleet.ca import GatewayCa
from server.settings import ServerSettings
from tests.server.auth_helpers import UserCreds, make_user
from tests.server.registry.api_helpers import Api, settings_for

GATEWAY_ID = re.compile(r"gw-[a-z2-7]{10}")
CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


@dataclass(frozen=True)
class Landlords:
    admin: UserCreds
    a: UserCreds
    b: UserCreds
    coordinator: UserCreds
    building_a: int
    building_b: int


def enrol_settings(database_url: str, tmp_path: Path, **extra: Any) -> ServerSettings:
    key = tmp_path / "allowlist.pem"
    if not key.exists():
        key.write_text(signing.private_key_pem(signing.generate_private_key()))
    ca_dir = tmp_path / "gateway-ca"
    if not ca_dir.exists():
        GatewayCa.create(ca_dir)
    return settings_for(database_url, tmp_path).model_copy(update={
        "allowlist_key_file": str(key), "gateway_ca_dir": str(ca_dir), "public_url": "https://rg.example/",
        **extra})


def seed_landlords(engine: sa.Engine) -> Landlords:
    admin, a, b = make_user(engine, "admin"), make_user(engine, "landlord"), make_user(engine, "landlord")
    coordinator = make_user(engine, "coordinator")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = [int(conn.execute(sa.insert(buildings).values(name=name, address=address, created_at=now,
                                                            landlord_user_id=owner.id)
                                .returning(buildings.c.id)).scalar_one())
               for name, address, owner in (("Tangxia 12", "Tangxia Rd 12", a), ("Other", None, b))]
    return Landlords(admin, a, b, coordinator, ids[0], ids[1])


def csr_pem(common_name: str = "whatever-the-gateway-says") -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def new_code(api: Api, token: str, building_id: int) -> dict[str, Any]:
    made: dict[str, Any] = await api.call("POST", f"/api/v1/buildings/{building_id}/enrolments", status=201,
                                          token=token)
    return made


async def metrics(api: Api) -> dict[str, int]:
    """rentgate_enrol_attempts_total by outcome."""
    text = await (await api.client.get("/metrics")).text()
    found = re.findall(r'^rentgate_enrol_attempts_total\{outcome="(\w+)"\} (\d+)$', text, re.M)
    return {outcome: int(n) for outcome, n in found}
