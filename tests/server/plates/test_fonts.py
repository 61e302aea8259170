"""Finding the plate font: the Simplified Chinese face of the system's CJK
collection, a named file, a clear error without one, and refusal of
characters the font cannot draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.plates import fonts
from server.plates.fonts import FontUnavailable, MissingGlyphs, PlateFont, find_font, open_font


def test_the_system_font_is_the_simplified_chinese_face(plate_font: PlateFont) -> None:
    assert "SC" in plate_font.name.split() or plate_font.path.suffix.lower() in (".otf", ".ttf")
    assert plate_font.missing("越秀区北京街道盐运西路12号 301房 放心一般重点严控 扫码登记 / 巡查") == []
    # Parsed once: the same object for the same file.
    assert find_font(plate_font.path) is find_font(str(plate_font.path))
    # Widths: ideographs 1 em, digits narrower.
    assert plate_font.width_em("越秀") == pytest.approx(2.0)
    assert 1.0 < plate_font.width_em("301") < 3.0


def test_a_named_font_by_flag_or_environment(plate_font: PlateFont, tmp_path: Path) -> None:
    assert find_font(None, {fonts.FONT_ENV: str(plate_font.path)}).path == plate_font.path.resolve()
    with pytest.raises(FontUnavailable, match="no such file"):
        find_font(tmp_path / "nope.ttc")
    text = tmp_path / "font.ttf"
    text.write_bytes(b"not a font")
    with pytest.raises(FontUnavailable, match="not a font"):
        open_font(text)
    with pytest.raises(FontUnavailable, match="TrueType/OpenType"):
        open_font(_touch(tmp_path / "x.pcf"))


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def test_a_font_without_chinese_is_refused() -> None:
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin.is_file():
        pytest.skip("no DejaVu Sans to try")
    with pytest.raises(FontUnavailable, match="cannot draw Chinese"):
        open_font(latin)


def test_no_font_at_all_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "KNOWN_PATHS", ())
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])
    with pytest.raises(FontUnavailable, match="apt-get install fonts-noto-cjk"):
        find_font(None, {})


def test_a_character_the_font_lacks_is_named(plate_font: PlateFont) -> None:
    with pytest.raises(MissingGlyphs) as caught:
        plate_font.check_text("越秀区𪚥街 😀 1号", "unit 7")
    message = str(caught.value)
    assert message.startswith("unit 7:") and "U+2A6A5" in message and "U+1F600" in message
    assert caught.value.missing == ["𪚥", "😀"]
