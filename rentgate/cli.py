"""The ``rentgate`` command. Each part registers its own sub-commands; their
modules import heavy dependencies only when the command runs, so that
``rentgate gateway`` on a small box does not load the server's ORM. The help
every sub-command prints shows the options' defaults (DefaultsHelpFormatter,
applied here to the whole tree so no module has to remember it)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from rentgate import __version__, logs
from rentgate.lang import LANGS, set_cli_lang

DESCRIPTION = """\
Access control, QR door plates and residence-registration reconciliation for
rental housing. Start with `rentgate db upgrade` and `rentgate user add NAME
--role admin`, then `rentgate server`; `rentgate demo` shows everything on one
machine. `rentgate COMMAND --help` explains each command.
Messages are in Chinese; `--lang en` (or RENTGATE_LANG=en) gives English."""

# module that defines ``register(subparsers)``
_COMMAND_MODULES = (
    "gateway.cli",
    "server.cli",
    "server.registry.imports.cli",
    "server.auth.cli",
    "server.plates.cli",
    "server.grid.cli",
    "server.police.cli",
    "server.audit.cli",
    "server.fleet.cli",
    "server.retention.cli",
    "devices.camera.cli",
    "firmware_sim.cli",
    "rentgate.broker",
    "rentgate.demo",
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help when it has a default worth
    knowing (not None, False, empty or suppressed) and the help does not
    already say it. Unlike argparse.ArgumentDefaultsHelpFormatter it leaves
    out "(default: None)" and "(default: False)", which tell a person nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or text is argparse.SUPPRESS:
            return text
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or default in ("", [], ())
                or "default" in text.lower()):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


_MIXED: dict[type[argparse.HelpFormatter], type[argparse.HelpFormatter]] = {}


def _with_defaults(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` that also shows defaults; a module's own formatter (raw
    description, say) keeps its behaviour."""
    if issubclass(formatter, DefaultsHelpFormatter):
        return formatter
    if formatter not in _MIXED:
        _MIXED[formatter] = type(f"Defaults{formatter.__name__}", (DefaultsHelpFormatter, formatter), {})
    return _MIXED[formatter]


def walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every sub-command's parser below it, parents first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += walk(child)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rentgate", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rentgate {__version__}",
                        help="print the version and exit")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO or WARNING (env RENTGATE_LOG_LEVEL)")
    parser.add_argument("--lang", choices=LANGS, default=None,
                        help="language of messages and reports: zh (default) or en (env RENTGATE_LANG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    schema = sub.add_parser("wire-schema", help="print the JSON Schema of the gateway-server wire contract")
    schema.set_defaults(func=_wire_schema)
    for each in walk(parser):
        current = each.formatter_class
        if isinstance(current, type) and issubclass(current, argparse.HelpFormatter):
            each.formatter_class = _with_defaults(current)
    return parser


def _wire_schema(args: argparse.Namespace) -> int:
    from rentgate.wire import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    set_cli_lang(args.lang)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
