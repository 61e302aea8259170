"""docs/police.md's purpose and scope tables are what the server does."""

from __future__ import annotations

import re
from pathlib import Path

from server.police.purposes import PARTS, PURPOSES, SCOPE_PARTS

DOC = Path(__file__).resolve().parents[3] / "docs" / "police.md"


def _table(header: str) -> dict[str, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(header, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and (code := re.fullmatch(r"`(\w+)`", cells[0])):
            rows[code.group(1)] = [p.strip() for p in cells[-1].split(",")]
    return rows


def test_the_purposes_table_lists_every_purpose_and_what_it_permits() -> None:
    documented = _table("## Purposes")
    assert set(documented) == set(PURPOSES)
    for code, kind in PURPOSES.items():
        assert documented[code] == [p for p in PARTS if p in kind.permits], code
        assert kind.zh in DOC.read_text(encoding="utf-8")


def test_the_scopes_table_lists_what_each_scope_grants() -> None:
    documented = _table("## Scopes")
    assert documented == {scope: [p for p in PARTS if p in parts] for scope, parts in SCOPE_PARTS.items()}
