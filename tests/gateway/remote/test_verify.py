"""Judging a message without a broker: the checks and their reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.remote.local import load_local
from gateway.remote.verify import Refused, check_message, check_settings
from rentgate import signing, wire
from tests.gateway.helpers import GW
from tests.gateway.remote.helpers import KEY, KEY_ID, signed, write_settings

KEYS = {KEY_ID: KEY.public_key()}


def test_a_signed_configuration_for_this_gateway_passes(tmp_path: Path) -> None:
    remote = check_message(signed(4, {"heartbeat_s": 2}, gate_s=30), GW, KEYS)
    assert (remote.version, remote.gate_s, remote.settings) == (4, 30, {"heartbeat_s": 2})
    config = check_settings(load_local(write_settings(tmp_path, "mqtt://u@127.0.0.1:1883")), remote)
    assert config.heartbeat_s == 2 and config.data_dir == tmp_path / "data"


def test_without_trusted_keys_nothing_is_accepted() -> None:
    with pytest.raises(Refused, match="no trusted keys"):
        check_message(signed(2, {}), GW, {})


def test_the_broker_changes_but_the_login_stays(tmp_path: Path) -> None:
    local = load_local(write_settings(tmp_path, "mqtt://gw-test@127.0.0.1:1883"))
    config = check_settings(local, check_message(signed(2, {"broker_url": "mqtts://broker.example.cn"}), GW, KEYS))
    assert config.mqtt_url == "mqtts://gw-test@broker.example.cn"
    with pytest.raises(Refused, match="broker_url") as caught:
        check_settings(local, check_message(signed(2, {"broker_url": "mqtt://other:secret@evil"}), GW, KEYS))
    assert "secret" not in caught.value.reason and caught.value.version == 2


def test_a_huge_or_bad_message_is_refused_with_a_short_reason() -> None:
    with pytest.raises(Refused) as caught:
        check_message(b"x" * (wire.MAX_CONFIG_BYTES * 2 + 1), GW, KEYS)
    assert caught.value.reason.startswith("malformed configuration message") and len(caught.value.reason) <= 300
    with pytest.raises(Refused, match="bad signature"):
        payload = wire.config_payload(wire.RemoteConfig(gw=GW, version=2, issued_at=wire.utcnow(), settings={}))
        check_message(wire.signed_config_json(payload, KEY_ID, "A" * 88), GW, KEYS)
    with pytest.raises(Refused, match="bad signature"):
        check_message(wire.signed_config_json(payload, KEY_ID, signing.sign(b"other", KEY)), GW, KEYS)
