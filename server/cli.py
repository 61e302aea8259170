"""``rentgate server``, ``rentgate db upgrade|current`` and ``rentgate keys pii|plates``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.cli_support import DATABASE_URL_HELP

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    server = subparsers.add_parser(
        "server", help="run the server: MQTT ingest, the pages and the HTTP API",
        description="Run the server: it stores the gateways' events from the MQTT broker, serves the pages and "
                    "the HTTP API. Settings come from RENTGATE_* environment variables; these options override them.")
    _database_flag(server)
    server.add_argument("--mqtt-url", help="the MQTT broker, mqtt://user:password@host:port "
                        "(env RENTGATE_MQTT_URL; default: mqtt://127.0.0.1:1883)")
    server.add_argument("--host", dest="http_host", help="the address to listen on; 0.0.0.0 for every network "
                        "(env RENTGATE_HTTP_HOST; default: 127.0.0.1)")
    server.add_argument("--port", dest="http_port", type=int, help="the HTTP port (env RENTGATE_HTTP_PORT; "
                        "default: 8080)")
    server.add_argument("--upgrade", action="store_true",
                        help="migrate the database to the current schema before starting")
    server.set_defaults(func=_run_server)

    db = subparsers.add_parser("db", help="database schema: upgrade, current",
                               description="Create the database or bring it to the schema this version needs.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, func, text in (("upgrade", _db_upgrade, "create the database, or bring it to the newest schema"),
                             ("current", _db_current, "print the database's schema revision")):
        action = db_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _database_flag(action)
        action.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        action.set_defaults(func=func)

    keys = subparsers.add_parser(
        "keys", help="create keys: pii (identity numbers at rest), plates (plate-signing keyring)",
        description="Create the keys the server needs. Back them up: without them stored identity numbers "
                    "cannot be read and printed plates stop working.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KIND")
    pii = keys_sub.add_parser("pii", help="write a new identity-number key (32 random bytes, base64, mode 600)",
                              description="Write a new key that encrypts identity numbers in the database. An "
                                          "existing file is never overwritten.")
    pii.add_argument("path", help="the file to create; then set RENTGATE_PII_KEY_FILE to it")
    pii.set_defaults(func=_keys_pii)
    from server.plates.cli import register_keys as register_plate_keys

    register_plate_keys(keys_sub)


def _keys_pii(args: argparse.Namespace) -> int:
    from server.registry.pii import read_key_file, write_key_file

    try:
        written = write_key_file(args.path)
    except OSError as exc:
        print(tr(f"rentgate keys pii: 无法写入 {args.path}（{exc.strerror or exc}）：请核对文件夹是否存在、是否可写",
                 f"rentgate keys pii: cannot write {args.path} ({exc.strerror or exc}): check that the folder "
                 "exists and is writable"), file=sys.stderr)
        return 2
    if not written:
        print(tr(f"rentgate keys pii: {args.path} 已经存在：密钥从不覆盖（用它加密的身份证号会无法读取）；"
                 "要新密钥请换一个文件名",
                 f"rentgate keys pii: {args.path} exists already; a key is never overwritten (the identity numbers "
                 "encrypted with it would become unreadable): give another file name for a new key"),
              file=sys.stderr)
        return 2
    key_id = read_key_file(args.path).key_id
    print(tr(f"已把身份证号密钥 {key_id} 写入 {args.path}：请备份这个文件，并设置 RENTGATE_PII_KEY_FILE={args.path}",
             f"wrote identity-number key {key_id} to {args.path}: back the file up and set "
             f"RENTGATE_PII_KEY_FILE={args.path}"), file=sys.stderr)
    return 0


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help=DATABASE_URL_HELP)


def _db_engine(args: argparse.Namespace) -> tuple[str, sa.Engine] | None:
    """The database URL and an engine for it, or None after saying what is wrong."""
    from server.cli_support import CommandRefused, settings_or_refuse
    from server.db.engine import create_engine

    try:
        settings = settings_or_refuse(args.database_url)
    except CommandRefused as exc:
        print(f"rentgate db: {exc}", file=sys.stderr)
        return None
    return settings.database_url, create_engine(settings.database_url)


def _db_upgrade(args: argparse.Namespace) -> int:
    from server.db import migrate
    from server.db.engine import redacted

    if (opened := _db_engine(args)) is None:
        return 2
    url, engine = opened
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    engine.dispose()
    log.info("database %s: %s -> %s", redacted(url), before or "<empty>", after)
    _report(args, {"database": redacted(url), "from": before, "to": after},
            tr(f"数据库已是最新结构（版本 {after}）", f"the database is at the newest schema (revision {after})")
            if before != after else tr(f"数据库本来就是最新结构（版本 {after}），没有改动",
                                       f"the database was at the newest schema already (revision {after})"))
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from server.cli_support import CommandRefused, missing_sqlite_file, settings_or_refuse
    from server.db import migrate
    from server.db.engine import create_engine, redacted

    try:
        url = settings_or_refuse(args.database_url).database_url
    except CommandRefused as exc:
        print(f"rentgate db: {exc}", file=sys.stderr)
        return 2
    head = migrate.head_revision()
    if missing_sqlite_file(url) is not None:
        # Asking must not create the database, nor its folder (creating the
        # engine would).
        current = None
    else:
        engine = create_engine(url)
        try:
            current = migrate.current_revision(engine)
        finally:
            engine.dispose()
    _report(args, {"database": redacted(url), "current": current, "head": head,
                   "at_head": current == head},
            _current_text(current, head))
    return 0


def _current_text(current: str | None, head: str) -> str:
    if current == head:
        return tr(f"{current}（最新）", f"{current} (the newest)")
    if current is None:
        return tr(f"空数据库，还没有建表：运行 `rentgate db upgrade`（最新版本是 {head}）",
                  f"an empty database without tables: run `rentgate db upgrade` (the newest revision is {head})")
    return tr(f"{current}（最新是 {head}：运行 `rentgate db upgrade`）",
              f"{current} (the newest is {head}: run `rentgate db upgrade`)")


def _report(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc) if args.json else text)


def _run_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import make_app
    from server.cli_support import CommandRefused, check_database, settings_or_refuse
    from server.db import migrate
    from server.db.engine import create_engine

    try:
        settings = settings_or_refuse(args.database_url, mqtt_url=args.mqtt_url, http_host=args.http_host,
                                      http_port=args.http_port)
    except CommandRefused as exc:
        print(f"rentgate server: {exc}", file=sys.stderr)
        return 2
    try:
        if args.upgrade:
            engine = create_engine(settings.database_url)
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
        check_database(settings.database_url, args.database_url)
    except CommandRefused as exc:
        print(f"rentgate server: {exc}" + tr("（或用 --upgrade 启动服务器，它会先升级数据库）",
                                             " (or start the server with --upgrade, which does it first)"),
              file=sys.stderr)
        return 2
    # run_app turns SIGINT/SIGTERM into a graceful exit that runs the cleanup
    # contexts: ingest commits and acknowledges what it holds before exiting.
    web.run_app(make_app(settings), host=settings.http_host, port=settings.http_port,
                print=lambda text: log.info("%s", text.strip()), shutdown_timeout=10)
    return 0
