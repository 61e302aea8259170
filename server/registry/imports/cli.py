"""``rentgate import addresses|registrations FILE``: exit 0 when imported (or,
with --dry-run, when every row is valid), 1 when any row fails (nothing is
written), 2 when the file or the setup is unusable."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MAX_ERRORS_SHOWN = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("import", help="import existing records from CSV or Excel (.xlsx)")
    sub = parser.add_subparsers(dest="import_kind", required=True, metavar="KIND")
    for kind, text in (("addresses", "areas, buildings and units (import these first)"),
                       ("registrations", "persons and their residence registrations, with cards")):
        action = sub.add_parser(kind, help=text)
        action.add_argument("file", type=Path, help=".csv (UTF-8 or GB18030) or .xlsx")
        action.add_argument("--database-url", help="sqlite:///path or postgresql://... (env RENTGATE_DATABASE_URL)")
        action.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
        action.add_argument("--report", type=Path, help="write the per-row errors to this CSV file")
        action.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        action.add_argument("--actor", help="who the history names (default import:<file name>)")
        action.add_argument("--sheet", help="the .xlsx sheet to read (default: the first)")
        action.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        action.set_defaults(func=_run)


def _fail(text: str) -> int:
    print(f"rentgate import: {text}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from server.db import migrate
    from server.db.engine import create_engine
    from server.errors import ServerError
    from server.registry.imports.errors import UnusableInput
    from server.registry.imports.progress import Progress
    from server.registry.imports.report import write_report
    from server.registry.imports.run import NoPhase, Phase, run_import
    from server.registry.pii import load_vault
    from server.rules import load_rules
    from server.settings import load_settings

    if not args.file.is_file():
        return _fail(f"{args.file}: no such file")
    try:
        settings = load_settings(database_url=args.database_url)
        vault = load_vault(settings.pii_key_file, settings.database_url)
        rules = load_rules(settings.rules_file)
    except ServerError as exc:
        return _fail(str(exc))
    engine = create_engine(settings.database_url)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            return _fail(f"the database is at revision {current or '<empty>'}, not {head}: run `rentgate db upgrade`")

        def phase(name: str, total: int) -> Phase:
            return NoPhase() if args.no_progress else Progress(name, total)

        try:
            result = run_import(engine, vault, rules, args.import_kind, args.file,
                                actor=args.actor or f"import:{args.file.name}", dry_run=args.dry_run,
                                sheet=args.sheet, phases=phase)
        except UnusableInput as exc:
            return _fail(str(exc))
        except SQLAlchemyError as exc:
            # write_transaction has rolled back: nothing of this file is in the database.
            print(f"rentgate import: the database refused the import, nothing was written: {exc}", file=sys.stderr)
            return 1
    finally:
        engine.dispose()

    if args.report is not None:
        write_report(args.report, result.errors)
    if result.errors:
        shown = result.errors[:MAX_ERRORS_SHOWN]
        for e in shown:
            value = f" ({e.value})" if e.value else ""
            print(f"row {e.row}, {e.column}: {e.problem}{value}", file=sys.stderr)
        if len(result.errors) > len(shown):
            where = f"; all in {args.report}" if args.report else "; --report FILE.csv lists them all"
            print(f"... {len(result.errors) - len(shown)} more{where}", file=sys.stderr)
    if result.changes:
        gateways = sorted({c.gateway_id for c in result.changes})
        print(f"allowlists changed for gateways {', '.join(gateways)}: a running server sends them at its next "
              "broker (re)connect or when the gateway asks (docs/import.md)", file=sys.stderr)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(_sentence(result.rows, result.imported, result.failed_rows, len(result.errors), args.dry_run))
    return 1 if result.errors else 0


def _sentence(rows: int, imported: int, failed_rows: int, errors: int, dry_run: bool) -> str:
    if errors:
        return f"{failed_rows} of {rows} rows have errors ({errors} in all); nothing was written"
    if dry_run:
        return f"{rows} rows checked, all valid; nothing was written (--dry-run)"
    return f"{imported} rows imported"
