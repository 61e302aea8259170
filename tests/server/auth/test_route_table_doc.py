"""docs/auth.md's route table is the one the code declares."""

from __future__ import annotations

from server import routes_doc
from server.auth import table


def test_docs_auth_md_lists_every_route_with_the_policy_the_server_enforces() -> None:
    doc = table.DOC.read_text(encoding="utf-8")
    expected = table.with_table(doc, table.markdown(routes_doc.application()))
    assert doc == expected, "docs/auth.md is out of date: run python -m server.routes_doc --write"
