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
            f'<text x="0" y="{y + 13}" font-size="13">{label}</text>'
            f'<text x="{WIDTH}" y="{y + 13}" font-size="13" text-anchor="end" class="num">'
            f'{esc(ratio_text(bar.numerator, bar.denominator))}</text>'
            f'<rect x="0" y="{y + 18}" width="{WIDTH}" height="14" fill="#e8eaed" rx="3"/>'
            f'<rect x="0" y="{y + 18}" width="{width:.1f}" height="14" fill="{_colour(bar.value)}" rx="3"/></g>')
        # The whole row is the link: a bigger target than the name alone.
        rows.append(f'<a href="{esc(bar.href)}">{row}</a>' if bar.href else row)
    return (f'<svg class="{css_class}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(title)}" '
            f'preserveAspectRatio="xMinYMin meet"><title>{esc(title)}</title>{"".join(rows)}</svg>')


def line_chart(title: str, points: list[tuple[str, int, int]]) -> str:
    """``points``: (day, numerator, denominator), oldest first. Days with a
    zero denominator leave a gap rather than dropping to 0 %."""
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
        dots.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="#1a4d8f">'
                    f'<title>{esc(day)}: {esc(ratio_text(num, den))}</title></circle>')
    lines = "".join(f'<polyline fill="none" stroke="#1a4d8f" stroke-width="2" points="{" ".join(s)}"/>'
                    for s in segments if len(s) > 1)
    grid = "".join(f'<line x1="{AXIS}" x2="{WIDTH - PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e5e8"/>'
                   f'<text x="{AXIS - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{int(v * 100)}%</text>'
                   for v in (0.0, 0.5, 1.0))
    labels = ""
    if points:
        labels = (f'<text x="{AXIS}" y="{LINE_HEIGHT - 6}" font-size="10">{esc(points[0][0])}</text>'
                  f'<text x="{WIDTH - PAD}" y="{LINE_HEIGHT - 6}" font-size="10" text-anchor="end">'
                  f'{esc(points[-1][0])}</text>')
        last = points[-1]
        labels += (f'<text x="{WIDTH - PAD}" y="14" font-size="12" text-anchor="end" class="num">'
                   f'{esc(ratio_text(last[1], last[2]))}</text>')
    return (f'<svg class="trend" viewBox="0 0 {WIDTH} {LINE_HEIGHT}" role="img" aria-label="{esc(title)}">'
            f'<title>{esc(title)}</title>{grid}{lines}{"".join(dots)}{labels}</svg>')
