"""One plate as SVG, sized in millimetres (a sign maker's cutter or a print
shop scales nothing). The code is one path in module units; the text is
``<text>`` with a list of CJK font families, so the SVG relies on the
viewer having one of them (any Chinese system does; Debian:
fonts-noto-cjk). Line breaks are computed here, with the plate font's
widths when one is given, else with typical CJK widths."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from server.plates.fonts import PlateFont
from server.plates.layout import PlateData, PlateSpec, approx_measure, plate_layout
from server.plates.render_colours import QR_DARK, WHITE, plate_colour, text_colour
from server.plates.render_qr import qr_matrix

FONT_FAMILIES = ("'Noto Sans CJK SC', 'Source Han Sans SC', 'Source Han Sans CN', 'PingFang SC', "
                 "'Microsoft YaHei', 'WenQuanYi Micro Hei', 'Heiti SC', sans-serif")


def _n(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def render_svg(plate: PlateData, spec: PlateSpec, font: PlateFont | None = None) -> str:
    matrix = qr_matrix(plate.url)
    layout = plate_layout(spec, plate, matrix.size, font.width_em if font is not None else approx_measure)
    frame = layout.frame
    background = plate_colour(plate.grade)
    ink = text_colour(background)
    f, white, qr = frame.frame, frame.qr.white, frame.qr
    # Runs in module units: "M col row h len v 1 h -len z".
    path = "".join(f"M{c} {r}h{n}v1h-{n}z" for r, c, n in matrix.runs())
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(frame.width)}mm" height="{_n(frame.height)}mm" '
        f'viewBox="0 0 {_n(frame.width)} {_n(frame.height)}">',
        f"<title>{escape(plate.address)}</title>",
        f'<rect width="{_n(frame.width)}" height="{_n(frame.height)}" fill="{background}"/>',
        f'<rect x="{_n(f.x)}" y="{_n(f.y)}" width="{_n(f.w)}" height="{_n(f.h)}" rx="{_n(frame.frame_radius)}" '
        f'fill="none" stroke="{ink}" stroke-width="{_n(frame.frame_line)}"/>',
        f'<rect x="{_n(white.x)}" y="{_n(white.y)}" width="{_n(white.w)}" height="{_n(white.h)}" fill="{WHITE}"/>',
        f'<path class="qr" transform="translate({_n(qr.x)} {_n(qr.y)}) scale({_n(qr.module)})" '
        f'fill="{QR_DARK}" shape-rendering="crispEdges" d="{path}"/>',
        f'<g fill="{ink}" font-family={quoteattr(FONT_FAMILIES)}>',
    ]
    for run in layout.texts:
        parts.append(f'<text class="{run.role}" x="{_n(run.x)}" y="{_n(run.baseline)}" '
                     f'font-size="{_n(run.size)}">{escape(run.text)}</text>')
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)
