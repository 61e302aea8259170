"""Every RENTGATE_* name written anywhere in the repository (code, tests,
docs, Makefile, CI) is one the server knows (server/settings.py), so a part
that starts reading a new variable cannot be refused as a typo at the
server's start; and docs/settings.md lists every one of them."""

from __future__ import annotations

import os
import re
from pathlib import Path

from server.settings import (
    OTHER_VARIABLES,
    SECRET_PREFIX,
    known_variables,
    setting_variables,
    unknown_variables,
)

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"RENTGATE_[A-Z0-9_]*[A-Z0-9]")
SKIP_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".hypothesis", ".pytest_cache", "__pycache__",
             "node_modules", "var", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".txt", ".mako", ".json", ".csv"}
# Misspellings written on purpose, to show or test what a typo gets.
DELIBERATE = {"RENTGATE_DATABSE_URL": "RENTGATE_DATABASE_URL", "RENTGATE_PII_KEY": "RENTGATE_PII_KEY_FILE"}


def _files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        # Hidden folders such as .ci hold scripts and are read; caches and
        # the virtualenv are not the project's.
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            if path.suffix in TEXT_SUFFIXES or name in ("Makefile", "run", "Dockerfile"):
                found.append(path)
    return found


def names_in_repository() -> dict[str, set[str]]:
    """Name -> the files that write it."""
    names: dict[str, set[str]] = {}
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name in NAME.findall(text):
            names.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return names


def test_every_rentgate_name_in_the_repository_is_known() -> None:
    names = names_in_repository()
    assert "RENTGATE_DATABASE_URL" in names and "RENTGATE_LANG" in names  # the walk found the code
    unknown = {name: sorted(files) for name, files in names.items()
               if name not in known_variables() and name not in DELIBERATE and not (name + "_").startswith(SECRET_PREFIX)}
    assert unknown == {}, ("add these to server/settings.py (a ServerSettings field, or OTHER_VARIABLES "
                           "with the module that reads them) and to docs/settings.md")


def test_the_deliberate_misspellings_are_refused_with_the_right_suggestion() -> None:
    for typo, meant in DELIBERATE.items():
        assert [(p.name, p.suggestion) for p in unknown_variables({typo: "x"})] == [(typo, meant)]


def test_the_settings_page_lists_every_name() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = sorted(name for name in (*setting_variables(), *OTHER_VARIABLES) if f"`{name}`" not in page)
    assert missing == []


def test_the_settings_page_shows_each_default_as_the_model_has_it() -> None:
    from pydantic_core import PydanticUndefined

    from server.settings import ServerSettings, variable

    rows = {line.split("|")[1].strip(" `"): line for line in
            (ROOT / "docs" / "settings.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `RENTGATE_")}
    wrong = []
    for field, info in ServerSettings.model_fields.items():
        row = rows.get(variable(field), "")
        default = info.default
        if default is PydanticUndefined:  # computed (the host name): the page says how
            continue
        if (f"`{default}`" if default is not None else "unset") not in row:
            wrong.append(f"{variable(field)}: {default!r}")
    assert wrong == []
