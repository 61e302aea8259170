"""Finding the plate font: the Simplified Chinese face of the system's CJK
collection, a named file, the bundled subset when the system has none, a
clear error when even that is gone, and refusal of characters the font
cannot draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.plates import fonts
from server.plates.fonts import BUNDLED_FONT, FontUnavailable, MissingGlyphs, PlateFont, find_font, open_font
from tests.server.plates.conftest import english


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
    with pytest.raises(FontUnavailable, match="文件不存在"):
        find_font(tmp_path / "nope.ttc")
    text = tmp_path / "font.ttf"
    text.write_bytes(b"not a font")
    with pytest.raises(FontUnavailable, match="不是可读取的字体文件"):
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
    with pytest.raises(FontUnavailable, match="不能显示中文"):
        open_font(latin)


def _no_system_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "KNOWN_PATHS", ())
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])


def test_without_a_system_font_the_bundled_one_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_system_font(monkeypatch)
    font = find_font(None, {})
    assert font.path == BUNDLED_FONT and font.bundled
    assert font.name == "Noto Sans CJK SC Plates Bold"
    # Guangzhou place names outside GB 2312, full-width forms, an Extension A
    # character; not Extension B (the subset stops there).
    assert font.missing("番禺区石碁镇滘口塱头氹仔冚家富村ＡＢ１２（３）－①Ⅱ№㘵") == []
    assert font.missing("𪚥") == ["𪚥"]
    # A named font still wins over the bundled one.
    assert find_font(None, {fonts.FONT_ENV: str(BUNDLED_FONT)}) is font


def test_a_system_font_wins_over_the_bundled_one(plate_font: PlateFont) -> None:
    if plate_font.bundled:
        pytest.skip("no system CJK font on this machine (apt-get install fonts-noto-cjk)")
    assert find_font(None, {}) is plate_font and not plate_font.bundled


def test_no_font_at_all_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only a package installed without its data files gets here."""
    _no_system_font(monkeypatch)
    monkeypatch.setattr(fonts, "BUNDLED_FONT", tmp_path / "gone.otf")
    with pytest.raises(FontUnavailable, match="请重新安装 rentgate.*apt-get install fonts-noto-cjk.*--font PATH"):
        find_font(None, {})
    english(monkeypatch)
    with pytest.raises(FontUnavailable, match="reinstall rentgate, or apt-get install fonts-noto-cjk"):
        find_font(None, {})


def test_a_character_the_bundled_font_lacks_says_to_name_another(monkeypatch: pytest.MonkeyPatch) -> None:
    font = open_font(BUNDLED_FONT)
    with pytest.raises(MissingGlyphs) as caught:
        font.check_text("越秀区𪚥街1号", "单元 7")
    message = str(caught.value)
    assert message.startswith("单元 7：门牌字体没有 '𪚥' (U+2A6A5") and "--font PATH" in message
    assert "apt-get install fonts-noto-cjk" in message
    english(monkeypatch)
    with pytest.raises(MissingGlyphs, match="Name a font that has it with --font PATH.*bundled font covers GBK"):
        font.check_text("越秀区𪚥街1号", "unit 7")


def test_a_character_the_font_lacks_is_named(plate_font: PlateFont, monkeypatch: pytest.MonkeyPatch) -> None:
    english(monkeypatch)
    with pytest.raises(MissingGlyphs) as caught:
        plate_font.check_text("越秀区𪚥街 😀 1号", "unit 7")
    message = str(caught.value)
    assert message.startswith("unit 7:") and "U+2A6A5" in message and "U+1F600" in message
    assert caught.value.missing == ["𪚥", "😀"]
