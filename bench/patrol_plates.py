"""Plate rendering for the patrol benchmark: N plates of the generated city
(their real addresses, grades and signed scan URLs) to one A4 PDF with
server/plates/render.py, and to one PNG each, timed in this process."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.patrol_data import City, progress
from server.plates.keys import Keyring
from server.plates.service import plate_url, token_for

PUBLIC_URL = "https://rentgate.example.cn"
PNG_PLATES_MAX = 100  # PNGs and SVGs are timed on a sample: one file per plate
PNG_DPI = 300  # print quality


def plate_rows(engine: sa.Engine, city: City, keyring: Keyring, n: int, rng: random.Random) -> list[Any]:
    """PlateData for n random units: the full Chinese address, the unit
    number, the grade and the plate's scan URL."""
    from server.plates.render import PlateData

    unit_ids = rng.sample(city.unit_ids, min(n, len(city.unit_ids)))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""
SELECT u.id, b.address, u.number, u.grade, p.id AS plate_id, p.key_id, p.expires_at
FROM units u JOIN buildings b ON b.id = u.building_id
JOIN plates p ON p.unit_id = u.id AND p.revoked_at IS NULL
WHERE u.id = ANY(:ids) ORDER BY u.id"""), {"ids": unit_ids}).all()
    return [PlateData(unit_id=int(r.id), address=f"{r.address}{r.number}室", unit_label=str(r.number),
                      grade=r.grade, url=plate_url(PUBLIC_URL, token_for(keyring, int(r.plate_id), r.key_id,
                                                                         r.expires_at)))
            for r in rows]


def plate_figures(engine: sa.Engine, city: City, keyring: Keyring, n: int, workdir: Path,
                  rng: random.Random) -> dict[str, Any]:
    """plates_per_s (PDF), png_plates_per_s and svg_plates_per_s; a
    ``plates_error`` instead when the renderer is not there (the other
    figures still count)."""
    try:
        from server.plates.render import PlateSpec, find_font, render_pdf, render_png, render_svg
    except ImportError as exc:
        progress("plates skipped: %s", exc)
        return {"plates_error": f"renderer not available: {exc}"}
    plates = plate_rows(engine, city, keyring, n, rng)
    spec = PlateSpec()
    out: dict[str, Any] = {"plates": len(plates)}
    started = time.perf_counter()
    font = find_font()
    out["plate_font_s"] = round(time.perf_counter() - started, 3)
    pdf = workdir / "plates.pdf"
    started = time.perf_counter()
    with open(pdf, "wb") as f:
        pages = render_pdf(plates, spec, f, font)
    seconds = time.perf_counter() - started
    out.update(plates_per_s=round(len(plates) / seconds, 1), plates_pdf_s=round(seconds, 3), plates_pdf_pages=pages,
               plates_pdf_bytes=pdf.stat().st_size)
    progress("plates: %s on %s A4 pages in %.2fs (%.0f/s, %s bytes)", len(plates), pages, seconds,
             len(plates) / seconds, out["plates_pdf_bytes"])
    sample = plates[:PNG_PLATES_MAX]
    started = time.perf_counter()
    for plate in sample:
        (workdir / f"plate-{plate.unit_id}.png").write_bytes(render_png(plate, spec, PNG_DPI, font))
    seconds = time.perf_counter() - started
    out.update(png_plates=len(sample), png_dpi=PNG_DPI, png_plates_per_s=round(len(sample) / seconds, 1))
    started = time.perf_counter()
    for plate in sample:
        (workdir / f"plate-{plate.unit_id}.svg").write_text(render_svg(plate, spec, font), encoding="utf-8")
    svg_seconds = time.perf_counter() - started
    out["svg_plates_per_s"] = round(len(sample) / svg_seconds, 1)
    progress("plates: %s PNGs at %s dpi in %.2fs (%.0f/s); SVGs %.0f/s", len(sample), PNG_DPI, seconds,
             len(sample) / seconds, len(sample) / svg_seconds)
    return out
