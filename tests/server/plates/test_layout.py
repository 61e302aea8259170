"""Plate geometry (pure): sizes that work and the reasons those that do not
are refused, line breaking of Chinese addresses, A4 imposition with cut
marks, and colours that can be read."""

from __future__ import annotations

import pytest

from server.plates.layout import (
    A4_MM,
    PRINT_MARGIN_MM,
    QUIET_MODULES,
    LayoutError,
    PlateData,
    PlateSpec,
    approx_measure,
    parse_size,
    plate_frame,
    plate_layout,
    sheet_for,
    wrap,
)
from server.plates.render_colours import DARK, PLATE_COLOURS, UNGRADED_COLOUR, WHITE, contrast, text_colour
from tests.server.plates.conftest import english


@pytest.fixture(autouse=True)
def in_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests match the English wording; test_cli.py checks the
    Chinese default."""
    english(monkeypatch)


MODULES = 37  # a version 5 code: what a token URL needs


def plate(address: str = "越秀区北京街道盐运西路12号 301房", label: str = "301", grade: str | None = "trusted") -> PlateData:
    return PlateData(unit_id=1, address=address, unit_label=label, grade=grade, url="http://x/p/k1.x")


@pytest.mark.parametrize(("text", "size"), [("150x90", (150.0, 90.0)), ("200 × 120", (200.0, 120.0)),
                                            ("100X60", (100.0, 60.0)), ("120.5*70", (120.5, 70.0))])
def test_parse_size(text: str, size: tuple[float, float]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["150", "150x", "axb", "150x90x3", "nanx90", "", "infx90"])
def test_parse_size_refuses_with_the_expected_form(text: str) -> None:
    with pytest.raises(LayoutError, match="WIDTHxHEIGHT"):
        parse_size(text)


def test_default_plate_code_on_the_right_with_its_quiet_zone() -> None:
    frame = plate_frame(PlateSpec(), MODULES)
    qr = frame.qr
    assert qr.module == pytest.approx(40 / MODULES)
    assert qr.white.w == pytest.approx(40 + 2 * QUIET_MODULES * qr.module)
    assert qr.x - qr.white.x == pytest.approx(QUIET_MODULES * qr.module)
    # Right side, inside the frame line; text on the left of it.
    assert qr.white.x > 150 / 2 and qr.white.x + qr.white.w < frame.frame.x + frame.frame.w
    assert qr.white.y > frame.frame.y and qr.white.y + qr.white.h < frame.frame.y + frame.frame.h
    assert frame.text_box.x + frame.text_box.w < qr.white.x


@pytest.mark.parametrize(("spec", "reason"), [
    (PlateSpec(qr_mm=15), "0.41 mm modules; phones need at least 0.5 mm: use --qr-mm 19"),
    (PlateSpec(150, 45, 40), "needs a 48.6 mm white square"),
    (PlateSpec(80, 60, 40), "leaves .* beside the 40 mm code"),
    (PlateSpec(40, 30, 10), "too small"),
    (PlateSpec(90, 150, 40), "upright"),
    (PlateSpec(150, 90, 0), "positive"),
    (PlateSpec(150, float("nan"), 40), "positive"),
])
def test_sizes_that_cannot_work_are_refused_with_the_reason(spec: PlateSpec, reason: str) -> None:
    with pytest.raises(LayoutError, match=reason):
        plate_frame(spec, MODULES)


def test_smaller_and_larger_plates_scale() -> None:
    small = plate_frame(PlateSpec(100, 60, 25), MODULES)
    big = plate_frame(PlateSpec(190, 120, 60), MODULES)
    assert small.scale < 1 < big.scale and small.qr.module >= 0.5


def test_wrap_prefers_the_space_and_keeps_words_whole() -> None:
    lines = wrap("越秀区北京街道盐运西路12号 301房", 14, approx_measure)
    assert lines == ["越秀区北京街道盐运西路12号", "301房"]
    long = wrap("广州市越秀区北京街道盐运西社区盐运西路东一巷十二号之三 B-1203房", 8, approx_measure)
    assert "".join(long).replace(" ", "") == "广州市越秀区北京街道盐运西社区盐运西路东一巷十二号之三B-1203房"
    assert all(approx_measure(line) <= 8 for line in long) and long[-1].endswith(" B-1203房")
    punct = wrap("一二三四五六七，八九", 7, approx_measure)
    assert not any(line.startswith("，") for line in punct)


LONG_ADDRESS = "广州市越秀区北京街道盐运西社区盐运西路东一巷十二号之三附属楼 1203房"


@pytest.mark.parametrize(("spec", "addresses"), [
    (PlateSpec(), ("越秀区北京街道盐运西路12号 301房", LONG_ADDRESS)),
    (PlateSpec(100, 60, 25), ("越秀区北京街道盐运西路12号 301房", LONG_ADDRESS)),
    # A large code leaves a narrow column: short addresses only.
    (PlateSpec(120, 100, 60), ("越秀区北京街道盐运西路12号 301房",)),
])
def test_layout_keeps_text_inside_its_box_and_shrinks_long_addresses(spec: PlateSpec,
                                                                      addresses: tuple[str, ...]) -> None:
    for address in addresses:
        layout = plate_layout(spec, plate(address), MODULES, approx_measure)
        box = layout.frame.text_box
        roles = [t.role for t in layout.texts]
        assert roles[0] == "grade" and roles[-1] == "hint" and "unit" in roles
        for run in layout.texts:
            assert box.x <= run.x and run.x + approx_measure(run.text) * run.size <= box.x + box.w + 1e-6
            assert box.y - 1e-6 <= run.baseline - 0.88 * run.size and run.baseline <= box.y + box.h + 1e-6
        unit = next(t for t in layout.texts if t.role == "unit")
        address_size = next(t for t in layout.texts if t.role == "address").size
        assert unit.size > 2 * address_size
    no_grade = plate_layout(spec, plate(grade=None), MODULES, approx_measure)
    assert "grade" not in [t.role for t in no_grade.texts]
    with pytest.raises(LayoutError, match="unit 1: the address"):
        plate_layout(spec, plate("很长的地址" * 40), MODULES, approx_measure)


def test_a4_sheet_three_default_plates_with_cut_marks_outside_them() -> None:
    sheet = sheet_for(PlateSpec())
    assert (sheet.cols, sheet.rows, sheet.per_page) == (1, 3, 3)
    assert sheet.slots == tuple(sorted(sheet.slots, key=lambda s: (s[1], s[0])))
    marks = sheet.cut_marks(3)
    assert len(marks) == 3 * 8
    for x1, y1, x2, y2 in marks:
        assert x1 == x2 or y1 == y2
        for x, y in sheet.slots:  # never inside a plate
            assert not (x < (x1 + x2) / 2 < x + 150 and y < (y1 + y2) / 2 < y + 90)
        assert min(x1, y1) >= PRINT_MARGIN_MM and x2 <= A4_MM[0] - PRINT_MARGIN_MM
        assert y2 <= A4_MM[1] - PRINT_MARGIN_MM
    assert len(sheet.cut_marks(1)) == 8
    small = sheet_for(PlateSpec(90, 54, 25))
    assert (small.cols, small.rows) == (2, 4)
    with pytest.raises(LayoutError, match="does not fit on an A4 sheet"):
        sheet_for(PlateSpec(200, 120, 60))


def test_colours_grade_hues_and_readable_text() -> None:
    from server.pages.layout import GRADE_COLOURS

    # The pages' grade colours, green one step darker for white text.
    assert {g: PLATE_COLOURS[g] for g in ("normal", "watch", "strict")} == \
        {g: GRADE_COLOURS[g] for g in ("normal", "watch", "strict")}
    for background in (*PLATE_COLOURS.values(), UNGRADED_COLOUR):
        assert contrast(background, text_colour(background)) >= 4.5, background
    assert text_colour(PLATE_COLOURS["normal"]) == DARK  # dark on yellow
    assert text_colour(PLATE_COLOURS["trusted"]) == WHITE and text_colour(UNGRADED_COLOUR) == WHITE
