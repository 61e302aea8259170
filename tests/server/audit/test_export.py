"""Exports: a period written with its anchors verifies on its own; each
kind of tampering with the file is caught."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.audit.entries import AuditEntry
from server.audit.export import NothingToExport, Period, export_period
from server.audit.keys import AuditKey
from server.audit.verify import verify_export
from server.web.transactions import write_transaction
from tests.server.audit.helpers import T0, build_timed_log, new_key
from tests.server.audit.tampering import (
    changed,
    deleted,
    end_checkpoint_dropped,
    first_record_dropped_and_header_moved,
    header_dropped,
    last_record_dropped,
    last_record_dropped_and_header_shrunk,
    line_added,
    no_final_newline,
    previous_hash_changed,
    record_line,
    reordered,
)

Lines = list[bytes]


@pytest.fixture
def key() -> AuditKey:
    return new_key()


@pytest.fixture
def logged(engine: sa.Engine, key: AuditKey) -> sa.Engine:
    build_timed_log(engine, key)  # records 0..29 an hour apart, checkpoints at 10, 20, 30
    return engine


def hours(a: int, b: int) -> Period:
    return Period(T0 + timedelta(hours=a), T0 + timedelta(hours=b))


def lines_of(path: Path) -> Lines:
    return path.read_bytes().splitlines(keepends=True)


def problem(lines: Lines, key: AuditKey) -> tuple[str | None, int | None]:
    report = verify_export(lines, key.public_key)
    return (None, None) if report.problem is None else (report.problem.code, report.problem.seq)


def test_an_export_is_anchored_at_the_checkpoints_around_the_period(logged: sa.Engine, key: AuditKey,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    result = export_period(logged, key, hours(12, 18), out)
    assert (result.first_seq, result.size, result.period_first_seq, result.period_last_seq) == (10, 20, 12, 17)
    lines = lines_of(out)
    header = json.loads(lines[0])
    assert header["type"] == "rentgate-audit-export" and header["version"] == 1
    assert header["public_keys"] == {key.key_id: key.public_b64} and header["checkpoints"] == 2
    assert len(lines) == 1 + 2 + 10
    assert [json.loads(line)["seq"] for line in lines[3:]] == list(range(10, 20))
    report = verify_export(out, key.public_key)
    assert report.ok, report.problem
    assert (report.records, report.checkpoints, report.signed_size, report.notes) == (20, 2, 20, [])


def test_an_export_from_the_start_and_one_past_the_last_checkpoint(logged: sa.Engine, key: AuditKey,
                                                                   tmp_path: Path) -> None:
    build_timed_log(logged, key, records=3, start=30, checkpoint_every=1000)  # 30..32, not signed yet
    whole = export_period(logged, key, hours(-1, 40), tmp_path / "all.jsonl")
    assert (whole.first_seq, whole.size) == (0, 33)  # the export signed a checkpoint at 33 first
    assert json.loads(lines_of(tmp_path / "all.jsonl")[0])["previous_hash"] == "0" * 64
    assert verify_export(tmp_path / "all.jsonl", key.public_key).ok


def test_records_with_line_separators_in_them_stay_one_line(engine: sa.Engine, key: AuditKey, tmp_path: Path) -> None:
    tricky = AuditEntry(actor="user:1", action="pii.view", detail={"note": "a\u2028b\u2029c\x85d\re\nf"})
    with write_transaction(engine) as conn:
        from server.audit import store

        store.append_in(conn, [tricky, tricky], now=T0)
    export_period(engine, key, hours(-1, 1), tmp_path / "x.jsonl")
    assert verify_export(tmp_path / "x.jsonl", key.public_key).ok


def test_an_empty_period_is_refused(logged: sa.Engine, key: AuditKey, tmp_path: Path) -> None:
    with pytest.raises(NothingToExport):
        export_period(logged, key, hours(100, 200), tmp_path / "none.jsonl")
    assert not (tmp_path / "none.jsonl").exists()


def test_an_existing_file_is_never_overwritten(logged: sa.Engine, key: AuditKey, tmp_path: Path) -> None:
    out = tmp_path / "keep.jsonl"
    out.write_text("mine")
    with pytest.raises(FileExistsError):
        export_period(logged, key, hours(12, 18), out)
    assert out.read_text() == "mine"


# ------------------------------------------------------------------ tampering


@pytest.fixture
def exported(logged: sa.Engine, key: AuditKey, tmp_path: Path) -> Lines:
    export_period(logged, key, hours(12, 28), tmp_path / "audit.jsonl")  # records 10..29, checkpoints 10, 20, 30
    lines = lines_of(tmp_path / "audit.jsonl")
    assert verify_export(lines, key.public_key).ok
    return lines


@pytest.mark.parametrize(("tamper", "code", "seq"), [
    (changed, "checkpoint_mismatch", 19),
    (deleted, "missing_record", 14),
    (reordered, "missing_record", 14),
    (header_dropped, "bad_header", None),
    (last_record_dropped, "ends_early", 29),
    (first_record_dropped_and_header_moved, "missing_anchor", 11),
    (last_record_dropped_and_header_shrunk, "missing_anchor", 28),
    (end_checkpoint_dropped, "missing_anchor", 29),
    (line_added, "extra_lines", 30),
    (previous_hash_changed, "checkpoint_mismatch", 9),
    (no_final_newline, "ends_early", 29),
])
def test_a_tampered_export_fails(exported: Lines, key: AuditKey, tamper: Callable[[Lines], Lines], code: str,
                                 seq: int | None) -> None:
    assert problem(tamper(exported), key) == (code, seq)


def test_a_reordered_pair_is_reported_as_moved_where_the_seq_goes_back(exported: Lines, key: AuditKey) -> None:
    i = record_line(exported, 14)
    swapped = [*exported[:i], exported[i + 2], exported[i + 1], exported[i], *exported[i + 3:]]
    assert problem(swapped, key) == ("missing_record", 14)
    assert problem([*exported[:i], exported[i + 1], exported[i + 1], *exported[i + 2:]], key) == ("missing_record", 14)
    assert problem([*exported[:i], exported[i - 1], *exported[i:]], key) == ("record_moved", 14)


def test_a_file_re_signed_with_another_key_passes_only_unpinned(exported: Lines, key: AuditKey) -> None:
    """Someone rewrote the records and re-signed every checkpoint with a key
    of their own, naming it in the header: the file agrees with itself, so
    only the operator's published key tells."""
    from server.audit import chain
    from server.audit.store import Checkpoint

    forger = new_key()
    header = json.loads(exported[0])
    records = [line.replace(b"A-14", b"A-99") for line in exported[4:]]
    head, heads = bytes.fromhex(header["previous_hash"]), {}
    for n, line in enumerate(records, start=10):
        head = chain.chain_hash(head, line[:-1])
        heads[n + 1] = head.hex()
    heads[10] = header["previous_hash"]
    checkpoints = []
    for line in exported[1:4]:
        old = json.loads(line)
        cp = Checkpoint(old["size"], heads[old["size"]], T0, forger.key_id, "")
        cp = Checkpoint(cp.size, cp.head, cp.at, cp.key_id, forger.sign(cp.message()))
        checkpoints.append(json.dumps({"type": "checkpoint", **cp.as_json()}).encode() + b"\n")
    header["public_keys"] = {forger.key_id: forger.public_b64}
    forged = [json.dumps(header).encode() + b"\n", *checkpoints, *records]
    unpinned = verify_export(forged)
    assert unpinned.ok and unpinned.notes == ["keys_from_file"] and unpinned.key_ids == {forger.key_id}
    assert problem(forged, key) == ("checkpoint_unknown_key", 9)
