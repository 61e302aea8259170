"""``rentgate gateway``: run the edge gateway, or check its configuration."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rentgate.lang import count, tr


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="run a building's gateway: reads the card readers, decides at the door, sends the events",
        description="Run the gateway of a rental building: it reads the card readers and terminals, opens the "
                    "doors from the server's signed list of cards (also while offline), keeps every entry on disk "
                    "and sends it to the server through the MQTT broker.")
    parser.add_argument("--config", "-c", help="the gateway's settings file (.toml; see "
                        "gateway/examples/gateway.toml); required to run")
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND")
    check = sub.add_parser("check-config", help="check a gateway settings file; exit code 2 if it is wrong",
                           description="Check a gateway settings file (.toml) without starting the gateway.")
    check.add_argument("file", help="the gateway's settings file (.toml)")
    check.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    check.set_defaults(func=_check_config)
    from gateway.enrol.cli import add_parser as add_enroll  # light: argparse only

    add_enroll(sub)


def _run(args: argparse.Namespace) -> int:
    if not args.config:
        print("rentgate gateway: --config FILE is required", file=sys.stderr)
        return 2
    import asyncio

    from gateway.errors import ConfigError, OutboxLockedError
    from gateway.remote.local import load_local
    from gateway.remote.runner import Runner

    try:
        local = load_local(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    try:
        # The runner adds remote configuration (docs/config-rollback.md); with
        # none ever received it runs the settings file alone, as before.
        asyncio.run(Runner(local).run(install_signal_handlers=True))
    except OutboxLockedError as exc:
        print(f"rentgate gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config import describe, load_config
    from gateway.errors import ConfigError

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        _print_problems(exc)
        if args.json:
            problems = [{"path": p.path, "line": p.line, "message": p.message} for p in exc.problems]
            print(json.dumps({"ok": False, "file": args.file, "problems": problems}, ensure_ascii=False))
        return 2
    if args.json:
        print(json.dumps({"ok": True, "file": args.file, "config": describe(config)}, ensure_ascii=False))
    else:
        print(tr(f"{args.file}：没有问题（网关 {config.gateway_id}，{count(len(config.devices), '台设备', 'device')}）",
                 f"{args.file}: ok (gateway {config.gateway_id}, {count(len(config.devices), '台设备', 'device')})"))
    return 0


def _print_problems(exc: Any) -> None:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
