"""Writes a validated registrations plan with bulk Core statements.

Why not ``service.register`` per row: at 100,000 rows its per-row look-ups
and single-row inserts cost minutes; here each table gets a handful of
multi-row statements. The invariants are the same ones service.py keeps:
numbers stored only as digest, cipher and masked form; one history row per
change with the same entity, action and fields; registrations confirmed by
the import; cards handed to the unit before registration are linked, others
issued; the affected gateways' allowlist versions bumped in this transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access import allowlists
from server.access.allowlists import Change
from server.db.models import credentials, history, persons, registrations
from server.registry.imports.lookup import chunks
from server.registry.imports.validate_registrations import CARD_FORMAT, RegistrationPlan, RegistrationRow
from server.registry.pii import PiiVault

Tick = Callable[[int], None]
END_REASON = "deregistered"


@dataclass
class RegistrationCounts:
    persons_created: int = 0
    persons_updated: int = 0
    registrations: int = 0
    ended: int = 0
    cards_issued: int = 0
    cards_linked: int = 0
    changes: list[Change] = field(default_factory=list)


def _insert_ids(conn: sa.Connection, table: sa.Table, values: list[dict[str, Any]]) -> list[int]:
    if not values:
        return []
    ids: list[int] = []
    for part in chunks(values, 2000):
        result = conn.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), list(part))
        ids.extend(int(i) for i in result.scalars())
    return ids


def _history(conn: sa.Connection, now: datetime, actor: str, rows: Sequence[tuple[str, int, str, dict[str, Any]]]) -> None:
    if rows:
        conn.execute(sa.insert(history), [{"at": now, "actor": actor[:64], "entity": entity, "entity_id": entity_id,
                                           "action": action, "changes": changes}
                                          for entity, entity_id, action, changes in rows])


def apply_registrations(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, plan: RegistrationPlan,
                        *, tick: Tick | None = None) -> RegistrationCounts:
    counts = RegistrationCounts()
    person_ids = _persons(conn, now, actor, vault, plan, counts)
    if tick is not None:
        tick(len(plan.rows) // 4)
    reg_ids = _registrations(conn, now, actor, plan.rows, person_ids, counts)
    if tick is not None:
        tick(len(plan.rows) // 2)
    _cards(conn, now, actor, plan, person_ids, reg_ids, counts)
    if tick is not None:
        tick(len(plan.rows) - len(plan.rows) // 4 - len(plan.rows) // 2)
    return counts


def _persons(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, plan: RegistrationPlan,
             counts: RegistrationCounts) -> dict[str, int]:
    # A person's last row in the file carries the values that stand.
    latest: dict[str, RegistrationRow] = {}
    for r in plan.rows:
        latest[r.digest] = r
    ids = {digest: p.id for digest, p in plan.persons.items()}
    new = [r for digest, r in latest.items() if digest not in ids]
    values = [{"display_name": r.name, "phone": r.phone, "origin": r.origin, "created_at": now, "updated_at": now,
               "id_digest": r.digest, "id_cipher": vault.encrypt(r.number.value), "id_masked": r.number.masked,
               "sex": r.number.sex, "birth_year": r.number.birth_date.year} for r in new]
    created = _insert_ids(conn, persons, values)
    trail: list[tuple[str, int, str, dict[str, Any]]] = []
    for person_id, r, v in zip(created, new, values, strict=True):
        ids[r.digest] = person_id
        trail.append(("person", person_id, "created", {
            "id_masked": v["id_masked"], "sex": v["sex"], "birth_year": v["birth_year"],
            "display_name": r.name, "phone": r.phone, "origin": r.origin}))
    counts.persons_created = len(created)

    updates: list[dict[str, Any]] = []
    for digest, known in plan.persons.items():
        last = latest.get(digest)
        if last is None:
            continue
        r = last
        before = {"display_name": known.display_name, "phone": known.phone, "origin": known.origin}
        # Fields left empty keep what is recorded (as upsert_person does).
        given = {k: v for k, v in {"display_name": r.name, "phone": r.phone, "origin": r.origin}.items()
                 if v is not None}
        changed = {k: [before[k], v] for k, v in given.items() if before[k] != v}
        if changed:
            merged = {**before, **given}
            updates.append({"pid": known.id, "dn": merged["display_name"], "ph": merged["phone"],
                            "og": merged["origin"], "at": now})
            trail.append(("person", known.id, "updated", changed))
    if updates:
        p = persons.c
        conn.execute(sa.update(persons).where(p.id == sa.bindparam("pid"))
                     .values(display_name=sa.bindparam("dn"), phone=sa.bindparam("ph"), origin=sa.bindparam("og"),
                             updated_at=sa.bindparam("at")), updates)
    counts.persons_updated = len(updates)
    _history(conn, now, actor, trail)
    return ids


def _registrations(conn: sa.Connection, now: datetime, actor: str, rows: list[RegistrationRow],
                   person_ids: dict[str, int], counts: RegistrationCounts) -> list[int]:
    values = [{"person_id": person_ids[r.digest], "building_id": r.building_id, "unit_id": r.unit_id,
               "valid_from": r.arrived_at, "ended_at": r.departed_at,
               "status": "ended" if r.departed_at is not None else "active",
               "end_reason": END_REASON if r.departed_at is not None else None,
               "source": r.source, "created_at": now, "updated_at": now, "confirmed_at": now} for r in rows]
    reg_ids = _insert_ids(conn, registrations, values)
    trail: list[tuple[str, int, str, dict[str, Any]]] = []
    for reg_id, r in zip(reg_ids, rows, strict=True):
        trail.append(("registration", reg_id, "registered", {
            "person_id": person_ids[r.digest], "person": r.number.masked, "unit_id": r.unit_id,
            "arrived_at": r.arrived_at.isoformat(), "source": r.source, "status": "active"}))
        if r.departed_at is not None:
            trail.append(("registration", reg_id, "ended", {
                "status": ["active", "ended"], "departed_at": r.departed_at.isoformat(), "reason": END_REASON,
                "revoked_credentials": []}))
            counts.ended += 1
    _history(conn, now, actor, trail)
    counts.registrations = len(reg_ids)
    return reg_ids


def _cards(conn: sa.Connection, now: datetime, actor: str, plan: RegistrationPlan, person_ids: dict[str, int],
           reg_ids: list[int], counts: RegistrationCounts) -> None:
    issued: list[tuple[RegistrationRow, int]] = []
    links: list[dict[str, Any]] = []
    trail: list[tuple[str, int, str, dict[str, Any]]] = []
    for r, reg_id in zip(plan.rows, reg_ids, strict=True):
        if r.card is None:
            continue
        held = plan.adopt.get((r.building_id, r.card))
        if held is None:
            issued.append((r, reg_id))
        else:
            links.append({"cid": held, "pid": person_ids[r.digest], "rid": reg_id})
            trail.append(("credential", held, "linked", {
                "format": CARD_FORMAT, "value": r.card, "unit_id": r.unit_id, "person_id": person_ids[r.digest],
                "registration_id": reg_id}))
    values: list[dict[str, Any]] = [{"person_id": person_ids[r.digest], "registration_id": reg_id, "building_id": r.building_id,
               "unit_id": r.unit_id, "format": CARD_FORMAT, "value": r.card, "doors": [], "issued_at": now}
              for r, reg_id in issued]
    for cred_id, v in zip(_insert_ids(conn, credentials, values), values, strict=True):
        trail.append(("credential", cred_id, "issued", {
            "format": CARD_FORMAT, "value": v["value"], "unit_id": v["unit_id"], "person_id": v["person_id"],
            "registration_id": v["registration_id"]}))
    if links:
        c = credentials.c
        conn.execute(sa.update(credentials).where(c.id == sa.bindparam("cid"))
                     .values(person_id=sa.bindparam("pid"), registration_id=sa.bindparam("rid")), links)
    _history(conn, now, actor, trail)
    counts.cards_issued, counts.cards_linked = len(values), len(links)
    # One new snapshot per affected gateway instead of thousands of deltas.
    buildings_with_cards = sorted({r.building_id for r in plan.rows if r.card is not None})
    for building_id in buildings_with_cards:
        counts.changes += allowlists.bump(conn, allowlists.gateways_of(conn, building_id), now, snapshot_only=True)
