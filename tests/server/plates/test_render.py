"""Rendered plates read back as a phone would: every code in every PNG, on
every page of the PDF sheets, and in every SVG decodes (OpenCV's QR
detector) to a URL whose token resolves to the plate's own unit. The PDF's
text layer holds the Chinese address in an embedded font."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np
import pypdfium2 as pdfium
import pytest
import sqlalchemy as sa
from PIL import Image

from server.plates import collect, service
from server.plates.fonts import PlateFont
from server.plates.keys import Keyring
from server.plates.layout import MM_PER_INCH, PlateData, PlateSpec, plate_frame, sheet_for
from server.plates.render import render_pdf, render_png, render_svg
from server.plates.render_colours import plate_colour, rgb
from server.plates.render_qr import qr_matrix
from tests.fontless import embedded_font_names
from tests.server.plates.conftest import english
from tests.server.plates.qr_read import read_qr
from tests.server.plates.world import NOW, build


@pytest.fixture(autouse=True)
def in_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests match the English wording; test_cli.py checks the
    Chinese default."""
    english(monkeypatch)


KEYRING = Keyring(keys={"k1": bytes(range(32))}, current_id="k1")
BASE_URL = "https://rentgate.example.gov.cn"
DETECTOR = cv2.QRCodeDetector()


@pytest.fixture
def printed(sqlite_engine: sa.Engine) -> Iterator[tuple[sa.Engine, list[PlateData]]]:
    build(sqlite_engine)
    with sqlite_engine.begin() as conn:
        rows = collect.select_units(conn, collect.Selection(street="S1"))
        rows += collect.select_units(conn, collect.Selection(street="S2"))
        plates = collect.issue_plates(conn, NOW, KEYRING, rows, public_url=BASE_URL, valid_days=1826, actor="t")
    yield sqlite_engine, plates


def resolves_to(engine: sa.Engine, url: str) -> int:
    assert url.startswith(BASE_URL + "/p/"), url
    with engine.connect() as conn:
        return service.resolve(conn, KEYRING, url.rsplit("/", 1)[1], NOW).unit_id


def decode(image: np.ndarray) -> str:
    return read_qr(image)


def test_every_png_decodes_to_its_own_unit(printed: tuple[sa.Engine, list[PlateData]],
                                           plate_font: PlateFont) -> None:
    engine, plates = printed
    assert {p.grade for p in plates} == {"trusted", "normal", "watch", "strict", None}
    spec = PlateSpec()
    for plate in plates:
        png = render_png(plate, spec, 150, plate_font)
        image = Image.open(io.BytesIO(png))
        assert image.size == (round(150 * 150 / MM_PER_INCH), round(90 * 150 / MM_PER_INCH))
        assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # stored as pixels per metre
        # The plate is its grade's colour (a corner, outside the frame line).
        assert image.convert("RGB").getpixel((4, 4)) == rgb(plate_colour(plate.grade))
        url = decode(cv2.cvtColor(np.array(image.convert("RGB")), cv2.COLOR_RGB2GRAY))
        assert url == plate.url and resolves_to(engine, url) == plate.unit_id


def test_other_sizes_still_decode(printed: tuple[sa.Engine, list[PlateData]], plate_font: PlateFont) -> None:
    engine, plates = printed
    for spec, dpi in ((PlateSpec(100, 60, 25), 200), (PlateSpec(180, 110, 60), 100)):
        png = render_png(plates[0], spec, dpi, plate_font)
        image = np.array(Image.open(io.BytesIO(png)).convert("L"))
        assert image.shape == (round(spec.height_mm * dpi / MM_PER_INCH), round(spec.width_mm * dpi / MM_PER_INCH))
        assert resolves_to(engine, decode(image)) == plates[0].unit_id


def test_pdf_sheets_every_code_on_every_page(printed: tuple[sa.Engine, list[PlateData]],
                                             plate_font: PlateFont) -> None:
    engine, plates = printed
    spec = PlateSpec()
    out = io.BytesIO()
    pages = render_pdf(plates, spec, out, plate_font)
    sheet = sheet_for(spec)
    assert pages == -(-len(plates) // sheet.per_page) == 3
    doc = pdfium.PdfDocument(out.getvalue())
    assert len(doc) == pages
    dpi = 200

    def px(mm: float) -> int:
        return round(mm * dpi / MM_PER_INCH)

    for number in range(pages):
        page = doc[number]
        assert (page.get_width(), page.get_height()) == pytest.approx((210 * 72 / 25.4, 297 * 72 / 25.4), abs=0.5)
        image = np.array(page.render(scale=dpi / 72).to_pil().convert("L"))
        expected = plates[number * sheet.per_page:(number + 1) * sheet.per_page]
        # Each plate's cell, cut out where the layout put it: order and content.
        for (x, y), plate in zip(sheet.slots, expected, strict=False):
            cell = image[px(y):px(y + spec.height_mm), px(x):px(x + spec.width_mm)]
            url = decode(cell)
            assert url == plate.url and resolves_to(engine, url) == plate.unit_id
        if number == 0:
            # Module by module where the layout says, not mirrored or shifted.
            matrix = qr_matrix(expected[0].url)
            qr = plate_frame(spec, matrix.size).qr
            x0, y0 = sheet.slots[0]
            centres = [(x0 + qr.x + (c + 0.5) * qr.module, y0 + qr.y + (r + 0.5) * qr.module)
                       for r in range(matrix.size) for c in range(matrix.size)]
            seen = bytes(1 if image[px(y), px(x)] < 128 else 0 for x, y in centres)
            assert seen == b"".join(matrix.rows)
            # The whole page at once, as a phone seeing several plates would
            # (once: OpenCV takes a second a page for this).
            found, texts, _, _ = DETECTOR.detectAndDecodeMulti(image)
            assert found and sorted(t for t in texts if t) == sorted(p.url for p in expected)

        text = "".join(page.get_textpage().get_text_range().split())
        for plate in expected:
            assert "".join(plate.address.split()) in text
        assert "扫码登记/巡查" in text


def test_pdf_font_is_embedded_as_a_subset(printed: tuple[sa.Engine, list[PlateData]],
                                          plate_font: PlateFont) -> None:
    _, plates = printed
    out = io.BytesIO()
    render_pdf(plates[:3], PlateSpec(), out, plate_font)
    page = pdfium.PdfDocument(out.getvalue())[0]
    names = embedded_font_names(page)
    assert len(names) == 1 and re.fullmatch(r"[A-Z]{6}\+\S+", names.pop())  # a subset, not the whole font
    assert len(out.getvalue()) < 300_000


def test_svg_is_well_formed_and_its_code_decodes(printed: tuple[sa.Engine, list[PlateData]],
                                                 plate_font: PlateFont) -> None:
    engine, plates = printed
    ns = {"svg": "http://www.w3.org/2000/svg"}
    for plate in plates[:4]:
        for font in (None, plate_font):
            root = ET.fromstring(render_svg(plate, PlateSpec(), font).encode())
            assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("150mm", "90mm", "0 0 150 90")
            texts = [t.text or "" for t in root.iterfind(".//svg:text", ns)]
            assert "".join(plate.address.split()) in "".join("".join(texts).split())
            path = root.find(".//svg:path[@class='qr']", ns)
            assert path is not None
            url = decode(_modules_image(path.get("d") or ""))
            assert url == plate.url and resolves_to(engine, url) == plate.unit_id
            # Where the layout put the code.
            translate = re.match(r"translate\(([\d.]+) ([\d.]+)\) scale\(([\d.]+)\)", path.get("transform") or "")
            assert translate is not None
            frame = plate_frame(PlateSpec(), qr_matrix(plate.url).size)
            assert float(translate[1]) == pytest.approx(frame.qr.x, abs=1e-3)
            assert float(translate[3]) == pytest.approx(frame.qr.module, abs=1e-3)


def _modules_image(d: str, scale: int = 8) -> np.ndarray:
    """The module grid the path draws ("M col row h len v 1 h -len z" per
    run), with a 4-module quiet zone, as a greyscale image."""
    runs = [(int(c), int(r), int(n)) for c, r, n in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", d)]
    assert runs and "".join(f"M{c} {r}h{n}v1h-{n}z" for c, r, n in runs) == d
    size = max(c + n for c, _, n in runs)
    grid = np.full((size + 8, size + 8), 255, dtype=np.uint8)
    for c, r, n in runs:
        grid[r + 4, c + 4:c + 4 + n] = 0
    return np.kron(grid, np.ones((scale, scale), dtype=np.uint8))


def test_glyph_check_refuses_before_drawing(plate_font: PlateFont) -> None:
    from server.plates.fonts import MissingGlyphs

    plate = PlateData(unit_id=9, address="越秀区𪚥街 1号 101房", unit_label="101", grade=None, url=BASE_URL + "/p/k1.x")
    with pytest.raises(MissingGlyphs, match="unit 9"):
        render_pdf([plate], PlateSpec(), io.BytesIO(), plate_font)
    with pytest.raises(MissingGlyphs):
        render_png(replace(plate, address="1号", unit_label="𪚥"), PlateSpec(), 100, plate_font)
