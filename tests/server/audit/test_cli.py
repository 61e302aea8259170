"""``rentgate audit ...`` as an operator runs it, on SQLite and PostgreSQL:
exit codes, --json as the last line, sentences on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import signing
from rentgate.cli import main
from server.audit import store
from server.audit.keys import AuditKey, from_private
from server.db.models import audit_log
from server.web.transactions import write_transaction
from tests.server.audit.helpers import build_timed_log, entry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    doc = json.loads(lines[-1]) if "--json" in argv and lines else None
    return code, doc, out, err


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditKey:
    """The server's key, where RENTGATE_AUDIT_KEY_FILE says (as on PostgreSQL)."""
    private = signing.generate_private_key()
    path = tmp_path / "keys" / "audit.pem"
    path.parent.mkdir()
    path.write_text(signing.private_key_pem(private))
    monkeypatch.setenv("RENTGATE_AUDIT_KEY_FILE", str(path))
    return from_private(private)


@pytest.fixture
def logged(engine: sa.Engine, key: AuditKey) -> sa.Engine:
    build_timed_log(engine, key)  # 30 records from 2026-11-01 00:00 UTC, an hour apart; checkpoints 10, 20, 30
    return engine


def test_verify_says_intact_and_prints_one_json_object(logged: sa.Engine, database_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _, _ = run(capsys, "audit", "verify", "--database-url", database_url, "--json")
    assert code == 0 and doc["ok"] is True and (doc["records"], doc["checkpoints"]) == (30, 3)
    assert doc["database"]
    code, _, out, _ = run(capsys, "audit", "verify", "--database-url", database_url)
    assert code == 0 and out.startswith("审计日志完整：30 条记录")
    code, _, out, _ = run(capsys, "--lang", "en", "audit", "verify", "--database-url", database_url)
    assert code == 0 and out.startswith("the audit log is intact: 30 records")


def test_verify_fails_with_exit_1_naming_the_record(logged: sa.Engine, database_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with logged.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 12))
    code, doc, _, err = run(capsys, "audit", "verify", "--database-url", database_url, "--json")
    assert code == 1 and doc["ok"] is False
    assert (doc["problem"]["code"], doc["problem"]["seq"]) == ("missing_record", 12)
    assert "第 12 条记录不见了" in err
    code, _, out, _ = run(capsys, "--lang", "en", "audit", "verify", "--database-url", database_url)
    assert code == 1 and "record 12 is missing" in out and "FAILED" in out


def test_verify_needs_the_public_key_when_this_machine_has_none(logged: sa.Engine, database_url: str, key: AuditKey,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RENTGATE_AUDIT_KEY_FILE")
    code, doc, _, err = run(capsys, "audit", "verify", "--database-url", database_url, "--json")
    assert code == 1 and doc["problem"]["code"] == "checkpoint_unknown_key" and "--public-key" in err
    code, doc, _, _ = run(capsys, "audit", "verify", "--database-url", database_url, "--public-key", key.public_b64,
                          "--json")
    assert code == 0 and doc["key_ids"] == [key.key_id]


def test_export_then_verify_export(logged: sa.Engine, database_url: str, key: AuditKey, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nov.jsonl"
    # 2026-11-01 in Asia/Shanghai is 2026-10-31T16:00Z to 2026-11-01T16:00Z: records 0..15.
    code, doc, _, _ = run(capsys, "audit", "export", "--from", "2026-11-01", "--to", "2026-11-01", "--out", str(out),
                          "--database-url", database_url, "--json")
    assert code == 0, doc
    assert (doc["first_seq"], doc["size"], doc["period_first_seq"], doc["period_last_seq"]) == (0, 20, 0, 15)
    assert doc["key_id"] == key.key_id and doc["public_key"] == key.public_b64
    code, doc, _, err = run(capsys, "audit", "verify-export", str(out), "--public-key", key.public_b64, "--json")
    assert code == 0 and doc["ok"] and doc["pinned"] and doc["records"] == 20 and err == ""
    code, doc, _, err = run(capsys, "audit", "verify-export", str(out), "--json")
    assert code == 0 and not doc["pinned"] and "注意" in err  # the file's own key: says what that proves
    out.write_bytes(out.read_bytes().replace(b"A-3\"", b"A-9\""))
    code, doc, _, err = run(capsys, "audit", "verify-export", str(out), "--public-key", key.public_b64, "--json")
    assert code == 1 and doc["problem"]["code"] == "checkpoint_mismatch" and err


def test_export_by_rfc3339_times(logged: sa.Engine, database_url: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A time with an offset is that instant; one without is the city's time."""
    for n, (start, end) in enumerate([("2026-11-01T12:00:00Z", "2026-11-01T22:00:00+08:00"),
                                      ("2026-11-01T20:00:00", "2026-11-01T14:00:00.000000Z")]):
        code, doc, _, _ = run(capsys, "audit", "export", "--from", start, "--to", end, "--out",
                              str(tmp_path / f"{n}.jsonl"), "--database-url", database_url, "--json")
        assert code == 0 and (doc["period_first_seq"], doc["period_last_seq"]) == (12, 13)
        assert (doc["first_seq"], doc["size"]) == (10, 20)


def test_export_never_overwrites(logged: sa.Engine, database_url: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old.jsonl"
    out.write_text("earlier export")
    code, _, _, err = run(capsys, "audit", "export", "--from", "2026-11-01", "--to", "2026-11-02", "--out", str(out),
                          "--database-url", database_url)
    assert code == 2 and "已经存在" in err and out.read_text() == "earlier export"


@pytest.mark.parametrize(("start", "end", "says"), [
    ("2026-11-31", "2026-12-01", "请写日期"),
    ("yesterday", "2026-12-01", "请写日期"),
    ("2026-12-01", "2026-11-01", "必须早于"),
    ("2027-01-01", "2027-02-01", "没有可导出的记录"),
])
def test_export_refuses_a_period_it_cannot_use(logged: sa.Engine, database_url: str, tmp_path: Path, start: str,
                                               end: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.jsonl"
    code, _, _, err = run(capsys, "audit", "export", "--from", start, "--to", end, "--out", str(out),
                          "--database-url", database_url)
    assert code == 2 and says in err and not out.exists()


def test_checkpoint_signs_only_when_the_log_grew(logged: sa.Engine, database_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _, _ = run(capsys, "audit", "checkpoint", "--database-url", database_url, "--json")
    assert code == 0 and doc["created"] is False and doc["checkpoint"]["size"] == 30
    with write_transaction(logged) as conn:
        store.append_in(conn, [entry(30)])
    code, doc, _, _ = run(capsys, "audit", "checkpoint", "--database-url", database_url, "--json")
    assert code == 0 and doc["created"] is True and doc["checkpoint"]["size"] == 31


def test_public_key(key: AuditKey, sqlite_engine: sa.Engine, sqlite_url: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _, _ = run(capsys, "audit", "public-key", "--database-url", sqlite_url, "--json")
    assert code == 0 and (doc["key_id"], doc["public_key"]) == (key.key_id, key.public_b64)


def test_sqlite_generates_its_key_beside_the_database(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with write_transaction(sqlite_engine) as conn:
        store.append_in(conn, [entry(0)])
    code, doc, _, _ = run(capsys, "audit", "checkpoint", "--database-url", sqlite_url, "--json")
    assert code == 0 and doc["created"] and (tmp_path / "audit-key.pem").exists()
    code, doc, _, _ = run(capsys, "audit", "verify", "--database-url", sqlite_url, "--json")
    assert code == 0 and doc["checkpoints"] == 1


def test_postgresql_without_a_key_cannot_export(postgres_url: str, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    from server.db import migrate
    from server.db.engine import create_engine

    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    engine.dispose()
    code, _, _, err = run(capsys, "audit", "export", "--from", "2026-11-01", "--to", "2026-11-02", "--out",
                          str(tmp_path / "x.jsonl"), "--database-url", postgres_url)
    assert code == 2 and "RENTGATE_AUDIT_KEY_FILE" in err


def test_a_database_that_is_not_there_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'nothing' / 'here.db'}"
    code, _, _, err = run(capsys, "audit", "verify", "--database-url", url)
    assert code == 2 and "rentgate db upgrade" in err and not (tmp_path / "nothing").exists()


def test_verify_export_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _, err = run(capsys, "audit", "verify-export", str(tmp_path / "none.jsonl"))
    assert code == 2 and "找不到文件" in err
