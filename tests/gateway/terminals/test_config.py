"""The [[terminals]] tables of a gateway config."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.terminals.errors import TerminalError
from rentgate import signing

KEY = signing.public_key_b64(signing.generate_private_key().public_key())
HEAD = f"""gateway_id = "gw-1"
mqtt_url = "mqtt://127.0.0.1:1883"
data_dir = "var"

[access]
public_keys = {{ k1 = "{KEY}" }}
"""
TERMINAL = """
[[terminals]]
id = "k1t-main"
url = "http://192.168.1.64"
password_file = "secrets/k1t.pw"
doors = ["main-door"]
"""


def test_a_terminal_with_its_password_in_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k1t.pw").write_text("s3cret\n")
    path = tmp_path / "gateway.toml"
    path.write_text(HEAD + TERMINAL)
    config = load_config(path)
    terminal = config.terminals[0]
    assert terminal.password() == "s3cret" and terminal.foreign_users == "keep" and terminal.login_retry_s == 600
    assert "s3cret" not in repr(config)


def test_the_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEAD + TERMINAL.replace('password_file = "secrets/k1t.pw"', 'password_env = "RENTGATE_SECRET_K1T"')
    terminal = parse_config(text).terminals[0]
    monkeypatch.delenv("RENTGATE_SECRET_K1T", raising=False)
    with pytest.raises(TerminalError, match="RENTGATE_SECRET_K1T is not set"):
        terminal.password()
    monkeypatch.setenv("RENTGATE_SECRET_K1T", "from-env")
    assert terminal.password() == "from-env"
    # Only that family: a configuration (a remote one too) cannot name any
    # other variable of the gateway's environment.
    with pytest.raises(ConfigError, match="RENTGATE_SECRET_"):
        parse_config(HEAD + TERMINAL.replace('password_file = "secrets/k1t.pw"',
                                             'password_env = "AWS_SECRET_ACCESS_KEY"'))


@pytest.mark.parametrize(("change", "problem"), [
    (('url = "http://192.168.1.64"', 'url = "http://admin:pw@192.168.1.64"'), "no login in the URL"),
    (('url = "http://192.168.1.64"', 'url = "ftp://192.168.1.64"'), "http(s)://host"),
    (('doors = ["main-door"]', "doors = []"), "doors"),
    (('password_file = "secrets/k1t.pw"', ""), "exactly one of password_file and password_env"),
    (('doors = ["main-door"]', 'doors = ["main-door"]\ntimezone = "Mars/Olympus"'), "unknown time zone"),
    (('doors = ["main-door"]', 'doors = ["main-door"]\nforeign_users = "wipe"'), "foreign_users"),
    (('doors = ["main-door"]', 'doors = ["main-door"]\npasword = "x"'), "pasword"),
])
def test_bad_terminal_settings_name_the_key(change: tuple[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(HEAD + TERMINAL.replace(*change))
    assert problem in str(err.value)
    assert any(p.path.startswith("terminals.0") for p in err.value.problems)


def test_terminals_need_the_allowlist_and_their_own_ids() -> None:
    with pytest.raises(ConfigError, match="public_keys"):
        parse_config(HEAD.split("[access]")[0] + TERMINAL)
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config(HEAD + TERMINAL + TERMINAL)


def test_no_terminals_is_the_default() -> None:
    assert parse_config(HEAD).terminals == []


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[3] / "gateway" / "examples" / "terminals-gateway.toml"
    config = load_config(example)
    assert [t.id for t in config.terminals] == ["k1t-main-door"]


LISTENER = """
[[devices]]
type = "hikvision_isapi"
id = "hik-listener"
port = 8099
"""
STREAM = """
[[devices]]
type = "hikvision_stream"
id = "k1t-stream"
url = "http://192.168.1.64"
password_file = "secrets/k1t.pw"
"""


def test_pushed_events_must_be_reported_under_the_terminals_id_when_missed_ones_are_fetched(
        caplog: pytest.LogCaptureFixture) -> None:
    # A listener that reports every terminal as itself: each pushed event
    # would be stored again by the catch-up, under the terminal's id.
    with pytest.raises(ConfigError, match="route the terminal to its id"):
        parse_config(HEAD + LISTENER + TERMINAL + "catch_up_events = true\n")
    with pytest.raises(ConfigError, match="also streamed"):
        parse_config(HEAD + STREAM + TERMINAL + "catch_up_events = true\n")
    routed = LISTENER + '[devices.terminals."192.168.1.64"]\ndevice = "k1t-main"\ndoor = "main-door"\n'
    assert parse_config(HEAD + routed + TERMINAL).terminals[0].catch_up_events
    # A configuration from before catch-up was the default still starts the
    # gateway (its doors must not stop at an upgrade), with catch-up off and why.
    with caplog.at_level("WARNING", logger="gateway.config"):
        assert not parse_config(HEAD + LISTENER + TERMINAL).terminals[0].catch_up_events
    assert "route the terminal to its id" in caplog.text and "off for it" in caplog.text
