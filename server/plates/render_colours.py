"""Plate colours: the grade is the plate's colour (Shenzhen Longgang's
green / yellow / orange / red for 放心 / 一般 / 重点 / 严控); a unit without a
grade gets the blue of ordinary GB 17733 door plates (white on blue; GB 17733
takes its colours from the GB 2893 safety colours, approximated here in sRGB).

The hues match the pages' grade chips (server/pages/layout.py GRADE_COLOURS)
except green, one step darker so that white text on it reaches a contrast of
4.5 (WCAG AA for small text): the address is small print on a door. The text
colour is whichever of white and near-black contrasts more with the plate:
dark on yellow and orange, white on green, red and blue."""

from __future__ import annotations

PLATE_COLOURS = {
    "trusted": "#1a7f37",  # 放心 green
    "normal": "#f9ab00",   # 一般 yellow
    "watch": "#e8710a",    # 重点 orange
    "strict": "#d93025",   # 严控 red
}
UNGRADED_COLOUR = "#0b4fa0"  # GB 17733 door-plate blue
WHITE = "#ffffff"
DARK = "#1a1a1a"
QR_DARK = "#000000"


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _luminance(colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb(colour)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def plate_colour(grade: str | None) -> str:
    return PLATE_COLOURS.get(grade or "", UNGRADED_COLOUR)


def text_colour(background: str) -> str:
    return WHITE if contrast(background, WHITE) >= contrast(background, DARK) else DARK
