"""``rentgate gateway enroll``: the command's options and its output.
Progress and errors go to stderr; with ``--json`` the last line of stdout
is one JSON object (``ok`` true or false) and nothing else is printed there."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rentgate.lang import LANGS, tr

DEFAULT_DIR = "/var/lib/rentgate-gateway"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enroll", help="enrol this gateway with the landlord's one-time code (or its QR code)",
        description="Enrol this box as a building's gateway: it makes its own key pair, sends a certificate "
                    "request with the landlord's one-time code, and writes everything it receives (its id, "
                    "broker login, certificates, allowlist keys, first configuration) into a new folder. "
                    "Then run it with `rentgate gateway --config DIR/gateway.toml`. Exit code 2: fix the "
                    "input (code, address, folder); 1: the server or the network failed.")
    parser.add_argument("code", nargs="?", metavar="CODE_OR_QR_TEXT",
                        help="the code shown on the landlord's page (XXXX-XXXX-XXXX; case and dashes do not "
                             "matter) or the text of its QR code (https://SERVER/e/CODE, which also names the server)")
    parser.add_argument("--server", metavar="URL", help="the rentgate server, e.g. https://rentgate.example.cn; "
                        "needed with a typed code, optional with the QR text")
    # A default, so that the command the landlord's page shows works as typed.
    parser.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR",
                        help="the new (or empty) folder for the gateway's settings, keys and outbox")
    parser.add_argument("--scan", metavar="DEVICE_OR_FILE",
                        help="read the QR code with a camera instead of typing: 0, /dev/video0, rtsp://..., "
                             "http(s)://..., a video file or a picture")
    parser.add_argument("--scan-timeout", type=float, default=60.0, metavar="S",
                        help="give up scanning after this many seconds")
    parser.add_argument("--hostname", metavar="NAME", help="a name for this box, shown to the landlord "
                        "(default: the system's host name)")
    parser.add_argument("--ca-file", metavar="FILE", help="trust only this CA (PEM) for the server's https "
                        "certificate, for a server with a private CA")
    parser.add_argument("--allow-http", action="store_true",
                        help="allow plain http to a server outside the local network (the code and the broker "
                             "password travel in clear)")
    parser.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds to wait for the server")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    # Also after the subcommand, where an installer types it; SUPPRESS keeps
    # it from overwriting `rentgate --lang en gateway enroll ...`.
    parser.add_argument("--lang", choices=LANGS, default=argparse.SUPPRESS,
                        help="language of the messages: zh (default) or en")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.enrol.errors import EnrolError
    from gateway.enrol.flow import Options, enrol

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.timeout <= 0 or args.scan_timeout <= 0:
        return _failed(args, "bad_timeout", tr("超时时间要大于 0 秒", "timeouts must be above 0 seconds"), None, 2)
    options = Options(code=args.code, folder=Path(args.dir), server=args.server, scan=args.scan,
                      scan_timeout_s=args.scan_timeout, hostname=args.hostname, ca_file=args.ca_file,
                      allow_http=args.allow_http, timeout_s=args.timeout)
    try:
        result = enrol(options, progress)
    except EnrolError as exc:
        return _failed(args, exc.code, exc.message, exc.next_step, exc.exit_code)
    if args.json:
        print(json.dumps({
            "ok": True, "gateway_id": result.gateway_id, "building": result.building, "dir": str(result.folder),
            "config_file": str(result.config_file), "server_url": result.server_url, "mqtt_url": result.mqtt_url,
            "config_version": result.config_version, "certificate_serial": result.certificate_serial,
            "warnings": result.warnings}, ensure_ascii=False))
    else:
        print(tr(f"已登记：网关 {result.gateway_id}（{result.building}）\n设置文件：{result.config_file}\n"
                 f"启动网关：rentgate gateway --config {result.config_file}",
                 f"enrolled: gateway {result.gateway_id} ({result.building})\nsettings: {result.config_file}\n"
                 f"start it: rentgate gateway --config {result.config_file}"))
    return 0


def _failed(args: argparse.Namespace, code: str, message: str, next_step: str | None, exit_code: int) -> int:
    print(f"rentgate gateway enroll: {message}", file=sys.stderr)
    if next_step:
        print(tr(f"下一步：{next_step}", f"what to do: {next_step}"), file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": False, "error": code, "message": message, "next_step": next_step}, ensure_ascii=False))
    return exit_code
