"""The ``rentgate`` command. Each part registers its own sub-commands; their
modules import heavy dependencies only when the command runs, so that
``rentgate gateway`` on a small box does not load the server's ORM."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from rentgate import __version__, logs
from rentgate.lang import LANGS, set_cli_lang

# module that defines ``register(subparsers)``
_COMMAND_MODULES = (
    "gateway.cli",
    "server.cli",
    "server.registry.imports.cli",
    "server.auth.cli",
    "server.plates.cli",
    "server.grid.cli",
    "firmware_sim.cli",
    "rentgate.broker",
    "rentgate.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rentgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rentgate {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env RENTGATE_LOG_LEVEL)")
    parser.add_argument("--lang", choices=LANGS, default=None,
                        help="language of messages and reports: zh (default) or en (env RENTGATE_LANG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    schema = sub.add_parser("wire-schema", help="print the JSON Schema of the gateway-server wire contract")
    schema.set_defaults(func=_wire_schema)
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
