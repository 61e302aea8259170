"""``rentgate sim osdp-building`` and its config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim.config import load_osdp_config
from tests.firmware_sim.test_cli import run_cli

EXAMPLE = Path(__file__).parents[2] / "firmware_sim" / "examples" / "osdp_building.toml"

SMALL = """\
name = "t"
held_open_s = 1
[[lines]]
id = "l1"
link = "var/osdp-l1"
[[doors]]
id = "front"
line = "l1"
address = 1
[[doors]]
id = "back"
line = "l1"
address = 2
[tenants]
count = 4
[traffic]
pattern = "none"
[[script]]
at_s = 0
door = "back"
action = "forced"
open_s = 0.2
"""


def test_the_example_has_two_doors_on_one_line_and_every_incident() -> None:
    cfg = load_osdp_config(EXAMPLE)
    assert [(d.line, d.address) for d in cfg.doors] == [("line-1", 1), ("line-1", 2)]
    assert {s.action for s in cfg.script} == {"enter", "revoked", "forced", "held_open", "unplug"}


def test_osdp_building_prints_the_line_and_one_json_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "b.toml"
    cfg.write_text(SMALL)
    assert run_cli("sim", "osdp-building", "--config", str(cfg), "--json") == 0
    out, err = capsys.readouterr()
    assert "osdp line l1: var/osdp-l1 -> /dev/pts/" in err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["expected"] == [["back", "forced", None]]
    assert record["actions"][0]["action"] == "forced" and record["lines"]["l1"]["port"] == "var/osdp-l1"
    assert not (tmp_path / "var" / "osdp-l1").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("address = 2", "address = 1"), "share a reader address"),
        (('door = "back"', 'door = "side"'), "no door 'side'"),
        (("open_s = 0.2", "open_s = 0.2\ncolour = 1"), "script.0.forced.colour"),
        (('action = "forced"', 'action = "held_open"\ncard = "90:1"'), "must exceed held_open_s"),
        (("count = 4", 'cards = ["300:1"]'), "facility must be 0..255"),
        (('line = "l1"\naddress = 2', 'line = "l2"\naddress = 2'), "no line 'l2'"),
    ],
)
def test_a_bad_config_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], needle: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SMALL.replace(*change))
    assert run_cli("sim", "osdp-building", "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert needle in err and str(cfg) in err
