"""The CJK font plates are printed with: found once, parsed once per process.

Order of choice: ``--font PATH``, then ``RENTGATE_PLATE_FONT``, then the
system's Simplified Chinese font (fontconfig's ``fc-list :lang=zh-cn``, then
the usual Noto CJK paths), then the subset of Noto Sans CJK SC Bold shipped
in ``font_data/`` (GBK and CJK Extension A, see its README). The bundled one
comes last: a system font installed on purpose is what the operator expects,
and the full face also has the Extension B characters the subset leaves out;
the bundled face is the same design, so plates look alike either way, and a
bare machine (CI, a fresh server) still prints. In a font collection (.ttc/.otc, how Debian ships
Noto CJK) the Simplified Chinese face is chosen: the same characters are
drawn differently in the TC/JP/KR faces, and a Guangzhou plate must look like
a Guangzhou plate.

fpdf2 (2.8) embeds CFF-flavoured OpenType faces out of a collection directly
(as a CIDFontType0 subset), so no conversion is needed; the tests check that
the PDF carries the subset and that its text layer reads back as Chinese.

Every character a plate shows must exist in the font: a missing one would
print as an empty box (tofu) on a plate screwed to a door for five years, so
``check_text`` refuses it and names the character."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.plates.errors import PlateError

if TYPE_CHECKING:
    from PIL import ImageFont

FONT_ENV = "RENTGATE_PLATE_FONT"
INSTALL_HINT = "apt-get install fonts-noto-cjk"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
# Shipped with the package (pyproject.toml's package-data), OFL-licensed.
BUNDLED_FONT = Path(__file__).resolve().parent / "font_data" / "NotoSansCJKsc-Bold-Plates.otf"
# Tried in order after fontconfig: Debian/Ubuntu, Fedora, Arch, Alpine, macOS.
KNOWN_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
)
# Characters every Simplified Chinese font has; a "CJK" font without them is
# not one a plate can use.
_PROBE = "越秀区街道路号房扫码登记巡查放心一般重点严控"
# OS/2 ulCodePageRange1 bit 18: "Chinese: Simplified chars - PRC and Singapore".
_GB2312_BIT = 1 << 18


class FontUnavailable(PlateError):
    """No usable CJK font, or the named one cannot be used."""


class MissingGlyphs(PlateError):
    """Text holds characters the plate font cannot draw."""

    def __init__(self, what: str, missing: list[str], bundled: bool = False) -> None:
        shown = ", ".join(f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, '?')})" for c in missing[:5])
        more = tr(f" 等 {len(missing)} 个字", f" and {len(missing) - 5} more") if len(missing) > 5 else ""
        # The bundled subset stops at GBK and Extension A: the full Noto CJK
        # face (or another font) may well have the character.
        where = tr(f"（随附的字体只含 GBK 和扩展A汉字；可 {INSTALL_HINT}）",
                   f" (the bundled font covers GBK and Extension A only; or {INSTALL_HINT})") if bundled else ""
        super().__init__(tr(f"{what}：门牌字体没有 {shown}{more} 的字形，印出来会是空框。"
                            f"请用 --font PATH（或 {FONT_ENV}）指定含有这个字的字体{where}，或修改地址文字",
                            f"{what}: the plate font has no glyph for {shown}{more}; it would print as an empty box. "
                            f"Name a font that has it with --font PATH (or {FONT_ENV}){where}, or fix the text"))
        self.missing = missing


@dataclass(eq=False)
class PlateFont:
    """A font file and the face in it. Its character map, advance widths
    and Pillow instances are loaded on first use and kept: one parse per
    process however many plates are drawn."""

    path: Path
    index: int = 0
    name: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cmap: dict[int, str] | None = field(default=None, repr=False)
    _advances: dict[str, int] = field(default_factory=dict, repr=False)
    _units_per_em: int = field(default=1000, repr=False)
    _pil: dict[int, Any] = field(default_factory=dict, repr=False)

    def _load(self) -> dict[int, str]:
        with self._lock:
            if self._cmap is None:
                from fontTools.ttLib import TTFont

                font = TTFont(str(self.path), fontNumber=self.index, lazy=True)
                cmap = font.getBestCmap() or {}
                metrics = font["hmtx"].metrics
                self._units_per_em = int(font["head"].unitsPerEm)
                # Only the advances of mapped glyphs: the lazily decoded
                # table is dropped with ``font``.
                self._advances = {name: int(metrics[name][0]) for name in set(cmap.values()) if name in metrics}
                self._cmap = dict(cmap)
                font.close()
            return self._cmap

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` the font cannot draw (spaces are fine)."""
        cmap = self._load()
        seen: list[str] = []
        for char in text:
            if ord(char) not in cmap and not char.isspace() and char not in seen:
                seen.append(char)
        return seen

    @property
    def bundled(self) -> bool:
        """The subset shipped with rentgate, not a font of the system's."""
        return self.path.resolve() == BUNDLED_FONT

    def check_text(self, text: str, what: str) -> None:
        if missing := self.missing(text):
            raise MissingGlyphs(what, missing, bundled=self.bundled)

    def width_em(self, text: str) -> float:
        """The advance width of ``text`` in ems (no kerning: plates are
        drawn glyph by glyph, as fpdf2 does without text shaping)."""
        cmap = self._load()
        total = 0
        for char in text:
            glyph = cmap.get(ord(char))
            total += self._advances.get(glyph, self._units_per_em) if glyph else self._units_per_em
        return total / self._units_per_em

    def pil(self, size_px: int) -> ImageFont.FreeTypeFont:
        """A Pillow font at ``size_px`` pixels per em, cached per size."""
        with self._lock:
            cached = self._pil.get(size_px)
            if cached is None:
                from PIL import ImageFont

                cached = ImageFont.truetype(str(self.path), size=size_px, index=self.index)
                self._pil[size_px] = cached
            result: ImageFont.FreeTypeFont = cached
            return result


def _faces(path: Path) -> list[tuple[int, str, int]]:
    """(index, full name, code page bits) of each face in a font file."""
    from fontTools.ttLib import TTCollection, TTFont

    try:
        if path.suffix.lower() in (".ttc", ".otc"):
            fonts = list(TTCollection(str(path), lazy=True).fonts)
        else:
            fonts = [TTFont(str(path), lazy=True)]
    except Exception as exc:  # fontTools raises many kinds on a bad file
        raise FontUnavailable(tr(f"{path}：不是可读取的字体文件（{exc}）",
                                 f"{path}: not a font fontTools can read ({exc})")) from exc
    faces = []
    for index, font in enumerate(fonts):
        name = font["name"].getDebugName(4) or font["name"].getDebugName(1) or ""
        os2 = font.get("OS/2")
        code_pages = int(getattr(os2, "ulCodePageRange1", 0) or 0) if os2 is not None else 0
        faces.append((index, name, code_pages))
    return faces


def _simplified_face(faces: list[tuple[int, str, int]]) -> tuple[int, str]:
    """The Simplified Chinese face: by name (Noto's "SC", Source Han's "SC",
    PingFang's "SC"), else the first that declares the GB 2312 code page,
    else the first."""
    for index, name, _ in faces:
        if "SC" in name.replace("-", " ").split():
            return index, name
    for index, name, code_pages in faces:
        if code_pages & _GB2312_BIT:
            return index, name
    return faces[0][0], faces[0][1]


def open_font(path: str | Path, index: int | None = None) -> PlateFont:
    """The plate font in ``path`` (its Simplified Chinese face for a
    collection), checked to draw Chinese."""
    target = Path(path).expanduser()
    if not target.is_file():
        raise FontUnavailable(tr(f"字体 {target}：文件不存在", f"font {target}: no such file"))
    if target.suffix.lower() not in FONT_SUFFIXES:
        raise FontUnavailable(tr(f"字体 {target}：请用 TrueType/OpenType 字体（{', '.join(FONT_SUFFIXES)}）",
                                 f"font {target}: use a TrueType/OpenType font ({', '.join(FONT_SUFFIXES)})"))
    faces = _faces(target)
    if index is None:
        index, name = _simplified_face(faces)
    else:
        if not 0 <= index < len(faces):
            raise FontUnavailable(tr(f"字体 {target} 里没有第 {index} 号字体", f"font {target} has no face {index}"))
        name = faces[index][1]
    font = PlateFont(path=target, index=index, name=name)
    if missing := font.missing(_PROBE):
        raise FontUnavailable(tr(f"字体 {target}（{name}）不能显示中文（没有 {''.join(missing[:5])}）；"
                                 f"请用 --font 指定中文字体，或 {INSTALL_HINT}",
                                 f"font {target} ({name}) cannot draw Chinese (no {''.join(missing[:5])}); "
                                 f"name a CJK font with --font or {INSTALL_HINT}"))
    return font


def _fontconfig_candidates() -> list[tuple[str, int | None]]:
    """(file, face index) of the system's zh-cn fonts, Sans SC Bold first."""
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(["fc-list", ":lang=zh-cn", "file", "index", "family", "style"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    ranked: list[tuple[tuple[int, ...], str, int | None]] = []
    for line in out.splitlines():
        # "/path/file.ttc: Noto Sans CJK SC,Noto Sans CJK SC Bold:style=Bold:index=2" (order varies)
        file, _, rest = line.partition(": ")
        fields = dict(part.split("=", 1) for part in rest.split(":")[1:] if "=" in part)
        family = rest.split(":")[0]
        index = int(fields["index"]) if fields.get("index", "").isdigit() else None
        style = fields.get("style", "")
        if not file.lower().endswith(FONT_SUFFIXES):
            continue
        rank = ("SC" not in family.replace(",", " ").split(), "Sans" not in family and "Hei" not in family,
                "Mono" in family, "Bold" not in style, "Regular" not in style)
        ranked.append((tuple(int(r) for r in rank), file, index))
    ranked.sort()
    return [(file, index) for _, file, index in ranked]


@lru_cache(maxsize=8)
def _cached_font(path: str, index: int | None) -> PlateFont:
    return open_font(path, index)


def find_font(explicit: str | Path | None = None, environ: Mapping[str, str] | None = None) -> PlateFont:
    """The plate font: ``explicit``, else $RENTGATE_PLATE_FONT, else the
    system's, else the bundled one. The same PlateFont (parsed once) for the
    same file."""
    env = os.environ if environ is None else environ
    named = explicit or env.get(FONT_ENV) or None
    if named:
        return _cached_font(str(Path(named).expanduser().resolve()), None)
    tried: list[str] = []
    for file, index in _fontconfig_candidates() + [(p, None) for p in KNOWN_PATHS]:
        if file in tried or not Path(file).is_file():
            continue
        tried.append(file)
        try:
            # A fontconfig index names the face it matched; for a known path
            # the Simplified Chinese face is looked up.
            return _cached_font(str(Path(file).resolve()), index)
        except FontUnavailable:
            continue
    if BUNDLED_FONT.is_file():
        return _cached_font(str(BUNDLED_FONT), None)
    # Only when the package was installed without its data files.
    raise FontUnavailable(tr(f"找不到门牌用的中文字体，随附的 {BUNDLED_FONT} 也不在：请重新安装 rentgate，"
                             f"或 {INSTALL_HINT}，或用 --font PATH（或 {FONT_ENV}）指定一个",
                             f"no Chinese font found for the plates, and the bundled {BUNDLED_FONT} is missing: "
                             f"reinstall rentgate, or {INSTALL_HINT}, or name one with --font PATH or {FONT_ENV}"))
