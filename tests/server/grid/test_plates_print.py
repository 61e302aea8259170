"""Printing plates from the browser (/c/plates): a coordinator downloads
the A4 sheets of their own grid, never another's; an administrator any
grid or street. The PDF holds one decodable plate per unit."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pypdfium2 as pdfium
import sqlalchemy as sa

from server.db.models import plates
from server.plates.fonts import PlateFont
from server.plates.keys import load_keyring
from server.plates.service import resolve
from tests.server.grid.scene import Scene
from tests.server.grid.test_pages import Client, client, login, page, post  # noqa: F401 - the fixture
from tests.server.plates.conftest import plate_font  # noqa: F401 - the fixture
from tests.server.plates.qr_read import read_qr


def _pages(pdf: bytes) -> list[tuple[str, np.ndarray]]:
    doc = pdfium.PdfDocument(pdf)
    out = []
    for page_ in doc:
        text = page_.get_textpage().get_text_range()
        image = np.asarray(page_.render(scale=200 / 72, grayscale=True).to_pil())
        out.append((text, image))
    return out


async def test_a_coordinator_prints_their_grid_and_only_theirs(client: Client, sqlite_scene: Scene,  # noqa: F811
                                                              sqlite_url: str,
                                                              plate_font: PlateFont) -> None:  # noqa: F811
    await login(client, "chen")
    listing = await page(client, "/c/plates")
    assert 'data-code="G1"' in listing and 'data-code="G2"' not in listing
    assert 'data-code="S"' not in listing  # the street has grids that are not chen's
    response = await post(client, "/c/plates", {"level": "grid", "code": "G1"}, 200, csrf_from="/c/plates")
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
            found.add(resolve(conn, keyring, url.rsplit("/p/", 1)[1], datetime.now(UTC)).unit_id)
    assert found == {sqlite_scene.units["G1-101"], sqlite_scene.units["G1-102"]} == set(issued)

    for level, code in (("grid", "G2"), ("street", "S")):
        refused = await post(client, "/c/plates", {"level": level, "code": code}, 403, csrf_from="/c/plates")
        assert "只能打印自己网格" in await refused.text()


async def test_an_administrator_prints_a_whole_street(client: Client, sqlite_scene: Scene,  # noqa: F811
                                                      plate_font: PlateFont) -> None:  # noqa: F811
    await login(client, "admin")
    assert 'data-code="S"' in await page(client, "/c/plates")
    response = await post(client, "/c/plates", {"level": "street", "code": "S"}, 200, csrf_from="/c/plates")
    sheets = _pages(await response.read())
    assert len(sheets) == 2  # six units, three plates an A4 page
    assert all(f"路{g}号" in "".join(t for t, _ in sheets) for g in ("G1", "G2", "G3"))
