from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "gateway" / "examples" / "gateway.toml"

MINIMAL = """\
gateway_id = "gw-1"
mqtt_url = "mqtt://127.0.0.1:1883"
data_dir = "/var/lib/rentgate"
"""


def _problems(text: str) -> dict[str, int | None]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return {p.path: p.line for p in info.value.problems}


def test_example_is_valid_and_relative_data_dir_follows_the_file() -> None:
    config = load_config(EXAMPLE)
    assert config.devices[0].type == "em4100"
    assert config.data_dir == EXAMPLE.parent / "var"


def test_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.heartbeat_s == 10
    assert config.outbox.max_events == 1_000_000
    assert config.outbox.batch_max == 500
    assert config.outbox.inflight_max == 20_000
    assert config.outbox.ack_timeout_s == 15
    assert config.outbox.synchronous == "full"
    assert config.outbox.max_age_s == 30 * 86400
    assert config.devices == []


def test_errors_name_key_path_and_line() -> None:
    text = MINIMAL.replace('"gw-1"', '"gw/1"') + """
[outbox]
batch_max = 0
colour = "red"

[[devices]]
type = "em4100"
id = "r1"
port = "/dev/ttyUSB0"

[[devices]]
type = "em4100"
id = "r2"
baudrate = -5
"""
    assert _problems(text) == {
        "gateway_id": 1,
        "outbox.batch_max": 6,
        "outbox.colour": 7,
        "devices.1.port": 14,  # missing: points at its [[devices]] table
        "devices.1.baudrate": 17,
    }


def test_unknown_device_type_and_duplicate_ids_are_rejected() -> None:
    text = MINIMAL + '[[devices]]\ntype = "osdp-magic"\nid = "a"\n'
    assert "devices.0.type" in _problems(text)
    dup = MINIMAL + '[[devices]]\ntype = "em4100"\nid = "a"\nport = "x"\n' * 2
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config(dup)


def test_bad_toml_reports_the_line() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_config('gateway_id = "a"\nmqtt_url = \n')


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["gateway", "check-config", str(EXAMPLE)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("mqtt://", "http://"))
    capsys.readouterr()
    assert _cli(["gateway", "check-config", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    result = json.loads(out.splitlines()[-1])
    assert result["ok"] is False
    assert result["problems"][0]["path"] == "mqtt_url"
    assert "mqtt_url（第 2 行）" in err  # Chinese by default, in words
    assert _cli(["gateway", "check-config", str(EXAMPLE)]) == 0
    assert "没有问题" in capsys.readouterr().out


def test_check_config_says_what_is_wrong_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "heartbeat_s = -1\ncolour = 1\n")
    assert _cli(["gateway", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "heartbeat_s" in err and "必须大于 0" in err
    assert "colour" in err and "没有这一项设置" in err
    assert "Input should" not in err and "Extra inputs" not in err
    monkeypatch.setenv("RENTGATE_LANG", "en")
    assert _cli(["gateway", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "must be greater than 0" in err and "no such setting" in err and "(line " in err


def test_a_remote_cameras_or_access_table_keeps_what_the_file_set_and_the_server_did_not() -> None:
    from gateway.config import parse_remote
    from rentgate import signing

    key_b64 = signing.public_key_b64(signing.generate_private_key().public_key())
    local = {"gateway_id": "gw-a", "mqtt_url": "mqtts://gw-a@broker:8883", "data_dir": "/var/lib/gw",
             "cameras": {"server_url": "https://rg.example"}, "access": {"public_keys": {"k1": key_b64}}}
    config = parse_remote(local, {"cameras": {"follow_s": 3.0}, "access": {}})
    assert config.cameras.server_url == "https://rg.example"  # written at enrolment, not sent by the server
    assert config.cameras.follow_s == 3.0
    assert list(config.access.public_keys) == ["k1"]


def test_a_remote_configuration_cannot_name_files_on_the_gateway() -> None:
    """``devices`` may be set remotely, but a device's files may not: a
    password file read and sent to an address the same configuration names,
    a state file written. What the gateway's own file says stays allowed."""
    from gateway.config import merge_remote

    local = {"gateway_id": "gw-a", "mqtt_url": "mqtts://gw-a@broker:8883", "data_dir": "/var/lib/gw",
             "devices": [{"type": "hikvision_stream", "id": "lobby", "url": "http://10.0.0.5",
                          "password_file": "/etc/rentgate/lobby.pw"}]}
    same = [{"type": "hikvision_stream", "id": "lobby", "url": "http://10.0.0.6",
             "password_file": "/etc/rentgate/lobby.pw"}]
    assert merge_remote(local, {"devices": same})["devices"] == same
    for changed, key in (
            ([{**same[0], "password_file": "/var/lib/gw/gateway.key"}], "devices.0.password_file"),
            ([{**same[0], "id": "other"}], "devices.0.password_file"),
            ([{"type": "zkteco_adms", "id": "zk", "port": 8081, "state_file": "/etc/passwd"}], "devices.0.state_file")):
        with pytest.raises(ConfigError) as err:
            merge_remote(local, {"devices": changed})
        assert [p.path for p in err.value.problems] == [key]
        assert "may not be named by a remote configuration" in str(err.value)


def test_a_devices_relative_files_are_in_the_settings_files_folder(tmp_path: Path) -> None:
    """As data_dir is: a service started from another working directory
    finds the terminal's password next to its settings file."""
    from gateway.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    settings = folder / "gateway.toml"
    settings.write_text(MINIMAL + """
[[devices]]
type = "hikvision_stream"
id = "lobby"
url = "http://10.0.0.5"
password_file = "secrets/lobby.pw"

[[devices]]
type = "hikvision_stream"
id = "stair"
url = "http://10.0.0.6"
password_file = "/etc/rentgate/stair.pw"
""")
    config = load_config(settings)
    files = {d.id: getattr(d, "password_file", None) for d in config.devices}
    assert files == {"lobby": folder / "secrets" / "lobby.pw", "stair": Path("/etc/rentgate/stair.pw")}


def test_fallback_brokers_are_optional_and_checked_one_by_one() -> None:
    assert parse_config(MINIMAL).mqtt_fallback_urls == []
    config = parse_config(MINIMAL + 'mqtt_fallback_urls = ["mqtt://n2:1883", "mqtts://n3"]\n')
    assert config.mqtt_fallback_urls == ["mqtt://n2:1883", "mqtts://n3"]
    with pytest.raises(ConfigError, match="unsupported MQTT URL scheme 'http'"):
        parse_config(MINIMAL + 'mqtt_fallback_urls = ["mqtt://n2:1883", "http://n3"]\n')
