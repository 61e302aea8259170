"""The server's settings as the person installing it meets them: a misspelt
RENTGATE_* variable or a value that cannot be used stops `rentgate server`
(and every command that reads the settings) with what is wrong, what was
expected and the name meant; `rentgate server check-config` says the same
before start, exit 0 with a summary (passwords hidden) or 2 with the
problems, `--json` as the last line. Variables of the other parts are
never taken for mistakes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rentgate.cli import build_parser, main, walk
from server.settings import OTHER_VARIABLES, ServerSettings, load_settings, read_settings, redact, variable

TYPO = "RENTGATE_DATABSE_URL"  # deliberate: tests/test_settings_names.py knows it
SECRET = "s3cret-pw"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RENTGATE_* setting of the machine running the tests, and the
    default SQLite file (./var/rentgate.db) inside the test's folder."""
    for name in list(os.environ):
        if name.upper().startswith("RENTGATE_") and name not in OTHER_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- refusing to start


def test_a_misspelt_variable_stops_the_server_naming_the_one_meant(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv(TYPO, f"sqlite:///{tmp_path / 'prod.db'}")
    code, _, err = run(capsys, "--lang", "en", "server", "--port", "0")
    assert code == 2
    assert "the server did not start" in err
    assert f"{TYPO}: no such setting (a spelling mistake?); did you mean RENTGATE_DATABASE_URL?" in err
    # It stopped before touching any database: neither the meant one nor the default.
    assert not (tmp_path / "prod.db").exists() and not (tmp_path / "var").exists()


def test_the_same_in_chinese_by_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(TYPO, "sqlite:///x.db")
    code, _, err = run(capsys, "server")
    assert code == 2
    assert "设置有误，服务器没有启动" in err and "是不是 RENTGATE_DATABASE_URL？" in err


@pytest.mark.parametrize(("name", "value", "says"), [
    ("RENTGATE_HTTP_PORT", "eighty", "must be a whole number (given: eighty)"),
    ("RENTGATE_HTTP_PORT", "70000", "must be at most 65535 (given: 70000)"),
    ("RENTGATE_INGEST_BATCH_MESSAGES", "0", "must be at least 1 (given: 0)"),
    ("RENTGATE_SESSION_IDLE_HOURS", "-1", "must be greater than 0.0 (given: -1)"),
    ("RENTGATE_DATABASE_URL", f"mysql://rentgate:{SECRET}@db/rentgate",
     "only sqlite:/// and postgresql:// databases are supported (given: mysql://rentgate:***@db/rentgate)"),
])
def test_a_value_that_cannot_be_used_stops_the_server_saying_what_was_expected(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str,
        says: str) -> None:
    monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "--lang", "en", "server")
    assert code == 2 and f"{name}: {says}" in err
    assert SECRET not in err


def test_every_problem_is_named_at_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(TYPO, "sqlite:///x.db")
    monkeypatch.setenv("RENTGATE_HTTP_PORT", "eighty")
    monkeypatch.setenv("rentgate_media_dir", "/srv/media")
    code, _, err = run(capsys, "--lang", "en", "server")
    assert code == 2
    assert f"  {TYPO}: " in err and "  RENTGATE_HTTP_PORT: " in err
    assert "  rentgate_media_dir: variable names are upper case: RENTGATE_MEDIA_DIR" in err


def test_a_flag_that_cannot_be_used_is_named_as_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--lang", "en", "server", "--mqtt-url", f"http://server:{SECRET}@mqtt.example")
    assert code == 2 and "  --mqtt-url: " in err and SECRET not in err


def test_a_key_file_that_cannot_be_read_stops_the_server(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("RENTGATE_PII_KEY_FILE", str(tmp_path / "pii.kye"))
    code, _, err = run(capsys, "--lang", "en", "server")
    assert code == 2
    assert f"RENTGATE_PII_KEY_FILE: the identity-number key cannot be used: {tmp_path / 'pii.kye'} does not exist" \
        in err


def test_the_database_commands_refuse_the_same_typo(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`rentgate db upgrade` with the typo would otherwise build the default database."""
    monkeypatch.setenv(TYPO, f"sqlite:///{tmp_path / 'prod.db'}")
    for argv in (["db", "upgrade"], ["db", "current"], ["user", "list"]):
        code, _, err = run(capsys, "--lang", "en", *argv)
        assert code == 2 and "did you mean RENTGATE_DATABASE_URL?" in err, argv
    assert not (tmp_path / "var").exists()


# --------------------------------------------------------------------------- check-config


def test_check_config_summarises_with_passwords_hidden(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("RENTGATE_MQTT_URL", f"mqtts://server:{SECRET}@mqtt.example:8883")
    monkeypatch.setenv("RENTGATE_PUBLIC_URL", "https://rg.example.cn")
    monkeypatch.setenv("RENTGATE_SESSION_IDLE_HOURS", "8")
    code, out, err = run(capsys, "--lang", "en", "server", "check-config", "--port", "9090")
    assert code == 0 and err == ""
    assert out.startswith("the server's settings are fine")
    assert "mqtts://server:***@mqtt.example:8883 (RENTGATE_MQTT_URL)" in out
    assert "127.0.0.1:9090 (--port)" in out and "also set: RENTGATE_SESSION_IDLE_HOURS" in out
    assert f"generated beside the database in {tmp_path / 'var'}" in out
    assert SECRET not in out
    # Checking created nothing: no database, no key, no folder.
    assert list(tmp_path.iterdir()) == []


def test_check_config_json_is_the_last_line(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RENTGATE_MQTT_URL", f"mqtt://server:{SECRET}@127.0.0.1:1883")
    code, out, _ = run(capsys, "server", "--host", "0.0.0.0", "check-config", "--json")
    doc = last_json(out)
    assert code == 0 and doc["ok"] is True and doc["problems"] == []
    assert doc["settings"]["mqtt_url"] == "mqtt://server:***@127.0.0.1:1883" and SECRET not in out
    # A flag before the word check-config counts as well as one after it.
    assert doc["sources"]["http_host"] == "--host" and doc["settings"]["http_host"] == "0.0.0.0"
    assert doc["sources"]["mqtt_url"] == "RENTGATE_MQTT_URL" and doc["sources"]["http_port"] == "default"
    # The default public URL is loopback: a warning, not a problem.
    assert [w["code"] for w in doc["warnings"]] == ["not_public"]


def test_check_config_exit_2_with_every_problem(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    monkeypatch.setenv(TYPO, "sqlite:///x.db")
    monkeypatch.setenv("RENTGATE_PII_KEY", "/etc/rentgate/pii.key")
    code, out, err = run(capsys, "--lang", "en", "server", "check-config", "--json")
    doc = last_json(out)
    assert code == 2 and doc["ok"] is False and doc["settings"] is None
    assert {(p["name"], p["code"], p["suggestion"]) for p in doc["problems"]} == {
        (TYPO, "unknown_variable", "RENTGATE_DATABASE_URL"),
        ("RENTGATE_PII_KEY", "unknown_variable", "RENTGATE_PII_KEY_FILE")}
    assert "the server would not start" in err and "did you mean RENTGATE_PII_KEY_FILE?" in err


@pytest.mark.parametrize(("name", "content", "code", "says"), [
    ("RENTGATE_PII_KEY_FILE", "not base64!", "unreadable_file", "the identity-number key cannot be used"),
    ("RENTGATE_PLATE_KEY_FILE", "k1 short\n", "unreadable_file", "the plate-signing keyring cannot be used"),
    ("RENTGATE_ALLOWLIST_KEY_FILE", "-----BEGIN PRIVATE KEY-----\nxx\n", "unreadable_file",
     "the allowlist signing key cannot be used"),
    ("RENTGATE_RULES_FILE", "silence_day = 30\n", "bad_rules_file", "silence_day"),
    ("RENTGATE_MEDIA_DIR", "a file, not a folder", "not_a_folder", "is not a folder"),
])
def test_check_config_reads_what_the_settings_name(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str,
                                                   content: str, code: str, says: str) -> None:
    path = tmp_path / "named"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv(name, str(path))
    exit_code, out, err = run(capsys, "--lang", "en", "server", "check-config", "--json")
    problems = last_json(out)["problems"]
    assert exit_code == 2 and [(p["name"], p["code"]) for p in problems] == [(name, code)]
    assert says in problems[0]["message"] and says in err


def test_a_malformed_public_url_is_a_problem(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RENTGATE_PUBLIC_URL", "rg.example.cn")
    code, out, _ = run(capsys, "--lang", "en", "server", "check-config", "--json")
    assert code == 2
    assert last_json(out)["problems"][0]["message"] == (
        "the address plates' QR codes point at must start with https:// or http:// (given: rg.example.cn)")


def test_postgresql_without_key_files_starts_but_check_config_warns(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The documented degraded start (docs/registry-api.md): warnings, exit 0.
    Nothing connects to the database, so none needs to run."""
    monkeypatch.setenv("RENTGATE_DATABASE_URL", f"postgresql://rentgate:{SECRET}@db.invalid/rentgate")
    monkeypatch.setenv("RENTGATE_PUBLIC_URL", "https://rg.example.cn")
    code, out, err = run(capsys, "--lang", "en", "server", "check-config", "--json")
    doc = last_json(out)
    assert code == 0 and doc["ok"] is True
    assert sorted(w["name"] for w in doc["warnings"]) == [
        "RENTGATE_ALLOWLIST_KEY_FILE", "RENTGATE_AUDIT_KEY_FILE", "RENTGATE_GATEWAY_CA_DIR", "RENTGATE_MEDIA_DIR",
        "RENTGATE_PII_KEY_FILE", "RENTGATE_PLATE_KEY_FILE", "RENTGATE_POLICE_SIGNING_KEY_FILE"]
    assert "rentgate keys pii FILE" in err and SECRET not in out + err
    assert doc["settings"]["database_url"] == "postgresql+psycopg://rentgate:***@db.invalid/rentgate"


def test_other_parts_variables_are_not_mistakes(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for name in OTHER_VARIABLES:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("RENTGATE_LANG", "en")
    monkeypatch.setenv("RENTAL_AGENCY", "yes")  # another program's, however close its name
    monkeypatch.setenv("GATEWAY_INTERFACE", "CGI/1.1")
    code, out, _ = run(capsys, "server", "check-config", "--json")
    assert code == 0 and last_json(out)["ok"] is True


def test_check_config_is_a_server_subcommand_with_help() -> None:
    progs = {p.prog for p in walk(build_parser())}
    assert "rentgate server check-config" in progs


# --------------------------------------------------------------------------- the settings module


def test_a_misspelt_prefix_is_caught_but_only_when_the_rest_is_a_known_name() -> None:
    from server.settings import unknown_variables

    found = {p.name: p.suggestion for p in unknown_variables({
        "RENTGAET_MQTT_URL": "x", "RENGATE_PUBLIC_URL": "x", "RENTGAET_WHATEVER": "x", "PARENT_GATE": "x"})}
    assert found == {"RENTGAET_MQTT_URL": "RENTGATE_MQTT_URL", "RENGATE_PUBLIC_URL": "RENTGATE_PUBLIC_URL"}


def test_every_field_has_its_variable_and_a_new_field_is_known_at_once() -> None:
    loaded = read_settings({variable(f): "" for f in ServerSettings.model_fields})
    assert set(loaded.sources.values()) == {"default"}  # empty means unset, as before


def test_empty_variables_mean_unset_and_flags_win_over_the_environment() -> None:
    settings = load_settings({"RENTGATE_HTTP_PORT": "9000", "RENTGATE_HTTP_HOST": ""}, http_port=9100)
    assert settings.http_port == 9100 and settings.http_host == "127.0.0.1"


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtt://server:pw@host:1883", "mqtt://server:***@host:1883"),
    ("postgresql://u:p/w@d@h/db", "postgresql://u:***@h/db"),  # unescaped / and @: hide more, never less
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:///var/rentgate.db", "sqlite:///var/rentgate.db"),
])
def test_redaction(url: str, shown: str) -> None:
    assert redact(url) == shown
