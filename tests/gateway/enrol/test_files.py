"""The enrolled gateway's folder: what is in it, who may read it, and that it
is written whole or not at all, never over an existing enrolment."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.enrol import files
from gateway.enrol.answer import check_answer
from gateway.enrol.errors import EnrolInputError
from gateway.enrol.files import Staging, write_enrolment
from gateway.enrol.keys import csr_pem, key_pem, new_key
from rentgate import wire
from rentgate.cli import main
from tests.gateway.enrol.fakes import CODE, GW, KEY_ID, PASSWORD, FakeServerSide

NOW = dt.datetime(2026, 12, 5, 22, 0, tzinfo=dt.UTC)
SERVER = "https://rentgate.example.cn"


def enrol_into(folder: Path, tmp_path: Path) -> tuple[FakeServerSide, bytes]:
    side, key = FakeServerSide(Path(tempfile.mkdtemp(dir=tmp_path))), new_key()
    enrolment = check_answer(side.answer(wire.EnrolRequest(code=CODE, csr=csr_pem(key, "box"))), key)
    with Staging(folder) as stage:
        write_enrolment(stage, enrolment, key_pem=key_pem(key), server_url=SERVER, hostname="box", now=NOW)
        stage.commit()
    return side, key_pem(key)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_folder_holds_everything_the_gateway_needs_and_keeps_secrets_to_itself(tmp_path: Path) -> None:
    folder = tmp_path / "gw"
    side, private = enrol_into(folder, tmp_path)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "ca.pem", "gateway.crt", "gateway.toml", "identity.json", "remote", "remote/received.json",
        "secrets", "secrets/gateway.key", "secrets/mqtt_password"]
    assert mode(folder) == 0o700 and mode(folder / "secrets") == 0o700 and mode(folder / "remote") == 0o700
    for secret in ("secrets/gateway.key", "secrets/mqtt_password", "remote/received.json"):
        assert mode(folder / secret) == 0o600, secret
    assert (folder / "secrets/gateway.key").read_bytes() == private
    assert (folder / "secrets/mqtt_password").read_text().strip() == PASSWORD
    toml_text = (folder / "gateway.toml").read_text()
    assert PASSWORD not in toml_text and "PRIVATE KEY" not in toml_text
    assert PASSWORD not in (folder / "identity.json").read_text()
    identity = json.loads((folder / "identity.json").read_text())
    assert identity["gateway_id"] == GW and identity["server_url"] == SERVER and identity["config_version"] == 1
    assert identity["building"] == "越秀 12 号楼"
    signed = wire.decode_signed_config((folder / "remote/received.json").read_bytes())
    assert wire.decode_remote_config(signed.payload).gw == GW

    config = load_config(folder / "gateway.toml")
    assert config.gateway_id == GW
    assert config.data_dir == folder
    assert config.mqtt_url == "mqtts://broker.example.cn:8883"
    assert config.mqtt_username == GW and config.mqtt_password() == PASSWORD
    assert config.mqtt_key_file == folder / "secrets/gateway.key"
    assert config.mqtt_cert_file == folder / "gateway.crt" and config.mqtt_ca_file == folder / "ca.pem"
    assert set(config.access.loaded_public_keys()) == {KEY_ID}
    assert config.cameras.server_url == SERVER
    assert tomllib.loads(toml_text)["access"]["public_keys"] == side.answer(
        wire.EnrolRequest(code=CODE, csr=csr_pem(new_key(), None))).allowlist_keys


def test_the_written_settings_pass_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gw"
    enrol_into(folder, tmp_path)
    assert main(["gateway", "check-config", "--json", str(folder / "gateway.toml")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["ok"] is True


def test_an_existing_empty_folder_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "gw"
    folder.mkdir(mode=0o755)
    enrol_into(folder, tmp_path)
    assert (folder / "gateway.toml").exists() and mode(folder) == 0o700


def test_an_enrolled_folder_is_never_touched(tmp_path: Path) -> None:
    folder = tmp_path / "gw"
    enrol_into(folder, tmp_path)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(EnrolInputError) as caught:
        enrol_into(folder, tmp_path)
    assert caught.value.code == "already_enrolled" and GW in caught.value.message
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gw")] == []


@pytest.mark.parametrize("leftover", ["gateway.toml", "secrets", "identity.json"])
def test_part_of_an_enrolment_counts_as_one(tmp_path: Path, leftover: str) -> None:
    folder = tmp_path / "gw"
    folder.mkdir()
    (folder / leftover).mkdir() if leftover == "secrets" else (folder / leftover).write_text("x")
    with pytest.raises(EnrolInputError) as caught:
        files.check_target(folder)
    assert caught.value.code == "already_enrolled"


def test_a_folder_with_other_things_in_it_or_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(EnrolInputError) as caught:
        files.check_target(tmp_path / "full")
    assert caught.value.code == "folder_not_empty"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(EnrolInputError) as caught:
        files.check_target(tmp_path / "afile")
    assert caught.value.code == "not_a_folder"
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_a_failure_half_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "new" / "deeper" / "gw"
    real_write = Staging.write

    def failing(self: Staging, relative: str, data: bytes, mode: int) -> None:
        if relative == files.IDENTITY:
            raise OSError(28, "No space left on device")
        real_write(self, relative, data, mode)

    monkeypatch.setattr(Staging, "write", failing)
    with pytest.raises(OSError):
        enrol_into(folder, tmp_path)
    # Neither the folder, nor its staging copy, nor the parents made for it.
    assert not (tmp_path / "new").exists()


def test_another_enrolment_that_got_there_first_is_not_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "gw"
    side, key = FakeServerSide(tmp_path / "side"), new_key()
    enrolment = check_answer(side.answer(wire.EnrolRequest(code=CODE, csr=csr_pem(key, None))), key)
    with pytest.raises(OSError), Staging(folder) as stage:
        write_enrolment(stage, enrolment, key_pem=key_pem(key), server_url=SERVER, hostname=None, now=NOW)
        folder.mkdir()
        (folder / "theirs").write_text("first")
        stage.commit()
    assert os.listdir(folder) == ["theirs"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gw")] == []


def test_a_first_configuration_the_gateway_would_refuse_is_a_warning(tmp_path: Path) -> None:
    side, key = FakeServerSide(tmp_path / "side"), new_key()
    answer = side.answer(wire.EnrolRequest(code=CODE, csr=csr_pem(key, None)),
                         config=side.signed_config(settings={"heartbeat_s": -1}))
    enrolment = check_answer(answer, key)
    with Staging(tmp_path / "gw") as stage:
        warnings = write_enrolment(stage, enrolment, key_pem=key_pem(key), server_url=SERVER, hostname=None, now=NOW)
        stage.commit()
    assert len(warnings) == 1 and "heartbeat_s" in warnings[0]
    assert load_config(tmp_path / "gw" / "gateway.toml").gateway_id == GW
