"""Inline SVG charts with their numbers written out, so they read without
JavaScript, scale to a phone's width (viewBox, width 100 %) and say the
same thing to a screen reader (<title> and the visible text)."""

from __future__ import annotations

from dataclasses import dataclass

from server.pages.layout import esc

WIDTH = 360
BAR_ROW = 40
LINE_HEIGHT = 150
PAD = 28
# Room for the y axis's "100%" on the left of a trend chart.
AXIS = 40
# Text sizes in viewBox units; the chart is drawn about 340 px wide on a
# 390 px phone, so these come out near 11 and 12 px.
AXIS_FONT = 12
VALUE_FONT = 13
# Every label is drawn on white (the card), in the page's text colour:
# 15.9:1, never on a bar's colour.
TEXT = "#222222"


@dataclass(frozen=True)
class Bar:
    label: str
    numerator: int
    denominator: int
    href: str | None = None

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def ratio_text(numerator: int, denominator: int) -> str:
    value = numerator / denominator if denominator else None
    return f"{percent(value)} ({numerator}/{denominator})"


def _colour(value: float | None) -> str:
    # The seeds' targets are 90 % and more: below is amber, far below red.
    if value is None:
        return "#9aa0a6"
    if value >= 0.9:
        return "#1e8e3e"
    if value >= 0.7:
        return "#f9ab00"
    return "#d93025"


def bar_chart(title: str, bars: list[Bar], *, css_class: str = "bars") -> str:
    height = max(1, len(bars)) * BAR_ROW + 6
    rows = []
    for i, bar in enumerate(bars):
        y = i * BAR_ROW
        width = 0.0 if bar.value is None else max(0.0, min(1.0, bar.value)) * WIDTH
        label = esc(bar.label)
        row = (
            f'<g class="bar" data-label="{esc(bar.label)}" data-numerator="{bar.numerator}" '
            f'data-denominator="{bar.denominator}">'
            # Transparent but painted: the whole row takes the tap, gaps included.
            f'<rect x="0" y="{y}" width="{WIDTH}" height="{BAR_ROW - 4}" fill="transparent"/>'
            f'<text x="0" y="{y + 13}" font-size="13" fill="{TEXT}">{label}</text>'
            f'<text x="{WIDTH}" y="{y + 13}" font-size="13" text-anchor="end" class="num" fill="{TEXT}">'
            f'{esc(ratio_text(bar.numerator, bar.denominator))}</text>'
            f'<rect x="0" y="{y + 18}" width="{WIDTH}" height="14" fill="#e8eaed" rx="3"/>'
            f'<rect x="0" y="{y + 18}" width="{width:.1f}" height="14" fill="{_colour(bar.value)}" rx="3"/></g>')
        # The whole row is the link: a bigger target than the name alone.
        rows.append(f'<a href="{esc(bar.href)}">{row}</a>' if bar.href else row)
    return (f'<svg class="{css_class}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(title)}" '
            f'preserveAspectRatio="xMinYMin meet"><title>{esc(title)}</title>{"".join(rows)}</svg>')


def line_chart(title: str, points: list[tuple[str, int, int]]) -> str:
    """``points``: (day as shown, numerator, denominator), oldest first. Days
    with a zero denominator leave a gap rather than dropping to 0 %.

    One point is one dot in the middle with its value above it and its day
    once below; two or more have the first and last day at the ends of the x
    axis (never on top of each other) and the latest value top right."""
    inner_w, inner_h = WIDTH - AXIS - PAD, LINE_HEIGHT - 2 * PAD
    n = len(points)

    def x(i: int) -> float:
        return AXIS + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(value: float) -> float:
        return PAD + inner_h * (1 - value)

    segments: list[list[str]] = [[]]
    dots = []
    for i, (day, num, den) in enumerate(points):
        if not den:
            segments.append([])
            continue
        value = num / den
        segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
        dots.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="{5 if n == 1 else 3}" fill="#1a4d8f">'
                    f'<title>{esc(day)}: {esc(ratio_text(num, den))}</title></circle>')
    lines = "".join(f'<polyline fill="none" stroke="#1a4d8f" stroke-width="2" points="{" ".join(s)}"/>'
                    for s in segments if len(s) > 1)
    grid = "".join(f'<line x1="{AXIS}" x2="{WIDTH - PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e5e8"/>'
                   f'<text x="{AXIS - 4}" y="{y(v) + 4:.1f}" font-size="{AXIS_FONT}" text-anchor="end" '
                   f'fill="{TEXT}">{int(v * 100)}%</text>'
                   for v in (0.0, 0.5, 1.0))
    labels = ""
    base = LINE_HEIGHT - 6
    if n == 1:
        day, num, den = points[0]
        labels = (f'<text class="x-label" x="{x(0):.1f}" y="{base}" font-size="{AXIS_FONT}" text-anchor="middle" '
                  f'fill="{TEXT}">{esc(day)}</text>')
        if den:
            above = max(14.0, y(num / den) - 10)
            labels += (f'<text class="num" x="{x(0):.1f}" y="{above:.1f}" font-size="{VALUE_FONT}" '
                       f'text-anchor="middle" fill="{TEXT}">{esc(ratio_text(num, den))}</text>')
    elif n > 1:
        labels = (f'<text class="x-label" x="{AXIS}" y="{base}" font-size="{AXIS_FONT}" fill="{TEXT}">'
                  f'{esc(points[0][0])}</text>'
                  f'<text class="x-label" x="{WIDTH - PAD}" y="{base}" font-size="{AXIS_FONT}" text-anchor="end" '
                  f'fill="{TEXT}">{esc(points[-1][0])}</text>')
        last = points[-1]
        labels += (f'<text x="{WIDTH - PAD}" y="14" font-size="{VALUE_FONT}" text-anchor="end" class="num" '
                   f'fill="{TEXT}">{esc(ratio_text(last[1], last[2]))}</text>')
    return (f'<svg class="trend" viewBox="0 0 {WIDTH} {LINE_HEIGHT}" role="img" aria-label="{esc(title)}" '
            f'data-points="{n}"><title>{esc(title)}</title>{grid}{lines}{"".join(dots)}{labels}</svg>')


GRADE_ROW = 36


def grade_chart(title: str, rows: list[tuple[str, str, str, int]], total: int) -> str:
    """Units by grade: (grade key, name, colour, count) per row. The name and
    count are written above each bar in dark text on the card's white, never
    on the bar's colour, so they read whatever the grade colour is."""
    out = []
    for i, (key, name, colour, count) in enumerate(rows):
        y = i * GRADE_ROW
        width = 0.0 if not total else WIDTH * count / total
        out.append(f'<g class="grade" data-grade="{esc(key)}" data-count="{count}">'
                   f'<text x="0" y="{y + 13}" font-size="13" fill="{TEXT}">{esc(name)} {count}/{total}</text>'
                   f'<rect x="0" y="{y + 18}" width="{WIDTH}" height="12" fill="#e8eaed" rx="3"/>'
                   f'<rect x="0" y="{y + 18}" width="{width:.1f}" height="12" fill="{colour}" rx="3"/></g>')
    return (f'<svg class="grades" viewBox="0 0 {WIDTH} {max(1, len(rows)) * GRADE_ROW}" role="img" '
            f'aria-label="{esc(title)}"><title>{esc(title)}</title>{"".join(out)}</svg>')
