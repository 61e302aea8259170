"""PDF sheets of plates (fpdf2): A4 portrait, as many plates per page as
fit, in order, with cut marks. Everything is vector: the code is one filled
path of its dark runs, the text is the embedded (subset) CJK font, so the
sheet prints sharp at any printer resolution.

Speed: the font is parsed once per document (fpdf2's add_font), the code of
each plate is emitted as one prebuilt content-stream string."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import BinaryIO

from fpdf import FPDF

from rentgate.lang import tr
from server.plates.fonts import PlateFont
from server.plates.layout import (
    PT_PER_MM,
    PlateData,
    PlateLayout,
    PlateSpec,
    QrBox,
    plate_layout,
    sheet_for,
)
from server.plates.render_colours import QR_DARK, WHITE, plate_colour, rgb, text_colour
from server.plates.render_qr import QrMatrix, qr_matrix

FONT_FAMILY = "plate"
# fontTools logs every subsetting step at INFO; a print run is not the place.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)
CUT_MARK_LINE_MM = 0.2


def check_glyphs(plates: Sequence[PlateData], font: PlateFont) -> None:
    """MissingGlyphs for the first plate whose text the font cannot draw."""
    for plate in plates:
        font.check_text(plate.address + plate.unit_label, tr(f"单元 {plate.unit_id}", f"unit {plate.unit_id}"))


def _qr_operators(pdf: FPDF, ox: float, oy: float, qr: QrBox, matrix: QrMatrix) -> str:
    """The dark runs as one path filled once, in module units under one
    transformation (short integers instead of millimetres per rectangle).
    One fill: abutting rectangles of separate fills leave anti-aliasing
    seams in viewers."""
    k = pdf.k
    m = qr.module * k
    # Module (column, row) -> page points: x right, rows downwards.
    head = f"q {m:.5f} 0 0 {-m:.5f} {(ox + qr.x) * k:.3f} {(pdf.h - oy - qr.y) * k:.3f} cm"
    body = "\n".join(f"{c} {r} {n} 1 re" for r, c, n in matrix.runs())
    return f"{head}\n{body}\nf Q"


def _draw_plate(pdf: FPDF, ox: float, oy: float, layout: PlateLayout, plate: PlateData, matrix: QrMatrix) -> None:
    frame = layout.frame
    background = plate_colour(plate.grade)
    ink = text_colour(background)
    pdf.set_fill_color(*rgb(background))
    pdf.rect(ox, oy, frame.width, frame.height, style="F")
    pdf.set_draw_color(*rgb(ink))
    pdf.set_line_width(frame.frame_line)
    f = frame.frame
    pdf.rect(ox + f.x, oy + f.y, f.w, f.h, style="D", round_corners=True, corner_radius=frame.frame_radius)
    white = frame.qr.white
    pdf.set_fill_color(*rgb(WHITE))
    pdf.rect(ox + white.x, oy + white.y, white.w, white.h, style="F")
    pdf.set_fill_color(*rgb(QR_DARK))
    # fpdf2 has no public call for a prebuilt path; _out appends operators
    # to the page's content stream (the tests decode every printed code).
    pdf._out(_qr_operators(pdf, ox, oy, frame.qr, matrix))
    pdf.set_text_color(*rgb(ink))
    for run in layout.texts:
        pdf.set_font(FONT_FAMILY, size=run.size * PT_PER_MM)
        pdf.text(ox + run.x, oy + run.baseline, run.text)


def render_pdf(plates: Sequence[PlateData], spec: PlateSpec, out: BinaryIO, font: PlateFont, *,
               progress: Callable[[int, int], None] | None = None) -> int:
    """Write the sheets for ``plates`` (in order) to ``out``; the number of
    pages. Nothing is written for no plates. ``progress(done, total)`` is
    called after each page."""
    if not plates:
        return 0
    sheet = sheet_for(spec)
    check_glyphs(plates, font)
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    pdf.set_creator("rentgate plates")
    pdf.set_title("rentgate 门牌 / door plates")
    pdf.add_font(FONT_FAMILY, "", str(font.path), collection_font_number=font.index)
    pages = 0
    for start in range(0, len(plates), sheet.per_page):
        chunk = plates[start:start + sheet.per_page]
        pdf.add_page()
        pages += 1
        for (ox, oy), plate in zip(sheet.slots, chunk, strict=False):
            matrix = qr_matrix(plate.url)
            layout = plate_layout(spec, plate, matrix.size, font.width_em)
            _draw_plate(pdf, ox, oy, layout, plate, matrix)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_line_width(CUT_MARK_LINE_MM)
        for x1, y1, x2, y2 in sheet.cut_marks(len(chunk)):
            pdf.line(x1, y1, x2, y2)
        if progress is not None:
            progress(start + len(chunk), len(plates))
    out.write(pdf.output())
    return pages
