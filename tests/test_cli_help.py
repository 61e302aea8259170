"""``rentgate ... --help`` is written for the people who run the commands:
every option says what it is for, defaults worth knowing are shown, and no
reStructuredText or developer notes leak into it. Walks the whole parser
tree, so a command added later is held to the same rules."""

from __future__ import annotations

import argparse
import re

import pytest

from rentgate.cli import DefaultsHelpFormatter, build_parser, walk


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # argparse wraps to $COLUMNS; a fixed width keeps the texts comparable.
    monkeypatch.setenv("COLUMNS", "100")


def _parsers() -> list[argparse.ArgumentParser]:
    return walk(build_parser())


def _flat(text: str) -> str:
    """The help without its wrapping: argparse may break a long default."""
    return re.sub(r"\s+", "", text)


def _shown(default: object) -> list[str]:
    forms = [str(default)]
    if isinstance(default, float) and default.is_integer():
        forms.append(str(int(default)))  # "(default 40)" says 40.0 as well
    return forms


def test_the_tree_has_every_command() -> None:
    progs = {p.prog for p in _parsers()}
    for command in ("import addresses", "import registrations", "user add", "grid assign", "db upgrade",
                    "keys pii", "server", "gateway check-config", "sim district", "broker", "wire-schema"):
        assert f"rentgate {command}" in progs


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for parser in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{parser.prog} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help or action.help is argparse.SUPPRESS:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_no_rst_markup_in_any_help_or_description() -> None:
    offenders = [p.prog for p in _parsers() if "``" in p.format_help() or "``" in (p.description or "")]
    assert offenders == []


def test_the_top_level_help_is_for_users() -> None:
    text = build_parser().format_help()
    assert "rentgate db upgrade" in text and "--lang en" in text
    # The module docstring is for developers (lazy imports, the ORM).
    assert "ORM" not in text and "register(" not in text


def test_every_default_worth_knowing_is_in_the_help() -> None:
    hidden = []
    for parser in _parsers():
        text = _flat(parser.format_help())
        for action in parser._actions:
            default = action.default
            if (not action.option_strings or isinstance(default, bool) or default is argparse.SUPPRESS
                    or not isinstance(default, str | int | float)):
                continue
            if not any(_flat(form) in text for form in _shown(default)):
                hidden.append(f"{parser.prog} {'/'.join(action.option_strings)}={default!r}")
    assert hidden == []


def test_the_formatter_appends_a_default_once_and_only_when_it_says_something() -> None:
    parser = argparse.ArgumentParser(prog="x", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--label", default="cli", help="what the token is for")
    parser.add_argument("--port", type=int, default=1883, help="the TCP port (default: 1883)")
    parser.add_argument("--days", type=float, default=None, help="expires after N days")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    text = " ".join(parser.format_help().split())
    assert "what the token is for (default: cli)" in text
    assert text.count("1883") == 1
    assert "(default: None)" not in text and "(default: False)" not in text


def test_subcommand_help_shows_defaults_through_the_central_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["user", "token", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "what the token is for (used by revoke --label) (default: cli)" in text
