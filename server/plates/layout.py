"""Where everything goes on a plate and plates go on a sheet, in millimetres.
Pure: text widths come from a ``measure`` function (ems of a text), so the
PDF, the PNG and the SVG break lines at the same places.

A plate (GB 17733 style, the small 150 x 90 mm size with a 40 mm code by
default) is a coloured field with a white frame line; the code sits on the
right on a white square (its 4-module quiet zone), the text on the left:

    +-----------------------------------------------+
    | 放心                            +-----------+ |
    | 越秀区某某街道某某路12号 301房    |  ▛▀▜ ▄▀▛ | |
    |                                 |  ▙▄▟ ▀▄▙ | |
    | 301                             |  ▄▀ ▀▄▄▀ | |
    | 扫码登记 / 巡查                  +-----------+ |
    +-----------------------------------------------+

Sizes of text and margins scale with the plate's height (90 mm = 1)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from rentgate.lang import tr
from server.plates.errors import PlateError

MM_PER_INCH = 25.4
PT_PER_MM = 72 / MM_PER_INCH
A4_MM = (210.0, 297.0)
QUIET_MODULES = 4
# Below this, phone cameras at arm's length stop resolving modules reliably.
MIN_MODULE_MM = 0.5
DEFAULT_SIZE = (150.0, 90.0)
DEFAULT_QR_MM = 40.0
# Plates smaller than this cannot hold a readable address beside a code.
MIN_PLATE_MM = (60.0, 36.0)
# Beside the code: room for a few characters of address and the unit number.
MIN_TEXT_MM = 28.0
# The part of the em box above the baseline (Noto CJK: typo ascender 880/1000).
ASCENT = 0.88
DESCENT = 1 - ASCENT
HINT_TEXT = "扫码登记 / 巡查"
GRADE_NAMES = {"trusted": "放心", "normal": "一般", "watch": "重点", "strict": "严控"}

# Sheet imposition: printers cannot print the outer ~5 mm; cut marks stand
# off the plate's corner by MARK_GAP and are MARK_LEN long, inside the
# PLATE_GAP between plates (neighbours' marks fall on the same cut lines).
PRINT_MARGIN_MM = 5.0
MARK_GAP_MM = 1.0
MARK_LEN_MM = 2.5
PLATE_GAP_MM = 4.0

Measure = Callable[[str], float]


class LayoutError(PlateError):
    """A plate size, code size or text that cannot make a usable plate."""


@dataclass(frozen=True)
class PlateSpec:
    width_mm: float = DEFAULT_SIZE[0]
    height_mm: float = DEFAULT_SIZE[1]
    # The code itself, without its quiet zone (which is added around it).
    qr_mm: float = DEFAULT_QR_MM


@dataclass(frozen=True)
class PlateData:
    """What one plate shows. ``address`` is the full address in Chinese
    (building address and unit number), ``unit_label`` the unit number shown
    big, ``grade`` one of GRADES or None, ``url`` what the code encodes."""

    unit_id: int
    address: str
    unit_label: str
    grade: str | None
    url: str


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class TextRun:
    """One line of text: left edge ``x``, ``baseline`` from the plate's top,
    ``size`` the em size in mm. ``role``: grade, address, unit or hint."""

    text: str
    x: float
    baseline: float
    size: float
    role: str


@dataclass(frozen=True)
class QrBox:
    """The code: ``x``/``y`` the top-left of its first module, ``module``
    the module size, ``modules`` per side; ``white`` the quiet-zone square."""

    x: float
    y: float
    module: float
    modules: int
    white: Rect


@dataclass(frozen=True)
class PlateFrame:
    """The geometry of a plate that does not depend on its text."""

    width: float
    height: float
    scale: float
    frame: Rect
    frame_line: float
    frame_radius: float
    qr: QrBox
    text_box: Rect


@dataclass(frozen=True)
class PlateLayout:
    frame: PlateFrame
    texts: tuple[TextRun, ...]


def parse_size(text: str) -> tuple[float, float]:
    """"150x90" (also "150×90", "150*90") as (width, height) in mm."""
    parts = re.split(r"\s*[x×X*]\s*", text.strip())
    try:
        width, height = (float(p) for p in parts)
    except ValueError:
        raise LayoutError(_size_format(text)) from None
    if not (math.isfinite(width) and math.isfinite(height)):
        raise LayoutError(_size_format(text))
    return width, height


def _size_format(text: str) -> str:
    return tr(f"尺寸 {text!r}：请写 宽x高（毫米，WIDTHxHEIGHT），如 150x90",
              f"size {text!r}: expected WIDTHxHEIGHT in mm, e.g. 150x90")


def _fmt(mm: float) -> str:
    return f"{mm:.1f}".rstrip("0").rstrip(".")


def plate_frame(spec: PlateSpec, modules: int) -> PlateFrame:
    """The plate's frame, code square and text box for a code of
    ``modules`` modules per side; LayoutError saying why when the size
    cannot work."""
    w, h, qr = spec.width_mm, spec.height_mm, spec.qr_mm
    if not all(math.isfinite(v) and v > 0 for v in (w, h, qr)):
        raise LayoutError(tr("门牌和二维码的尺寸必须是正的毫米数",
                             "plate and code sizes must be positive numbers of millimetres"))
    if w < MIN_PLATE_MM[0] or h < MIN_PLATE_MM[1]:
        raise LayoutError(tr(f"{_fmt(w)} x {_fmt(h)} 毫米的门牌太小：至少 "
                             f"{_fmt(MIN_PLATE_MM[0])} x {_fmt(MIN_PLATE_MM[1])} 毫米",
                             f"a {_fmt(w)} x {_fmt(h)} mm plate is too small: at least "
                             f"{_fmt(MIN_PLATE_MM[0])} x {_fmt(MIN_PLATE_MM[1])} mm"))
    if w < h:
        raise LayoutError(tr(f"{_fmt(w)} x {_fmt(h)} 毫米的门牌是竖的：门牌是横的，先写宽再写高（WIDTHxHEIGHT）",
                             f"a {_fmt(w)} x {_fmt(h)} mm plate is upright: plates are landscape (WIDTHxHEIGHT, "
                             "width first)"))
    module = qr / modules
    if module < MIN_MODULE_MM:
        need = math.ceil(MIN_MODULE_MM * modules)
        raise LayoutError(tr(f"{_fmt(qr)} 毫米的二维码有 {modules} x {modules} 个模块，每个只有 {module:.2f} 毫米；"
                             f"手机至少需要 {MIN_MODULE_MM} 毫米：请用 --qr-mm {need} 或更大"
                             "（或更短的 --base-url，模块会少一些）",
                             f"a {_fmt(qr)} mm code of {modules} x {modules} modules has {module:.2f} mm modules; "
                             f"phones need at least {MIN_MODULE_MM} mm: use --qr-mm {need} or more "
                             "(or a shorter --base-url, which needs fewer modules)"))
    scale = h / DEFAULT_SIZE[1]
    frame_inset = 2.5 * scale
    frame_line = 0.6 * scale
    # The white square keeps clear of the frame line by this much.
    edge = frame_inset + frame_line + 1.5 * scale
    white_side = qr + 2 * QUIET_MODULES * module
    if white_side > h - 2 * edge:
        raise LayoutError(tr(f"{_fmt(qr)} 毫米的二维码需要 {_fmt(white_side)} 毫米的白色方块（含 {QUIET_MODULES} 个模块的"
                             f"留白）和到边缘的 {_fmt(edge)} 毫米；{_fmt(h)} 毫米高的门牌只有 {_fmt(h - 2 * edge)} 毫米："
                             "请把二维码改小（--qr-mm）或把门牌改高（--size）",
                             f"a {_fmt(qr)} mm code needs a {_fmt(white_side)} mm white square (its "
                             f"{QUIET_MODULES}-module quiet zone) and {_fmt(edge)} mm to the edge; a {_fmt(h)} mm "
                             f"high plate has room for {_fmt(h - 2 * edge)} mm: make the code smaller or the plate "
                             "taller"))
    white = Rect(w - edge - white_side, (h - white_side) / 2, white_side, white_side)
    pad = frame_inset + frame_line + 3.0 * scale
    text_box = Rect(pad, pad, white.x - 4.0 * scale - pad, h - 2 * pad)
    min_text = MIN_TEXT_MM
    if text_box.w < min_text:
        raise LayoutError(tr(f"{_fmt(w)} 毫米宽的门牌在 {_fmt(qr)} 毫米的二维码旁只剩 {_fmt(text_box.w)} 毫米写地址，"
                             f"至少需要 {_fmt(min_text)} 毫米：请把门牌改宽（--size）或把二维码改小（--qr-mm）",
                             f"a {_fmt(w)} mm wide plate leaves {_fmt(text_box.w)} mm beside the {_fmt(qr)} mm code "
                             f"for the address; it needs {_fmt(min_text)} mm: make the plate wider or the code "
                             "smaller"))
    qr_box = QrBox(x=white.x + QUIET_MODULES * module, y=white.y + QUIET_MODULES * module, module=module,
                   modules=modules, white=white)
    return PlateFrame(width=w, height=h, scale=scale,
                      frame=Rect(frame_inset, frame_inset, w - 2 * frame_inset, h - 2 * frame_inset),
                      frame_line=frame_line, frame_radius=3.0 * scale, qr=qr_box, text_box=text_box)


# Characters that may not begin a line (Chinese line-breaking: closing
# punctuation stays with what it closes).
_NO_LINE_START = set("，。、；：！？）》」』】〕〉”’,.;:!?)]}%·")
# Letters, digits and joiners stay together ("12号" may break before 号,
# "B-1203" never inside).
_WORD = re.compile(r"[A-Za-z0-9\-_/#.]+|\s+|.", re.S)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for token in _WORD.findall(text):
        if tokens and token[0] in _NO_LINE_START and not tokens[-1].isspace():
            tokens[-1] += token
        else:
            tokens.append(token)
    return tokens


def _break_word(word: str, width_em: float, measure: Measure) -> list[str]:
    """A word wider than the line, broken between characters (never inside
    a run of letters and digits, never before closing punctuation)."""
    lines: list[str] = []
    line = ""
    for token in _tokens(word):
        if line and measure(line + token) > width_em:
            lines.append(line)
            line = token
        else:
            line += token
    if line:
        lines.append(line)
    return lines


def wrap(text: str, width_em: float, measure: Measure) -> list[str]:
    """``text`` broken into lines no wider than ``width_em`` ems where
    possible. Spaces are the preferred breaks (the building's address, then
    the unit: "...12号" / "301房"); a part wider than a line breaks between
    Chinese characters. An unbreakable run wider than a line gets a line of
    its own and fails the caller's fit check."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and measure(f"{line} {word}") <= width_em:
            line = f"{line} {word}"
            continue
        if line:
            lines.append(line)
        pieces = [word] if measure(word) <= width_em else _break_word(word, width_em, measure)
        lines.extend(pieces[:-1])
        line = pieces[-1]
    if line:
        lines.append(line)
    return lines


def _fits(lines: list[str], size: float, width: float, measure: Measure) -> bool:
    return all(measure(line) * size <= width + 1e-6 for line in lines)


def plate_layout(spec: PlateSpec, plate: PlateData, modules: int, measure: Measure) -> PlateLayout:
    """The plate's geometry and its lines of text. The address shrinks (down
    to a readable minimum) and wraps (up to 3 lines) to leave the unit number
    room to be big; LayoutError when even that cannot fit."""
    frame = plate_frame(spec, modules)
    box, s = frame.text_box, frame.scale
    gap = 2.2 * s
    grade = GRADE_NAMES.get(plate.grade or "")
    # Never wider than the text box (a tall plate with a large code).
    hint_size = min(4.0 * s, box.w / measure(HINT_TEXT))
    grade_size = min(7.5 * s, box.w / measure(grade)) if grade else 0.0
    unit_min, unit_max = 9.0 * s, 24.0 * s
    label = " ".join(plate.unit_label.split())

    top = box.y
    texts: list[TextRun] = []
    if grade:
        texts.append(TextRun(grade, box.x, top + ASCENT * grade_size, grade_size, "grade"))
        top += grade_size + gap
    hint_top = box.y + box.h - hint_size

    label_em = max(measure(label), 0.5) if label else 0.0
    size = 5.5 * s
    while True:
        lines = wrap(plate.address, box.w / size, measure)
        block = (len(lines) - 1) * 1.3 * size + size if lines else 0.0
        room = hint_top - gap - (top + block + (gap if lines else 0.0))
        unit = min(room, unit_max, box.w / label_em if label else unit_max)
        if len(lines) <= 3 and _fits(lines, size, box.w, measure) and (not label or unit >= unit_min):
            break
        size = round(size - 0.25 * s, 4)
        if size < 3.0 * s:
            raise LayoutError(tr(f"单元 {plate.unit_id}：地址（{len(plate.address)} 个字）和房号 {label!r} 放不进 "
                                 f"{_fmt(spec.width_mm)} x {_fmt(spec.height_mm)} 毫米的门牌："
                                 "请用更大的 --size 或更小的 --qr-mm",
                                 f"unit {plate.unit_id}: the address ({len(plate.address)} characters) and the unit "
                                 f"number {label!r} do not fit on a {_fmt(spec.width_mm)} x {_fmt(spec.height_mm)} "
                                 "mm plate; use a larger --size or a smaller --qr-mm"))
    for number, line in enumerate(lines):
        texts.append(TextRun(line, box.x, top + ASCENT * size + number * 1.3 * size, size, "address"))
    if label:
        region_top = top + block + (gap if lines else 0.0)
        free = hint_top - gap - region_top
        baseline = region_top + (free - unit) / 2 + ASCENT * unit
        texts.append(TextRun(label, box.x, baseline, unit, "unit"))
    # Last, so that a PDF's text layer reads in the order the eye does.
    texts.append(TextRun(HINT_TEXT, box.x, box.y + box.h - DESCENT * hint_size, hint_size, "hint"))
    return PlateLayout(frame=frame, texts=tuple(texts))


# --------------------------------------------------------------------------- sheets


@dataclass(frozen=True)
class Sheet:
    """An A4 portrait page of plates: ``slots`` are the plates' top-left
    corners in printing order (left to right, top to bottom)."""

    page_w: float
    page_h: float
    plate_w: float
    plate_h: float
    cols: int
    rows: int
    slots: tuple[tuple[float, float], ...]

    @property
    def per_page(self) -> int:
        return len(self.slots)

    def cut_marks(self, used: int) -> list[tuple[float, float, float, float]]:
        """Line segments (x1, y1, x2, y2) at the corners of the first
        ``used`` slots, along the cut lines, outside the plates."""
        marks: set[tuple[float, float, float, float]] = set()
        near, far = MARK_GAP_MM, MARK_GAP_MM + MARK_LEN_MM
        for x, y in self.slots[:used]:
            for cx, dx in ((x, -1), (x + self.plate_w, 1)):
                for cy, dy in ((y, -1), (y + self.plate_h, 1)):
                    marks.add(_segment(cx + dx * near, cy, cx + dx * far, cy))
                    marks.add(_segment(cx, cy + dy * near, cx, cy + dy * far))
        return sorted(marks)


def _segment(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    return (round(min(x1, x2), 3), round(min(y1, y2), 3), round(max(x1, x2), 3), round(max(y1, y2), 3))


def sheet_for(spec: PlateSpec, page: tuple[float, float] = A4_MM) -> Sheet:
    """As many plates as fit on the page (unrotated), the block centred."""
    page_w, page_h = page
    reach = PRINT_MARGIN_MM + MARK_GAP_MM + MARK_LEN_MM
    usable_w, usable_h = page_w - 2 * reach, page_h - 2 * reach
    cols = int((usable_w + PLATE_GAP_MM) // (spec.width_mm + PLATE_GAP_MM))
    rows = int((usable_h + PLATE_GAP_MM) // (spec.height_mm + PLATE_GAP_MM))
    if cols < 1 or rows < 1:
        raise LayoutError(tr(f"{_fmt(spec.width_mm)} x {_fmt(spec.height_mm)} 毫米的门牌放不进带裁切线的 A4 纸"
                             f"（最大 {_fmt(usable_w)} x {_fmt(usable_h)} 毫米）：请改为每块门牌一个 PNG 或 SVG"
                             "（--format png,svg）",
                             f"a {_fmt(spec.width_mm)} x {_fmt(spec.height_mm)} mm plate does not fit on an A4 sheet "
                             f"with cut marks (at most {_fmt(usable_w)} x {_fmt(usable_h)} mm); print the PNG or "
                             "SVG per plate instead (--format png,svg)"))
    block_w = cols * spec.width_mm + (cols - 1) * PLATE_GAP_MM
    block_h = rows * spec.height_mm + (rows - 1) * PLATE_GAP_MM
    x0, y0 = (page_w - block_w) / 2, (page_h - block_h) / 2
    slots = tuple((x0 + c * (spec.width_mm + PLATE_GAP_MM), y0 + r * (spec.height_mm + PLATE_GAP_MM))
                  for r in range(rows) for c in range(cols))
    return Sheet(page_w=page_w, page_h=page_h, plate_w=spec.width_mm, plate_h=spec.height_mm, cols=cols, rows=rows,
                 slots=slots)


def approx_measure(text: str) -> float:
    """Ems of ``text`` without a font (the SVG's viewer picks the font):
    CJK and full-width characters 1 em, others about Noto Sans' 0.56."""
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.25 if c == " " else 0.6 for c in text)
