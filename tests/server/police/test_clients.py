"""Police clients from the administrator's command line to the token
endpoint: secrets shown once and stored hashed, rotation with overlap,
revocation at once, limits and quotas."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate.cli import main
from server.app import make_app
from server.db.models import police_client_secrets
from tests.server.police.helpers import MATCH_ONLY, audit_rows, get_token, seed_police
from tests.server.registry.api_helpers import ID_A, Api, MakeClient, settings_for


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return code, json.loads(last) if last.startswith("{") else None, out + err


async def _check(api: Api, token: str, purpose: dict[str, str] = MATCH_ONLY) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/api/v1/police/checks/person", json={"purpose": purpose, "id_number": ID_A},
                                     headers={"Authorization": f"Bearer {token}"})
    return response.status, await response.json()


async def test_a_client_added_on_the_command_line_gets_tokens_and_is_cut_off_by_revoke(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    await seed_police(api, engine)
    code, added, _ = _cli(capsys, "police", "client", "add", "天河分局治安系统", "--scopes", "lookup,batch",
                          "--quota", "1000", "--database-url", database_url, "--json")
    assert code == 0 and added is not None
    client_id, secret = added["client_id"], added["client_secret"]
    with engine.connect() as conn:
        stored = [r.secret_digest for r in conn.execute(sa.select(police_client_secrets))]
    assert secret not in stored and all(len(d) == 64 for d in stored)
    token = await get_token(api, client_id, secret)
    assert token["token_type"] == "Bearer" and token["scope"] == "lookup batch" and token["expires_in"] == 600
    assert (await _check(api, token["access_token"]))[0] == 200
    # The secret in the form (client_secret_post) works too; a wrong one does not.
    response = await api.client.post("/api/v1/police/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert response.status == 200
    wrong = await get_token(api, client_id, secret[:-2] + "xx", status=401)
    assert wrong["error"] == "invalid_client"
    code, listed, _ = _cli(capsys, "police", "client", "list", "--database-url", database_url, "--json")
    assert listed is not None
    assert [c["client_id"] for c in listed["clients"] if c["client_id"] == client_id]
    assert "client_secret" not in json.dumps(listed) and secret not in json.dumps(listed)
    # Revoking asks for confirmation, then ends the token already handed out.
    code, _, said = _cli(capsys, "police", "client", "revoke", client_id, "--database-url", database_url)
    assert code == 2 and "--yes" in said
    assert (await _check(api, token["access_token"]))[0] == 200
    code, revoked, _ = _cli(capsys, "police", "client", "revoke", client_id, "--yes", "--database-url",
                            database_url, "--json")
    assert code == 0
    assert (await _check(api, token["access_token"]))[0] == 401
    assert (await get_token(api, client_id, secret, status=401))["error"] == "invalid_client"
    actions = [r.action for r in audit_rows(engine) if r.subject == f"client:{client_id}" or
               r.actor == f"client:{client_id}"]
    assert actions[0] == "police.client_add" and "police.client_revoke" in actions
    assert actions.count("police.token") == 4  # three granted or refused while live, one after revocation


async def test_rotation_keeps_the_old_secret_for_the_overlap_only(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    await seed_police(api, engine)
    _, added, _ = _cli(capsys, "police", "client", "add", "x", "--scopes", "lookup", "--database-url",
                       database_url, "--json")
    assert added is not None
    client_id, old = added["client_id"], added["client_secret"]
    _, rotated, _ = _cli(capsys, "police", "client", "rotate", client_id, "--database-url", database_url, "--json")
    assert rotated is not None
    new = rotated["client_secret"]
    await get_token(api, client_id, old)
    await get_token(api, client_id, new)
    _, again, _ = _cli(capsys, "police", "client", "rotate", client_id, "--overlap-hours", "0", "--database-url",
                       database_url, "--json")
    assert again is not None
    await get_token(api, client_id, old, status=401)
    await get_token(api, client_id, new, status=401)
    await get_token(api, client_id, again["client_secret"])


async def test_the_token_endpoint_speaks_oauth2_errors(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    w = await seed_police(api, engine)
    basic = base64.b64encode(f"{w.lookup.client_id}:{w.lookup.secret}".encode()).decode()
    auth = {"Authorization": f"Basic {basic}"}
    path = "/api/v1/police/token"
    for data, headers, status, error in (
            ({"grant_type": "password"}, auth, 400, "unsupported_grant_type"),
            ({}, auth, 400, "invalid_request"),
            ({"grant_type": "client_credentials", "scope": "lookup detail"}, auth, 400, "invalid_scope"),
            ({"grant_type": "client_credentials"}, {}, 401, "invalid_client"),
            ({"grant_type": "client_credentials"}, {"Authorization": "Basic !!!"}, 401, "invalid_client")):
        response = await api.client.post(path, data=data, headers=headers)
        body = await response.json()
        assert (response.status, body["error"]) == (status, error), body
        assert response.headers["Cache-Control"] == "no-store"
    as_json = await api.client.post(path, json={"grant_type": "client_credentials"}, headers=auth)
    assert as_json.status == 400
    # Five wrong secrets for one client, and the sixth try waits.
    for _ in range(5):
        await get_token(api, w.lookup.client_id, "pcs_" + "x" * 43, status=401)
    throttled = await get_token(api, w.lookup.client_id, w.lookup.secret, status=429)
    assert throttled["error"] == "rate_limited"


async def test_rate_and_daily_quota_are_enforced_and_said(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    from tests.server.police.helpers import client

    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    await seed_police(api, engine)
    slow = await client(api, engine, scopes="lookup", rate_per_min=2)
    assert [(await _check(api, slow.token))[0] for _ in range(3)] == [200, 200, 429]
    small = await client(api, engine, scopes="lookup batch", daily_quota=3)
    assert [(await _check(api, small.token))[0] for _ in range(3)] == [200, 200, 200]
    status, body = await _check(api, small.token)
    assert (status, body["error"]) == (429, "quota_exceeded")
    # A batch that would pass the quota is refused whole, before any line.
    lines = json.dumps({"purpose": MATCH_ONLY}) + "\n" + "\n".join([json.dumps(ID_A)] * 2)
    response = await api.client.post("/api/v1/police/checks/batch", data=lines.encode(), headers={
        "Authorization": f"Bearer {small.token}", "Content-Type": "application/x-ndjson"})
    assert response.status == 429 and "Retry-After" in response.headers



async def test_expired_police_tokens_are_purged(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    from datetime import UTC, datetime, timedelta

    from server.db.models import auth_sessions
    from server.police.setup import purge_expired_tokens
    from tests.server.police.helpers import client

    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    await seed_police(api, engine)
    live = await client(api, engine, scopes="lookup")
    assert purge_expired_tokens(engine, datetime.now(UTC)) == 0
    assert (await _check(api, live.token))[0] == 200
    # Ten minutes and a second later, every token handed out so far has expired.
    assert purge_expired_tokens(engine, datetime.now(UTC) + timedelta(seconds=601)) >= 4
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(auth_sessions)
                            .where(auth_sessions.c.label == "oauth")).scalar_one()
    assert left == 0
