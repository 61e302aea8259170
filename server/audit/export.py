"""Writes a period of the log for an oversight body (docs/audit.md,
"Export file"): JSON Lines holding a header, the signed checkpoints, and
the records exactly as stored. Both ends are anchored to signed checkpoints,
so dropping records at either end or anywhere between is detected; the
period is widened to the nearest checkpoint at each end for that."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from rentgate import signing
from server.audit import canonical, chain, store
from server.audit.errors import AuditError
from server.audit.keys import AuditKey, keyring
from server.audit.verify import CHUNK_ROWS, EXPORT_TYPE, EXPORT_VERSION
from server.db.models import audit_log
from server.web.transactions import write_transaction


class NothingToExport(AuditError):
    """No record lies in the period asked for."""


class LogDamaged(AuditError):
    """The stored log does not agree with its own checkpoints: an export of
    it would not verify, so none is written."""


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive


@dataclass(frozen=True)
class ExportResult:
    path: Path
    first_seq: int
    size: int
    period_first_seq: int
    period_last_seq: int
    checkpoints: int
    head: str
    key_id: str

    def as_json(self) -> dict[str, Any]:
        return {"out": str(self.path), "first_seq": self.first_seq, "size": self.size,
                "records": self.size - self.first_seq, "period_first_seq": self.period_first_seq,
                "period_last_seq": self.period_last_seq, "checkpoints": self.checkpoints, "head": self.head,
                "key_id": self.key_id}


@dataclass(frozen=True)
class _Plan:
    first: int
    size: int
    period_first: int
    period_last: int
    previous: str
    checkpoints: list[store.Checkpoint]


def export_period(engine: sa.Engine, key: AuditKey, period: Period, out: Path, *,
                  other_keys: Mapping[str, signing.Ed25519PublicKey] | None = None,
                  now: datetime | None = None) -> ExportResult:
    """Signs a checkpoint over everything appended so far, then writes the
    records from the checkpoint at or before the period's first record to
    the first checkpoint at or after its last. ``other_keys``: public keys
    of earlier signing keys, whose checkpoints may anchor the start.
    Refuses (FileExistsError) to replace an existing ``out``."""
    now = now or datetime.now(UTC)
    with write_transaction(engine) as conn:
        store.make_checkpoint(conn, key, now)
    keys = keyring(key, other_keys or {})
    with store.snapshot(engine) as conn:
        plan = _plan(conn, period, set(keys))
        with _created(out) as file:
            _write_header(file, plan, keys, period, now)
            for cp in plan.checkpoints:
                file.write(_json_line({"type": "checkpoint", **cp.as_json()}))
            head = _write_records(conn, file, plan)
    return ExportResult(out, plan.first, plan.size, plan.period_first, plan.period_last, len(plan.checkpoints),
                        head, key.key_id)


def _plan(conn: sa.Connection, period: Period, key_ids: set[str]) -> _Plan:
    signed = [cp for cp in store.checkpoints_between(conn, 1, 2**63 - 1) if cp.key_id in key_ids]
    if not signed:
        raise NothingToExport("the log has no signed checkpoint yet")
    # Only what a checkpoint covers: records appended after the one just
    # signed belong to a later export.
    in_period = sa.and_(audit_log.c.at >= period.start, audit_log.c.at < period.end,
                        audit_log.c.seq < signed[-1].size)
    low, high = conn.execute(sa.select(sa.func.min(audit_log.c.seq), sa.func.max(audit_log.c.seq))
                             .where(in_period)).one()
    if low is None:
        raise NothingToExport("no record in this period")
    start = max((cp for cp in signed if cp.size <= low), key=lambda cp: cp.size, default=None)
    end = min((cp for cp in signed if cp.size > high), key=lambda cp: cp.size)
    first = 0 if start is None else start.size
    previous = chain.EMPTY_HEAD_HEX if start is None else _stored_hash(conn, first - 1)
    if start is not None and previous != start.head:
        raise LogDamaged(f"record {first - 1} does not match the checkpoint at size {first}")
    return _Plan(first, end.size, int(low), int(high), previous,
                 [cp for cp in signed if first <= cp.size <= end.size])


def _stored_hash(conn: sa.Connection, seq: int) -> str:
    found = conn.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == seq)).scalar()
    if found is None:
        raise LogDamaged(f"record {seq} is missing")
    return str(found)


class _created:
    """``out`` opened for writing only if it does not exist yet; removed
    again if the export fails half way (it is ours: we just made it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.file = open(self.path, "xb")  # noqa: SIM115 - closed in __exit__
        return self.file

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self.file is not None
        self.file.close()
        if kind is not None:
            os.unlink(self.path)


def _write_header(file: IO[bytes], plan: _Plan, keys: Mapping[str, signing.Ed25519PublicKey], period: Period,
                  now: datetime) -> None:
    used = {cp.key_id for cp in plan.checkpoints}
    file.write(_json_line({
        "type": EXPORT_TYPE, "version": EXPORT_VERSION, "algorithm": "Ed25519",
        "public_keys": {key_id: signing.public_key_b64(keys[key_id]) for key_id in sorted(used)},
        "first_seq": plan.first, "size": plan.size, "previous_hash": plan.previous,
        "checkpoints": len(plan.checkpoints), "records": plan.size - plan.first,
        "period": {"from": canonical.rfc3339(period.start), "to": canonical.rfc3339(period.end),
                   "first_seq": plan.period_first, "last_seq": plan.period_last},
        "exported_at": canonical.rfc3339(now)}))


def _write_records(conn: sa.Connection, file: IO[bytes], plan: _Plan) -> str:
    """The records as stored, one per line, chained as they go: a log that
    does not match its own end checkpoint is not handed over."""
    head = bytes.fromhex(plan.previous)
    expected = plan.first
    for seq, record in _records(conn, plan.first, plan.size):
        data = record.encode("utf-8")
        if seq != expected or b"\n" in data:
            raise LogDamaged(f"record {expected} is missing or damaged")
        head = chain.chain_hash(head, data)
        file.write(data + b"\n")
        expected += 1
    if expected != plan.size or head.hex() != plan.checkpoints[-1].head:
        raise LogDamaged(f"the records before {plan.size} do not match its checkpoint")
    return head.hex()


def _records(conn: sa.Connection, first: int, size: int) -> Iterator[tuple[int, str]]:
    query = (sa.select(audit_log.c.seq, audit_log.c.record)
             .where(audit_log.c.seq >= first, audit_log.c.seq < size).order_by(audit_log.c.seq))
    for part in conn.execution_options(yield_per=CHUNK_ROWS).execute(query).tuples().partitions():
        yield from part


def _json_line(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
