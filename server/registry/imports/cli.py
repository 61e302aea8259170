"""``rentgate import addresses|registrations FILE``: exit 0 when imported (or,
with --dry-run, when every row is valid), 1 when any row fails (nothing is
written), 2 when the file or the setup is unusable.

A refusal leaves nothing behind: the database is checked before anything is
opened for writing (no SQLite file, no folder, no identity-number key is
created for an import that cannot run), and the key is only generated when
rows are about to be written."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import count, tr
from server.cli_support import DATABASE_URL_HELP

if TYPE_CHECKING:
    from server.registry.pii import PiiVault

MAX_ERRORS_SHOWN = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import", help="import existing records from CSV or Excel (.xlsx)",
        description="Import existing records from a CSV or Excel (.xlsx) file: addresses first, then "
                    "registrations. Every row is checked first; if any row has an error, nothing is written.")
    sub = parser.add_subparsers(dest="import_kind", required=True, metavar="KIND")
    for kind, text in (("addresses", "areas, buildings and units (import these first)"),
                       ("registrations", "persons and their residence registrations, with cards")):
        action = sub.add_parser(kind, help=text, description=f"Import {text}; docs/import.md lists the columns.")
        action.add_argument("file", type=Path, help=".csv (UTF-8 or GB18030) or .xlsx")
        action.add_argument("--database-url", help=DATABASE_URL_HELP)
        action.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
        action.add_argument("--report", type=Path, metavar="FILE.csv",
                            help="write every row error to this CSV file (opens in Excel)")
        action.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        action.add_argument("--actor", help="the name the history records (default: import:<file name>)")
        action.add_argument("--sheet", help="the .xlsx sheet to read (default: the first)")
        action.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        action.set_defaults(func=_run)


def _fail(text: str) -> int:
    print(f"rentgate import: {text}", file=sys.stderr)
    return 2


_PHASES = {"validating": ("检查", "validating"), "importing": ("导入", "importing")}


def _run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from server.cli_support import CommandRefused, check_database, settings_or_refuse
    from server.db.engine import create_engine
    from server.errors import ServerError
    from server.registry.imports.errors import UnusableInput
    from server.registry.imports.progress import Progress
    from server.registry.imports.report import error_line, write_report
    from server.registry.imports.run import NoPhase, Phase, run_import
    from server.rules import load_rules

    if not args.file.is_file():
        return _fail(tr(f"找不到文件 {args.file}：请核对路径和文件名", f"{args.file}: no such file; check the path"))
    try:
        settings = settings_or_refuse(args.database_url)
        # Before anything is opened: a refused import creates no database file.
        check_database(settings.database_url, args.database_url)
        rules = load_rules(settings.rules_file)
        keys = _Keys(settings.pii_key_file, settings.database_url, args.import_kind == "registrations")
    except CommandRefused as exc:
        return _fail(str(exc))
    except ServerError as exc:
        return _fail(_setup_problem(exc))

    def phase(name: str, total: int) -> Phase:
        zh, en = _PHASES.get(name, (name, name))
        return NoPhase() if args.no_progress else Progress(tr(zh, en), total)

    engine = create_engine(settings.database_url)
    try:
        result = run_import(engine, keys, rules, args.import_kind, args.file,
                            actor=args.actor or f"import:{args.file.name}", dry_run=args.dry_run,
                            sheet=args.sheet, phases=phase)
    except UnusableInput as exc:
        return _fail(str(exc))
    except ServerError as exc:
        return _fail(_setup_problem(exc))
    except SQLAlchemyError as exc:
        # write_transaction has rolled back: nothing of this file is in the database.
        print(tr(f"rentgate import: 数据库拒绝了这次导入，什么都没有写入：{exc}",
                 f"rentgate import: the database refused the import, nothing was written: {exc}"), file=sys.stderr)
        return 1
    finally:
        engine.dispose()

    if args.report is not None:
        try:
            write_report(args.report, result.errors)
        except OSError as exc:
            print(tr(f"rentgate import: 无法写入错误报告 {args.report}：{exc.strerror or exc}",
                     f"rentgate import: cannot write the report {args.report}: {exc.strerror or exc}"),
                  file=sys.stderr)
    if result.errors:
        shown = result.errors[:MAX_ERRORS_SHOWN]
        for e in shown:
            print(error_line(e), file=sys.stderr)
        if len(result.errors) > len(shown):
            more = len(result.errors) - len(shown)
            if args.report:
                where = tr(f"，全部错误见 {args.report}", f"; all of them are in {args.report}")
            else:
                where = tr("，用 --report 文件.csv 可列出全部", "; --report FILE.csv lists them all")
            print(tr(f"…… 还有 {more:,} 个错误{where}", f"... {count(more, '', 'more error')}{where}"),
                  file=sys.stderr)
    if result.changes:
        gateways = ", ".join(sorted({c.gateway_id for c in result.changes}))
        print(tr(f"网关 {gateways} 的门禁名单已更新：正在运行的服务器要在下次重连 MQTT 或网关来取时才会下发，"
                 "导入后请重启服务器（docs/import.md）",
                 f"the allowlists of gateways {gateways} changed: a running server sends them at its next broker "
                 "(re)connect or when a gateway asks; restart the server after the import (docs/import.md)"),
              file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False))
    else:
        print(_sentence(result.rows, result.imported, result.failed_rows, len(result.errors), args.dry_run,
                        args.report))
    return 1 if result.errors else 0


class _Keys:
    """The identity-number key for run_import, asked for only when needed.
    An existing key is always used. When none exists yet (a new SQLite
    database), checks run with a throwaway key: no stored number can have
    been sealed with a key that does not exist, and a dry run or a file with
    errors must not leave a new key file behind. The real key is generated
    only when rows are about to be written."""

    def __init__(self, key_file: str | None, database_url: str, needed: bool) -> None:
        from server.registry.pii import find_vault

        self.key_file, self.database_url = key_file, database_url
        # Found now, so that a missing or unreadable key is said before the
        # file is read (PostgreSQL without RENTGATE_PII_KEY_FILE, say).
        self.existing = find_vault(key_file, database_url) if needed else None
        self._throwaway: PiiVault | None = None

    def __call__(self, writing: bool) -> PiiVault:
        from server.registry.pii import PiiVault, load_vault

        if self.existing is not None:
            return self.existing
        if writing:
            self.existing = load_vault(self.key_file, self.database_url)
            return self.existing
        if self._throwaway is None:
            self._throwaway = PiiVault.from_master(secrets.token_bytes(32))
        return self._throwaway


def _setup_problem(exc: Exception) -> str:
    from server.registry.pii import PiiKeyUnavailable

    if isinstance(exc, PiiKeyUnavailable):
        return tr(f"没有可用的身份证号密钥：用 `rentgate keys pii 文件` 生成一个，并把 RENTGATE_PII_KEY_FILE 设为该文件"
                  f"（详情：{exc}）",
                  f"no usable identity-number key: write one with `rentgate keys pii FILE` and set "
                  f"RENTGATE_PII_KEY_FILE to that file (detail: {exc})")
    return tr(f"无法导入：{exc}", f"cannot import: {exc}")


def _sentence(rows: int, imported: int, failed_rows: int, errors: int, dry_run: bool, report: Path | None) -> str:
    if errors:
        where = tr(f"，错误已写入 {report}", f"; the errors are in {report}") if report else ""
        return tr(f"{rows:,} 行中有 {failed_rows:,} 行有错（共 {errors:,} 个错误）{where}；什么都没有写入，"
                  "改正后请重新导入整个文件",
                  f"{failed_rows:,} of {count(rows, '', 'row')} {'has' if failed_rows == 1 else 'have'} errors "
                  f"({count(errors, '', 'error')} in all){where}; nothing was written: correct them and import "
                  "the whole file again")
    if dry_run:
        return tr(f"已检查 {rows:,} 行，全部正确；因为是 --dry-run，什么都没有写入",
                  f"{count(rows, '', 'row')} checked, all valid; nothing was written (--dry-run)")
    return tr(f"已导入 {imported:,} 行", f"{count(imported, '', 'row')} imported")
