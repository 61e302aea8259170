"""Logins, tokens, CSRF and role checks through the real application."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from server.app import make_app
from server.auth.appkeys import THROTTLE
from server.auth.sessions import SESSION_COOKIE
from server.auth.throttle import LoginThrottle
from server.db.models import AuthSession, Building
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

# The routes that existed before authentication, all for administrators.
# Creating buildings, once POST /api/v1/buildings, is the registry's, for administrators too.
ADMIN_ROUTES = [
    ("GET", "/api/v1/events"), ("GET", "/api/v1/gateways"), ("GET", "/api/v1/dead-letters"),
    ("GET", "/api/v1/gaps"), ("POST", "/api/v1/registry/buildings"), ("PUT", "/api/v1/gateways/gw-1/building"),
    ("GET", "/api/v1/gateways/gw-1/allowlist"), ("GET", "/api/v1/allowlist-keys"),
]
# Anonymous on purpose: logging in, logging out (harmless without a session),
# and tenants' self-declarations (tenants have no accounts; the registry
# rate-limits them per address and a coordinator confirms each).
# The OpenAPI document describes the API, not data (docs/openapi.md).
PUBLIC_API = {("POST", "/api/v1/session"), ("DELETE", "/api/v1/session"), ("POST", "/api/v1/declarations"),
              ("GET", "/api/v1/openapi.json"),
              # OAuth2 client credentials, and what a police integrator or an
              # oversight body needs before any credential: purposes, keys.
              ("POST", "/api/v1/police/token"), ("GET", "/api/v1/police/purposes"),
              ("GET", "/api/v1/police/signing-key"), ("GET", "/api/v1/audit/checkpoints/latest"),
              ("GET", "/api/v1/audit/public-key"),
              # A camera snapshot's upload: authenticated by the event that names its hash.
              ("PUT", "/api/v1/gateways/1/events/1/snapshot"),
              # A gateway enrolling: authenticated by a landlord's one-time code.
              ("POST", "/api/v1/enrol")}


def _api_routes() -> list[tuple[str, str]]:
    """Every /api/ route the application registers, placeholders filled in."""
    app = make_app(ServerSettings(database_url="sqlite:///unused.db"), ingest=False)
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method not in ("HEAD", "*"):
            found.add((route.method, re.sub(r"\{[^}]+\}", "1", path)))
    return sorted(found - PUBLIC_API)


@pytest.fixture
async def client(auth_engine: sa.Engine, auth_db_url: str, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(ServerSettings(database_url=auth_db_url), ingest=False))


async def _login(client: Client, username: str, password: str = "pw-secret-1") -> str:
    response = await client.post("/api/v1/session", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["user"]["username"] == username
    return str(body["csrf"])


async def test_login_sets_a_protected_cookie_and_logout_ends_it(auth_engine: sa.Engine, client: Client) -> None:
    admin = make_user(auth_engine, username="root")
    response = await client.post("/api/v1/session", json={"username": "root", "password": admin.password})
    cookie = response.headers["Set-Cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    csrf = (await response.json())["csrf"]
    me = await (await client.get("/api/v1/session")).json()
    assert me == {"user": {"id": admin.id, "username": "root", "role": "admin", "display_name": "root"},
                  "csrf": csrf, "kind": "cookie"}
    assert (await client.get("/api/v1/gateways")).status == 200
    assert (await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})).status == 204
    assert (await client.get("/api/v1/gateways")).status == 401
    with auth_engine.connect() as conn:  # only the test's bearer token is left
        assert conn.execute(sa.select(AuthSession.kind)).scalars().all() == ["token"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(auth_engine: sa.Engine,
                                                                   client: Client) -> None:
    make_user(auth_engine, username="real")
    answers = []
    for username in ("real", "ghost"):
        response = await client.post("/api/v1/session", json={"username": username, "password": "wrong-one"})
        answers.append((response.status, await response.json()))
    assert answers[0] == answers[1] == (401, {"error": "unauthorized", "detail": "wrong username or password"})
    assert "Set-Cookie" not in response.headers


async def test_login_body_problems_name_the_field(client: Client) -> None:
    response = await client.post("/api/v1/session", json={"username": "x"})
    assert response.status == 400 and (await response.json())["field"] == "password"


async def test_five_failures_for_a_username_lock_it_for_fifteen_minutes(auth_engine: sa.Engine, auth_db_url: str,
                                                                        aiohttp_client: MakeClient) -> None:
    clock = [1000.0]
    app = make_app(ServerSettings(database_url=auth_db_url), ingest=False)
    app[THROTTLE] = LoginThrottle(clock=lambda: clock[0])
    client = await aiohttp_client(app)
    user = make_user(auth_engine, username="target")
    for _ in range(5):
        response = await client.post("/api/v1/session", json={"username": "target", "password": "guess-guess"})
        assert response.status == 401
    # Even the right password is refused while locked: otherwise guessing would go on.
    response = await client.post("/api/v1/session", json={"username": "target", "password": user.password})
    assert response.status == 429 and response.headers["Retry-After"] == "900"
    clock[0] += 15 * 60
    assert (await client.post("/api/v1/session", json={"username": "target", "password": user.password})).status == 200


async def test_five_failures_from_one_address_lock_out_that_address(auth_engine: sa.Engine,
                                                                    client: Client) -> None:
    user = make_user(auth_engine, username="victim")
    for n in range(5):  # spraying different usernames from one client
        await client.post("/api/v1/session", json={"username": f"user{n}", "password": "guess-guess"})
    response = await client.post("/api/v1/session", json={"username": "victim", "password": user.password})
    assert response.status == 429 and int(response.headers["Retry-After"]) > 0


async def test_cookie_writes_need_the_csrf_token_bearer_writes_do_not(auth_engine: sa.Engine,
                                                                      client: Client) -> None:
    admin = make_user(auth_engine, username="boss")
    csrf = await _login(client, "boss")
    path = "/api/v1/registry/buildings"
    refused = await client.post(path, json={"name": "A"})
    assert refused.status == 403 and "CSRF" in (await refused.json())["detail"]
    assert (await client.post(path, json={"name": "A"}, headers={"X-CSRF-Token": "nope"})).status == 403
    assert (await client.post(path, json={"name": "A"}, headers={"X-CSRF-Token": csrf})).status == 201
    client.session.cookie_jar.clear()
    ok = await client.post(path, json={"name": "B"}, headers=bearer(admin.token))
    assert ok.status == 201
    with auth_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Building)).scalar() == 2


async def test_csrf_token_also_accepted_as_a_form_field(auth_engine: sa.Engine, client: Client) -> None:
    make_user(auth_engine, username="former")
    csrf = await _login(client, "former")
    assert (await client.delete("/api/v1/session", data={"csrf": "wrong"})).status == 403
    assert (await client.delete("/api/v1/session", data={"csrf": csrf})).status == 204


async def test_anonymous_is_401_wrong_role_is_403(auth_engine: sa.Engine, client: Client) -> None:
    landlord = make_user(auth_engine, role="landlord")
    anonymous = await client.get("/api/v1/events")
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await anonymous.json())["error"] == "unauthorized"
    wrong_role = await client.get("/api/v1/events", headers=bearer(landlord.token))
    assert wrong_role.status == 403 and (await wrong_role.json())["error"] == "forbidden"
    bad_token = await client.get("/api/v1/events", headers=bearer("not-a-token"))
    assert bad_token.status == 401


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
async def test_existing_routes_are_for_administrators_only(auth_engine: sa.Engine, client: Client,
                                                           method: str, path: str) -> None:
    assert (await client.request(method, path)).status == 401
    for role in ("landlord", "coordinator", "police"):
        user = make_user(auth_engine, role=role)
        assert (await client.request(method, path, headers=bearer(user.token))).status == 403, role


@pytest.mark.parametrize("method, path", _api_routes())
async def test_every_api_route_refuses_anonymous_requests(client: Client, method: str, path: str) -> None:
    assert (await client.request(method, path)).status == 401


async def test_health_and_metrics_stay_open(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


async def test_status_page_sends_browsers_to_login_and_admits_coordinators(auth_engine: sa.Engine,
                                                                           client: Client) -> None:
    page = await client.get("/?lang=en", headers={"Accept": "text/html"}, allow_redirects=False)
    location = URL(page.headers["Location"])
    assert page.status == 303 and location.path == "/login" and location.query["next"] == "/?lang=en"
    assert (await client.get("/", headers={"Accept": "application/json"})).status == 401
    police = make_user(auth_engine, role="police")
    assert (await client.get("/", headers=bearer(police.token))).status == 403
    make_user(auth_engine, role="coordinator", username="grid-7")
    await _login(client, "grid-7")
    assert (await client.get("/", headers={"Accept": "text/html"})).status == 200


async def test_a_disabled_users_token_stops_working_at_once(auth_engine: sa.Engine, client: Client) -> None:
    from server.auth.users import disable_user

    admin = make_user(auth_engine)
    assert (await client.get("/api/v1/gateways", headers=bearer(admin.token))).status == 200
    with auth_engine.begin() as conn:
        disable_user(conn, datetime.now(UTC), admin.username)
    assert (await client.get("/api/v1/gateways", headers=bearer(admin.token))).status == 401
    response = await client.post("/api/v1/session", json={"username": admin.username, "password": admin.password})
    assert response.status == 401


async def test_an_idle_login_expires(auth_engine: sa.Engine, client: Client) -> None:
    make_user(auth_engine, username="sleepy")
    await _login(client, "sleepy")
    assert (await client.get("/api/v1/session")).status == 200
    with auth_engine.begin() as conn:  # 12 h (the default idle limit) without a request
        conn.execute(sa.update(AuthSession).where(AuthSession.kind == "cookie")
                     .values(last_seen_at=datetime.now(UTC) - timedelta(hours=12, seconds=1)))
    assert (await client.get("/api/v1/session")).status == 401


async def test_last_seen_is_written_at_most_once_a_minute(auth_engine: sa.Engine, client: Client) -> None:
    admin = make_user(auth_engine)
    old = datetime.now(UTC) - timedelta(minutes=5)
    with auth_engine.begin() as conn:
        conn.execute(sa.update(AuthSession).values(last_seen_at=old))

    def last_seen() -> datetime:
        with auth_engine.connect() as conn:
            value = conn.execute(sa.select(AuthSession.last_seen_at)).scalar_one()
            assert value is not None
            return value

    await client.get("/api/v1/session", headers=bearer(admin.token))
    touched = last_seen()
    assert touched > old
    await client.get("/api/v1/session", headers=bearer(admin.token))
    assert last_seen() == touched
