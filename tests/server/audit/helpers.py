"""Entries and chain checks shared by the audit tests."""

from __future__ import annotations

import sqlalchemy as sa

from server.audit import chain
from server.audit.entries import AuditEntry
from server.db.models import audit_head, audit_log


def entry(n: int, *, actor: str = "client:c-1", action: str = "police.person_check") -> AuditEntry:
    return AuditEntry(actor=actor, action=action, subject=f"id:{n:064x}"[:67], status=200,
                      purpose={"code": "case", "case_ref": f"A-{n}"}, size=1, detail={"n": n, "note": "地址核查"})


def stored_chain(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(audit_log.c.seq, audit_log.c.record, audit_log.c.hash)
                                               .order_by(audit_log.c.seq))]  # type: ignore[misc]


def assert_one_chain(engine: sa.Engine, expected: int) -> None:
    """Seqs 0..expected-1 without holes, each hash chained to the one before,
    and the head row at the end of it."""
    rows = stored_chain(engine)
    assert [seq for seq, _, _ in rows] == list(range(expected))
    head = chain.EMPTY_HEAD
    for seq, record, stored in rows:
        head = chain.chain_hash(head, record.encode())
        assert head.hex() == stored, seq
    with engine.connect() as conn:
        size, last = conn.execute(sa.select(audit_head.c.size, audit_head.c.head)).one()
    assert (size, last) == (expected, head.hex())
