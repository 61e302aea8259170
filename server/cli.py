"""``rentgate server``, ``rentgate db upgrade|current`` and ``rentgate keys pii|plates``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    server = subparsers.add_parser("server", help="run the server: MQTT ingest and the HTTP API")
    _database_flag(server)
    server.add_argument("--mqtt-url", help="broker, mqtt://host:port (env RENTGATE_MQTT_URL)")
    server.add_argument("--host", dest="http_host", help="HTTP listen address (env RENTGATE_HTTP_HOST)")
    server.add_argument("--port", dest="http_port", type=int, help="HTTP port (env RENTGATE_HTTP_PORT)")
    server.add_argument("--upgrade", action="store_true",
                        help="migrate the database to the current schema before starting")
    server.set_defaults(func=_run_server)

    db = subparsers.add_parser("db", help="database schema: upgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, func, text in (("upgrade", _db_upgrade, "migrate the database to the newest schema"),
                             ("current", _db_current, "print the database's schema revision")):
        action = db_sub.add_parser(name, help=text)
        _database_flag(action)
        action.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        action.set_defaults(func=func)

    keys = subparsers.add_parser(
        "keys", help="create keys: pii (identity numbers at rest), plates (plate-signing keyring)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KIND")
    pii = keys_sub.add_parser("pii", help="write a new identity-number key (32 random bytes, base64, mode 600)")
    pii.add_argument("path", help="file to create; set RENTGATE_PII_KEY_FILE to it")
    pii.set_defaults(func=_keys_pii)
    from server.plates.cli import register_keys as register_plate_keys

    register_plate_keys(keys_sub)


def _keys_pii(args: argparse.Namespace) -> int:
    from server.registry.pii import read_key_file, write_key_file

    if not write_key_file(args.path):
        print(f"rentgate keys pii: {args.path} exists; a key is never overwritten (numbers sealed with it "
              "would become unreadable)", file=sys.stderr)
        return 2
    print(f"wrote identity-number key {read_key_file(args.path).key_id} to {args.path}; back it up and set "
          f"RENTGATE_PII_KEY_FILE={args.path}", file=sys.stderr)
    return 0


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (env RENTGATE_DATABASE_URL)")


def _settings(args: argparse.Namespace, **flags: Any) -> Any:
    from server.settings import load_settings

    return load_settings(database_url=args.database_url, **flags)


def _db_engine(args: argparse.Namespace) -> tuple[str, sa.Engine] | None:
    """The database URL and an engine for it, or None after saying what is wrong."""
    from server.db.engine import create_engine
    from server.errors import ServerError

    try:
        settings = _settings(args)
    except ServerError as exc:
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
            f"database at revision {after}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from server.db import migrate
    from server.db.engine import redacted

    if (opened := _db_engine(args)) is None:
        return 2
    url, engine = opened
    current, head = migrate.current_revision(engine), migrate.head_revision()
    engine.dispose()
    _report(args, {"database": redacted(url), "current": current, "head": head,
                   "at_head": current == head},
            f"{current or '<empty>'}{' (head)' if current == head else f' (head is {head})'}")
    return 0


def _report(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc) if args.json else text)


def _run_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import make_app
    from server.db import migrate
    from server.db.engine import create_engine
    from server.errors import DatabaseNotReady, ServerError

    try:
        settings = _settings(args, mqtt_url=args.mqtt_url, http_host=args.http_host, http_port=args.http_port)
        engine = create_engine(settings.database_url)
        try:
            if args.upgrade:
                migrate.upgrade(engine)
            current, head = migrate.current_revision(engine), migrate.head_revision()
            if current != head:
                raise DatabaseNotReady(settings.database_url, current, head)
        finally:
            engine.dispose()
    except ServerError as exc:
        print(f"rentgate server: {exc}", file=sys.stderr)
        return 2
    # run_app turns SIGINT/SIGTERM into a graceful exit that runs the cleanup
    # contexts: ingest commits and acknowledges what it holds before exiting.
    web.run_app(make_app(settings), host=settings.http_host, port=settings.http_port,
                print=lambda text: log.info("%s", text.strip()), shutdown_timeout=10)
    return 0
