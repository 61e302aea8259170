"""The watch routes through the real application (no ingest) on SQLite and
PostgreSQL: setting, listing and withdrawing a watch, what each refusal
says, that another client's watch answers exactly like none, that no
answer holds the identity number, the audit entry of every call, and the
public signing key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import signing
from server.app import make_app
from server.db.models import audit_log, police_watches
from server.police import watches
from server.police.signing_key import key_id_of
from tests.server.police.watch_helpers import id_number, police_client
from tests.server.registry.api_helpers import Api, MakeClient, settings_for

WATCHES = "/api/v1/police/watches"
PURPOSE = {"code": "criminal_investigation", "legal_basis": "《刑事诉讼法》第52条", "case_ref": "GZ-2026-0042"}
QUERY = {"purpose": PURPOSE["code"], "legal_basis": PURPOSE["legal_basis"], "case_ref": PURPOSE["case_ref"]}


async def _api(database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Api:
    settings = settings_for(database_url, tmp_path)
    return Api(await aiohttp_client(make_app(settings, ingest=False)))


async def _send(api: Api, method: str, path: str, token: str, body: Any = None,
                params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    response = await api.client.request(method, path, json=body, params=params,
                                        headers={"Authorization": f"Bearer {token}"})
    text = await response.text()
    api.seen.append(text)
    return response.status, json.loads(text)


def _audit(engine: sa.Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)))


async def test_set_list_and_withdraw_a_watch(engine: sa.Engine, database_url: str, tmp_path: Path,
                                             aiohttp_client: MakeClient) -> None:
    api = await _api(database_url, tmp_path, aiohttp_client)
    client, other = police_client(engine), police_client(engine)
    number = id_number(3)
    status, watch = await _send(api, "POST", WATCHES, client.token,
                                {"purpose": PURPOSE, "id_number": number, "days": 30})
    assert status == 201, watch
    assert watch["state"] == "active" and watch["id_masked"] == number[:4] + "*" * 10 + number[-4:]
    assert watch["purpose"]["code"] == "criminal_investigation" and watch["purpose"]["case_ref"] == "GZ-2026-0042"
    assert len(watch["id"]) == 22

    status, listed = await _send(api, "GET", WATCHES, client.token, params=QUERY)
    assert status == 200 and [w["id"] for w in listed["watches"]] == [watch["id"]]
    status, theirs = await _send(api, "GET", WATCHES, other.token, params=QUERY)
    assert status == 200 and theirs["watches"] == []

    path = f"{WATCHES}/{watch['id']}"
    not_theirs = await _send(api, "DELETE", path, other.token, params=QUERY)
    nonexistent = await _send(api, "DELETE", f"{WATCHES}/{watches.new_public_id()}", other.token, params=QUERY)
    malformed = await _send(api, "DELETE", f"{WATCHES}/nope", other.token, params=QUERY)
    assert not_theirs == nonexistent == malformed == (404, {"error": "not_found", "detail": "no such watch"})

    status, withdrawn = await _send(api, "DELETE", path, client.token, params=QUERY)
    assert status == 200 and withdrawn["state"] == "withdrawn" and withdrawn["id_masked"] is None
    with engine.connect() as conn:
        row = conn.execute(sa.select(police_watches).where(police_watches.c.public_id == watch["id"])).one()
    assert (row.id_digest, row.id_masked) == (None, None)
    status, active = await _send(api, "GET", WATCHES, client.token, params={**QUERY, "state": "active"})
    assert status == 200 and active["watches"] == []

    assert not any(number in text for text in api.seen)
    created = _audit(engine, "police.watch_create")
    assert [(json.loads(r.record)["status"], r.subject) for r in created] == [(201, f"id:{_digest(api, number)}")]
    assert number not in created[0].record
    assert [json.loads(r.record)["status"] for r in _audit(engine, "police.watch_withdraw")] == [404, 404, 404, 200]
    assert len(_audit(engine, "police.watch_list")) == 3


def _digest(api: Api, number: str) -> str:
    from server.registry.appkeys import VAULT as VAULT_KEY

    return api.client.app[VAULT_KEY].digest(number)


async def test_refusals(engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    api = await _api(database_url, tmp_path, aiohttp_client)
    client = police_client(engine)

    async def refused(body: dict[str, Any], token: str = client.token) -> tuple[int, dict[str, Any]]:
        return await _send(api, "POST", WATCHES, token, {"purpose": PURPOSE, "id_number": id_number(4), **body})

    assert await refused({"days": 91}) == (400, {"error": "bad_parameter", "field": "days",
                                                 "detail": "must be 1 to 90 (police_watch_max_days)"})
    assert (await refused({}))[1]["field"] == "days"
    assert (await refused({"days": 3, "until": "2099-01-01"}))[1]["detail"] == "give exactly one of days or until"
    assert (await refused({"until": "2000-01-01"}))[1] == {"error": "bad_parameter", "field": "until",
                                                           "detail": "is not in the future"}
    assert (await refused({"days": 1, "id_number": "440106199001011234"}))[1]["field"] == "id_number"
    status, wrong_purpose = await _send(api, "POST", WATCHES, client.token, {
        "purpose": {**PURPOSE, "code": "residence_verification"}, "id_number": id_number(4), "days": 1})
    assert status == 400 and wrong_purpose["field"] == "purpose.code"
    lookup_only = police_client(engine, scopes=("lookup",))
    status, scope = await refused({"days": 1}, lookup_only.token)
    assert (status, scope["error"]) == (403, "scope_missing")
    no_hook = police_client(engine, webhook_url=None)
    status, hook = await refused({"days": 1}, no_hook.token)
    assert status == 400 and hook["field"] == "webhook_url" and "administrator" in hook["detail"]

    monkeypatch.setattr(watches, "ACTIVE_WATCHES_MAX", 1)
    status, first = await refused({"days": 1})
    assert status == 201
    assert await refused({"days": 1}) == (409, {"error": "conflict", "detail": (
        f"this client already watches this number (watch {first['id']}); withdraw it to set a new one")})
    status, limit = await _send(api, "POST", WATCHES, client.token,
                                {"purpose": PURPOSE, "id_number": id_number(5), "days": 1})
    assert status == 409 and "most allowed is 1" in limit["detail"]
    assert not any(id_number(4) in text or id_number(5) in text for text in api.seen)


async def test_the_signing_key_is_public(database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = await _api(database_url, tmp_path, aiohttp_client)
    response = await api.client.get("/api/v1/police/signing-key")
    assert response.status == 200
    info = await response.json()
    private = signing.load_private_key_file(tmp_path / "police_signing_key_file.pem")
    public_b64 = signing.public_key_b64(private.public_key())
    assert (info["algorithm"], info["public_key"], info["key_id"]) == ("Ed25519", public_b64, key_id_of(public_b64))
    assert info["header"] == "X-Rentgate-Signature" and "t" in info["signed_bytes"]
