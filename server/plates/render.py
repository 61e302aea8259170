"""Rendering plates: the API the command, the benchmark and the tests use.

    render_pdf(plates, spec, out, font) -> pages     A4 sheets (render_pdf.py)
    render_png(plate, spec, dpi, font) -> bytes      one plate (render_png.py)
    render_svg(plate, spec) -> str                   one plate (render_svg.py)

Geometry is in layout.py (pure), colours in render_colours.py, the code in
render_qr.py, the font in fonts.py."""

from __future__ import annotations

from server.plates.fonts import PlateFont, find_font
from server.plates.layout import LayoutError, PlateData, PlateSpec, parse_size
from server.plates.render_colours import plate_colour, text_colour
from server.plates.render_pdf import check_glyphs, render_pdf
from server.plates.render_png import render_png
from server.plates.render_svg import render_svg

__all__ = ["LayoutError", "PlateData", "PlateFont", "PlateSpec", "check_glyphs", "find_font", "parse_size",
           "plate_colour", "render_pdf", "render_png", "render_svg", "text_colour"]
