"""verify_database: a good log passes; each kind of tampering is found at
the right seq, with a reason."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from server.audit import store
from server.audit.keys import AuditKey
from server.audit.log import AuditLog
from server.audit.verify import verify_database
from server.db.models import audit_checkpoints, audit_head, audit_log
from server.web.transactions import write_transaction
from tests.server.audit.helpers import build_log, entry, new_key, rehash_from


@pytest.fixture
def key() -> AuditKey:
    return new_key()


@pytest.fixture
def logged(engine: sa.Engine, key: AuditKey) -> sa.Engine:
    build_log(engine, key)  # 30 records, checkpoints at 10, 20, 30
    return engine


def keys(key: AuditKey) -> dict[str, object]:
    return {key.key_id: key.public_key}


def verify(engine: sa.Engine, key: AuditKey) -> tuple[str | None, int | None]:
    report = verify_database(engine, keys(key))  # type: ignore[arg-type]
    return (None, None) if report.problem is None else (report.problem.code, report.problem.seq)


def test_a_good_log_verifies(logged: sa.Engine, key: AuditKey) -> None:
    report = verify_database(logged, {key.key_id: key.public_key})
    assert report.ok, report.problem
    assert (report.records, report.checkpoints, report.signed_size, report.unsigned) == (30, 3, 30, 0)
    assert report.key_ids == {key.key_id} and len(report.head) == 64
    assert "30" in report.summary()


def test_an_empty_log_verifies(engine: sa.Engine, key: AuditKey) -> None:
    report = verify_database(engine, {key.key_id: key.public_key})
    assert report.ok and report.records == 0


def test_records_after_the_last_checkpoint_are_reported_unsigned(logged: sa.Engine, key: AuditKey) -> None:
    with write_transaction(logged) as conn:
        store.append_in(conn, [entry(30), entry(31)])
    report = verify_database(logged, {key.key_id: key.public_key})
    assert report.ok and report.unsigned == 2


def test_a_changed_record_is_found_at_its_seq(logged: sa.Engine, key: AuditKey) -> None:
    with logged.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 12)
                     .values(record=sa.func.replace(audit_log.c.record, "A-12", "A-99")))
    assert verify(logged, key) == ("record_changed", 12)


def test_a_changed_record_with_rehashed_chain_is_caught_by_the_next_checkpoint(logged: sa.Engine,
                                                                                key: AuditKey) -> None:
    with logged.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 12)
                     .values(record=sa.func.replace(audit_log.c.record, "A-12", "A-99")))
    rehash_from(logged, 12)
    report = verify_database(logged, {key.key_id: key.public_key})
    assert report.problem is not None
    assert (report.problem.code, report.problem.seq, report.problem.checkpoint) == ("checkpoint_mismatch", 19, 20)
    assert "10" in report.problem.message and "19" in report.problem.message  # the range to look in


def test_a_deleted_record_is_found_at_its_seq(logged: sa.Engine, key: AuditKey) -> None:
    with logged.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 12))
    assert verify(logged, key) == ("missing_record", 12)


def test_two_swapped_records_are_found_at_the_first(logged: sa.Engine, key: AuditKey) -> None:
    with logged.begin() as conn:
        a, b = (conn.execute(sa.select(audit_log.c.record).where(audit_log.c.seq == n)).scalar_one() for n in (12, 13))
        conn.execute(audit_log.update().where(audit_log.c.seq == 12).values(record=b))
        conn.execute(audit_log.update().where(audit_log.c.seq == 13).values(record=a))
    assert verify(logged, key) == ("record_moved", 12)


def test_a_tail_cut_behind_a_checkpoint_is_found(logged: sa.Engine, key: AuditKey) -> None:
    """The rows from 25 on deleted and the head row set back to match: the
    signed checkpoint at 30 still proves there were 30."""
    with logged.begin() as conn:
        last = conn.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == 24)).scalar_one()
        conn.execute(audit_log.delete().where(audit_log.c.seq >= 25))
        conn.execute(audit_head.update().values(size=25, head=last))
    report = verify_database(logged, {key.key_id: key.public_key})
    assert report.problem is not None
    assert (report.problem.code, report.problem.seq, report.problem.checkpoint) == ("truncated", 25, 30)


def test_a_tail_cut_without_touching_the_head_row_is_found(logged: sa.Engine, key: AuditKey) -> None:
    with write_transaction(logged) as conn:
        store.append_in(conn, [entry(30), entry(31), entry(32)])
    with logged.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq >= 31))
    assert verify(logged, key) == ("head_mismatch", 31)


def test_a_forged_checkpoint_signature_is_found(logged: sa.Engine, key: AuditKey) -> None:
    forger = new_key()
    with logged.begin() as conn:
        cp = store.checkpoints_between(conn, 20, 20)[0]
        forged = store.Checkpoint(20, "ab" * 32, cp.at, cp.key_id, "")
        conn.execute(audit_checkpoints.update().where(audit_checkpoints.c.size == 20)
                     .values(head=forged.head, signature=forger.sign(forged.message())))
    report = verify_database(logged, {key.key_id: key.public_key})
    assert report.problem is not None
    assert (report.problem.code, report.problem.seq, report.problem.checkpoint) == ("checkpoint_signature", 19, 20)


def test_a_forged_checkpoint_past_the_end_is_a_forgery_not_a_truncation(logged: sa.Engine, key: AuditKey) -> None:
    with logged.begin() as conn:
        conn.execute(audit_checkpoints.insert().values(size=99, head="ab" * 32, at=sa.func.now(), key_id=key.key_id,
                                                       signature="AAAA"))
    assert verify(logged, key) == ("checkpoint_signature", 98)


def test_checkpoints_of_a_key_not_given_are_refused(logged: sa.Engine) -> None:
    report = verify_database(logged, {})
    assert report.problem is not None and report.problem.code == "checkpoint_unknown_key"
    assert report.problem.seq == 9 and "--public-key" in report.problem.message


async def test_appends_going_on_during_verification_are_not_a_problem(logged: sa.Engine, key: AuditKey) -> None:
    audit = AuditLog(logged, key=key)
    audit.start()
    try:
        appending = asyncio.gather(*(audit.append(entry(n)) for n in range(300)))
        reports = await asyncio.gather(*(asyncio.to_thread(verify_database, logged, {key.key_id: key.public_key})
                                         for _ in range(3)))
        await appending
    finally:
        await audit.stop()
    assert all(r.ok for r in reports), [r.problem for r in reports]
    final = verify_database(logged, {key.key_id: key.public_key})
    assert final.ok and final.records == 330 and final.unsigned == 0  # stop signed the last ones
