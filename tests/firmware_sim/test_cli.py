from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import firmware_sim.cli
from firmware_sim.config import load_config

EXAMPLE = Path(__file__).parents[2] / "firmware_sim" / "examples" / "building.toml"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rentgate")
    firmware_sim.cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert [d.link for d in cfg.doors] == ["var/demo/door-a", "var/demo/door-b"]


def test_sim_building_prints_ports_and_one_json_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        'name = "t"\n[[doors]]\nid = "door-a"\nlink = "var/door-a"\n'
        "[tenants]\ncount = 3\n"
        '[swipes]\npattern = "burst"\ntotal = 2\nrepeats = 1\n'
    )
    assert run_cli("sim", "building", "--config", str(cfg), "--json") == 0
    out, err = capsys.readouterr()
    assert "door door-a: var/door-a -> /dev/pts/" in err
    assert "字节没有被读走" in err  # nobody listened in this test
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["swipes"] == 2 and stats["doors"]["door-a"]["port"] == "var/door-a"
    assert not (tmp_path / "var" / "door-a").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "t"\ndoors = []\n[tenants]\ncount = 1\n', "doors"),
        ('name = "t"\n[[doors]]\nid = "a"\n[tenants]\ncount = 1\n[swipes]\nrate_per_min = -1\n', "swipes.rate_per_min"),
        ('name = "t"\n[[doors]]\nid = "a"\ncolour = 1\n[tenants]\ncount = 1\n', "doors.0.colour"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert run_cli("sim", "building", "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert needle in err and str(cfg) in err


def test_a_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("sim", "building", "--config", str(tmp_path / "none.toml")) == 2
    assert "cannot read" in capsys.readouterr().err

