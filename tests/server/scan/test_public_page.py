"""The public page a plate opens: what it shows, what it never shows, who
is sent on to the coordinator's page, and every refused token."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import sqlalchemy as sa

from server.db.models import scan_rejections
from server.plates.appkeys import LOGGED_PER_CLIENT, PLATE_KEYS
from server.plates.keys import read_keyring
from server.plates.service import revoke
from server.plates.tokens import sign
from server.registry.idnumber import mask_id_number
from server.web.ratelimit import RateLimiter
from tests.server.auth_helpers import bearer
from tests.server.scan.world import DECLARANT_ID, SQLITE_ONLY, TENANT_ID, Client, ScanWorld


def _rejections(engine: sa.Engine) -> list[sa.Row[tuple[str, str, int | None]]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(scan_rejections.c.reason, scan_rejections.c.token_excerpt,
                                           scan_rejections.c.plate_id).order_by(scan_rejections.c.id)).all())


async def test_public_page_shows_address_grade_and_masked_landlord_only(client: Client, world: ScanWorld) -> None:
    response = await client.get(f"/p/{world.tokens[world.unit_id]}")
    assert response.status == 200
    html = await response.text()
    assert "越秀区北京街12号 101" in html
    assert 'data-grade="watch"' in html and "重点" in html and "#e8710a" in html  # orange banner
    assert "张*" in html and "138****1234" in html
    assert "张三丰" not in html and "13812341234" not in html
    assert "我住在这里" in html and "报告问题" in html
    assert f"/p/{world.tokens[world.unit_id]}/declare" in html and f"/p/{world.tokens[world.unit_id]}/report" in html
    # Never who lives there: no names, numbers, cards or counts of people.
    for secret in ("王五", "李四", TENANT_ID, DECLARANT_ID, mask_id_number(TENANT_ID), "0A1B", "13800138000"):
        assert secret not in html
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


@SQLITE_ONLY
async def test_public_page_in_english_keeps_the_chinese_grade_name(client: Client, world: ScanWorld) -> None:
    html = await (await client.get(f"/p/{world.tokens[world.unit_id]}", params={"lang": "en"})).text()
    assert "Grade: watch (重点)" in html and "I live here" in html and "Report a problem" in html


async def test_coordinator_of_the_grid_and_admin_go_to_the_unit_page(client: Client, world: ScanWorld) -> None:
    token = world.tokens[world.unit_id]
    for user in (world.coordinator, world.admin):
        response = await client.get(f"/p/{token}", headers=bearer(user.token), allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == f"/c/units/{world.unit_id}"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    # A coordinator of another grid, or the landlord, sees the public page.
    for user in (world.other_coordinator, world.landlord):
        response = await client.get(f"/p/{token}", headers=bearer(user.token), allow_redirects=False)
        assert response.status == 200 and "王五" not in await response.text()


def _flip(token: str) -> str:
    key_id, body = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 0x01  # a bit of the MAC
    return f"{key_id}." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_every_refused_token_gets_its_page_and_a_logged_attempt(client: Client, world: ScanWorld,
                                                                      engine: sa.Engine) -> None:
    # More refusals than one client's logging budget: this test is about the rows.
    client.app[PLATE_KEYS].rejections.per_client = RateLimiter(1000, 600.0)
    keyring = read_keyring(world.key_file)
    good = world.tokens[world.unit_id]
    plate_id = int.from_bytes(base64.urlsafe_b64decode(good.split(".")[1] + "==")[1:9], "big")
    other_key = b"x" * 32
    with engine.begin() as conn:
        revoked_plate = conn.execute(sa.text("SELECT id FROM plates WHERE unit_id = :u"),
                                     {"u": world.quiet_unit_id}).scalar_one()
        revoke(conn, datetime.now(UTC), revoked_plate, actor="test", reason="stolen")
    cases = [
        ("not-a-token", "malformed", 404, "这不是有效的门牌二维码"),
        (sign("k9", other_key, plate_id, None), "unknown_key", 404, "可能是伪造的"),
        (sign(keyring.current_id, other_key, plate_id, None), "bad_signature", 404, "可能被篡改或伪造"),
        (_flip(good), "bad_signature", 404, "可能被篡改或伪造"),
        (sign(keyring.current_id, keyring.current_key, plate_id, date(2020, 1, 1)), "expired", 410, "此门牌已过期"),
        (world.tokens[world.quiet_unit_id], "revoked", 410, "此门牌已停用，请联系社区网格员"),
        (sign(keyring.current_id, keyring.current_key, 987654, None), "unknown_plate", 404, "系统中没有这块门牌"),
    ]
    for token, reason, status, words in cases:
        for path in (f"/p/{token}", f"/p/{token}/declare", f"/p/{token}/report"):
            response = await client.get(path)
            assert response.status == status, (path, reason)
            html = await response.text()
            assert words in html and f'data-reason="{reason}"' in html
            assert response.headers["Referrer-Policy"] == "no-referrer"
        response = await client.post(f"/p/{token}/declare", data={"id_number": TENANT_ID, "name": "x"})
        assert response.status == status
    rows = _rejections(engine)
    assert [r.reason for r in rows] == [reason for _, reason, _, _ in cases for _ in range(4)]
    for (token, _, _, _), row in zip([c for c in cases for _ in range(4)], rows, strict=True):
        assert row.token_excerpt != token or len(token) <= 24  # never the full token
        assert len(row.token_excerpt) <= 25
    english = await (await client.get(f"/p/{world.tokens[world.quiet_unit_id]}", params={"lang": "en"})).text()
    assert "This plate has been withdrawn" in english


@SQLITE_ONLY
async def test_a_flood_of_forged_tokens_is_counted_not_logged(client: Client, world: ScanWorld,
                                                              engine: sa.Engine) -> None:
    for n in range(LOGGED_PER_CLIENT + 15):
        response = await client.get(f"/p/k1.forged{n}")
        assert response.status == 404
    assert len(_rejections(engine)) == LOGGED_PER_CLIENT
    budget = client.app[PLATE_KEYS].rejections
    assert budget.logged["malformed"] == LOGGED_PER_CLIENT and budget.not_logged["malformed"] == 15
    assert 'reason="malformed",logged="false"} 15' in budget.metrics()
    # ... and an operator sees the flood on /metrics.
    metrics = await (await client.get("/metrics")).text()
    assert 'rentgate_plate_scans_refused_total{reason="malformed",logged="false"} 15' in metrics


async def test_junk_in_the_token_is_a_clear_page_and_a_clean_row(client: Client, engine: sa.Engine) -> None:
    paths = ("/p/" + "A" * 300, "/p/%00%ff%0a", "/p/a.b.c", "/p/k1." + "-" * 30, "/p/k1.%2e%2e")
    for path in paths:
        response = await client.get(path)
        assert response.status == 404, path
        assert "这不是有效的门牌二维码" in await response.text()
    rows = _rejections(engine)
    assert [r.reason for r in rows] == ["malformed"] * len(paths)
    assert rows[1].token_excerpt == "?%FF?"  # the NUL and the newline replaced
