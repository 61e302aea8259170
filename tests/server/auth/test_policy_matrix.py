"""The authorisation matrix, generated from the application's own route
table: every route x every kind of caller, with objects inside and outside
the caller's scope in the path, the body and the query string.

For each route the declared policy (server/auth/policy.py) says who may
call it and which objects it names. The test checks that the server does
exactly that:

- anonymous callers get 401 unless the route is public;
- a role the policy does not name gets 403, whatever the object;
- a caller whose scope does not hold the object (another landlord, another
  grid's coordinator) gets byte for byte the answer a nonexistent object
  gets, so no status, id, name or address tells them it exists;
- a caller whose scope holds it (the building's landlord, the grid's
  coordinator, an administrator) is let through to the handler;
- and nobody ever gets a 5xx.

A route added without a policy stops make_app (and so this test) before
any request is made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from rentgate import signing
from server.app import make_app
from server.auth.policy import MissingPolicy, Ref, RoutePolicy, allow, check_policies
from server.auth.table import routes_with_policies
from server.db.models import (
    attachments,
    cases,
    credentials,
    event_snapshots,
    events,
    gateway_enrolments,
    problem_reports,
    tasks,
)
from server.media.store import MediaStore
from server.police.clients import set_officer
from server.registry.idnumber import make_id_number
from tests.server.auth_helpers import UserCreds, make_user
from tests.server.registry.api_helpers import Api, Client, MakeClient, settings_for

NOWHERE = 2**62  # an id no object has
PHOTO_SHA = "ab" * 32
NOWHERE_GATEWAY = "gw-nowhere"
# Path parameters that name no object: a value that routes.
FILLERS = {"gw": "gw-a", "action": "dispatch", "token": "not-a-plate", "watch_id": "w-not-a-watch", "seq": "1",
           "door": "front", "code": "7777-7777-7777"}


@dataclass(frozen=True)
class Side:
    """One landlord's building in one coordinator's grid, and what is in it."""

    landlord: UserCreds
    coordinator: UserCreds
    objects: dict[str, int | str]


@dataclass(frozen=True)
class World:
    admin: UserCreds
    # An officer whose jurisdiction is side B's district, and one whose is A's.
    police: UserCreds
    a: Side
    b: Side
    police_a: UserCreds | None = None


async def _side(api: Api, engine: sa.Engine, admin: UserCreds, tag: str, region: str, serial: int) -> Side:
    a = admin.token
    landlord, coordinator = make_user(engine, "landlord"), make_user(engine, "coordinator")
    parent = None
    for level in ("district", "street", "community", "grid"):
        code = f"{level[0].upper()}-{tag}"
        grid = await api.call("POST", "/api/v1/areas", {"level": level, "code": code, "name": f"{level} {tag}",
                                                        "parent_code": parent}, 201, token=a)
        parent = code
    await api.call("POST", f"/api/v1/grids/{grid['id']}/coordinators", {"username": coordinator.username}, 201,
                   token=a)
    building = await api.call("POST", "/api/v1/registry/buildings", {
        "name": f"Building {tag}", "code": f"B-{tag}", "grid_code": f"G-{tag}",
        "landlord_username": landlord.username, "is_rental": True}, 201, token=a)
    unit = await api.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                          {"number": "101", "area_m2": 30, "rooms": 2}, 201, token=a)
    gateway = f"gw-{tag.lower()}"
    await api.call("PUT", f"/api/v1/gateways/{gateway}/building", {"building_id": building["id"]}, token=a)
    number = make_id_number(region, date(1990, 1, 1), serial)
    registration = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": unit["id"], "arrived_at": "2025-03-01", "person": {"id_number": number, "name": f"Tenant {tag}"},
        "credential": {"format": "em4100", "value": f"00000000{serial:02X}"}}, 201, token=a)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        credential = conn.execute(sa.select(credentials.c.id)
                                  .where(credentials.c.building_id == building["id"])).scalar_one()
        case = conn.execute(sa.insert(cases).values(
            kind="unregistered_occupant", subject=f"u{unit['id']}/test", state="open", building_id=building["id"],
            unit_id=unit["id"], opened_at=now, evidence={}, updated_at=now).returning(cases.c.id)).scalar_one()
        task = conn.execute(sa.insert(tasks).values(
            kind="inspect", state="reported", grid_id=grid["id"], building_id=building["id"], unit_id=unit["id"],
            summary="check the door", created_at=now, source="manual").returning(tasks.c.id)).scalar_one()
        attachment = conn.execute(sa.insert(attachments).values(
            sha256=PHOTO_SHA, content_type="image/jpeg", size=1, created_at=now, actor="tenant:report")
            .returning(attachments.c.id)).scalar_one()
        conn.execute(sa.insert(problem_reports).values(
            unit_id=unit["id"], building_id=building["id"], category="other", description="test",
            attachment_id=attachment, created_at=now))
        # A camera alert at the building's door, with its snapshot stored.
        event = conn.execute(sa.insert(events).values(
            gateway_id=gateway, seq=1, kind="unidentified_entry", device="cam-1", door="door-1", occurred_at=now,
            received_at=now, stored_at=now, data={"track": 1, "snapshot": PHOTO_SHA}).returning(events.c.id)
        ).scalar_one()
        conn.execute(sa.insert(event_snapshots).values(event_id=event, sha256=PHOTO_SHA, size_bytes=4,
                                                       stored_at=now, gateway_id=gateway))
        # A terminal's enrolment code for the building (its hash, as stored).
        enrolment = conn.execute(sa.insert(gateway_enrolments).values(
            code_digest=f"{serial:064x}", building_id=building["id"], created_by=landlord.id, created_at=now,
            expires_at=now + timedelta(minutes=10)).returning(gateway_enrolments.c.id)).scalar_one()
    return Side(landlord, coordinator, {
        "building": building["id"], "unit": unit["id"], "registration": registration["id"],
        "person": registration["person_id"], "credential": credential, "case": case, "task": task,
        "grid": grid["id"], "gateway": gateway, "attachment": attachment, "event": event,
        "enrolment": enrolment})


async def seed_world(api: Api, engine: sa.Engine) -> World:
    admin = make_user(engine, "admin")
    a = await _side(api, engine, admin, "A", "440106", 11)
    b = await _side(api, engine, admin, "B", "320102", 22)
    police, police_a = make_user(engine, "police"), make_user(engine, "police")
    with engine.begin() as conn:
        for officer, district in ((police, "D-B"), (police_a, "D-A")):
            set_officer(conn, datetime.now(UTC), officer.username, scopes="lookup detail events batch watch",
                        rate_per_min=10_000, daily_quota=100_000, jurisdiction=district)
    return World(admin, police, a, b, police_a)


@dataclass(frozen=True)
class Shot:
    status: int
    body: str


def _request_parts(path: str, policy: RoutePolicy, side: Side,
                   missing: Ref | None) -> tuple[str, dict[str, Any] | None, dict[str, str]]:
    """The path with its parameters filled in from ``side``, the JSON body
    and the query; ``missing``: that one object replaced by one that does not
    exist."""
    def value(ref: Ref) -> int | str:
        if ref == missing:
            return NOWHERE_GATEWAY if ref.kind == "gateway" else NOWHERE
        return side.objects[ref.kind]

    for ref in policy.refs:
        if ref.where == "path":
            path = path.replace("{" + ref.name + "}", str(value(ref)))
    for name, filler in FILLERS.items():
        path = path.replace("{" + name + "}", filler)
    body = {ref.name: value(ref) for ref in policy.refs if ref.where in ("body", "form")}
    query = {ref.name: str(value(ref)) for ref in policy.refs if ref.where == "query"}
    return path, body, query


async def _shoot(client: Client, method: str, path: str, body: dict[str, Any] | None, query: dict[str, str],
                 token: str | None) -> Shot:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    json_body = body if method in ("POST", "PUT", "PATCH", "DELETE") else None
    response = await client.request(method, path, json=json_body, params=query or None, headers=headers,
                                    allow_redirects=False)
    return Shot(response.status, (await response.read()).decode("utf-8", "replace"))


def _callers(world: World) -> list[tuple[str, UserCreds | None, bool]]:
    """(name, user, whether side A's objects are in their scope). Callers
    outside the scope go first: the ones inside may change side A's state."""
    in_a = [("police of the object's district", world.police_a, True)] if world.police_a is not None else []
    return [("anonymous", None, False), ("police of another district", world.police, False),
            ("another landlord", world.b.landlord, False), ("another coordinator", world.b.coordinator, False),
            ("landlord of the object", world.a.landlord, True),
            ("coordinator of the object's grid", world.a.coordinator, True),
            ("administrator", world.admin, True), *in_a]


async def _check_route(client: Client, world: World, method: str, path: str, policy: RoutePolicy) -> list[str]:
    problems = []
    for name, user, in_scope in _callers(world):
        police_ids = {world.police.id} | ({world.police_a.id} if world.police_a is not None else set())
        role = user and ("admin" if user.id == world.admin.id else "police" if user.id in police_ids
                         else "landlord" if "landlord" in name else "coordinator")
        target, body, query = _request_parts(path, policy, world.a, None)
        shot = await _shoot(client, method, target, body, query, user.token if user else None)
        where = f"{method} {path} as {name}: {shot.status} {shot.body[:160]}"
        if shot.status >= 500:
            problems.append(f"{where}: a server error")
            continue
        if policy.public:
            continue
        if user is None:
            if shot.status != 401:
                problems.append(f"{where}: expected 401")
            continue
        if role not in policy.roles:
            if shot.status != 403:
                problems.append(f"{where}: expected 403 for role {role}")
            continue
        for ref in policy.refs:
            # The same request with this one object replaced by a nonexistent one.
            m_target, m_body, m_query = _request_parts(path, policy, world.a, ref)
            missing = await _shoot(client, method, m_target, m_body, m_query, user.token)
            # A page links to the address it was asked for (the language
            # switch): that echoes the caller's own input, not a fact.
            mine, theirs = shot.body.replace(target, "<path>"), missing.body.replace(m_target, "<path>")
            refused_like_missing = (shot.status, mine) == (missing.status, theirs)
            if not in_scope and not refused_like_missing:
                diff = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), 0)
                problems.append(f"{where}: {ref.where} {ref.name} ({ref.kind}) outside the caller's scope is not "
                                f"answered like a nonexistent one ({missing.status}; bodies differ at "
                                f"{mine[diff - 20:diff + 60]!r} / {theirs[diff - 20:diff + 60]!r})")
            # An administrator's scope is everything, so the policy passes
            # both requests to the handler, which may answer both alike.
            if in_scope and role != "admin" and refused_like_missing:
                problems.append(f"{where}: {ref.where} {ref.name} ({ref.kind}) in the caller's scope is refused "
                                f"like a nonexistent one")
    return problems


async def test_every_route_answers_every_caller_as_its_policy_says(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    # Every optional part configured (photos, the allowlist key), so that no
    # route answers "not configured" where the policy is what is tested.
    key = tmp_path / "allowlist.pem"
    key.write_text(signing.private_key_pem(signing.generate_private_key()))
    settings = settings_for(database_url, tmp_path).model_copy(
        update={"media_dir": str(tmp_path / "media"), "allowlist_key_file": str(key)})
    # The photo the world's problem reports carry, so its page has bytes to show.
    photo = MediaStore(tmp_path / "media").path_for(PHOTO_SHA)
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\xff\xd8\xff\xd9")
    # And as the camera snapshot of the world's door events.
    snapshot = MediaStore(tmp_path / "media" / "snapshots").path_for(PHOTO_SHA)
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"\xff\xd8\xff\xd9")
    app = make_app(settings, ingest=False)
    api = Api(await aiohttp_client(app))
    world = await seed_world(api, engine)
    # Logging out revokes the caller's token: last.
    logouts = (("DELETE", "/api/v1/session"), ("POST", "/logout"))
    routes = sorted(routes_with_policies(app), key=lambda r: (r[0], r[1]) in logouts)
    assert len(routes) > 80  # the whole table, not a handful
    problems: list[str] = []
    for method, path, policy in routes:
        problems += await _check_route(api.client, world, method, path, policy)
    assert not problems, f"{len(problems)} departures from the policy:\n" + "\n".join(problems)


async def test_a_route_without_a_policy_stops_the_application_from_starting(tmp_path: Path) -> None:
    async def undeclared(request: web.Request) -> web.Response:
        return web.Response(text="data")

    app = make_app(settings_for(f"sqlite:///{tmp_path / 'x.db'}", tmp_path), ingest=False)
    app.router.add_get("/api/v1/forgotten", undeclared)
    with pytest.raises(MissingPolicy, match="GET /api/v1/forgotten: no @allow or @public"):
        check_policies(app)


async def test_a_policy_naming_a_path_parameter_the_route_lacks_stops_it_too(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="data")

    app = make_app(settings_for(f"sqlite:///{tmp_path / 'x.db'}", tmp_path), ingest=False)
    app.router.add_get("/api/v1/things/{thing_id}", allow("admin", path={"id": "unit"})(handler))
    with pytest.raises(MissingPolicy, match="no path parameter 'id'"):
        check_policies(app)
