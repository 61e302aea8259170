"""The OpenAPI document (server/web/openapi.py): generated from the route
table, so every /api/ route is in it, each with a declared description;
valid OpenAPI 3.1; served to anyone at /api/v1/openapi.json. The live
property tests against it are in test_openapi_fuzz.py."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.auth.policy import policy_of
from server.settings import ServerSettings
from server.web import openapi
from server.web.ids import MAX_ID

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture(scope="module")
def app() -> web.Application:
    return make_app(ServerSettings(database_url="sqlite://"), ingest=False)


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return openapi.build(app, policy_of)


def _api_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method not in ("HEAD", "*")
            and openapi.is_documented_path(route.resource.canonical)}


def test_every_api_route_is_in_the_document_with_a_description(app: web.Application,
                                                                 document: dict[str, Any]) -> None:
    routes = _api_routes(app)
    assert len(routes) > 30  # the walk found the route table, not an empty one
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
    # A route added without api(...) is listed here: declare it where it is registered.
    assert openapi.undocumented(app) == []


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    # Validates against the OpenAPI 3.1 meta-schema; raises with the first problem.
    schemathesis.openapi.from_dict(document).validate()


def test_policies_become_security_and_parameters(document: dict[str, Any]) -> None:
    unit = document["paths"]["/api/v1/registry/units/{id}"]["get"]
    assert unit["security"] == [{"bearer": []}, {"session": []}]
    assert set(unit["x-rentgate-roles"]) == {"admin", "coordinator", "landlord"}
    [param] = unit["parameters"]
    assert param["in"] == "path" and param["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    assert {"401", "403", "404"} <= set(unit["responses"])

    registrations = document["paths"]["/api/v1/registry/registrations"]["get"]
    query = {p["name"]: p["schema"] for p in registrations["parameters"]}
    assert query["building_id"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    assert query["status"]["enum"] == ["pending", "active", "ended", "rejected"]

    declare = document["paths"]["/api/v1/declarations"]["post"]
    assert declare["security"] == [] and "401" not in declare["responses"]
    assert {"429", "410", "413"} <= set(declare["responses"])
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_every_error_has_the_one_shape(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "detail"] and set(error["properties"]) == {"error", "detail", "field"}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                # /healthz's 503 is its own answer (what is down), not a refusal.
                if int(status) >= 400 and path != "/healthz":
                    assert answer == {"$ref": f"#/components/responses/E{status}"}, (method, path, status)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _id_schemas(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema of an optional id field: the integer branch(es)."""
    schema = _resolve(document, schema)
    branches = schema.get("anyOf", [schema])
    return [b for b in branches if b.get("type") != "null"]


def test_ids_in_bodies_are_bounded_like_the_database(app: web.Application, document: dict[str, Any]) -> None:
    """An id a body names (the policy's body refs, and every *_id field) is
    a JSON integer in 1..2^63-1 (server/web/ids.DbId): a larger one would
    reach the database driver and end in a 500."""
    checked = 0
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody")
            if body is None:
                continue
            if "application/json" not in body["content"]:
                continue  # a form (OAuth2: client_id is text by RFC 6749) or NDJSON lines
            model = _resolve(document, body["content"]["application/json"]["schema"])
            for name, field in model.get("properties", {}).items():
                if name.endswith("_id"):
                    for branch in _id_schemas(document, field):
                        bounds = {k: branch.get(k) for k in ("type", "minimum", "maximum")}
                        assert bounds == {"type": "integer", "minimum": 1, "maximum": MAX_ID}, (method, path, name)
                        checked += 1
    assert checked >= 4


def test_every_text_field_of_a_body_is_bounded(document: dict[str, Any]) -> None:
    """Strings in request bodies carry a maxLength (or an enum that bounds them)."""
    unbounded = []

    def walk(schema: dict[str, Any], where: str) -> None:
        schema = _resolve(document, schema)
        for branch in schema.get("anyOf", []):
            walk(branch, where)
        if schema.get("type") == "string" and not ({"maxLength", "enum", "const"} & set(schema)):
            unbounded.append(where)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[]")

    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                for content in op["requestBody"]["content"].values():
                    walk(content["schema"], f"{method.upper()} {path}")
    assert unbounded == []


async def test_the_document_is_served_to_anyone(aiohttp_client: MakeClient, tmp_path: Any) -> None:
    settings = ServerSettings(database_url=f"sqlite:///{tmp_path / 'server.db'}")
    client = await aiohttp_client(make_app(settings, ingest=False))
    response = await client.get(openapi.OPENAPI_PATH)
    assert response.status == 200 and response.content_type == "application/json"
    served = await response.json()
    assert served == openapi.build(client.app, policy_of)
    # aiohttp's own refusals under /api/ have the API's error shape too.
    response = await client.get("/api/v1/no-such-thing")
    assert response.status == 404 and (await response.json())["error"] == "not_found"
    response = await client.put(openapi.OPENAPI_PATH)
    assert response.status == 405 and "GET" in response.headers["Allow"]
    assert (await response.json())["error"] == "method_not_allowed"



async def test_no_text_of_a_request_may_hold_a_nul(aiohttp_client: MakeClient, tmp_path: Any) -> None:
    """PostgreSQL refuses U+0000 in text: a query comparing with such a value
    was a 503 "database unavailable" (found by test_openapi_fuzz.py on
    PostgreSQL). Every query parameter and body string is checked first."""
    settings = ServerSettings(database_url=f"sqlite:///{tmp_path / 'server.db'}")
    client = await aiohttp_client(make_app(settings, ingest=False))
    response = await client.get("/api/v1/areas", params={"parent": "G\x0001"})
    assert response.status == 400 and (await response.json())["field"] == "parent"
    response = await client.post("/api/v1/session", data=b'{"username": "a\\u0000", "password": "x"}')
    assert response.status == 400 and "U+0000" in (await response.json())["detail"]


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+_[A-Za-z0-9_]+", i) for i in ids)
