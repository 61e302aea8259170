"""What the database subcommands (`rentgate user`, `grid`, `plates`, `import`)
share: the common flags, a database check that creates nothing, and one
transaction with errors turned into exit code 2 and a sentence for a person."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr

if TYPE_CHECKING:
    import sqlalchemy as sa

    from server.settings import ServerSettings

DATABASE_URL_HELP = ("the database: sqlite:///path or postgresql://user@host/name (env RENTGATE_DATABASE_URL; "
                     "default: sqlite:///var/rentgate.db)")


class CommandRefused(Exception):
    """A sentence for the person at the terminal, already in their language:
    the command stops with exit code 2 and nothing is written."""


def action(sub: Any, name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
    """A subcommand with --database-url and --json."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    parser.add_argument("--database-url", help=DATABASE_URL_HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=func)
    return parser


# Roles as a person says them: (Chinese, English with its article).
_ROLES = {"admin": ("管理员", "an administrator"), "landlord": ("房东", "a landlord"),
          "coordinator": ("网格员", "a grid coordinator"), "police": ("公安民警", "a police officer")}
_LEVELS = {"district": ("区", "a district"), "street": ("街道", "a street"), "community": ("社区", "a community"),
           "grid": ("网格", "a grid")}


def role_name(role: str) -> str:
    """``管理员`` / ``an administrator``."""
    zh, en = _ROLES.get(role, (role, f"a {role}"))
    return tr(zh, en)


def level_name(level: str) -> str:
    """``社区`` / ``a community``."""
    zh, en = _LEVELS.get(level, (level, f"a {level}"))
    return tr(zh, en)


def upgrade_command(database_url_flag: str | None) -> str:
    """The command that prepares the database, with the same --database-url
    the person gave (without it the same environment applies)."""
    return "rentgate db upgrade" + (f" --database-url {database_url_flag}" if database_url_flag else "")


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (which
    connecting would create, with its folder), else None."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if (parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
            and not database.startswith("file:") and not Path(database).exists()):
        return database
    return None


def check_database(url: str, database_url_flag: str | None) -> None:
    """Raises CommandRefused unless the database is at the current schema.
    Creates nothing on the way: a SQLite file that does not exist is reported,
    not made (connecting would create it, and its folder, empty)."""
    from server.db import migrate
    from server.db.engine import create_engine, redacted

    fix = upgrade_command(database_url_flag)
    if (database := missing_sqlite_file(url)) is not None:
        raise CommandRefused(tr(f"数据库 {database} 还不存在：请先运行 `{fix}` 建好它，然后再运行这个命令",
                                f"the database {database} does not exist yet: run `{fix}` first, then this "
                                "command again"))
    engine = create_engine(url)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
    finally:
        engine.dispose()
    if current != head:
        shown = redacted(url)
        if current is None:
            raise CommandRefused(tr(f"数据库 {shown} 还没有建表：请先运行 `{fix}`，然后再运行这个命令",
                                    f"the database {shown} has no tables yet: run `{fix}` first, then this "
                                    "command again"))
        raise CommandRefused(tr(f"数据库 {shown} 的结构是旧版本（{current}，现在需要 {head}）：请先运行 `{fix}`",
                                f"the database {shown} has an older schema ({current}, this version needs "
                                f"{head}): run `{fix}` first"))


def settings_or_refuse(database_url: str | None, **flags: Any) -> ServerSettings:
    """The server's settings, or CommandRefused naming every problem: an
    unknown RENTGATE_* variable (a misspelt RENTGATE_DATABASE_URL would
    otherwise send the command to the default database) or a value that
    cannot be used, each with what was expected."""
    from server.errors import SettingsError
    from server.settings import SettingsProblems, load_settings

    try:
        return load_settings(database_url=database_url, **flags)
    except SettingsProblems as exc:
        raise CommandRefused(settings_refusal([str(p) for p in exc.problems])) from exc
    except SettingsError as exc:
        raise CommandRefused(settings_refusal([str(exc)])) from exc


def settings_refusal(problems: list[str]) -> str:
    """One problem on the line; several, one per line under a heading."""
    if len(problems) == 1:
        return tr(f"设置有误，请改正：{problems[0]}", f"a setting cannot be used, correct it: {problems[0]}")
    lines = "".join(f"\n  {p}" for p in problems)
    return tr(f"设置有误，请改正：{lines}", f"settings cannot be used, correct them:{lines}")


def engine_at_head(database_url: str | None) -> sa.Engine:
    """An engine on a database at the current schema; raises CommandRefused otherwise."""
    from server.db.engine import create_engine

    url = settings_or_refuse(database_url).database_url
    check_database(url, database_url)
    return create_engine(url)


def explain(exc: Exception) -> str:
    """A refusal from the server's own functions (their texts are English
    for the API) as a sentence for a person, without field names or ids."""
    from server.web.errors import Conflict, InvalidInput, NotFound

    if isinstance(exc, CommandRefused):
        return str(exc)
    if isinstance(exc, NotFound):
        zh, en = _WHAT.get(exc.what, (exc.what, exc.what))
        return tr(f"没有{zh}“{exc.ident}”：请核对名称", f"there is no {en} \"{exc.ident}\": check the name")
    if isinstance(exc, InvalidInput):
        zh, en = _WHAT.get(exc.field, (exc.field, exc.field))
        return tr(f"{zh}不能用：{exc.problem}", f"the {en} cannot be used: {exc.problem}")
    if isinstance(exc, Conflict):
        return tr(f"现在不能这样做：{exc}", f"not possible now: {exc}")
    return tr(f"无法完成：{exc}", f"could not be done: {exc}")


_WHAT = {"user": ("用户", "user"), "grid": ("网格", "grid"), "username": ("用户名", "username"),
         "password": ("密码", "password"), "role": ("角色", "role"), "area": ("区域", "area"),
         "building": ("楼栋", "building"), "unit": ("房间", "unit")}


def run_in_transaction(args: argparse.Namespace, command: str,
                       work: Callable[[sa.Connection, datetime], dict[str, Any]],
                       text: Callable[[dict[str, Any]], str], refused: tuple[type[Exception], ...]) -> int:
    """``work`` in one transaction; its document as JSON (--json) or ``text``.
    A database that cannot be used, a CommandRefused, or one of the
    ``refused`` errors is exit code 2 with a sentence on stderr."""
    try:
        engine = engine_at_head(args.database_url)
    except CommandRefused as exc:
        print(f"rentgate {command}: {exc}", file=sys.stderr)
        return 2
    caught: tuple[type[Exception], ...] = (CommandRefused, *refused)
    from server.web.transactions import write_transaction

    try:
        # BEGIN IMMEDIATE on SQLite: a command that reads, then writes (and
        # appends to the audit log) waits for a running server's commit
        # instead of failing with "database is locked".
        with write_transaction(engine) as conn:
            doc = work(conn, datetime.now(UTC))
    except caught as exc:
        print(f"rentgate {command}: {explain(exc)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(json.dumps(doc, ensure_ascii=False, default=str) if args.json else text(doc))
    return 0
