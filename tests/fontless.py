"""Running a command on "a machine without any CJK font": a child process in
a private mount namespace (``unshare --mount``, as root, as CI runs) whose
font folders and fontconfig caches are empty tmpfs mounts and whose HOME and
XDG folders are empty. Whatever it starts inherits the namespace. Used by the
plate tests and by the demo test."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw

# Every place /etc/fonts/fonts.conf reads fonts or system caches from.
HIDDEN = ("/usr/share/fonts", "/usr/local/share/fonts", "/var/cache/fontconfig")
# The face rentgate ships (server/plates/font_data), by its own family name.
BUNDLED_FACE = "NotoSansCJKSCPlatesBold"


@lru_cache(maxsize=1)
def unshare_refusal() -> str | None:
    """Why a private mount namespace cannot be had here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare(1) (util-linux) on this machine"
    try:
        done = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /usr/share/fonts"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unshare failed: {exc}"
    if done.returncode != 0:
        return f"unshare --mount with a tmpfs is not permitted here (needs root): {done.stderr.strip()}"
    return None


def fontless(argv: list[str], workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``argv`` without fonts.
    What fontconfig lists as Chinese fonts inside the namespace is written to
    ``workdir / "fc.txt"`` first (empty: the premise holds)."""
    home, cache = workdir / "home", workdir / "cache"
    home.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    mounts = " && ".join(f"{{ [ ! -d {d} ] || mount -t tmpfs tmpfs {d}; }}" for d in HIDDEN)
    script = f'{mounts} && fc-list :lang=zh-cn > "$FC_OUT" 2>&1; exec "$@"'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENTGATE_", "FONTCONFIG"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(cache), XDG_DATA_HOME=str(home / "data"),
               FC_OUT=str(workdir / "fc.txt"))
    return ["unshare", "--mount", "sh", "-c", script, "sh", *argv], env


def fonts_listed(workdir: Path) -> str:
    """What fontconfig found inside the namespace, or a note that it did not run."""
    path = workdir / "fc.txt"
    return path.read_text() if path.exists() else "(fc-list did not run)"


def embedded_font_names(page: pdfium.PdfPage) -> set[str]:
    """The base names of the fonts a PDF page draws its text with; each
    must be embedded."""
    names = set()
    for obj in page.get_objects(filter=(pdfium_raw.FPDF_PAGEOBJ_TEXT,)):
        font = pdfium_raw.FPDFTextObj_GetFont(obj.raw)
        assert pdfium_raw.FPDFFont_GetIsEmbedded(font) == 1
        size = pdfium_raw.FPDFFont_GetBaseFontName(font, None, 0)
        buffer = ctypes.create_string_buffer(size)
        pdfium_raw.FPDFFont_GetBaseFontName(font, buffer, size)
        names.add(buffer.value.decode())
    return names
