"""The OpenAPI 3.1 document of the JSON API (``GET /api/v1/openapi.json``),
generated from the application's own route table so that it cannot drift
from what the server does.

Each route says what it takes and answers where it is registered, next to
its policy::

    r.add_post("/api/v1/areas", admin(api("Create an area", tag="registry", body=inp.AreaIn,
                                          responses={201: out.Area}, errors=(409,))(create_area)))

The document then takes, for every ``/api/`` route (and ``/healthz`` and
``/metrics``, which monitoring calls):

- from the route's policy (server/auth/policy.py): who may call it (a
  bearer token or a session cookie, the roles as ``x-rentgate-roles``,
  401 and 403), the objects it names in its path (ids: integers from 1 to
  2^63-1, what the database holds; gateways: their id pattern) and in its
  query string (ids again), and the rule it narrows by;
- from the ``api(...)`` declaration: a summary, the request body's pydantic
  model (its JSON Schema, draft 2020-12 as OpenAPI 3.1 uses), the other
  query parameters, the success answers' models, and the errors the
  handler itself can answer (409, 410, 429, ...).

Every error has one shape, ``{"error": str, "detail": str, "field"?: str}``
(server/web/http.py, server/web/errors.py); the statuses follow from the
route: 400 for anything it reads, 401/403 unless it is public, 404 for a
path that names something, 413 for a body, 503 everywhere (the database
can be unreachable). ``undocumented(app)`` lists routes without a
declaration; a test requires it to be empty, so a new route cannot be
left out."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from rentgate import wire
from server.web.ids import MAX_ID
from server.web.marks import marked

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JsonSchema = dict[str, Any]
API_ATTR = "__rentgate_api__"
OPENAPI_PATH = "/api/v1/openapi.json"
# What the document covers besides /api/: the probes monitoring calls.
PROBES = ("/healthz", "/metrics")
SCHEMAS = "#/components/schemas/"
ID_SCHEMA: JsonSchema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
# Gateways are named by text (rentgate/wire.py's pattern), everything else by id.
GATEWAY_SCHEMA: JsonSchema = {"type": "string", "pattern": wire.GATEWAY_ID_PATTERN}


class NamedObject(Protocol):
    """An object a route names (server/auth/policy.Ref)."""

    @property
    def kind(self) -> str: ...
    @property
    def where(self) -> str: ...
    @property
    def name(self) -> str: ...


class Policy(Protocol):
    """What the document needs of a route's policy (server/auth/policy.RoutePolicy).
    A protocol, because the shared layer imports no slice and not auth
    (docs/architecture.md): the composition passes auth's ``policy_of`` in."""

    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def refs(self) -> Sequence[NamedObject]: ...
    @property
    def rule(self) -> str: ...
    @property
    def public(self) -> bool: ...


PolicyOf = Callable[[object], Policy | None]


class Out(BaseModel):
    """The documented shape of an answer, never used to build one: every
    key listed is there (None where typed so), and more may follow, so a
    new key in an answer is not a breaking change."""

    model_config = ConfigDict(extra="allow")


class Published(Out):
    """What a change to who may open which door answers besides itself
    (docs/access.md): the new allowlist version per gateway, and whether
    it went out over MQTT at once."""

    allowlist_versions: dict[str, int]
    # Absent when no gateway's allowlist changed (nothing to publish).
    published: bool | None = None


@dataclass(frozen=True)
class Param:
    """A query (or path) parameter that is not an object the policy names."""

    name: str
    schema: JsonSchema
    description: str = ""
    required: bool = False


def int_query(name: str, description: str, *, lo: int = 1, hi: int = MAX_ID, required: bool = False) -> Param:
    """A whole number as server/web/http.int_param reads it."""
    return Param(name, {"type": "integer", "minimum": lo, "maximum": hi}, description, required)


def text_query(name: str, description: str, *, max_length: int = 200, required: bool = False) -> Param:
    return Param(name, {"type": "string", "minLength": 1, "maxLength": max_length}, description, required)


def enum_query(name: str, description: str, values: Iterable[str], *, required: bool = False) -> Param:
    return Param(name, {"type": "string", "enum": list(values)}, description, required)


def flag_query(name: str, description: str) -> Param:
    """A yes/no parameter: 1 or 0 (server/grid/routes.bool_param also takes true/false, yes/no)."""
    return Param(name, {"type": "string", "enum": ["1", "0"]}, description)


@dataclass(frozen=True)
class Reply:
    """A success answer: a pydantic model (JSON), a raw JSON Schema, or no body."""

    schema: type[BaseModel] | JsonSchema | None
    description: str = ""
    media: str = "application/json"


ReplySpec = type[BaseModel] | Reply | None


@dataclass(frozen=True)
class ApiDoc:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: tuple[Param, ...] = ()
    path: tuple[Param, ...] = ()
    responses: Mapping[int, Reply] = field(default_factory=dict)
    errors: frozenset[int] = frozenset()
    description: str = ""
    # The body's media type: JSON by default; the police batch takes NDJSON
    # (its model then describes one line), the OAuth2 token endpoint a form,
    # a camera snapshot's upload a JPEG's bytes (no model: ``body`` is None).
    body_media: str = "application/json"
    # The schema of a body that has no model (bytes: a bounded binary string).
    body_schema: JsonSchema | None = None


def api(summary: str, *, tag: str, body: type[BaseModel] | None = None, body_required: bool = True,
        query: Sequence[Param] = (), path: Sequence[Param] = (), responses: Mapping[int, ReplySpec],
        errors: Iterable[int] = (), description: str = "", body_media: str = "application/json",
        body_schema: JsonSchema | None = None) -> Callable[[Handler], Handler]:
    """Declare what a route takes and answers (see the module's docstring).
    ``body_required=False``: an empty body means ``{}`` (read_body's
    ``optional``). ``errors``: statuses the handler answers beyond those
    the route's shape implies (400, 401, 403, 404, 413, 503). ``body_schema``:
    a body that is not a model's JSON (bytes of ``body_media``)."""
    replies = {status: spec if isinstance(spec, Reply) else Reply(spec) for status, spec in responses.items()}
    doc = ApiDoc(summary, tag, body, body_required, tuple(query), tuple(path), replies, frozenset(errors),
                 description, body_media, body_schema)
    return marked(API_ATTR, doc)


def doc_of(handler: object) -> ApiDoc | None:
    found = getattr(handler, API_ATTR, None)
    return found if isinstance(found, ApiDoc) else None


# --------------------------------------------------------------------------- errors


ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Every error answer. `field` names the request field at fault (dotted for nested ones); "
                   "other keys may follow (e.g. `reason` for a refused door plate).",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable code: bad_parameter, unauthorized, forbidden, "
                                                   "not_found, conflict, too_many_requests, ..."},
        "detail": {"type": "string", "description": "what is wrong, in words; never echoes personal data"},
        "field": {"type": "string"},
    },
}
ERROR_TEXT = {
    400: "A parameter or a field of the body cannot be used.",
    401: "No login, or a token that is unknown, expired or revoked.",
    403: "The caller's role may not do this.",
    404: "The path names nothing the caller can see (an object outside the caller's scope answers the same).",
    409: "The current state forbids this change.",
    410: "What the request names has expired or was withdrawn.",
    413: "The body is larger than the server accepts.",
    415: "The body is not of the type the route takes (e.g. not a JPEG).",
    429: "Too many requests; `Retry-After` says when to try again.",
    503: "Something the request needs is unavailable: the database, or a key the server was not given.",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}


def _error_responses() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for status, text in ERROR_TEXT.items():
        answer: dict[str, Any] = {"description": text,
                                  "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Error"}}}}
        if status == 401:
            answer["headers"] = {"WWW-Authenticate": {"description": "the scheme that works",
                                                      "schema": {"type": "string"}}}
        if status == 429:
            answer["headers"] = RETRY_AFTER
        found[f"E{status}"] = answer
    return found


# --------------------------------------------------------------------------- the document


def is_documented_path(path: str) -> bool:
    return path.startswith("/api/") or path in PROBES


def _routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    found = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        if is_documented_path(path):
            found.append((path, route.method.lower(), route))
    return sorted(found, key=lambda r: (r[0], r[1]))


def undocumented(app: web.Application) -> list[str]:
    """``METHOD path`` of every documented path's route that lacks ``api(...)``."""
    return [f"{method.upper()} {path}" for path, method, route in _routes(app) if doc_of(route.handler) is None]


def _digit_params(route: web.AbstractRoute) -> set[str]:
    """Path parameters the router only matches as digits ({id:\\d+})."""
    info = route.resource.get_info() if route.resource is not None else {}
    pattern = info.get("pattern")
    text = pattern.pattern if isinstance(pattern, re.Pattern) else ""
    return set(re.findall(r"\(\?P<(\w+)>\\d\+\)", text))


def _path_params(path: str, route: web.AbstractRoute, doc: ApiDoc | None, policy: Policy | None) -> list[JsonSchema]:
    declared = {p.name: p for p in doc.path} if doc else {}
    kinds = {ref.name: ref.kind for ref in policy.refs if ref.where == "path"} if policy else {}
    digits = _digit_params(route)
    params = []
    for name in re.findall(r"\{(\w+)\}", path):
        if name in declared:
            schema, text = declared[name].schema, declared[name].description
        elif kinds.get(name) == "gateway" or name == "gw":
            schema, text = GATEWAY_SCHEMA, "a gateway's id"
        elif name in kinds or name in digits:
            kind = kinds.get(name)
            schema, text = ID_SCHEMA, f"the id of a {kind}" if kind else "an id"
        else:
            schema, text = {"type": "string", "minLength": 1}, ""
        params.append({"name": name, "in": "path", "required": True, "schema": schema, "description": text})
    return params


def _query_params(doc: ApiDoc | None, policy: Policy | None) -> list[JsonSchema]:
    params: dict[str, JsonSchema] = {}
    for ref in (policy.refs if policy else ()):
        if ref.where == "query":
            schema = GATEWAY_SCHEMA if ref.kind == "gateway" else ID_SCHEMA
            params[ref.name] = {"name": ref.name, "in": "query", "required": False, "schema": schema,
                                "description": f"the id of a {ref.kind} (one outside the caller's scope "
                                               "answers like one that does not exist)"}
    for p in (doc.query if doc else ()):
        merged = params.get(p.name, {})
        params[p.name] = {"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
                          "description": p.description or merged.get("description", "")}
    return list(params.values())


def _error_statuses(path: str, method: str, doc: ApiDoc | None, policy: Policy | None, has_query: bool) -> set[int]:
    statuses = {503}
    if doc is not None and doc.body is not None:
        statuses |= {400, 413}
    if has_query or "{" in path:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    if policy is not None and not policy.public:
        statuses |= {401, 403}
    if doc is not None:
        statuses |= doc.errors
    return statuses


def _security(policy: Policy | None) -> tuple[list[dict[str, list[str]]], list[str]]:
    if policy is None or policy.public:
        return [], []
    return [{"bearer": []}, {"session": []}], list(policy.roles)


def _describe(doc: ApiDoc | None, policy: Policy | None) -> str:
    parts = [doc.description] if doc and doc.description else []
    if policy is not None:
        parts.append("Who: " + ("anyone." if policy.public else ", ".join(policy.roles) + "."))
        if policy.rule:
            parts.append(f"Rule: {policy.rule}.")
    return " ".join(parts)


def build(app: web.Application, policy_of: PolicyOf) -> dict[str, Any]:
    """The document for ``app``'s routes (the router must be complete)."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for _, _, route in _routes(app):
        doc = doc_of(route.handler)
        if doc is None:
            continue
        if doc.body is not None:
            models.append((doc.body, "validation"))
        for reply in doc.responses.values():
            if isinstance(reply.schema, type):
                models.append((reply.schema, "serialization"))
    refs, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=SCHEMAS + "{model}")
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, **defs.get("$defs", {})}

    paths: dict[str, dict[str, Any]] = {}
    for path, method, route in _routes(app):
        doc = doc_of(route.handler)
        policy = policy_of(route.handler)
        query = _query_params(doc, policy)
        security, roles = _security(policy)
        op: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": doc.summary if doc else "(undocumented)",
            "tags": [doc.tag if doc else "undocumented"],
            "security": security,
        }
        if roles:
            op["x-rentgate-roles"] = roles
        text = _describe(doc, policy)
        if text:
            op["description"] = text
        params = _path_params(path, route, doc, policy) + query
        if params:
            op["parameters"] = params
        if doc is not None and doc.body is not None:
            op["requestBody"] = {"required": doc.body_required,
                                 "content": {doc.body_media: {"schema": refs[(doc.body, "validation")]}}}
        elif doc is not None and doc.body_schema is not None:
            # A body with no model (a camera's JPEG): clients, and the tests
            # that send every route a bad body, read its type here.
            op["requestBody"] = {"required": doc.body_required,
                                 "content": {doc.body_media: {"schema": doc.body_schema}}}
        responses: dict[str, Any] = {}
        for status, reply in sorted((doc.responses if doc else {}).items()):
            responses[str(status)] = _reply(reply, refs)
        for status in sorted(_error_statuses(path, method, doc, policy, bool(query))):
            responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
        op["responses"] = responses
        paths.setdefault(path, {})[method] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rentgate API",
            "version": _version(),
            "description": "Generated from the server's route table (server/web/openapi.py); docs/openapi.md "
                           "says how. Log in with POST /api/v1/session (a cookie; writes then need "
                           "X-CSRF-Token) or send `Authorization: Bearer <token>` (`rentgate user token`).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `rentgate user token`"},
                "session": {"type": "apiKey", "in": "cookie", "name": "rentgate_session",
                            "description": "the cookie POST /api/v1/session sets; writes also need the "
                                           "X-CSRF-Token header"},
            },
        },
    }


def _reply(reply: Reply, refs: Mapping[tuple[Any, JsonSchemaMode], JsonSchema]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description or "OK"}
    if isinstance(reply.schema, type):
        answer["content"] = {reply.media: {"schema": refs[(reply.schema, "serialization")]}}
    elif reply.schema is not None:
        answer["content"] = {reply.media: {"schema": reply.schema}}
    return answer


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path.removeprefix("/api/v1/")).strip("/")
    return method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", words or "root")


def _version() -> str:
    try:
        return version("rentgate")
    except PackageNotFoundError:
        return "0"


class _Cached:
    """The document, built on the first request (the router is complete
    and frozen by then) and kept: the route table does not change."""

    def __init__(self, policy_of: PolicyOf) -> None:
        self.policy_of = policy_of
        self.text: str | None = None


DOCUMENT = web.AppKey("openapi_document", _Cached)


def add_route(app: web.Application, wrap: Callable[[Handler], Handler], policy_of: PolicyOf) -> None:
    """Serve the document at OPENAPI_PATH. ``wrap`` is the route's own
    policy, ``policy_of`` reads every route's (server/auth/policy.py)."""
    app[DOCUMENT] = _Cached(policy_of)
    described = api("This document", tag="meta", responses={
        200: Reply({"type": "object", "required": ["openapi", "info", "paths"]}, "the OpenAPI 3.1 document")})
    app.router.add_get(OPENAPI_PATH, wrap(described(serve)))


async def serve(request: web.Request) -> web.Response:
    cached = request.app[DOCUMENT]
    if cached.text is None:
        cached.text = json.dumps(build(request.app, cached.policy_of), ensure_ascii=False)
    return web.Response(text=cached.text, content_type="application/json")
