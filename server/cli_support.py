"""What the database subcommands (`rentgate user`, `grid`, `plates`) share:
the common flags and one transaction with errors turned into exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa


def action(sub: Any, name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
    """A subcommand with --database-url and --json."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text)
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (env RENTGATE_DATABASE_URL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=func)
    return parser


def engine_at_head(database_url: str | None) -> sa.Engine:
    """An engine on a database at the current schema; raises ServerError otherwise."""
    from server.db import migrate
    from server.db.engine import create_engine
    from server.errors import DatabaseNotReady
    from server.settings import load_settings

    url = load_settings(database_url=database_url).database_url
    engine = create_engine(url)
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current != head:
        engine.dispose()
        raise DatabaseNotReady(url, current, head)
    return engine


def run_in_transaction(args: argparse.Namespace, command: str,
                       work: Callable[[sa.Connection, datetime], dict[str, Any]],
                       text: Callable[[dict[str, Any]], str], refused: tuple[type[Exception], ...]) -> int:
    """``work`` in one transaction; its document as JSON (--json) or ``text``.
    A database that cannot be used, or one of the ``refused`` errors, is
    exit code 2 with the message on stderr."""
    from server.errors import ServerError

    try:
        engine = engine_at_head(args.database_url)
    except ServerError as exc:
        print(f"rentgate {command}: {exc}", file=sys.stderr)
        return 2
    try:
        with engine.begin() as conn:
            doc = work(conn, datetime.now(UTC))
    except refused as exc:
        print(f"rentgate {command}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(json.dumps(doc, ensure_ascii=False, default=str) if args.json else text(doc))
    return 0
