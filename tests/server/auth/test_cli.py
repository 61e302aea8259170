"""``rentgate user ...`` as an operator runs it, against a real database."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import lang
from rentgate.cli import main
from server.auth.sessions import resolve_session
from server.auth.users import authenticate


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    last = json.loads(lines[-1]) if "--json" in argv and lines else None
    return code, last, err


def test_add_generates_a_password_once_and_it_logs_in(auth_db_url: str, auth_engine: sa.Engine,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = _run(capsys, "user", "add", "boss", "--role", "admin", "--name", "总管",
                        "--database-url", auth_db_url, "--json")
    assert code == 0 and doc["username"] == "boss" and len(doc["password"]) >= 16
    with auth_engine.connect() as conn:
        user = authenticate(conn, "boss", doc["password"])
    assert user is not None and (user.role, user.display_name) == ("admin", "总管")


def test_add_reads_the_password_from_stdin_and_refuses_short_ones(auth_db_url: str, auth_engine: sa.Engine,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = _run(capsys, "user", "add", "li", "--role", "landlord", "--password-stdin",
                        "--database-url", auth_db_url)
    assert err == "rentgate user add: 密码太短：至少要 8 个字符\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    code, doc, _ = _run(capsys, "user", "add", "li", "--role", "landlord", "--password-stdin",
                        "--database-url", auth_db_url, "--json")
    assert code == 0 and "password" not in doc
    with auth_engine.connect() as conn:
        assert authenticate(conn, "li", "long-enough-pw") is not None


def test_token_list_disable_and_revoke(auth_db_url: str, auth_engine: sa.Engine,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime, timedelta

    url = ("--database-url", auth_db_url)
    _run(capsys, "user", "add", "ops", "--role", "coordinator", *url)
    code, doc, _ = _run(capsys, "user", "token", "ops", "--label", "cron", "--days", "30", *url, "--json")
    assert code == 0 and doc["label"] == "cron" and doc["expires_at"]
    now = datetime.now(UTC)
    with auth_engine.connect() as conn:
        resolved = resolve_session(conn, doc["token"], now, idle=timedelta(hours=1))
        assert resolved is not None and resolved.kind == "token"
        assert resolve_session(conn, doc["token"], now + timedelta(days=31), idle=timedelta(hours=1)) is None

    code, listing, _ = _run(capsys, "user", "list", *url, "--json")
    assert [(u["username"], u["role"], u["disabled_at"]) for u in listing["users"]] == [("ops", "coordinator", None)]

    code, revoked, _ = _run(capsys, "user", "revoke", "ops", "--label", "cron", *url, "--json")
    assert revoked["revoked"] == 1
    with auth_engine.connect() as conn:
        assert resolve_session(conn, doc["token"], now, idle=timedelta(hours=1)) is None

    assert _run(capsys, "user", "disable", "ops", *url)[0] == 0
    code, _, err = _run(capsys, "user", "token", "ops", *url)
    assert code == 2 and "ops 已停用" in err
    assert _run(capsys, "user", "list", *url, "--json")[1]["users"][0]["disabled_at"] is not None


def test_unknown_user_and_unmigrated_database_are_clear_errors(auth_db_url: str, tmp_path: Any,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "user", "disable", "ghost", "--database-url", auth_db_url)
    assert code == 2 and "ghost" in err
    assert "没有用户 ghost" in err
    code, _, err = _run(capsys, "user", "list", "--database-url", f"sqlite:///{tmp_path}/new/empty.db")
    assert code == 2 and f"rentgate db upgrade --database-url sqlite:///{tmp_path}/new/empty.db" in err
    # The refusal created nothing: no empty database, no folder for it.
    assert not (tmp_path / "new").exists()


@pytest.fixture
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lang, "_chosen", None)
    monkeypatch.setenv(lang.LANG_ENV, "en")


def test_messages_in_english_say_what_to_do_without_ids(auth_db_url: str, english: None,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--database-url", auth_db_url)
    assert main(["user", "add", "boss", "--role", "admin", *url]) == 0
    assert capsys.readouterr().out.startswith("created boss, an administrator\n")
    assert main(["user", "add", "wang", "--role", "coordinator", *url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("created wang, a grid coordinator\npassword: ") and "(id" not in out
    code, _, err = _run(capsys, "user", "add", "wang", "--role", "police", *url)
    assert (code, err) == (2, "rentgate user add: the user wang exists already: choose another username\n")
    code, _, err = _run(capsys, "user", "add", "王 五", "--role", "police", *url)
    assert code == 2 and "username: " not in err and "a username is 1 to 64 letters" in err
    assert main(["user", "token", "wang", *url]) == 0 and main(["user", "token", "wang", "--label", "b", *url]) == 0
    capsys.readouterr()
    assert main(["user", "revoke", "wang", *url]) == 0
    assert capsys.readouterr().out == "revoked 2 tokens of wang\n"
    assert main(["user", "revoke", "wang", *url]) == 0
    assert capsys.readouterr().out == "revoked 0 tokens of wang\n"
    assert main(["user", "list", *url]) == 0
    listing = capsys.readouterr().out
    assert "an administrator" in listing and "a grid coordinator" in listing
