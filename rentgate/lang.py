"""The language of what the ``rentgate`` command tells a person.

Simplified Chinese by default, as on the pages: the people who run imports,
print plates and assign coordinators are a district's office staff.
English with ``rentgate --lang en ...`` or ``RENTGATE_LANG=en``. Only texts
meant for people go through here; logs stay in English for operators and
``--json`` keys never change."""

from __future__ import annotations

import os

LANGS = ("zh", "en")
LANG_ENV = "RENTGATE_LANG"
_chosen: str | None = None


def set_cli_lang(lang: str | None) -> None:
    """The language chosen on the command line (``--lang``), which wins over
    the environment. Child processes the command starts inherit it."""
    global _chosen
    if lang is not None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGS)}")
        _chosen = lang
        os.environ[LANG_ENV] = lang


def cli_lang() -> str:
    """``zh`` or ``en``: ``--lang``, else $RENTGATE_LANG (``en``, ``en_US``,
    ``zh-CN``, ... are understood), else ``zh``."""
    if _chosen is not None:
        return _chosen
    value = os.environ.get(LANG_ENV, "").strip().lower()
    return "en" if value.startswith("en") else "zh"


def tr(zh: str, en: str) -> str:
    """The text in the command's language."""
    return en if cli_lang() == "en" else zh


def count(n: int, zh_unit: str, en_singular: str, en_plural: str | None = None) -> str:
    """``3 个单元`` / ``1 unit`` / ``3 units``: a number with its unit, in the
    command's language and grammatical in English."""
    if cli_lang() == "en":
        word = en_singular if n == 1 else (en_plural or en_singular + "s")
        return f"{n:,} {word}"
    return f"{n:,} {zh_unit}"
