"""Regenerate the plate font bundled in server/plates/font_data/.

    .venv/bin/python tools/make_plate_font.py                 # writes the bundled file
    .venv/bin/python tools/make_plate_font.py --measure       # sizes of each coverage choice, writes nothing

Needs Debian's fonts-noto-cjk (``apt-get install fonts-noto-cjk``), or
``--source`` naming another copy of NotoSansCJK-Bold.ttc. The Simplified
Chinese face of the collection is cut down with fontTools.subset to what a
door plate can show (``coverage()`` below), keeping its CFF outlines:
fpdf2 embeds those as a CIDFontType0 subset, Pillow draws them through
FreeType. The result is renamed ("... Plates") so that a PDF names which
font it carries, and so that nobody mistakes the subset for the full face.

The output is deterministic for the same source file and fontTools version
(the subsetter sorts what it keeps, and head.modified is pinned to the
source's), so regenerating it gives the same bytes and a clean ``git diff``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "server" / "plates" / "font_data" / "NotoSansCJKsc-Bold-Plates.otf"
SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
FACE_NAME = "Noto Sans CJK SC Bold"
FAMILY = "Noto Sans CJK SC Plates"
POSTSCRIPT = "NotoSansCJKscPlates-Bold"

# Blocks a plate's address or unit number may use besides the hanzi:
# ASCII and Latin-1 (unit numbers like "A-1203", "×", "·"), general
# punctuation (—, “”, …), letterlike symbols and number forms (№, Ⅱ),
# enclosed numbers (①), CJK symbols and punctuation (、。《》〇), and the
# full-width forms office staff type (Ａ１２０３, （）, －).
PUNCTUATION_BLOCKS = ((0x0020, 0x007E), (0x00A0, 0x00FF), (0x2000, 0x206F), (0x2100, 0x218F), (0x2460, 0x24FF),
                      (0x3000, 0x303F), (0xFF00, 0xFFEF))
URO = (0x4E00, 0x9FFF)        # CJK Unified Ideographs
EXT_A = (0x3400, 0x4DBF)      # CJK Unified Ideographs Extension A


def _encodable(codec: str) -> set[int]:
    """Every BMP character the codec can encode."""
    chars = set()
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        try:
            chr(cp).encode(codec)
        except UnicodeEncodeError:
            continue
        chars.add(cp)
    return chars


def _ranges(*spans: tuple[int, int]) -> set[int]:
    return {cp for lo, hi in spans for cp in range(lo, hi + 1)}


COVERAGES = ("gb2312", "gbk", "gbk+ext-a", "all")


def coverage(name: str) -> set[int]:
    """The code points kept for a coverage choice (intersected with what the
    font has). ``gbk+ext-a`` is the default: every character GBK encodes
    (its 21,003 hanzi: all of Unicode's original ideographs U+4E00..U+9FA5,
    which hold Guangzhou's 滘, 塱, 氹, 冚 that GB 2312 lacks), plus the rest of
    the original block (U+9FA6..) and Extension A: the hanzi GB 18030's
    implementation level 1 requires."""
    base = _ranges(*PUNCTUATION_BLOCKS)
    if name == "gb2312":
        return base | _encodable("gb2312")
    if name == "gbk":
        return base | _encodable("gbk")
    if name == "gbk+ext-a":
        return base | _encodable("gbk") | _ranges(URO, EXT_A)
    if name == "all":
        return set(range(0x20, 0x110000))
    raise ValueError(name)


def _sc_face(source: Path) -> TTFont:
    collection = TTCollection(str(source))
    for font in collection.fonts:
        if font["name"].getDebugName(4) == FACE_NAME:
            return font
    raise SystemExit(f"{source}: no face named {FACE_NAME!r}")


def _rename(font: TTFont) -> None:
    """Family "Noto Sans CJK SC Plates", PostScript name
    NotoSansCJKscPlates-Bold: a modified version under the OFL (whose only
    Reserved Font Name for Noto CJK is "Source") is kept apart from the
    original by its name."""
    name = font["name"]
    source_version = name.getDebugName(5) or ""
    for record in list(name.names):
        if record.nameID in (1, 16):
            name.setName(FAMILY, record.nameID, record.platformID, record.platEncID, record.langID)
        elif record.nameID == 4:
            name.setName(f"{FAMILY} Bold", 4, record.platformID, record.platEncID, record.langID)
        elif record.nameID == 6:
            name.setName(POSTSCRIPT, 6, record.platformID, record.platEncID, record.langID)
        elif record.nameID == 3:
            name.setName(f"{source_version};{POSTSCRIPT}", 3, record.platformID, record.platEncID, record.langID)
    # Localised family names (思源黑体 / Noto Sans CJK SC in other languages)
    # would name the full face: only the English ones stay.
    name.names = [r for r in name.names if r.nameID not in (1, 4, 16, 17) or r.langID in (0, 0x409)]
    cff = font["CFF "].cff
    cff.fontNames = [POSTSCRIPT]
    top = cff.topDictIndex[0]
    top.FullName = f"{FAMILY} Bold"
    top.FamilyName = FAMILY
    if hasattr(top, "CIDFontName"):
        top.CIDFontName = POSTSCRIPT


def make(source: Path, name: str) -> bytes:
    font = _sc_face(source)
    modified = font["head"].modified
    wanted = coverage(name) & set(font.getBestCmap())
    options = subset.Options()
    # Plates draw glyph by glyph without shaping (fpdf2 and Pillow's basic
    # layout alike): no OpenType layout tables, no vertical metrics.
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx", "DSIG"]
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14, 16, 17]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = True
    options.desubroutinize = False
    options.recalc_timestamp = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(wanted))
    subsetter.subset(font)
    _rename(font)
    font["head"].modified = modified
    font.recalcTimestamp = False
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _hanzi(cps: Iterable[int]) -> int:
    return sum(1 for cp in cps if 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or cp >= 0x20000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, default=SOURCE, help=f"Noto Sans CJK Bold collection (default {SOURCE})")
    parser.add_argument("--coverage", choices=COVERAGES, default="gbk+ext-a",
                        help="which characters to keep (default gbk+ext-a)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--measure", action="store_true", help="print the size of every coverage choice instead")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"{args.source}: no such file; apt-get install fonts-noto-cjk, or name the collection with --source",
              file=sys.stderr)
        return 2
    for name in COVERAGES if args.measure else (args.coverage,):
        started = time.perf_counter()
        data = make(args.source, name)
        cmap = TTFont(io.BytesIO(data)).getBestCmap()
        print(f"{name}: {len(data):,} bytes, {len(cmap):,} characters ({_hanzi(cmap):,} hanzi), "
              f"{time.perf_counter() - started:.0f} s, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
        if not args.measure:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(data)
            print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
