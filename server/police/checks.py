"""The police checks: a person by identity number, the occupants of an
address, and one person's door events. Each handler runs inside
``police_api`` (server/police/context.py), which has admitted and will
audit the call; the handler returns the answer and what the audit entry
says about it (subject, size, identity numbers shown in full)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.auth.scopes import scope_buildings
from server.db.models import buildings, units
from server.db.read_pool import read_only, with_retry
from server.police import lookups
from server.police.api_doc import AddressCheckIn, EventsIn, PersonCheckIn
from server.police.context import PoliceAnswer, PoliceContext
from server.police.purposes import CASES, FULL_ID, HISTORY, LAST_SEEN, PARTS
from server.registry.api_input import id_number, when
from server.registry.appkeys import RULES, VAULT, VAULT_PROBLEM
from server.registry.idnumber import mask_id_number
from server.registry.pii import PiiVault
from server.web.errors import InvalidInput, NotFound, Unavailable

EVENTS_WINDOW_MAX = timedelta(days=92)


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Never echo the input: it may be an identity number.
        raise InvalidInput(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) from None


def vault_of(request: web.Request) -> PiiVault:
    vault = request.app.get(VAULT)
    if vault is None:
        raise Unavailable(request.app.get(VAULT_PROBLEM, "the identity-number key is not configured"))
    return vault


def evidence_since(request: web.Request) -> datetime:
    return datetime.now(UTC) - timedelta(days=request.app[RULES].silence_days)


def scope_of(ctx: PoliceContext) -> sa.Select[tuple[int]] | None:
    """The caller's jurisdiction's buildings; None: the whole registry."""
    if ctx.caller.jurisdiction is None:
        return None
    return scope_buildings("police", ctx.caller.user_id)


def subject_of(digest: str) -> str:
    return f"id:{digest}"


async def person_check(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    body = validated(PersonCheckIn, ctx.body)
    number = id_number("id_number", body.id_number)
    vault = vault_of(request)
    digest = vault.digest(number)
    since = evidence_since(request)
    scope = scope_of(ctx)

    def read() -> lookups.PersonFacts:
        with read_only(request.app) as conn:
            return lookups.person_facts(conn, digest, parts=ctx.parts, evidence_since=since, scope=scope)

    facts = await asyncio.to_thread(with_retry, read)
    answer: dict[str, Any] = {
        "id_number": lookups_mask(number),
        "result": facts.result,
        "registration": ({"since": facts.registered_since, "place": facts.registered_at.as_json()}
                         if facts.registered_at is not None else None),
    }
    included = ["match"]
    if ctx.may(LAST_SEEN):
        place = facts.last_seen_place
        # Outside the jurisdiction: that the person was seen elsewhere, not when.
        answer["last_seen"] = (None if place is None else
                               {"at": facts.last_seen_at if place.in_jurisdiction else None,
                                "place": place.as_json()})
        included.append(LAST_SEEN)
    if ctx.may(HISTORY):
        answer["history"] = facts.history
        included.append(HISTORY)
    if ctx.may(CASES):
        answer["open_cases"] = facts.open_cases
        included.append(CASES)
    answer["included"] = included
    answer["withheld"] = [p for p in (LAST_SEEN, HISTORY, CASES) if p not in included]
    return PoliceAnswer(answer, subject=subject_of(digest), size=1, subjects_checked=1,
                        detail={"result": facts.result, "included": included})


def lookups_mask(number: str) -> str:
    return mask_id_number(number)


def mask_person_name(name: str | None) -> str:
    """The surname and a star, as every page shows a name (server/pages/masks.py)."""
    name = (name or "").strip()
    return f"{name[0]}*" if name else ""


def _address_target(conn: sa.Connection, body: AddressCheckIn, scope: sa.Select[tuple[int]] | None
                    ) -> tuple[int, int | None]:
    """(building id, unit id or None). Ids were checked against the caller's
    jurisdiction by the route policy; a code is checked here, and one
    outside it answers as one that does not exist."""
    given = [name for name in ("building", "unit", "building_code") if getattr(body, name) is not None]
    if len(given) != 1:
        raise InvalidInput("building", "name the address by exactly one of building, unit or building_code")
    if body.unit_number is not None and body.building_code is None:
        raise InvalidInput("unit_number", "goes with building_code")
    if body.unit is not None:
        building_id = conn.execute(sa.select(units.c.building_id).where(units.c.id == body.unit)).scalar()
        if building_id is None:
            raise InvalidInput("unit", "no such unit")
        return int(building_id), body.unit
    if body.building is not None:
        return body.building, None
    query = sa.select(buildings.c.id).where(buildings.c.code == body.building_code)
    if scope is not None:
        query = query.where(buildings.c.id.in_(scope))
    found = conn.execute(query).scalar()
    if found is None:
        raise InvalidInput("building_code", "no such building")
    unit_id: int | None = None
    if body.unit_number is not None:
        unit_id = conn.execute(sa.select(units.c.id).where(units.c.building_id == found,
                                                           units.c.number == body.unit_number)).scalar()
        if unit_id is None:
            raise InvalidInput("unit_number", "no such unit")
    return int(found), unit_id


async def address_check(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    body = validated(AddressCheckIn, ctx.body)
    since = evidence_since(request)
    scope = scope_of(ctx)
    full = ctx.may(FULL_ID)
    vault = vault_of(request) if full else None

    def read() -> tuple[int, int | None, lookups.Place, list[lookups.UnitOccupants]]:
        with read_only(request.app) as conn:
            building_id, unit_id = _address_target(conn, body, scope)
            place = lookups.place_of(conn, building_id, None, None, {})
            return building_id, unit_id, place, lookups.address_occupants(conn, building_id, unit_id,
                                                                           evidence_since=since)

    building_id, unit_id, place, found = await asyncio.to_thread(with_retry, read)
    revealed: set[str] = set()

    def shown(o: lookups.Occupant, **extra: Any) -> dict[str, Any]:
        if full and vault is not None and o.id_cipher is not None:
            if o.id_digest is not None:
                revealed.add(o.id_digest)
            number: str | None = vault.decrypt(o.id_cipher)
            name = o.name
        else:
            number, name = o.id_masked, mask_person_name(o.name)
        return {"id_number": number, "name": name, **extra}

    units_out = []
    persons_listed: set[int | None] = set()
    for unit in found:
        registered_ids = {o.person_id for o in unit.registered}
        evidenced_ids = {o.person_id for o in unit.evidenced}
        persons_listed |= registered_ids | evidenced_ids
        units_out.append({
            "unit": unit.number, "capacity": unit.capacity,
            "registered": [shown(o, since=o.since) for o in unit.registered],
            "evidenced": [shown(o, last_seen_at=o.last_seen_at, days_seen=o.days_seen) for o in unit.evidenced],
            "registered_not_evidenced": [shown(o, since=o.since) for o in unit.registered
                                         if o.person_id not in evidenced_ids],
            "evidenced_not_registered": [shown(o, last_seen_at=o.last_seen_at, days_seen=o.days_seen)
                                         for o in unit.evidenced if o.person_id not in registered_ids],
            "unknown_cards": unit.unknown_cards,
        })
    subject = f"unit:{unit_id}" if unit_id is not None else f"building:{building_id}"
    detail: dict[str, Any] = {"units": len(units_out), "full_ids": len(revealed)}
    if revealed:
        # Who was shown in full, as keyed digests: "who looked me up" can be
        # answered from the log without the log holding a single number.
        detail["revealed"] = sorted(revealed)
    return PoliceAnswer({"place": place.as_json(), "units": units_out, "full_identity_numbers": full},
                        subject=subject, size=len(persons_listed), subjects_checked=1, detail=detail)


async def person_events(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    body = validated(EventsIn, ctx.body)
    number = id_number("id_number", body.id_number)
    zone = request.app[RULES].zone
    start, end = when("from", body.from_, zone), when("to", body.to, zone)
    if end <= start:
        raise InvalidInput("to", "must be after from")
    if end - start > EVENTS_WINDOW_MAX:
        raise InvalidInput("to", f"the window is at most {EVENTS_WINDOW_MAX.days} days")
    digest = vault_of(request).digest(number)
    scope = scope_of(ctx)

    def read() -> tuple[list[dict[str, Any]], bool]:
        with read_only(request.app) as conn:
            from server.db.models import persons

            person_id = conn.execute(sa.select(persons.c.id).where(persons.c.id_digest == digest)).scalar()
            if person_id is None:
                return [], False
            return lookups.person_events(conn, int(person_id), start, end, scope)

    found, more = await asyncio.to_thread(with_retry, read)
    return PoliceAnswer({"id_number": lookups_mask(number), "events": found, "truncated": more},
                        subject=subject_of(digest), size=len(found), subjects_checked=1,
                        detail={"from": start.isoformat(), "to": end.isoformat()})


def purposes_doc() -> dict[str, Any]:
    from server.police.purposes import PURPOSES, SCOPE_PARTS

    return {"purposes": [{"code": k.code, "zh": k.zh, "en": k.en,
                          "permits": [p for p in PARTS if p in k.permits]} for k in PURPOSES.values()],
            "scopes": {scope: [p for p in PARTS if p in parts] for scope, parts in SCOPE_PARTS.items()}}


__all__ = ["NotFound", "address_check", "person_check", "person_events", "purposes_doc"]
