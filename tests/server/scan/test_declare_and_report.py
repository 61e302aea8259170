"""Self-declaration and problem reports from a plate: invalid ID numbers
refused with the reason, valid ones pending; reports with photos checked by
their bytes and size, stripped of EXIF, rate-limited, turned into tasks; and
who may see the photos."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from PIL import Image

from server.db.models import attachments, problem_reports, registrations, tasks
from server.media.photos import MAX_PHOTO_BYTES
from server.reports.limits import REPORTS_PER_CLIENT_PER_HOUR, REPORTS_PER_UNIT_PER_DAY
from tests.server.auth_helpers import bearer
from tests.server.scan.world import (
    NEW_ID,
    SQLITE_ONLY,
    Client,
    ScanWorld,
    gif_bytes,
    jpeg_bytes,
    png_bytes,
    post_multipart,
)


@SQLITE_ONLY
async def test_the_token_less_declaration_address_is_gone(client: Client, world: ScanWorld, engine: sa.Engine
                                                          ) -> None:
    for method in ("GET", "POST"):
        response = await client.request(method, f"/declare/{world.quiet_unit_id}",
                                         data={"id_number": NEW_ID, "name": "赵六", "arrived": "2024-05-01"})
        assert response.status == 404
        assert "请扫描房门上的二维码门牌" in await response.text()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(registrations)
                            .where(registrations.c.unit_id == world.quiet_unit_id)).scalar() == 0


async def test_declaration_from_a_plate_refuses_a_bad_number_then_waits(client: Client, world: ScanWorld,
                                                                        engine: sa.Engine) -> None:
    path = f"/p/{world.tokens[world.quiet_unit_id]}/declare"
    html = await (await client.get(path)).text()
    assert "住户自主申报" in html and f'action="{path}"' in html
    wrong = NEW_ID[:17] + ("0" if NEW_ID[17] != "0" else "1")
    response = await client.post(path, data={"id_number": wrong, "name": "赵六", "arrived": "2024-05-01"})
    assert response.status == 400
    html = await response.text()
    assert "身份证号码校验位错误" in html and wrong not in html and 'value="赵六"' in html
    assert response.headers["Referrer-Policy"] == "no-referrer"
    response = await client.post(path, data={"id_number": NEW_ID, "name": "赵六", "arrived": "2024-05-01"},
                                 allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"{path}?sent=1"
    assert "等待房东或网格员确认" in await (await client.get(response.headers["Location"])).text()
    with engine.connect() as conn:
        row = conn.execute(sa.select(registrations.c.status, registrations.c.source)
                           .where(registrations.c.unit_id == world.quiet_unit_id)).one()
    assert tuple(row) == ("pending", "tenant")


def _report(category: str = "hazard", description: str = "楼道堆放杂物，堵塞消防通道", phone: str = "",
            photo: tuple[str, bytes, str] | None = None) -> dict[str, object]:
    data: dict[str, object] = {"category": category, "description": description, "phone": phone}
    if photo is not None:
        name, content, kind = photo
        data["photo"] = (name, content, kind)
    return data


async def test_report_with_a_photo_becomes_a_task_and_the_photo_loses_its_gps(
        client: Client, world: ScanWorld, engine: sa.Engine) -> None:
    original = jpeg_bytes((64, 48), gps=True, orientation=6)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # the test photo does carry GPS
    path = f"/p/{world.tokens[world.unit_id]}/report"
    assert "报告问题" in await (await client.get(path)).text()
    response = await post_multipart(client, path, _report(phone="138 0013 8000", photo=("fire.jpg", original, "image/jpeg")))
    assert response.status == 303, await response.text()
    done = await (await client.get(response.headers["Location"])).text()
    assert "已收到您的报告" in done and "R0000" in done
    with engine.connect() as conn:
        report = conn.execute(sa.select(problem_reports)).mappings().one()
        task = conn.execute(sa.select(tasks).where(tasks.c.id == report["task_id"])).mappings().one()
        attachment = conn.execute(sa.select(attachments)).mappings().one()
    assert report["category"] == "hazard" and report["contact_phone"] == "13800138000"
    assert report["client_digest"] and "127.0.0.1" not in report["client_digest"] and len(report["client_digest"]) == 64
    assert report["attachment_id"] == attachment["id"]
    assert (task["kind"], task["source"], task["state"], task["report_id"], task["unit_id"]) == (
        "report_hazard", "report", "reported", report["id"], world.unit_id)
    assert "安全隐患" in task["summary"]
    stored = (world.settings.media_dir or "") + f"/{attachment['sha256'][:2]}/{attachment['sha256']}.jpg"
    with open(stored, "rb") as file:
        kept = file.read()
    image = Image.open(io.BytesIO(kept))
    assert image.format == "JPEG" and not image.getexif() and b"Exif" not in kept
    assert image.size == (48, 64)  # turned upright by its orientation, then the tag is gone
    assert (attachment["width"], attachment["height"]) == (48, 64)


async def test_png_is_accepted_and_other_files_are_refused_by_their_bytes(client: Client, world: ScanWorld) -> None:
    path = f"/p/{world.tokens[world.unit_id]}/report"
    response = await post_multipart(client, path, _report(photo=("shot.png", png_bytes(), "image/png")))
    assert response.status == 303
    exe = b"MZ\x90\x00" + b"\x00" * 200
    for name, content in (("photo.jpg", gif_bytes()), ("photo.jpg", exe), ("photo.jpg", b"just some text here")):
        response = await post_multipart(client, path, _report(description="可疑人员", photo=(name, content, "image/jpeg")))
        assert response.status == 415, name
        html = await response.text()
        assert "只接受 JPEG 或 PNG 格式的照片" in html and "可疑人员" in html  # what was typed is kept
    broken = jpeg_bytes()[:60]  # a JPEG's start, then nothing
    response = await post_multipart(client, path, _report(photo=("cut.jpg", broken, "image/jpeg")))
    assert response.status == 415


@SQLITE_ONLY
async def test_a_photo_over_five_megabytes_is_refused_and_the_form_kept(client: Client, world: ScanWorld,
                                                                        engine: sa.Engine) -> None:
    path = f"/p/{world.tokens[world.unit_id]}/report"
    big = jpeg_bytes() + b"\x00" * (6 * 1024 * 1024)
    assert len(big) > MAX_PHOTO_BYTES
    response = await post_multipart(client, path, _report(category="overcrowding", description="十几个人住一间",
                                                 phone="13800138000", photo=("big.jpg", big, "image/jpeg")))
    assert response.status == 413
    html = await response.text()
    assert "照片太大" in html and "十几个人住一间" in html and 'value="13800138000"' in html
    assert 'value="overcrowding" checked' in html
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(problem_reports)).scalar() == 0


@SQLITE_ONLY
async def test_report_fields_are_checked(client: Client, world: ScanWorld) -> None:
    path = f"/p/{world.tokens[world.unit_id]}/report"
    for data, words in ((_report(description=""), "问题描述：必须填写"), (_report(category="fire"), "请选择一种问题类型"),
                        (_report(description="x" * 1001), "不能超过1000字"),
                        (_report(phone="12345"), "请填写有效的手机或固定电话号码")):
        response = await post_multipart(client, path, data)
        assert response.status == 400
        assert words in await response.text()


async def test_reports_are_rate_limited_per_client_and_per_unit(client: Client, world: ScanWorld,
                                                                 engine: sa.Engine) -> None:
    path = f"/p/{world.tokens[world.unit_id]}/report"
    for _ in range(REPORTS_PER_CLIENT_PER_HOUR):
        assert (await post_multipart(client, path, _report())).status == 303
    response = await post_multipart(client, path, _report(description="又一次"))
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    html = await response.text()
    assert "您提交的报告过多，请在 60 分钟后再试" in html and "又一次" in html
    # Another unit takes reports from the same client.
    assert (await post_multipart(client, f"/p/{world.tokens[world.quiet_unit_id]}/report", _report())).status == 303
    # Everyone together: the unit's daily limit.
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(problem_reports), [
            {"unit_id": world.quiet_unit_id, "building_id": world.building_id, "category": "other",
             "description": "x", "client_digest": f"someone-{n}", "created_at": now - timedelta(hours=2)}
            for n in range(REPORTS_PER_UNIT_PER_DAY)])
    response = await post_multipart(client, f"/p/{world.tokens[world.quiet_unit_id]}/report", _report())
    assert response.status == 429 and "此门牌今天收到的报告已达上限" in await response.text()


async def test_photos_are_shown_only_to_who_may_work_the_unit(client: Client, world: ScanWorld,
                                                              engine: sa.Engine) -> None:
    path = f"/p/{world.tokens[world.unit_id]}/report"
    assert (await post_multipart(client, path, _report(photo=("a.jpg", jpeg_bytes(), "image/jpeg")))).status == 303
    with engine.connect() as conn:
        attachment_id = conn.execute(sa.select(attachments.c.id)).scalar_one()
    url = f"/media/{attachment_id}"
    for user in (world.admin, world.coordinator):
        response = await client.get(url, headers=bearer(user.token))
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert response.headers["Cache-Control"].startswith("private")
        Image.open(io.BytesIO(await response.read())).verify()
    # Landlords may not see photos at all; another grid's coordinator is told
    # there is no such photo.
    assert (await client.get(url, headers=bearer(world.landlord.token))).status == 403
    assert (await client.get(url, headers=bearer(world.other_coordinator.token))).status == 404
    response = await client.get(url, headers={"Accept": "text/html"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")
    assert (await client.get("/media/999999", headers=bearer(world.admin.token))).status == 404
