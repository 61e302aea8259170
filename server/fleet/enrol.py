"""Enrolment codes and the database half of redeeming one (docs/enrolment.md).

A landlord makes a one-time code for one of their buildings; the server
keeps only its SHA-256, so a copy of the database holds no usable code. A
gateway that presents the code within its time becomes a gateway of that
building. Redeeming is split so that the broker call (network, slow,
fallible) sits between two short transactions and never inside one:

1. ``claim``: one conditional UPDATE marks the code used. Of two gateways
   presenting the same code at once, exactly one changes a row.
2. (server/fleet/redeem.py gives the gateway its broker login.)
3. ``record``: the gateway's row, the code's link to it, configuration
   version 1 and the first allowlist version, in one transaction.

If step 2 or 3 fails, ``release`` undoes step 1, so the code can be used
again and nothing of the attempt remains."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from rentgate import wire
from server.access import allowlists
from server.access.allowlists import Change
from server.access.keys import SigningKey
from server.audit import store
from server.audit.entries import AuditEntry
from server.db.models import buildings, gateway_enrolments, gateways
from server.fleet import configs
from server.settings import ServerSettings
from server.web.errors import Conflict, NotFound

JsonObj = dict[str, Any]
# Live (unused, uncancelled, unexpired) codes a building may have at once:
# enough for a landlord installing several terminals in one visit, few
# enough that codes cannot be stockpiled.
MAX_LIVE_CODES = 5
# Gateway ids: "gw-" and ten random characters of lowercase base32 (50
# bits): never sequential, so one id says nothing about the others.
GATEWAY_ID_CHARS = "abcdefghijklmnopqrstuvwxyz234567"
GATEWAY_ID_RANDOM = 10
REFUSED_OUTCOMES = ("unknown", "expired", "used", "cancelled")
# The audit log's actions: a code made (who, for which building) and a
# gateway let in with one (docs/audit.md).
AUDIT_CODE = "fleet.enrolment_code"
AUDIT_ENROL = "fleet.enrol"


def new_code() -> str:
    """12 random characters of wire.ENROL_CODE_ALPHABET (60 bits)."""
    return "".join(secrets.choice(wire.ENROL_CODE_ALPHABET) for _ in range(wire.ENROL_CODE_LEN))


def grouped(code: str) -> str:
    """``XXXX-XXXX-XXXX``, as people read and type it."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def masked(code: str) -> str:
    """What logs may say of a code: its first group only."""
    return code[:4] + "-…"


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def qr_text(settings: ServerSettings, code: str) -> str:
    """What the QR holds: the public page that explains the code, with the
    code as its last path segment (a gateway's camera reads it from there)."""
    return f"{settings.public_url.rstrip('/')}/e/{code}"


def new_gateway_id() -> str:
    return "gw-" + "".join(secrets.choice(GATEWAY_ID_CHARS) for _ in range(GATEWAY_ID_RANDOM))


def gateway_mqtt_url(settings: ServerSettings) -> str:
    """The broker as a gateway reaches it: the setting, else the server's own
    URL without the server's login (the gateway gets its own)."""
    if settings.gateway_mqtt_url:
        return settings.gateway_mqtt_url
    parts = urlsplit(settings.mqtt_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# --------------------------------------------------------------------------- codes


@dataclass(frozen=True)
class NewCode:
    enrolment_id: int
    code: str
    expires_at: datetime


def _live(now: datetime) -> sa.ColumnElement[bool]:
    e = gateway_enrolments.c
    return sa.and_(e.used_at.is_(None), e.cancelled_at.is_(None), e.expires_at > now)


def create_code(conn: sa.Connection, now: datetime, *, building_id: int, user_id: int, ttl_s: int) -> NewCode:
    """A new code for the building; Conflict when it has MAX_LIVE_CODES live
    ones already, NotFound when there is no such building."""
    # Locks the building's row on PostgreSQL, so two requests at once cannot
    # both see four live codes and make a sixth (SQLite's BEGIN IMMEDIATE
    # serialises writers anyway).
    found = conn.execute(sa.select(buildings.c.id).where(buildings.c.id == building_id).with_for_update()).first()
    if found is None:
        raise NotFound("building", building_id)
    e = gateway_enrolments.c
    live = conn.execute(sa.select(sa.func.count()).where(e.building_id == building_id, _live(now))).scalar_one()
    if live >= MAX_LIVE_CODES:
        raise Conflict(f"this building already has {MAX_LIVE_CODES} codes that are still valid: use one of them, "
                       f"cancel one, or wait until they expire")
    code = new_code()
    expires_at = now + timedelta(seconds=ttl_s)
    enrolment_id = conn.execute(sa.insert(gateway_enrolments).values(
        code_digest=code_digest(code), building_id=building_id, created_by=user_id, created_at=now,
        expires_at=expires_at).returning(e.id)).scalar_one()
    store.append_in(conn, [AuditEntry(actor=f"user:{user_id}", action=AUDIT_CODE, subject=f"building:{building_id}",
                                      detail={"enrolment": int(enrolment_id), "ttl_s": ttl_s})], now)
    return NewCode(int(enrolment_id), code, expires_at)


def cancel_code(conn: sa.Connection, now: datetime, enrolment_id: int) -> JsonObj:
    """Cancel an unused code (again: no change); Conflict for a used one."""
    e = gateway_enrolments.c
    row = conn.execute(sa.select(e.used_at, e.cancelled_at).where(e.id == enrolment_id)).first()
    if row is None:
        raise NotFound("enrolment", enrolment_id)
    if row.used_at is not None:
        raise Conflict("this code was used already: a terminal enrolled with it (stop the terminal instead)")
    if row.cancelled_at is None:
        conn.execute(sa.update(gateway_enrolments).where(e.id == enrolment_id, e.used_at.is_(None))
                     .values(cancelled_at=now))
    return {"enrolment": enrolment_id, "state": "cancelled"}


def enrolment_state(conn: sa.Connection, now: datetime, enrolment_id: int) -> JsonObj | None:
    """What became of a code: waiting | enrolled | online | expired | cancelled,
    with the gateway once one enrolled with it. None: no such code."""
    e, g = gateway_enrolments.c, gateways.c
    row = conn.execute(
        sa.select(e.id, e.building_id, e.created_at, e.expires_at, e.used_at, e.cancelled_at, e.gateway_id,
                  g.online, g.status_at, g.last_seen, g.revoked_at, g.hostname)
        .select_from(gateway_enrolments.outerjoin(gateways, g.id == e.gateway_id))
        .where(e.id == enrolment_id)).first()
    if row is None:
        return None
    gateway: JsonObj | None = None
    if row.cancelled_at is not None:
        state = "cancelled"
    elif row.gateway_id is not None:
        online = bool(row.online) and row.revoked_at is None and row.status_at is not None
        state = "online" if online else "enrolled"
        gateway = {"id": row.gateway_id, "hostname": row.hostname, "online": online,
                   "revoked": row.revoked_at is not None,
                   "last_seen": row.last_seen if row.status_at is not None else None}
    elif row.used_at is not None:
        # Claimed, and the broker login or the records are being made: a
        # moment, after which it is enrolled or waiting again.
        state = "waiting"
    elif row.expires_at <= now:
        state = "expired"
    else:
        state = "waiting"
    return {"enrolment": row.id, "building_id": row.building_id, "state": state, "created_at": row.created_at,
            "expires_at": row.expires_at, "gateway": gateway}


def live_codes(conn: sa.Connection, now: datetime, building_id: int) -> list[JsonObj]:
    """The building's codes still waiting for a gateway, newest first."""
    e = gateway_enrolments.c
    rows = conn.execute(sa.select(e.id, e.created_at, e.expires_at).where(e.building_id == building_id, _live(now))
                        .order_by(e.created_at.desc(), e.id.desc()))
    return [dict(r) for r in rows.mappings()]


# --------------------------------------------------------------------------- redeeming


@dataclass(frozen=True)
class Claim:
    enrolment_id: int
    building_id: int
    created_by: int | None
    claimed_at: datetime


def claim(conn: sa.Connection, now: datetime, digest: str) -> Claim | str:
    """Mark the code used if it is live; the claim, or why not (one of
    REFUSED_OUTCOMES, for the counters only: the caller answers all alike)."""
    e = gateway_enrolments.c
    won = conn.execute(sa.update(gateway_enrolments).where(e.code_digest == digest, _live(now))
                       .values(used_at=now).returning(e.id, e.building_id, e.created_by)).first()
    if won is not None:
        return Claim(int(won.id), int(won.building_id), won.created_by, now)
    row = conn.execute(sa.select(e.used_at, e.cancelled_at).where(e.code_digest == digest)).first()
    if row is None:
        return "unknown"
    if row.cancelled_at is not None:
        return "cancelled"
    if row.used_at is not None:
        return "used"
    return "expired"


def release(conn: sa.Connection, won: Claim) -> None:
    """Undo a claim whose enrolment did not complete: the code is live again
    (until it expires). Only this claim's mark is removed."""
    e = gateway_enrolments.c
    conn.execute(sa.update(gateway_enrolments).where(
        e.id == won.enrolment_id, e.used_at == won.claimed_at, e.gateway_id.is_(None)).values(used_at=None))


@dataclass(frozen=True)
class Recorded:
    building: str
    config: bytes  # the signed message of configuration version 1
    changes: list[Change]


def building_label(name: str, address: str | None) -> str:
    """The building as its landlord knows it: name, and address when it adds something."""
    label = name if not address or address == name else f"{name}, {address}"
    return label[:200]


def record(conn: sa.Connection, now: datetime, won: Claim, *, gateway_id: str, hostname: str | None,
           certificate_serial: str, secret_hash: str, key: SigningKey) -> Recorded:
    """The enrolled gateway's records, in the caller's transaction."""
    b = buildings.c
    found = conn.execute(sa.select(b.name, b.address).where(b.id == won.building_id)).one()
    conn.execute(sa.insert(gateways).values(
        id=gateway_id, first_seen=now, last_seen=now, max_seq=0, building_id=won.building_id, enrolled_at=now,
        enrolled_by=won.created_by, hostname=hostname, certificate_serial=certificate_serial,
        secret_hash=secret_hash))
    e = gateway_enrolments.c
    linked = conn.execute(sa.update(gateway_enrolments).where(
        e.id == won.enrolment_id, e.used_at == won.claimed_at, e.gateway_id.is_(None))
        .values(gateway_id=gateway_id)).rowcount
    if linked != 1:
        # Released meanwhile (cannot happen in one process; guards the invariant).
        raise Conflict("the enrolment code changed while the terminal was being enrolled; try again")
    configs.create_version(conn, now, gateway_id=gateway_id, settings=configs.initial_settings(),
                           actor=won.created_by, comment="enrolment", key=key)
    message = configs.published_message(conn, gateway_id)
    assert message is not None  # just written
    changes = allowlists.bump(conn, [gateway_id], now, snapshot_only=True)
    # The code's maker is who let the gateway in.
    actor = f"user:{won.created_by}" if won.created_by is not None else "system:enrolment"
    store.append_in(conn, [AuditEntry(actor=actor, action=AUDIT_ENROL, subject=f"gateway:{gateway_id}", detail={
        "building_id": won.building_id, "enrolment": won.enrolment_id, "certificate_serial": certificate_serial})],
        now)
    return Recorded(building_label(found.name, found.address), message, changes)
