"""Plates on a machine without any CJK font: ``rentgate plates render`` in
a child process whose /usr/share/fonts, /usr/local/share/fonts and
fontconfig caches are empty tmpfs mounts (``unshare --mount``, as root, as
CI runs), and whose HOME and XDG_CACHE_HOME are empty folders. It must fall
back to the font shipped with rentgate and print plates that decode and
carry that font."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pypdfium2 as pdfium
import pytest

from rentgate.cli import main
from server.db.engine import create_engine
from server.plates.layout import MM_PER_INCH, PlateSpec, sheet_for
from tests.fontless import BUNDLED_FACE, embedded_font_names, fontless, fonts_listed, unshare_refusal
from tests.server.plates.qr_read import read_qr
from tests.server.plates.world import build

ROOT = Path(__file__).resolve().parents[3]
BASE_URL = "https://plates.example.cn"


@pytest.fixture(scope="module")
def namespace() -> None:
    if reason := unshare_refusal():
        pytest.skip(reason)


def _seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'plates.db'}"
    (tmp_path / "rentgate-plate-keys").write_text("k1 " + "A" * 43 + "=\n")
    (tmp_path / "rentgate-plate-keys").chmod(0o600)
    assert main(["db", "upgrade", "--database-url", url]) == 0
    engine = create_engine(url)
    build(engine)
    engine.dispose()
    return url


def _run_without_fonts(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``rentgate *argv`` with no font on the system; the process and what
    fontconfig listed as Chinese fonts inside the same namespace."""
    command, env = fontless([sys.executable, "-m", "rentgate.cli", *argv], tmp_path)
    env.update(RENTGATE_LANG="en", PYTHONPATH=str(ROOT))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=ROOT)
    return done, fonts_listed(tmp_path)


def _png(path: Path) -> np.ndarray:
    loaded = cv2.imread(str(path))
    assert loaded is not None, path
    return np.asarray(loaded)


def test_plates_render_without_any_system_font(namespace: None, tmp_path: Path) -> None:
    url = _seeded(tmp_path)
    out = tmp_path / "out"
    done, listed = _run_without_fonts(tmp_path, "plates", "render", "--grid", "G1", "--out", str(out),
                                      "--format", "pdf,png", "--dpi", "200", "--base-url", BASE_URL,
                                      "--database-url", url, "--json")
    # The premise: nothing fontconfig knows of draws Chinese in there.
    assert "(fc-list did not run)" not in listed and listed.strip() == "", listed
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    assert (doc["plates"], doc["pages"]) == (5, 2)

    pngs = sorted(out.glob("unit-*.png"))
    assert len(pngs) == 5
    for png in pngs:
        assert read_qr(_png(png)).startswith(BASE_URL + "/p/k1."), png

    pdf = pdfium.PdfDocument((out / "plates.pdf").read_bytes())
    spec, dpi = PlateSpec(), 200
    sheet = sheet_for(spec)

    def px(mm: float) -> int:
        return round(mm * dpi / MM_PER_INCH)

    decoded = []
    for page in pdf:
        # The bundled face, by the name it was given, as an embedded subset.
        [name] = embedded_font_names(page)
        assert name.endswith("+" + BUNDLED_FACE), name
        assert "盐运西路12号" in page.get_textpage().get_text_range()
        image = np.array(page.render(scale=dpi / 72).to_pil().convert("L"))
        for x, y in sheet.slots:
            if text := read_qr(image[px(y):px(y + spec.height_mm), px(x):px(x + spec.width_mm)]):
                decoded.append(text)
    assert len(decoded) == 5 and all(u.startswith(BASE_URL + "/p/k1.") for u in decoded)
    assert sorted(decoded) == sorted({read_qr(_png(p)) for p in pngs})


def test_a_character_beyond_the_bundled_font_names_the_way_out(namespace: None, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from server.db.models import buildings

    url = _seeded(tmp_path)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(buildings).where(buildings.c.code == "B1").values(address="越秀区𪚥街1号"))
    engine.dispose()
    done, _ = _run_without_fonts(tmp_path, "plates", "render", "--grid", "G1", "--out", str(tmp_path / "out"),
                                 "--base-url", BASE_URL, "--database-url", url)
    assert done.returncode == 2, done.stderr
    assert "U+2A6A5" in done.stderr and "Name a font that has it with --font PATH" in done.stderr
    assert "the bundled font covers GBK and Extension A only" in done.stderr
    assert not (tmp_path / "out").exists()
