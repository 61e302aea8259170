"""Property-based tests of the whole JSON API with schemathesis, against a
live server over real TCP, driven by the server's own OpenAPI document
(GET /api/v1/openapi.json, server/web/openapi.py).

For every documented operation schemathesis sends requests built from the
document: valid ones and, in its negative mode, ones that break it (wrong
types, out-of-range ids, missing or unknown fields, odd strings), plus the
boundary values of its coverage phase (an id of 1 names the seeded
objects). Each answer must

- never be a 5xx (``not_a_server_error``): no input may crash a handler;
- match the document: a status it lists (``status_code_conformance``) and
  a body of the schema it gives for that status
  (``response_schema_conformance``), errors included.

Run as an administrator (who reaches every object) on PostgreSQL, and as a
landlord (who reaches their own building only) on SQLite. A failure prints the request to
replay it; docs/openapi.md says how to run the same checks by hand
against ``make demo``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from rentgate import signing
from server.app import make_app
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import POLICE_SCOPES, cases, tasks
from server.police.clients import add_client, issue_token
from server.web.openapi import OPENAPI_PATH
from tests.server.registry.api_helpers import ID_B, Api, City, person, seed_city, settings_for
from tests.services import PostgresCluster

# Examples per operation (fuzzing phase; the coverage phase adds its
# boundary cases): both runs together take about a minute on 2 cores.
ADMIN_EXAMPLES = 10
LANDLORD_EXAMPLES = 6
POLICE_EXAMPLES = 10
REPO = Path(__file__).resolve().parents[2]
CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")


@dataclass
class Live:
    url: str
    city: City
    engine: sa.Engine
    # Where schemathesis runs (it may write a report folder there).
    workdir: Path
    errors: list[str]


class _Collect(logging.Handler):
    """Tracebacks the server logs (aiohttp logs every unhandled exception),
    so a 5xx failure says where it came from."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


async def _seed(api: Api, engine: sa.Engine) -> City:
    """The registry's small city, and one of each other kind of object, so
    that ids from 1 up name real things: a registration with a card, a
    pending self-declaration, a case and a task."""
    city = await seed_city(api, engine)
    a = city.admin.token
    await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(), "arrived_at": "2025-06-01",
        "credential": {"format": "em4100", "value": "14008EC793"}}, 201, token=a)
    if city.plates:
        await api.call("POST", "/api/v1/declarations", {
            "plate": city.plates[city.unit2], "person": person(ID_B), "arrived_at": "2025-06-02"}, 201)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(cases).values(
            kind="presumed_departure", subject=f"r1/{city.unit}", state="open", building_id=city.building,
            unit_id=city.unit, registration_id=1, person_id=1, opened_at=now, evidence={}, updated_at=now))
        grid = conn.execute(sa.text("SELECT id FROM areas WHERE code = 'G-0301'")).scalar_one()
        conn.execute(sa.insert(tasks).values(
            kind="inspect", state="reported", grid_id=grid, building_id=city.building, unit_id=city.unit,
            summary="check the door", created_at=now, source="manual"))
    return city


@contextmanager
def _serve(tmp: Path, url: str) -> Iterator[Live]:
    """The real application on 127.0.0.1:<free port>, in a thread of its own:
    schemathesis calls it from another process while the test waits. Every
    optional part is configured (identity-number, plate and allowlist
    keys), so that no route answers "not configured" (a 503) instead of
    doing its work."""
    engine = create_engine(url)
    migrate.upgrade(engine)
    key = tmp / "allowlist.pem"
    key.write_text(signing.private_key_pem(signing.generate_private_key()))
    settings_ = settings_for(url, tmp).model_copy(update={"allowlist_key_file": str(key)})
    errors: list[str] = []
    collect = _Collect(errors)
    logging.getLogger("aiohttp").addHandler(collect)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-server", daemon=True)
    thread.start()

    async def start() -> tuple[TestClient[Any, Any], City]:
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(settings_, ingest=False), host="127.0.0.1"))
        await client.start_server()
        return client, await _seed(Api(client), engine)

    client, city = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    try:
        yield Live(str(client.make_url("")).rstrip("/"), city, engine, tmp, errors)
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        logging.getLogger("aiohttp").removeHandler(collect)
        engine.dispose()


@pytest.fixture(scope="module")
def sqlite_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live-sqlite")
    with _serve(tmp, f"sqlite:///{tmp / 'server.db'}") as live:
        yield live


@pytest.fixture(scope="module")
def production_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """On PostgreSQL, the production database, whose driver refuses what
    SQLite takes (NUL in text, out-of-range integers as errors of its own);
    on SQLite where no PostgreSQL binaries are installed (CI has them and
    sets RENTGATE_REQUIRE_SERVICES=1, which makes their absence a failure)."""
    tmp = tmp_path_factory.mktemp("live-production")
    try:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    except pytest.skip.Exception:
        url = f"sqlite:///{tmp / 'server.db'}"
    else:
        url = cluster.url(cluster.create_database())
    with _serve(tmp, url) as live:
        yield live


def _schemathesis(live: Live, token: str, examples: int, operations: list[str] | None = None) -> None:
    """One run of the schemathesis command line (its stable interface, the
    one docs/openapi.md shows) against the live server; a failure shows its
    report (each failing request as curl) and the server's tracebacks."""
    seen = len(live.errors)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", live.url + OPENAPI_PATH,
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        # Logging out with the run's own token would make every later request
        # a 401; tests/server/auth/test_http.py covers logging out.
        "--exclude-operation-id", "delete_session",
        "--max-examples", str(examples),
        # Stateful runs need links the document does not declare yet.
        "--phases", "examples,coverage,fuzzing",
        # The same requests on every run: a failure in CI reproduces locally.
        "--generation-deterministic",
        "--workers", "1", "--request-timeout", "30", "--no-color",
    ]
    for operation_id in operations or []:
        command += ["--include-operation-id", operation_id]
    # The hooks teach schemathesis the police batch's NDJSON.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.server.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=live.workdir, env=env)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report + "\n".join(["", "server log:", *live.errors[seen:]])
    assert re.search(r"\d+ generated, \d+ passed", report), report


def _operations_for(live: Live, role: str) -> list[str]:
    """The operations ``role`` may call, read from the document's roles (the
    others answer 403 alone, which the administrator's run and
    tests/server/auth/test_policy_matrix.py already cover)."""
    with urllib.request.urlopen(live.url + OPENAPI_PATH, timeout=30) as response:
        document = json.load(response)
    return [op["operationId"] for ops in document["paths"].values() for op in ops.values()
            if not op["security"] or role in op.get("x-rentgate-roles", [])]


def test_every_operation_as_an_administrator(production_live: Live) -> None:
    _schemathesis(production_live, production_live.city.admin.token, ADMIN_EXAMPLES)


def test_every_police_operation_as_a_police_client(production_live: Live) -> None:
    """The police API as an integrating client with every scope: checks,
    batches (NDJSON, through the hooks), events, watches, and the token
    endpoint's form."""
    operations = [op for op in _operations_for(production_live, "police") if "police" in op]
    assert "post_police_checks_batch" in operations and "post_police_token" in operations
    with production_live.engine.begin() as conn:
        client_id, secret = add_client(conn, datetime.now(UTC), name="fuzz", scopes=list(POLICE_SCOPES),
                                       rate_per_min=100_000, daily_quota=10_000_000,
                                       webhook_url="http://127.0.0.1:9/alerts")
        user_id = conn.execute(sa.text("SELECT id FROM users WHERE username = :u"), {"u": client_id}).scalar_one()
        token = issue_token(conn, datetime.now(UTC), int(user_id), timedelta(hours=1))
    _schemathesis(production_live, token, POLICE_EXAMPLES, operations)


def test_every_operation_a_landlord_may_call_as_a_landlord(sqlite_live: Live) -> None:
    operations = _operations_for(sqlite_live, "landlord")
    assert "get_registry_units_id" in operations and "post_areas" not in operations
    _schemathesis(sqlite_live, sqlite_live.city.landlord.token, LANDLORD_EXAMPLES, operations)
