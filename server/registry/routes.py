"""``/api/v1`` routes of the registry: areas, buildings, units, persons,
residence registrations, cards handed to a unit and the history (tenants'
self-declarations, authorised by a door plate, are server/plates/declare_api.py).
docs/registry-api.md lists each with who may call it.

Writes that change a gateway's allowlist go through the AccessService (one
transaction, then publish); other writes run in a write transaction of
their own. The rules themselves live in server/registry/service.py; this
module parses, authorises and answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from server.access.registry import Outcome
from server.access.routes import ACCESS
from server.appkeys import ENGINE
from server.auth.policy import AuthUser, actor_of, allow, forbidden, require_user
from server.auth.scopes import reaches
from server.registry import api_doc as out
from server.registry import api_input as inp
from server.registry import freetext, queries, service
from server.registry.appkeys import RULES, VAULT, VAULT_PROBLEM
from server.registry.pii import PiiVault
from server.rules import CityRules
from server.web.errors import InvalidInput, NotFound, Unavailable
from server.web.http import answer, api_errors, int_param, read_body
from server.web.openapi import api
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

T = TypeVar("T")
JsonObj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


STAFF = ("admin", "coordinator")
READERS = ("admin", "coordinator", "landlord")
REGISTRARS = ("admin", "coordinator", "landlord")
CARD_ISSUERS = ("admin", "landlord")
MAX_LIMIT = 1000
# What a landlord or a coordinator may read the history of, one at a time.
SCOPED_HISTORY = ("building", "unit", "registration", "credential")


class VaultUnavailable(Unavailable):
    """No identity-number key: persons cannot be written or looked up (503)."""

    code = "pii_key_unavailable"


# --------------------------------------------------------------------------- plumbing


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _engine(request: web.Request) -> sa.Engine:
    return request.app[ENGINE]


def _rules(request: web.Request) -> CityRules:
    return request.app[RULES]


def _vault(request: web.Request) -> PiiVault:
    vault = request.app.get(VAULT)
    if vault is None:
        raise VaultUnavailable(request.app.get(VAULT_PROBLEM, "no identity-number key loaded"))
    return vault


def _now() -> datetime:
    return datetime.now(UTC)


async def _read(request: web.Request, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with _engine(request).connect() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


async def _write(request: web.Request, fn: Callable[[sa.Connection, datetime], T]) -> T:
    def run() -> T:
        with write_transaction(_engine(request)) as conn:
            return fn(conn, _now())
    return await asyncio.to_thread(run)


async def _apply(request: web.Request, operation: Callable[[sa.Connection, datetime], Outcome]) -> JsonObj:
    """Commit through the access service, which publishes allowlist changes."""
    outcome = await request.app[ACCESS].apply(operation)
    return outcome.body


def _limit(request: web.Request) -> int:
    value = int_param(request.query, "limit", default=200, hi=MAX_LIMIT)
    assert value is not None
    return value


def _person_fields(person: inp.PersonIn) -> service.PersonFields:
    return service.PersonFields(id_number=person.id_number, name=person.name, phone=person.phone,
                                origin=person.origin)


def _building_of_unit(conn: sa.Connection, unit_id: int, field: str | None = "unit_id") -> int:
    building_id = queries.unit_building(conn, unit_id)
    if building_id is None:
        if field is None:
            raise NotFound("unit", unit_id)
        raise InvalidInput(field, "no such unit")
    return building_id


# --------------------------------------------------------------------------- areas


@api_errors
async def create_area(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    b = await read_body(request, inp.AreaIn)
    body = await _write(request, lambda conn, now: service.create_area(
        conn, now, actor_of(user), level=b.level, code=b.code, name=b.name, parent_code=b.parent_code))
    return answer(body, 201)


@api_errors
async def list_areas(request: web.Request) -> web.Response:
    require_user(request, *READERS)
    # Codes are stored NFKC (server/registry/freetext.compatible): a
    # full-width code typed on a phone finds the same area.
    parent = freetext.compatible(request.query.get("parent") or "") or None

    def read(conn: sa.Connection) -> list[JsonObj]:
        if parent is not None and not queries.area_exists(conn, parent):
            raise NotFound("area", parent)
        return queries.list_areas(conn, parent)
    return answer({"areas": await _read(request, read)})


# --------------------------------------------------------------------------- buildings


def _landlord_field(fn: Callable[[], T]) -> T:
    """The service names the resolved id; the client sent a username."""
    try:
        return fn()
    except InvalidInput as exc:
        if exc.field == "landlord_user_id":
            raise InvalidInput("landlord_username", exc.problem.replace("user ", "that user ", 1)) from None
        raise


def _building_fields(request: web.Request, b: inp.BuildingIn, conn: sa.Connection) -> JsonObj:
    """The fields the client sent, as service arguments (dates parsed, a
    landlord's username resolved to the user id)."""
    sent = b.model_dump(exclude_unset=True)
    if "pledge_signed_at" in sent and sent["pledge_signed_at"] is not None:
        signed = inp.when("pledge_signed_at", sent["pledge_signed_at"], _rules(request).zone)
        sent["pledge_signed_at"] = inp.not_future("pledge_signed_at", signed, _now())
    if "landlord_username" in sent:
        username = sent.pop("landlord_username")
        user_id = None
        if username is not None:
            user_id = queries.user_id_by_username(conn, username)
            if user_id is None:
                raise InvalidInput("landlord_username", "no such user")
        sent["landlord_user_id"] = user_id
    return sent


@api_errors
async def create_building(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    b = await read_body(request, inp.BuildingIn)

    def write(conn: sa.Connection, now: datetime) -> JsonObj:
        fields = _building_fields(request, b, conn)
        fields.setdefault("is_rental", b.is_rental)
        return _landlord_field(lambda: service.create_building(conn, now, actor_of(user), **fields))
    return answer(await _write(request, write), 201)


@api_errors
async def update_building(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    building_id = _id(request)
    b = await read_body(request, inp.BuildingPatch)
    if "name" in b.model_fields_set and b.name is None:
        raise InvalidInput("name", "a building keeps a name")
    if "is_rental" in b.model_fields_set and b.is_rental is None:
        raise InvalidInput("is_rental", "must be true or false")

    def write(conn: sa.Connection, now: datetime) -> JsonObj:
        fields = _building_fields(request, b, conn)
        return _landlord_field(lambda: service.update_building(conn, now, actor_of(user), building_id, **fields))
    return answer(await _write(request, write))


@api_errors
async def list_buildings(request: web.Request) -> web.Response:
    user = require_user(request, *READERS)
    grid = freetext.compatible(request.query.get("grid") or "") or None
    landlord = int_param(request.query, "landlord")
    if user.role == "landlord":
        if landlord not in (None, user.id):
            raise forbidden("a landlord sees only their own buildings")
        landlord = user.id
    limit = _limit(request)

    def read(conn: sa.Connection) -> list[JsonObj]:
        if grid is not None and not queries.area_exists(conn, grid):
            raise InvalidInput("grid", "no area with this code")
        # A coordinator lists the buildings of their grids, a landlord their own.
        return queries.list_buildings(conn, grid_code=grid, landlord_user_id=landlord, limit=limit,
                                      within=service.Scope.of(user.role, user.id).buildings())
    return answer({"buildings": await _read(request, read)})


@api_errors
async def get_building(request: web.Request) -> web.Response:
    require_user(request, *READERS)
    building_id = _id(request)

    def read(conn: sa.Connection) -> JsonObj:
        doc = queries.building_detail(conn, building_id)
        if doc is None:
            raise NotFound("building", building_id)
        return doc
    return answer(await _read(request, read))


# --------------------------------------------------------------------------- units


@api_errors
async def create_unit(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    building_id = _id(request)
    b = await read_body(request, inp.UnitIn)

    def write(conn: sa.Connection, now: datetime) -> JsonObj:
        return service.create_unit(conn, now, actor_of(user), _rules(request), building_id=building_id,
                                   number=b.number, area_m2=b.area_m2, rooms=b.rooms, floor=b.floor)
    try:
        return answer(await _write(request, write), 201)
    except InvalidInput as exc:
        # The building is in the path, not the body: an unknown one is a 404.
        if exc.field == "building_id":
            raise NotFound("building", building_id) from None
        raise


@api_errors
async def get_unit(request: web.Request) -> web.Response:
    require_user(request, *READERS)
    unit_id = _id(request)

    def read(conn: sa.Connection) -> JsonObj:
        doc = queries.unit_detail(conn, unit_id)
        if doc is None:
            raise NotFound("unit", unit_id)
        return doc
    return answer(await _read(request, read))


@api_errors
async def update_unit(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    unit_id = _id(request)
    b = await read_body(request, inp.UnitPatch)
    if "number" in b.model_fields_set:
        raise InvalidInput("number", "a unit's number is its door plate and does not change")

    def write(conn: sa.Connection, now: datetime) -> JsonObj:
        return service.update_unit(conn, now, actor_of(user), _rules(request), unit_id, area_m2=b.area_m2,
                                   rooms=b.rooms, floor=b.floor)
    return answer(await _write(request, write))


# --------------------------------------------------------------------------- persons


@api_errors
async def lookup_person(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    vault = _vault(request)
    b = await read_body(request, inp.LookupIn)
    number = inp.id_number("id_number", b.id_number)
    scope = service.Scope.of(user.role, user.id)

    def read(conn: sa.Connection) -> JsonObj | None:
        person = queries.person_by_digest(conn, vault.digest(number))
        # A coordinator finds only persons tied to their grids; any other
        # number is answered like one nobody holds.
        if person is None or not scope.knows_person(conn, int(person["id"])):
            return None
        return person
    found = await _read(request, read)
    if found is None:
        # Say nothing of the number itself: not even its masked form.
        return answer({"error": "not_found", "detail": "no person with this identity number"}, 404)
    return answer(found)


@api_errors
async def get_person(request: web.Request) -> web.Response:
    user = require_user(request, *READERS)
    person_id = _id(request)

    def read(conn: sa.Connection) -> JsonObj:
        doc = queries.person_detail(conn, person_id)
        if doc is None:
            raise NotFound("person", person_id)
        if user.role != "admin":
            # A landlord (a coordinator) reads a person who is or was
            # registered in their buildings (their grids'); a pending claim
            # or declaration does not count. Anyone else gets the answer for
            # an id that names nobody.
            scope = service.Scope.of(user.role, user.id)
            if not scope.knows_person(conn, person_id):
                raise NotFound("person", person_id)
            # Their registrations elsewhere are not the caller's business.
            doc["registrations"] = queries.registrations_within(conn, scope.buildings(), person_id=person_id)
        return doc
    return answer(await _read(request, read))


# --------------------------------------------------------------------------- registrations


def _default_source(user: AuthUser, source: str | None) -> str:
    if user.role == "landlord":
        if source not in (None, "landlord"):
            raise InvalidInput("source", "a landlord registers with source landlord")
        return "landlord"
    return source or "coordinator"


@api_errors
async def create_registration(request: web.Request) -> web.Response:
    user = require_user(request, *REGISTRARS)
    b = await read_body(request, inp.RegistrationIn)
    if (b.person is None) == (b.person_id is None):
        raise InvalidInput("person", "give either person {id_number, name, ...} or person_id")
    vault = _vault(request)
    source = _default_source(user, b.source)
    now = _now()
    arrived_at = inp.not_future("arrived_at", inp.when("arrived_at", b.arrived_at, _rules(request).zone), now)
    person: service.PersonFields | int
    if b.person is not None:
        inp.id_number("person.id_number", b.person.id_number)
        person = _person_fields(b.person)
    else:
        assert b.person_id is not None
        person = b.person_id
    credential = None
    if b.credential is not None:
        credential = (b.credential.format,
                      inp.credential_value("credential.value", b.credential.format, b.credential.value))
    elif b.doors is not None:
        raise InvalidInput("doors", "doors go with a credential")

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        _building_of_unit(conn, b.unit_id)  # exists? (the route policy checked the caller's scope)
        # The caller's scope decides whom they may name by id, which
        # registration end_previous may end, and whether a person registered
        # elsewhere makes this a move awaiting verification (docs/registry.md).
        return service.register(conn, now, actor_of(user), vault, unit_id=b.unit_id, person=person,
                                arrived_at=arrived_at, source=source, end_previous=b.end_previous,
                                credential=credential, doors=list(b.doors) if b.doors else None,
                                confirmed_by=user.id, scope=service.Scope.of(user.role, user.id))
    return answer(await _apply(request, operation), 201)


@api_errors
async def end_registration(request: web.Request) -> web.Response:
    user = require_user(request, *REGISTRARS)
    registration_id = _id(request)
    b = await read_body(request, inp.EndIn, optional=True)
    departed_at = None
    if b.departed_at is not None:
        departed_at = inp.not_future("departed_at", inp.when("departed_at", b.departed_at, _rules(request).zone),
                                     _now())

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        return service.deregister(conn, now, actor_of(user), registration_id, departed_at=departed_at,
                                  reason=b.reason)
    return answer(await _apply(request, operation))


@api_errors
async def confirm_registration(request: web.Request) -> web.Response:
    user = require_user(request, *REGISTRARS)
    registration_id = _id(request)
    b = await read_body(request, inp.ConfirmIn, optional=True)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        try:
            return service.confirm_registration(conn, now, actor_of(user), registration_id, user_id=user.id,
                                                end_previous=b.end_previous,
                                                scope=service.Scope.of(user.role, user.id))
        except service.NeedsVerification as exc:
            # A move from outside the caller's buildings: the grid
            # coordinator's to verify, not the landlord's.
            raise forbidden(str(exc)) from None
    return answer(await _apply(request, operation))


@api_errors
async def reject_registration(request: web.Request) -> web.Response:
    user = require_user(request, *REGISTRARS)
    registration_id = _id(request)
    b = await read_body(request, inp.RejectIn)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        return service.reject_registration(conn, now, actor_of(user), registration_id, reason=b.reason)
    return answer(await _apply(request, operation))


@api_errors
async def list_registrations(request: web.Request) -> web.Response:
    user = require_user(request, *READERS)
    filters = {name: int_param(request.query, name) for name in ("unit_id", "person_id", "building_id")}
    status = request.query.get("status") or None
    if status is not None and status not in ("pending", "active", "ended", "rejected"):
        raise InvalidInput("status", "must be pending, active, ended or rejected")
    limit = _limit(request)
    # Only registrations in the caller's scope: a landlord's buildings, a
    # coordinator's grids' (every building's for an administrator).
    within = service.Scope.of(user.role, user.id).buildings()
    rows = await _read(request, lambda conn: queries.list_registrations(
        conn, status=status, within=within, limit=limit, **filters))
    return answer({"registrations": rows})


# --------------------------------------------------------------------------- credentials


@api_errors
async def issue_unit_credential(request: web.Request) -> web.Response:
    user = require_user(request, *CARD_ISSUERS)
    unit_id = _id(request)
    b = await read_body(request, inp.UnitCredentialIn)
    value = inp.credential_value("value", b.format, b.value)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        _building_of_unit(conn, unit_id, field=None)  # exists? (the route policy checked the caller's scope)
        return service.issue_unit_credential(conn, now, actor_of(user), unit_id=unit_id, fmt=b.format, value=value,
                                             person_id=b.person_id, doors=list(b.doors) if b.doors else None)
    return answer(await _apply(request, operation), 201)


@api_errors
async def issue_registration_credential(request: web.Request) -> web.Response:
    user = require_user(request, *CARD_ISSUERS)
    registration_id = _id(request)
    b = await read_body(request, inp.RegistrationCredentialIn)
    value = inp.credential_value("value", b.format, b.value)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        return service.issue_registration_credential(conn, now, actor_of(user), registration_id, fmt=b.format,
                                                     value=value, doors=list(b.doors) if b.doors else None)
    return answer(await _apply(request, operation), 201)


@api_errors
async def revoke_credential(request: web.Request) -> web.Response:
    user = require_user(request, *CARD_ISSUERS)
    credential_id = _id(request)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        building_id = queries.credential_building(conn, credential_id)
        if building_id is None:
            raise NotFound("credential", credential_id)
        return service.revoke_credential(conn, now, actor_of(user), credential_id)
    return answer(await _apply(request, operation))


# --------------------------------------------------------------------------- history


@api_errors
async def list_history(request: web.Request) -> web.Response:
    user = require_user(request, *READERS)
    entity = request.query.get("entity") or None
    if entity is not None and entity not in queries.HISTORY_ENTITIES:
        raise InvalidInput("entity", f"must be one of {', '.join(queries.HISTORY_ENTITIES)}")
    entity_id = int_param(request.query, "entity_id")
    limit = _limit(request)

    def read(conn: sa.Connection) -> list[JsonObj]:
        if user.role != "admin":
            # A landlord or a coordinator reads the trace of one thing in
            # their scope; one outside it is answered like one that does
            # not exist.
            if entity is None or entity_id is None:
                raise InvalidInput("entity_id", "ask for one entity: entity and entity_id")
            if entity not in SCOPED_HISTORY:
                raise InvalidInput("entity", f"must be one of {', '.join(SCOPED_HISTORY)}")
            if not reaches(conn, user, entity, entity_id):
                raise InvalidInput("entity_id", f"no such {entity}")
        return queries.list_history(conn, entity=entity, entity_id=entity_id, limit=limit)
    return answer({"history": await _read(request, read)})


def add_routes(app: web.Application) -> None:
    r = app.router
    admin = allow("admin")
    building, unit = {"id": "building"}, {"id": "unit"}
    registration = {"id": "registration"}
    mine = "lists only what is in the caller's scope"
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    pii = "needs the identity-number key (503 without it)"
    r.add_post("/api/v1/areas", admin(api("Create an area", tag="registry", body=inp.AreaIn,
                                          responses={201: out.Area}, errors=(409,))(create_area)))
    r.add_get("/api/v1/areas", allow(*READERS, rule="area codes and names only")(
        api("The area tree, or one area's children", tag="registry", query=(out.AREA_PARENT,),
            responses={200: out.AreaList}, errors=(404,))(list_areas)))
    r.add_post("/api/v1/registry/buildings", admin(
        api("Create a building", tag="registry", body=inp.BuildingIn, responses={201: out.Building},
            errors=(409,))(create_building)))
    r.add_get("/api/v1/registry/buildings", allow(*READERS, rule=mine)(
        api("List buildings", tag="registry", query=out.BUILDING_QUERY,
            responses={200: out.BuildingList})(list_buildings)))
    r.add_get(r"/api/v1/registry/buildings/{id:\d+}", allow(*READERS, path=building)(
        api("A building with its units", tag="registry", responses={200: out.BuildingDetail})(get_building)))
    r.add_patch(r"/api/v1/registry/buildings/{id:\d+}", allow("admin", path=building)(
        api("Change a building", tag="registry", body=inp.BuildingPatch, responses={200: out.Building},
            errors=(409,))(update_building)))
    r.add_post(r"/api/v1/registry/buildings/{id:\d+}/units", allow("admin", path=building)(
        api("Add a unit to a building", tag="registry", body=inp.UnitIn, responses={201: out.UnitBrief},
            errors=(409,))(create_unit)))
    r.add_get(r"/api/v1/registry/units/{id:\d+}", allow(*READERS, path=unit)(
        api("A unit with its occupants and cards", tag="registry", responses={200: out.UnitDetail})(get_unit)))
    r.add_patch(r"/api/v1/registry/units/{id:\d+}", allow("admin", path=unit)(
        api("Change a unit", tag="registry", body=inp.UnitPatch, responses={200: out.UnitBrief})(update_unit)))
    r.add_post(r"/api/v1/registry/units/{id:\d+}/credentials",
               allow(*CARD_ISSUERS, path=unit, body={"person_id": "person"})(
                   api("Hand a card out for a unit", tag="registry", body=inp.UnitCredentialIn,
                       responses={201: out.CardIssued}, errors=(409,))(issue_unit_credential)))
    r.add_post(r"/api/v1/registry/registrations/{id:\d+}/credentials",
               allow(*CARD_ISSUERS, path=registration)(
                   api("Another card for a registered tenant (ending the registration revokes it)", tag="registry",
                       body=inp.RegistrationCredentialIn, responses={201: out.CardIssued},
                       errors=(409,))(issue_registration_credential)))
    r.add_delete(r"/api/v1/registry/credentials/{id:\d+}",
                 allow(*CARD_ISSUERS, path={"id": "credential"})(
                     api("Revoke a card", tag="registry", responses={200: out.CardRevoked},
                         errors=(409,))(revoke_credential)))
    r.add_post("/api/v1/persons/lookup",
               allow(*STAFF, rule="a coordinator finds only persons tied to their grids")(
                   api("Find a person by identity number", tag="registry", body=inp.LookupIn, description=pii,
                       responses={200: out.PersonFound}, errors=(404,))(lookup_person)))
    r.add_get(r"/api/v1/registry/persons/{id:\d+}",
              allow(*READERS, path={"id": "person"}, rule="registrations shown only in the caller's scope")(
                  api("A person with their registrations", tag="registry",
                      responses={200: out.PersonDetail})(get_person)))
    r.add_post("/api/v1/registry/registrations",
               allow(*REGISTRARS, body={"unit_id": "unit", "person_id": "person"},
                     rule="a person active elsewhere becomes a pending move (docs/registry.md)")(
                   api("Register a person at a unit", tag="registry", body=inp.RegistrationIn, description=pii,
                       responses={201: out.Registered}, errors=(409,))(create_registration)))
    r.add_get("/api/v1/registry/registrations",
              allow(*READERS, query={"unit_id": "unit", "person_id": "person", "building_id": "building"},
                    rule=mine)(api("List registrations", tag="registry", query=out.REGISTRATION_QUERY,
                                   responses={200: out.RegistrationList})(list_registrations)))
    r.add_post(r"/api/v1/registry/registrations/{id:\d+}/end", allow(*REGISTRARS, path=registration)(
        api("End a registration (its cards are revoked)", tag="registry", body=inp.EndIn, body_required=False,
            responses={200: out.Ended}, errors=(409,))(end_registration)))
    r.add_post(r"/api/v1/registry/registrations/{id:\d+}/confirm",
               allow(*REGISTRARS, path=registration)(
                   api("Confirm a pending registration", tag="registry", body=inp.ConfirmIn, body_required=False,
                       responses={200: out.Confirmed}, errors=(409,))(confirm_registration)))
    r.add_post(r"/api/v1/registry/registrations/{id:\d+}/reject",
               allow(*REGISTRARS, path=registration)(
                   api("Reject a pending registration", tag="registry", body=inp.RejectIn,
                       responses={200: out.Rejected}, errors=(409,))(reject_registration)))
    r.add_get("/api/v1/registry/history",
              allow(*READERS, rule="landlords and coordinators read one entity in their scope at a time")(
                  api("The history of changes", tag="registry", query=out.HISTORY_QUERY,
                      responses={200: out.HistoryList})(list_history)))
