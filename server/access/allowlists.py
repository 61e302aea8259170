"""Each gateway's allowlist, read from the database with Core queries and
encoded straight to the wire's JSON: a 100,000-entry snapshot must be built
and signed in well under a second, which pydantic objects per entry would not
allow. ``tests/server/access`` checks the text against ``rentgate.wire``.

Versions: ``bump`` runs in the transaction that changes a gateway's list, so
a committed change always has a version above anything published before it,
and a snapshot reads the version *before* the entries, so its entries are at
least as new as its version says (a later delta repeating a change is harmless:
upserts and removals are idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import allowlist_versions, credentials, gateways, registrations

JsonObj = dict[str, Any]

# A gateway keeps this many tombstones; more would only be cut there.
MAX_REVOKED = 10_000


@dataclass(frozen=True)
class Change:
    """A committed change to one gateway's list at ``version``. With
    ``base_version`` None (a first version, or a new building) only a
    snapshot says what changed."""

    gateway_id: str
    version: int
    base_version: int | None
    upserts: Sequence[JsonObj] = field(default_factory=list)
    removals: Sequence[JsonObj] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    gateway_id: str
    version: int
    building_id: int | None
    entries: list[JsonObj]
    revoked: list[JsonObj]

    def payload(self, issued_at: datetime) -> str:
        doc: JsonObj = {"v": 1, "kind": "allowlist_snapshot", "gw": self.gateway_id, "version": self.version,
                        "issued_at": issued_at.isoformat(), "entries": self.entries}
        if self.revoked:
            doc["revoked"] = self.revoked
        return _dumps(doc)


def _dumps(doc: JsonObj) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def delta_payload(change: Change, issued_at: datetime) -> str:
    assert change.base_version is not None, "a change without a base has no delta"
    doc: JsonObj = {"v": 1, "kind": "allowlist_delta", "gw": change.gateway_id,
                    "base_version": change.base_version, "version": change.version,
                    "issued_at": issued_at.isoformat()}
    if change.upserts:
        doc["upserts"] = list(change.upserts)
    if change.removals:
        doc["removals"] = list(change.removals)
    return _dumps(doc)


def person_ref(person_id: int) -> str:
    return f"p-{person_id}"


def credential_json(fmt: str, value: str) -> JsonObj:
    return {"format": fmt, "value": value}


def holder_ref(person_id: int | None, credential_id: int) -> str:
    """``p-<person>``, or ``c-<credential>`` for a card handed out to a unit
    with no known holder: gateways only need a stable opaque name."""
    return person_ref(person_id) if person_id is not None else f"c-{credential_id}"


def entry_json(fmt: str, value: str, holder: str, doors: list[str] | None,
               valid_from: datetime | None, valid_until: datetime | None) -> JsonObj:
    entry: JsonObj = {"credential": {"format": fmt, "value": value}, "person": holder}
    if doors:
        entry["doors"] = doors
    if valid_from is not None:
        entry["valid_from"] = valid_from.isoformat()
    if valid_until is not None:
        entry["valid_until"] = valid_until.isoformat()
    return entry


# --------------------------------------------------------------------------- versions


def gateways_of(conn: sa.Connection, building_id: int) -> list[str]:
    # A revoked gateway (server/fleet/revoke.py) gets no new versions, so no deltas.
    query = (sa.select(gateways.c.id).where(gateways.c.building_id == building_id, gateways.c.revoked_at.is_(None))
             .order_by(gateways.c.id))
    return list(conn.execute(query).scalars())


def bump(conn: sa.Connection, gateway_ids: Iterable[str], now: datetime, *, upserts: Sequence[JsonObj] = (),
         removals: Sequence[JsonObj] = (), snapshot_only: bool = False) -> list[Change]:
    """Give each gateway's list its next version, inside the caller's transaction."""
    changes = []
    v = allowlist_versions.c
    for gw in gateway_ids:
        # Write first: on PostgreSQL the UPDATE locks the row, so concurrent
        # changes to one gateway get consecutive versions.
        new = conn.execute(
            sa.update(allowlist_versions).where(v.gateway_id == gw)
            .values(version=v.version + 1, changed_at=now).returning(v.version)
        ).scalar_one_or_none()
        if new is None:
            conn.execute(sa.insert(allowlist_versions).values(gateway_id=gw, version=1, changed_at=now))
            changes.append(Change(gw, 1, None))
            continue
        base = None if snapshot_only else new - 1
        changes.append(Change(gw, new, base, upserts, removals))
    return changes


# --------------------------------------------------------------------------- snapshots


def read_snapshot(conn: sa.Connection, gateway_id: str, now: datetime, keep_revoked: timedelta) -> Snapshot | None:
    """The gateway's list as of now; None if it has never had one (no building
    ever assigned) or it is revoked (it gets no list any more)."""
    row = conn.execute(
        sa.select(allowlist_versions.c.version, gateways.c.building_id)
        .join(gateways, gateways.c.id == allowlist_versions.c.gateway_id)
        .where(allowlist_versions.c.gateway_id == gateway_id, gateways.c.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    version, building_id = row
    if building_id is None:
        return Snapshot(gateway_id, version, None, [], [])
    return Snapshot(gateway_id, version, building_id, _entries(conn, building_id),
                    _revoked(conn, building_id, now - keep_revoked))


def _entries(conn: sa.Connection, building_id: int) -> list[JsonObj]:
    c, r = credentials.c, registrations.c
    # Credentials handed to a unit without a registration have no validity
    # window of their own: they hold until revoked.
    query = (
        sa.select(c.id, c.format, c.value, c.person_id, c.doors, r.valid_from, r.valid_until)
        .outerjoin(registrations, r.id == c.registration_id)
        .where(c.building_id == building_id, c.revoked_at.is_(None))
        .order_by(c.id)
    )
    return [entry_json(fmt, value, holder_ref(person_id, cred_id), doors, valid_from, valid_until)
            for cred_id, fmt, value, person_id, doors, valid_from, valid_until in conn.execute(query).tuples()]


def _revoked(conn: sa.Connection, building_id: int, since: datetime) -> list[JsonObj]:
    c = credentials.c
    active = credentials.alias("active")
    still_active = sa.exists().where(active.c.building_id == building_id, active.c.revoked_at.is_(None),
                                     active.c.format == c.format, active.c.value == c.value)
    query = (
        sa.select(c.format, c.value, sa.func.max(c.revoked_at).label("last"))
        .where(c.building_id == building_id, c.revoked_at >= since, ~still_active)
        .group_by(c.format, c.value)
        .order_by(sa.desc("last"))
        .limit(MAX_REVOKED)
    )
    return [credential_json(fmt, value) for fmt, value, _ in conn.execute(query).tuples()]


def gateways_with_lists(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(allowlist_versions.c.gateway_id).order_by(allowlist_versions.c.gateway_id))
                .scalars())


def unpublished_gateways(conn: sa.Connection) -> list[str]:
    """Gateways whose list changed after its last published snapshot."""
    v = allowlist_versions.c
    query = (sa.select(v.gateway_id)
             .join(gateways, gateways.c.id == v.gateway_id)
             .where(sa.or_(v.published_version.is_(None), v.version > v.published_version),
                    gateways.c.revoked_at.is_(None))
             .order_by(v.gateway_id))
    return list(conn.execute(query).scalars())


def mark_published(conn: sa.Connection, gateway_id: str, version: int, at: datetime) -> None:
    v = allowlist_versions.c
    conn.execute(sa.update(allowlist_versions).where(v.gateway_id == gateway_id, v.version >= version)
                 .values(published_version=version, published_at=at))

