"""Printing plates from the browser (/c/plates): a coordinator downloads
the A4 sheets of their own grid, never another's; an administrator any
grid or street. The PDF holds one decodable plate per unit, pointing at the
server's public URL; when that is an address phones outside cannot reach,
the page says so and printing needs a ticked acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pypdfium2 as pdfium
import pytest
import sqlalchemy as sa

from server.app import make_app
from server.db.models import plates
from server.plates.fonts import PlateFont
from server.plates.keys import load_keyring
from server.plates.service import resolve
from server.settings import ServerSettings
from tests.server.grid.scene import Scene
from tests.server.grid.test_pages import Client, MakeClient, client, login, page, post  # noqa: F401 - the fixture
from tests.server.plates.conftest import plate_font  # noqa: F401 - the fixture
from tests.server.plates.qr_read import read_qr

PUBLIC_URL = "https://plates.example.cn"


@pytest.fixture
async def public_client(sqlite_scene: Scene, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    """A server whose RENTGATE_PUBLIC_URL is set, as a deployment's is."""
    settings = ServerSettings(database_url=sqlite_url, public_url=PUBLIC_URL)
    return await aiohttp_client(make_app(settings, ingest=False))


def _pages(pdf: bytes) -> list[tuple[str, np.ndarray]]:
    doc = pdfium.PdfDocument(pdf)
    out = []
    for page_ in doc:
        text = page_.get_textpage().get_text_range()
        image = np.asarray(page_.render(scale=200 / 72, grayscale=True).to_pil())
        out.append((text, image))
    return out


async def test_a_coordinator_prints_their_grid_and_only_theirs(public_client: Client, sqlite_scene: Scene,
                                                              sqlite_url: str,
                                                              plate_font: PlateFont) -> None:  # noqa: F811
    browser = public_client
    await login(browser, "chen")
    listing = await page(browser, "/c/plates")
    assert 'data-code="G1"' in listing and 'data-code="G2"' not in listing
    assert "data-url-notice" not in listing and "ack_private_url" not in listing
    assert 'data-code="S"' not in listing  # the street has grids that are not chen's
    response = await post(browser, "/c/plates", {"level": "grid", "code": "G1"}, 200, csrf_from="/c/plates")
    assert response.content_type == "application/pdf"
    assert 'filename="plates-grid-G1.pdf"' in response.headers["Content-Disposition"]
    [(text, image)] = _pages(await response.read())
    assert "路G1号" in text and "路G2号" not in text

    # Every code on the sheet opens a plate of one of the grid's units.
    keyring = load_keyring(None, sqlite_url)
    with sqlite_scene.engine.connect() as conn:
        issued = conn.execute(sa.select(plates.c.unit_id).where(plates.c.revoked_at.is_(None))).scalars().all()
        height = image.shape[0] // 3
        found = set()
        for slot in range(2):
            url = read_qr(image[slot * height:(slot + 1) * height])
            assert url.startswith(PUBLIC_URL + "/p/k1."), url
            found.add(resolve(conn, keyring, url.rsplit("/p/", 1)[1], datetime.now(UTC)).unit_id)
    assert found == {sqlite_scene.units["G1-101"], sqlite_scene.units["G1-102"]} == set(issued)

    for level, code in (("grid", "G2"), ("street", "S")):
        refused = await post(browser, "/c/plates", {"level": level, "code": code}, 403, csrf_from="/c/plates")
        assert "只能打印自己网格" in await refused.text()


async def test_an_administrator_prints_a_whole_street(public_client: Client, sqlite_scene: Scene,
                                                      plate_font: PlateFont) -> None:  # noqa: F811
    browser = public_client
    await login(browser, "admin")
    assert 'data-code="S"' in await page(browser, "/c/plates")
    response = await post(browser, "/c/plates", {"level": "street", "code": "S"}, 200, csrf_from="/c/plates")
    sheets = _pages(await response.read())
    assert len(sheets) == 2  # six units, three plates an A4 page
    assert all(f"路{g}号" in "".join(t for t, _ in sheets) for g in ("G1", "G2", "G3"))


async def test_a_loopback_public_url_is_shown_and_needs_a_ticked_acknowledgement(
        client: Client, sqlite_scene: Scene, plate_font: PlateFont) -> None:  # noqa: F811 - fixtures
    """RENTGATE_PUBLIC_URL unset: the settings' default, 127.0.0.1."""
    await login(client, "chen")
    listing = await page(client, "/c/plates")
    assert "注意：门牌二维码将指向 http://127.0.0.1:8080，这是本机回环地址" in listing
    assert "住户的手机打不开这些门牌" in listing and "RENTGATE_PUBLIC_URL" in listing
    assert 'name="ack_private_url" value="1" required' in listing and "仍要打印" in listing
    english = await page(client, "/c/plates?lang=en")
    assert "the plates&#x27; codes will point at http://127.0.0.1:8080, a loopback address" in english
    assert "print them anyway" in english

    refused = await post(client, "/c/plates", {"level": "grid", "code": "G1"}, 400, csrf_from="/c/plates")
    assert "tick the confirmation" in await refused.text()
    with sqlite_scene.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(plates)).scalar_one() == 0  # nothing issued

    await page(client, "/c/plates?lang=zh")
    response = await post(client, "/c/plates", {"level": "grid", "code": "G1", "ack_private_url": "1"}, 200,
                          csrf_from="/c/plates")
    [(_, image)] = _pages(await response.read())
    assert read_qr(image[:image.shape[0] // 3]).startswith("http://127.0.0.1:8080/p/k1.")


async def test_a_public_url_that_cannot_go_on_a_plate_prints_nothing(
        sqlite_scene: Scene, sqlite_url: str, aiohttp_client: MakeClient) -> None:
    settings = ServerSettings(database_url=sqlite_url, public_url="https://admin:pw@plates.example.cn")
    browser = await aiohttp_client(make_app(settings, ingest=False))
    await login(browser, "chen")
    listing = await page(browser, "/c/plates")
    assert "不能印在门牌上" in listing and "不能含用户名或密码" in listing and "pw@" not in listing
    assert "下载PDF" not in listing
    refused = await post(browser, "/c/plates", {"level": "grid", "code": "G1", "ack_private_url": "1"}, 503,
                         csrf_from="/c/plates")
    assert "RENTGATE_PUBLIC_URL" in await refused.text()


async def test_plain_http_to_a_public_host_prints_with_a_note(
        sqlite_scene: Scene, sqlite_url: str, aiohttp_client: MakeClient,
        plate_font: PlateFont) -> None:  # noqa: F811
    settings = ServerSettings(database_url=sqlite_url, public_url="http://plates.example.cn")
    browser = await aiohttp_client(make_app(settings, ingest=False))
    await login(browser, "chen")
    listing = await page(browser, "/c/plates")
    assert 'data-url-notice="http"' in listing and "ack_private_url" not in listing
    response = await post(browser, "/c/plates", {"level": "grid", "code": "G1"}, 200, csrf_from="/c/plates")
    assert response.content_type == "application/pdf"
