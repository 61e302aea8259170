"""``rentgate sim isapi-terminal`` and ``zkteco-terminal`` run, present what
they are told to at their door, and stop at the end of --duration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rentgate.cli import main


def test_the_isapi_terminal_refuses_an_unknown_card_and_says_so(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    password = tmp_path / "password"
    password.write_text("Passw0rd!\n")
    code = main(["sim", "isapi-terminal", "--port", "0", "--password-file", str(password),
                 "--present", "card:3265421170:0", "--duration", "0.2", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [(e["serialNo"], e["minor"], e["cardNo"]) for e in result["events"]] == [(1, 0x09, "3265421170")]


def test_a_bad_presentation_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "zkteco-terminal", "--server", "http://127.0.0.1:9", "--present", "badge:1:0"]) == 2
    assert "--present" in capsys.readouterr().err


def test_the_zkteco_terminal_without_a_server_keeps_trying_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "zkteco-terminal", "--server", "http://127.0.0.1:9", "--duration", "0.2", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["registered"] is False
