"""Entries and chain checks shared by the audit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from rentgate import signing
from server.audit import chain, store
from server.audit.entries import AuditEntry
from server.audit.keys import AuditKey, from_private
from server.db.models import audit_head, audit_log
from server.web.transactions import write_transaction


def entry(n: int, *, actor: str = "client:c-1", action: str = "police.person_check") -> AuditEntry:
    return AuditEntry(actor=actor, action=action, subject=f"id:{n:064x}"[:67], status=200,
                      purpose={"code": "case", "case_ref": f"A-{n}"}, size=1, detail={"n": n, "note": "地址核查"})


def stored_chain(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(audit_log.c.seq, audit_log.c.record, audit_log.c.hash)
                                               .order_by(audit_log.c.seq))]


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


def new_key() -> AuditKey:
    return from_private(signing.generate_private_key())


def build_log(engine: sa.Engine, key: AuditKey, *, records: int = 30, checkpoint_every: int = 10) -> None:
    """``records`` entries appended ``checkpoint_every`` at a time, each group
    followed by a signed checkpoint."""
    for low in range(0, records, checkpoint_every):
        with write_transaction(engine) as conn:
            store.append_in(conn, [entry(n) for n in range(low, min(records, low + checkpoint_every))])
        with write_transaction(engine) as conn:
            store.make_checkpoint(conn, key)


def rehash_from(engine: sa.Engine, seq: int) -> None:
    """What an attacker without the key does after changing record ``seq``:
    recompute the stored hashes from there on and the head row, so that
    only a signed checkpoint can tell."""
    rows = stored_chain(engine)
    head = bytes.fromhex(rows[seq - 1][2]) if seq else chain.EMPTY_HEAD
    with engine.begin() as conn:
        for n, record, _ in rows[seq:]:
            head = chain.chain_hash(head, record.encode())
            conn.execute(audit_log.update().where(audit_log.c.seq == n).values(hash=head.hex()))
        conn.execute(audit_head.update().values(head=head.hex()))


T0 = datetime(2026, 11, 1, tzinfo=UTC)


def build_timed_log(engine: sa.Engine, key: AuditKey, *, records: int = 30, checkpoint_every: int = 10,
                    start: int = 0) -> None:
    """Record n appended at T0 + n hours, a signed checkpoint after every
    ``checkpoint_every``-th."""
    for n in range(start, start + records):
        with write_transaction(engine) as conn:
            store.append_in(conn, [entry(n)], now=T0 + timedelta(hours=n))
        if (n + 1) % checkpoint_every == 0:
            with write_transaction(engine) as conn:
                store.make_checkpoint(conn, key, now=T0 + timedelta(hours=n, minutes=30))
