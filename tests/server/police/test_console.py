"""The officers' console (/police) through its forms, as a phone browser
uses it: the same look-ups as the API, with purposes, masks and the audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from server.app import make_app
from server.police.clients import set_officer
from server.registry.idnumber import mask_id_number
from tests.server.police.helpers import ID_EVIDENCED, ID_REGISTERED, audit_rows, seed_police
from tests.server.registry.api_helpers import Api, Client, MakeClient, settings_for

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PURPOSE_FORM = {"purpose": "criminal_investigation", "legal_basis": "《刑事诉讼法》第52条", "case_ref": "GZ-2026-0042",
                "badge": "012345"}


async def _officer(client: Client, username: str) -> str:
    client.session.cookie_jar.clear()
    response = await client.post("/login", data={"username": username, "password": "pw-secret-1", "next": ""},
                                 allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/police"
    html = await (await client.get("/police")).text()
    token = _CSRF.search(html)
    assert token, html
    return token.group(1)


async def test_an_officer_checks_a_person_on_the_console_and_sees_only_what_the_purpose_allows(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    w = await seed_police(api, engine)
    csrf = await _officer(api.client, w.city.police.username)
    response = await api.client.post("/police/person", data={**PURPOSE_FORM, "id_number": ID_REGISTERED,
                                                             "csrf": csrf})
    html = await response.text()
    assert response.status == 200, html
    assert 'data-result="registered"' in html and "已在本地登记居住" in html
    assert "Tangxia Rd 12 301" in html
    assert mask_id_number(ID_REGISTERED) in html and ID_REGISTERED not in html
    # An officer without settings may only look up: the rest is said to be withheld.
    assert "以下内容未显示" in html and "登记记录" in html
    # The purpose fields stay filled in for the next look-up; the number does not.
    assert 'value="GZ-2026-0042"' in html and f'value="{ID_REGISTERED}"' not in html
    row = audit_rows(engine, "police.person_check")[-1]
    assert row.actor == f"officer:{w.city.police.username}" and '"badge":"012345"' in row.record


async def test_the_console_says_what_is_wrong_in_words(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    w = await seed_police(api, engine)
    csrf = await _officer(api.client, w.city.police.username)
    no_badge = {**PURPOSE_FORM, "badge": "", "id_number": ID_REGISTERED, "csrf": csrf}
    response = await api.client.post("/police/person", data=no_badge)
    html = await response.text()
    assert response.status == 400 and "请填写警号" in html and "purpose.badge" not in html
    bad_number = {**PURPOSE_FORM, "id_number": ID_REGISTERED[:-1] + ("0" if ID_REGISTERED[-1] != "0" else "1"),
                  "csrf": csrf}
    html = await (await api.client.post("/police/person", data=bad_number)).text()
    assert 'data-field="id_number"' in html and "wrong check character" not in html
    assert "身份证号" in html.split('data-field="id_number">')[1].split("</div>")[0]
    # An address needs the detail scope for full numbers; an officer gets masks.
    html = await (await api.client.post("/police/address", data={**PURPOSE_FORM, "building_code": "B-12",
                                                                 "csrf": csrf})).text()
    assert mask_id_number(ID_REGISTERED) in html and ID_EVIDENCED not in html and "李*" in html


async def test_an_officer_given_the_detail_scope_sees_full_numbers_on_an_address_and_it_is_audited(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    w = await seed_police(api, engine)
    with engine.begin() as conn:
        set_officer(conn, datetime.now(UTC), w.city.police.username, scopes="lookup detail", rate_per_min=20,
                    daily_quota=300, jurisdiction=None)
    csrf = await _officer(api.client, w.city.police.username)
    html = await (await api.client.post("/police/address", data={**PURPOSE_FORM, "building_code": "B-12",
                                                                 "csrf": csrf})).text()
    assert ID_REGISTERED in html and "李伟" in html and "审计日志" in html
    assert audit_rows(engine, "police.address_check")[-1].record.count('"full_ids":2') == 1


async def test_other_roles_cannot_open_the_console(
        engine: sa.Engine, database_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    w = await seed_police(api, engine)
    api.client.session.cookie_jar.clear()
    response = await api.client.post("/login", data={"username": w.city.landlord.username,
                                                     "password": "pw-secret-1", "next": ""}, allow_redirects=False)
    assert response.status == 303
    assert (await api.client.get("/police")).status == 403
