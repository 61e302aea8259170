"""Verification of the log in the database and of an export file
(docs/audit.md, "Verifying"). Both walk the chain from its start or from a
signed anchor, recompute every hash from the record text, and compare it with
every signed checkpoint they pass; both stop at the first problem.

The database walk is the one that must be fast (a million records in a few
seconds): rows come in chunks from a server-side cursor and the loop does two
SHA-256 calls and a few string operations per record, in one function."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rentgate import signing
from server.audit import chain, problems, store
from server.audit.keys import key_id_of
from server.audit.report import Report

EXPORT_TYPE = "rentgate-audit-export"
EXPORT_VERSION = 1
CHUNK_ROWS = 20_000
PublicKeys = Mapping[str, signing.Ed25519PublicKey]
_SEQ_KEY = ',"seq":'
_HEX = frozenset("0123456789abcdef")


# ---------------------------------------------------------------- the database


def verify_database(engine: sa.Engine, public_keys: PublicKeys | None = None) -> Report:
    """Every record, checkpoint and the head row, in one snapshot, so that
    appends going on meanwhile are simply not seen."""
    keys = public_keys or {}
    with store.snapshot(engine) as conn:
        head = store.read_head(conn)
        checkpoints = store.checkpoints_between(conn, 0, 2**63 - 1)
        report = _walk_database(_row_chunks(conn), checkpoints, keys)
    if report.ok:
        _check_beyond(report, checkpoints, keys)
    if report.ok:
        _check_head(report, head)
    return report


def _row_chunks(conn: sa.Connection) -> Iterator[Sequence[tuple[int, str, str]]]:
    """(seq, record, hash) in seq order, in chunks, straight from the
    driver's cursor: SQLAlchemy's rows cost a second per million here. On
    PostgreSQL a named (server-side) cursor, so the log is never held in
    memory whole; it reads in the snapshot's transaction."""
    driver: Any = conn.connection.driver_connection
    query = "SELECT seq, record, hash FROM audit_log ORDER BY seq"
    cursor = driver.cursor("audit_verify") if conn.dialect.name == "postgresql" else driver.cursor()
    try:
        cursor.execute(query)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            yield rows
    finally:
        cursor.close()


def _walk_database(chunks: Iterable[Sequence[tuple[int, str, str]]], checkpoints: list[store.Checkpoint],
                   keys: PublicKeys) -> Report:
    report = Report()
    pending = [c for c in checkpoints if c.size > 0]
    expected, head, index = 0, chain.EMPTY_HEAD, 0
    # The seq at which the next checkpoint is due (-1: none left).
    due = pending[0].size - 1 if pending else -1
    sha256 = hashlib.sha256
    for rows in chunks:
        for seq, record, stored in rows:
            if seq != expected:
                return _done(report, expected, head).fail("missing_record", expected,
                                                          problems.missing_record(expected, seq))
            data = record.encode("utf-8")
            head = sha256(b"\x01" + head + sha256(b"\x00" + data).digest()).digest()
            # The record's own seq, found without parsing it: in canonical
            # JSON (sorted keys, no spaces) the last ',"seq":' is the
            # top-level one, since "seq" sorts after "detail" and "purpose"
            # (the only members that can hold objects) and a quote inside a
            # string is escaped. Anything odd goes to the full parse below.
            at = record.rfind(_SEQ_KEY) + 7
            if at < 7 or record[at:record.find(",", at)] != str(seq) or head.hex() != stored:
                return _diagnose(_done(report, seq, head), seq, record, head.hex() != stored)
            if seq == due:
                cp = pending[index]
                if not _checkpoint_holds(report, cp, head.hex(), keys, since=report.signed_size):
                    return _done(report, seq + 1, head)
                index += 1
                due = pending[index].size - 1 if index < len(pending) else -1
            expected += 1
    return _done(report, expected, head)


def _done(report: Report, records: int, head: bytes) -> Report:
    report.records, report.head = records, head.hex()
    return report


def _diagnose(report: Report, seq: int, record: str, hash_differs: bool) -> Report:
    """The slow path, for a record already known to be wrong: why."""
    try:
        doc = json.loads(record)
    except ValueError as exc:
        return report.fail("record_unreadable", seq, problems.record_unreadable(seq, f"not JSON: {exc}"))
    claimed = doc.get("seq") if isinstance(doc, dict) else None
    if not isinstance(claimed, int):
        return report.fail("record_unreadable", seq, problems.record_unreadable(seq, "no seq"))
    if claimed != seq:
        return report.fail("record_moved", seq, problems.record_moved(seq, claimed))
    if hash_differs:
        return report.fail("record_changed", seq, problems.record_changed(seq))
    return report.fail("record_unreadable", seq, problems.record_unreadable(seq, "not in canonical form"))


def _checkpoint_holds(report: Report, cp: store.Checkpoint, head: str, keys: PublicKeys, *, since: int) -> bool:
    """Signature first (a forged checkpoint says nothing about records),
    then its head against the one recomputed at its size."""
    if not _signature_holds(report, cp, keys):
        return False
    if cp.head != head:
        report.fail("checkpoint_mismatch", cp.size - 1, problems.checkpoint_mismatch(cp.size, since), cp.size)
        return False
    report.checkpoints += 1
    report.signed_size = cp.size
    report.key_ids.add(cp.key_id)
    return True


def _signature_holds(report: Report, cp: store.Checkpoint, keys: PublicKeys) -> bool:
    if cp.key_id not in keys:
        report.fail("checkpoint_unknown_key", cp.size - 1, problems.checkpoint_unknown_key(cp.size, cp.key_id),
                    cp.size)
        return False
    if not signing.verify(cp.message(), cp.signature, keys, cp.key_id):
        report.fail("checkpoint_signature", cp.size - 1, problems.checkpoint_signature(cp.size, cp.key_id), cp.size)
        return False
    return True


def _check_beyond(report: Report, checkpoints: list[store.Checkpoint], keys: PublicKeys) -> None:
    """A genuine checkpoint past the last record proves the tail was cut."""
    for cp in checkpoints:
        if cp.size > report.records and _signature_holds(report, cp, keys):
            report.fail("truncated", report.records, problems.truncated(report.records, cp.size), cp.size)
            return


def _check_head(report: Report, head: store.Head | None) -> None:
    if head is None:
        if report.records:
            report.fail("head_mismatch", report.records, problems.head_mismatch(report.records, 0))
        return
    if head.size != report.records or (head.size and head.head != report.head):
        report.fail("head_mismatch", min(head.size, report.records),
                    problems.head_mismatch(report.records, head.size))


# ---------------------------------------------------------------- an export file


def verify_export(source: str | Path | Iterable[bytes],
                  public_key: signing.Ed25519PublicKey | PublicKeys | None = None) -> Report:
    """An export file (or its lines as bytes). ``public_key`` pins the key(s)
    checkpoints must be signed with; without it the keys named in the file's
    header are used, and the report's notes say that they were not pinned."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as file:
            return _verify_lines(iter(file), public_key)
    return _verify_lines(iter(source), public_key)


def _verify_lines(lines: Iterator[bytes], pinned: signing.Ed25519PublicKey | PublicKeys | None) -> Report:
    report = Report()
    header = _header(next(lines, b""), report)
    if header is None:
        return report
    keys = _export_keys(header, pinned, report)
    checkpoints = _export_checkpoints(lines, int(header["checkpoints"]), keys, report)
    if checkpoints is None:
        return report
    first, size, previous = int(header["first_seq"]), int(header["size"]), str(header["previous_hash"])
    by_size = {cp.size: cp for cp in checkpoints}
    if not _anchors(report, by_size, first, size, previous):
        return report
    if _export_records(lines, report, first, size, previous, by_size) and next(lines, None) is not None:
        report.fail("extra_lines", size, problems.not_an_export(f"lines after record {size - 1}"))
    return report


_HEADER_FIELDS = {"type": str, "version": int, "first_seq": int, "size": int, "previous_hash": str,
                  "public_keys": dict, "checkpoints": int}


def _header(line: bytes, report: Report) -> dict[str, Any] | None:
    doc = _json_line(line)
    if not isinstance(doc, dict) or doc.get("type") != EXPORT_TYPE:
        report.fail("bad_header", None, problems.not_an_export("the first line is not its header"))
        return None
    wrong = [name for name, kind in _HEADER_FIELDS.items() if not isinstance(doc.get(name), kind)
             or isinstance(doc.get(name), bool)]
    if wrong or doc["version"] != EXPORT_VERSION:
        why = f"header fields {', '.join(wrong)}" if wrong else f"format version {doc['version']}"
        report.fail("bad_header", None, problems.not_an_export(why))
        return None
    if not 0 <= doc["first_seq"] < doc["size"] or not _is_hash(doc["previous_hash"]) or doc["checkpoints"] < 1:
        report.fail("bad_header", None, problems.not_an_export("header values out of range"))
        return None
    return doc


def _export_keys(header: Mapping[str, Any], pinned: signing.Ed25519PublicKey | PublicKeys | None,
                 report: Report) -> dict[str, signing.Ed25519PublicKey]:
    if isinstance(pinned, signing.Ed25519PublicKey):
        return {key_id_of(signing.public_key_b64(pinned)): pinned}
    if pinned is not None:
        return dict(pinned)
    keys: dict[str, signing.Ed25519PublicKey] = {}
    for key_id, text in header["public_keys"].items():
        try:
            key = signing.load_public_key(str(text))
        except signing.SigningKeyError:
            continue
        # An id that is not the key's own would let one key pose as another.
        if key_id_of(signing.public_key_b64(key)) == key_id:
            keys[key_id] = key
    report.notes.append("keys_from_file")
    return keys


def _export_checkpoints(lines: Iterator[bytes], count: int, keys: PublicKeys,
                        report: Report) -> list[store.Checkpoint] | None:
    found: list[store.Checkpoint] = []
    for _ in range(count):
        cp = _checkpoint_line(next(lines, b""))
        if cp is None or (found and cp.size <= found[-1].size):
            report.fail("bad_line", None, problems.not_an_export(f"checkpoint line {len(found) + 1} of {count}"))
            return None
        if not _signature_holds(report, cp, keys):
            return None
        found.append(cp)
    return found


def _checkpoint_line(line: bytes) -> store.Checkpoint | None:
    doc = _json_line(line)
    if not isinstance(doc, dict) or doc.get("type") != "checkpoint":
        return None
    size, head, at, key_id, signature = (doc.get(k) for k in ("size", "head", "at", "key_id", "signature"))
    if (not isinstance(size, int) or isinstance(size, bool) or size < 0 or not _is_hash(head)
            or not isinstance(at, str) or not isinstance(key_id, str) or not isinstance(signature, str)):
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    cp = store.Checkpoint(size, str(head), when, key_id, signature)
    # The signed text is the line's own "at": a re-spelt time would not verify.
    return cp if cp.at_text == at else None


def _anchors(report: Report, by_size: Mapping[int, store.Checkpoint], first: int, size: int, previous: str) -> bool:
    if first == 0 and previous != chain.EMPTY_HEAD_HEX:
        report.fail("bad_header", 0, problems.not_an_export("a log's first record chains to 64 zeros"))
        return False
    if first > 0 and first not in by_size:
        report.fail("missing_anchor", first, problems.missing_anchor(first))
        return False
    if first > 0 and by_size[first].head != previous:
        report.fail("checkpoint_mismatch", first - 1, problems.checkpoint_mismatch(first, first), first)
        return False
    if size not in by_size:
        report.fail("missing_anchor", size - 1, problems.missing_anchor(size))
        return False
    outside = [s for s in by_size if not first <= s <= size]
    if outside:
        report.fail("bad_line", None, problems.not_an_export(f"a checkpoint at size {outside[0]} outside the file"))
        return False
    report.records = report.signed_size = first
    report.checkpoints = 1 if first > 0 else 0
    report.key_ids.update(cp.key_id for cp in by_size.values())
    return True


def _export_records(lines: Iterator[bytes], report: Report, first: int, size: int, previous: str,
                    by_size: Mapping[int, store.Checkpoint]) -> bool:
    head = bytes.fromhex(previous)
    since = first
    for seq in range(first, size):
        line = next(lines, None)
        if line is None or not line.endswith(b"\n"):
            report.fail("ends_early", seq, problems.ends_early(seq, size))
            return False
        data = line[:-1]
        doc = _json_line(line)
        claimed = doc.get("seq") if isinstance(doc, dict) else None
        if not isinstance(claimed, int) or isinstance(claimed, bool):
            report.fail("record_unreadable", seq, problems.record_unreadable(seq, "not a JSON object with a seq"))
            return False
        if claimed != seq:
            report.fail("missing_record" if claimed > seq else "record_moved", seq, problems.out_of_place(seq, claimed))
            return False
        head = chain.chain_hash(head, data)
        report.records, report.head = seq + 1, head.hex()
        cp = by_size.get(seq + 1)
        if cp is not None:
            if cp.head != report.head:
                report.fail("checkpoint_mismatch", seq, problems.checkpoint_mismatch(cp.size, since), cp.size)
                return False
            report.checkpoints += 1
            report.signed_size = since = cp.size
    return True


def _json_line(line: bytes) -> Any:
    if not line.endswith(b"\n"):
        return None
    try:
        return json.loads(line[:-1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX

