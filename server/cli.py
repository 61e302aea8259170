"""``rentgate server`` and ``rentgate server check-config``, ``rentgate db upgrade|current`` and
``rentgate keys pii|plates``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.cli_support import DATABASE_URL_HELP
from server.web.access_log import AccessLogger

if TYPE_CHECKING:
    import sqlalchemy as sa

    from server.settings import LoadedSettings, Problem, ServerSettings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    server = subparsers.add_parser(
        "server", help="run the server: MQTT ingest, the pages and the HTTP API",
        description="Run the server: it stores the gateways' events from the MQTT broker, serves the pages and "
                    "the HTTP API. Settings come from RENTGATE_* environment variables (docs/settings.md); these "
                    "options override them. It does not start while a setting is wrong: `rentgate server "
                    "check-config` says what is.")
    _server_flags(server)
    server.add_argument("--upgrade", action="store_true",
                        help="migrate the database to the current schema before starting")
    server.set_defaults(func=_run_server)
    sub = server.add_subparsers(dest="server_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check-config", help="check the server's settings without starting it; exit code 2 if one is wrong",
        description="Check the server's settings (RENTGATE_* variables and these options) and the files they "
                    "name, without starting the server and without creating anything. Exit code 0 and a short "
                    "summary, passwords hidden, when it would start; 2 and every problem otherwise. Warnings "
                    "(a part that will not work, an address phones cannot reach) do not change the exit code.")
    # SUPPRESS: an option not given here must not wipe out one given before
    # the word check-config (argparse copies a subcommand's defaults over).
    _server_flags(check, default=argparse.SUPPRESS)
    check.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    check.set_defaults(func=_check_config)

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


def _database_flag(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument("--database-url", default=default, help=DATABASE_URL_HELP)


def _server_flags(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """The options that override a setting (server/settings.py FLAGS)."""
    _database_flag(parser, default)
    parser.add_argument("--mqtt-url", default=default, help="the MQTT broker, mqtt://user:password@host:port "
                        "(env RENTGATE_MQTT_URL; default: mqtt://127.0.0.1:1883)")
    parser.add_argument("--host", dest="http_host", default=default, help="the address to listen on; 0.0.0.0 for "
                        "every network (env RENTGATE_HTTP_HOST; default: 127.0.0.1)")
    parser.add_argument("--port", dest="http_port", type=int, default=default,
                        help="the HTTP port (env RENTGATE_HTTP_PORT; default: 8080)")
    parser.add_argument("--role", choices=("all", "ingest", "web", "reconcile"), default=default,
                        help="what this process does: all (everything, one process), ingest (MQTT events into the "
                             "database; run several with RENTGATE_INGEST_SHARE_GROUP), web (pages and APIs; run "
                             "several), reconcile (the background services; run exactly one). docs/scaling.md "
                             "(env RENTGATE_ROLE; default: all)")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"database_url": args.database_url, "mqtt_url": args.mqtt_url, "http_host": args.http_host,
            "http_port": args.http_port, "role": getattr(args, "role", None)}


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


def _problem_lines(problems: list[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems)


def _check_config(args: argparse.Namespace) -> int:
    report = check(**_flags(args))
    if not report.ok:
        print(tr("rentgate server check-config: 设置有误，服务器不会启动：",
                 "rentgate server check-config: the settings are wrong; the server would not start:"),
              file=sys.stderr)
        print(_problem_lines(report.problems), file=sys.stderr)
    if report.warnings:
        print(tr("注意：", "note:"), file=sys.stderr)
        print(_problem_lines(report.warnings), file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    elif report.ok:
        print(_summary(report))
    return 0 if report.ok else 2


def _summary(report: Report) -> str:
    """Where the server would keep what, and what came from where: a few lines."""
    from server.settings import redact

    assert report.loaded is not None
    s, sources = report.loaded.settings, report.loaded.sources

    def origin(*fields: str) -> str:
        named = [sources[f] for f in fields if sources[f] != "default"]
        return tr(f"（{'、'.join(named)}）", f" ({', '.join(named)})") if named else tr("（默认）", " (default)")

    rows: list[tuple[tuple[str, ...], str, str]] = [
        (("database_url",), tr("数据库", "database"), redact(s.database_url) + origin("database_url")),
        (("mqtt_url",), tr("MQTT 代理", "MQTT broker"), redact(s.mqtt_url) + origin("mqtt_url")),
        (("http_host", "http_port"), tr("监听", "listening on"),
         f"{s.http_host}:{s.http_port}" + origin("http_host", "http_port")),
        (("role", "ingest_share_group"), tr("角色", "role"),
         _role_text(s.role, s.ingest_share_group) + origin("role", "ingest_share_group")),
        (("public_url",), tr("门牌地址", "plates point at"), redact(s.public_url) + origin("public_url")),
        (("pii_key_file",), tr("身份证号密钥", "identity-number key"), report.parts["pii_key_file"]),
        (("plate_key_file",), tr("门牌签名密钥", "plate keyring"), report.parts["plate_key_file"]),
        (("allowlist_key_file",), tr("门禁名单签名密钥", "allowlist key"), report.parts["allowlist_key_file"]),
        (("audit_key_file",), tr("审计日志签名密钥", "audit key"), report.parts["audit_key_file"]),
        (("police_signing_key_file",), tr("布控推送签名密钥", "police webhook key"),
         report.parts["police_signing_key_file"]),
        (("gateway_ca_dir",), tr("网关 CA", "gateway CA"), report.parts["gateway_ca_dir"]),
        (("rules_file",), tr("城市规则", "city rules"), report.parts["rules_file"]),
        (("media_dir",), tr("照片文件夹", "photos"), report.parts["media_dir"]),
    ]
    shown = {f for fields, _, _ in rows for f in fields}
    others = sorted(name for f, name in sources.items() if f not in shown and name != "default")
    width = max(_width(label) for _, label, _ in rows)
    lines = [tr("服务器设置没有问题，可以启动：", "the server's settings are fine; it would start with:")]
    lines += [f"  {label}{' ' * (width - _width(label))}  {value}" for _, label, value in rows]
    if others:
        lines.append(tr(f"  另外设置了：{'、'.join(others)}", f"  also set: {', '.join(others)}"))
    return "\n".join(lines)


def _role_text(role: str, group: str | None) -> str:
    if role == "ingest" and group:
        return tr(f"ingest（共享订阅组 {group}）", f"ingest (shared subscription group {group})")
    return role


def _width(text: str) -> int:
    """Columns on a terminal: Chinese characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _run_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import make_app
    from server.cli_support import CommandRefused, check_database
    from server.db import migrate
    from server.db.engine import create_engine

    # The same checks as `rentgate server check-config`: a misspelt variable
    # or a key file that cannot be read stops the server here, in words,
    # not later as a 503 or a traceback.
    report = check(**_flags(args))
    if not report.ok or report.loaded is None:
        print(tr("rentgate server: 设置有误，服务器没有启动；请改正：", "rentgate server: the settings are wrong and the "
                 "server did not start; correct them:"), file=sys.stderr)
        print(_problem_lines(report.problems), file=sys.stderr)
        return 2
    settings = _worker_client_id(report.loaded)

    def prepare() -> None:
        if args.upgrade:
            engine = create_engine(settings.database_url)
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
        check_database(settings.database_url, args.database_url)

    try:
        _until_database_answers(prepare, settings.database_url)
    except CommandRefused as exc:
        print(f"rentgate server: {exc}" + tr("（或用 --upgrade 启动服务器，它会先升级数据库）",
                                             " (or start the server with --upgrade, which does it first)"),
              file=sys.stderr)
        return 2
    # run_app turns SIGINT/SIGTERM into a graceful exit that runs the cleanup
    # contexts: ingest commits and acknowledges what it holds before exiting.
    from server.db.singleton import AlreadyRunning

    try:
        web.run_app(make_app(settings), host=settings.http_host, port=settings.http_port,
                    print=lambda text: log.info("%s", text.strip()), shutdown_timeout=10,
                    access_log_class=AccessLogger)
    except AlreadyRunning:
        print(tr("rentgate server: 这个数据库已有一个 reconcile 进程在运行；每个数据库只能运行一个"
                 "（docs/scaling.md）。停掉另一个，或用 --role web / --role ingest 启动这个。",
                 "rentgate server: a reconcile process is already running on this database, and there "
                 "must be exactly one (docs/scaling.md). Stop the other one, or start this one with "
                 "--role web or --role ingest."), file=sys.stderr)
        return 2
    from server.app import reconcile_lock_lost

    if reconcile_lock_lost.is_set():
        print(tr("rentgate server: 数据库重启期间另一个 reconcile 进程取得了锁，本进程已停止，以保证只有一个在运行"
                 "（docs/scaling.md）。",
                 "rentgate server: while the database was away another reconcile process took the reconcile "
                 "lock; this one stopped so that exactly one runs (docs/scaling.md)."), file=sys.stderr)
        return 2
    return 0


# How often a server that starts while its PostgreSQL is away tries again.
DATABASE_RETRY_S = 0.5


def _until_database_answers(prepare: Callable[[], None], database_url: str) -> None:
    """Run ``prepare`` (the schema check, and the upgrade if asked), waiting
    while PostgreSQL does not answer: a process restarted by its supervisor
    during a database restart or failover then starts when the database is
    back, instead of exiting with a traceback and being restarted in a loop.
    Said once when the wait begins and once when it ends (rentgate.outage).
    Anything else (a wrong schema, SQLite) stops at once, as before."""
    import time

    import sqlalchemy as sa

    from rentgate.outage import Outage, brief
    from server.settings import redact

    outage = Outage(log, f"the database {redact(database_url)}")
    while True:
        try:
            prepare()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if not database_url.startswith("postgresql"):
                raise
            if outage.failed(exc):
                print(tr(f"rentgate server: 数据库连不上（{brief(exc)}），等它恢复后再启动；如果这不是数据库"
                         "在重启，请检查 RENTGATE_DATABASE_URL。按 Ctrl-C 停止。",
                         f"rentgate server: the database does not answer ({brief(exc)}); waiting for it "
                         "before starting. If the database is not restarting, check RENTGATE_DATABASE_URL. "
                         "Ctrl-C stops."), file=sys.stderr)
            time.sleep(DATABASE_RETRY_S)
            continue
        outage.ok()
        return


def _worker_client_id(loaded: LoadedSettings) -> ServerSettings:
    """The settings to run with. Workers of a share group and web processes
    run several to a machine, and each needs MQTT client ids of its own (the
    broker drops a connection when another takes its id, and two processes
    with one id would throw each other off for ever); when
    RENTGATE_MQTT_CLIENT_ID is not set, each one's is the default plus its
    process id. Setting one per worker (ingest-1, ingest-2, ...) is better:
    its retained status topic is then reused by its next start instead of a
    new one being left behind (docs/scaling.md)."""
    settings = loaded.settings
    several = bool(settings.ingest_share_group) or settings.role == "web"
    if several and loaded.sources.get("mqtt_client_id", "default") == "default":
        suffix = f"-{os.getpid()}"
        derived = settings.mqtt_client_id[: 64 - len(suffix)] + suffix
        log.info("MQTT client id %s (RENTGATE_MQTT_CLIENT_ID not set)", derived)
        return settings.model_copy(update={"mqtt_client_id": derived})
    return settings


# --------------------------------------------------------------------------- the checks before start
#
# What `rentgate server` checks before it starts, and `rentgate server
# check-config` reports without starting: the RENTGATE_* settings
# (server/settings.py: unknown names, values that cannot be used), then what
# they name. A key file, rules file or photo folder that is set but cannot be
# used is a problem, like a bad value: the server would otherwise start and
# answer 503 for the part that needs it, or fail on its first request, later
# and further from the typo. Parts left unset where the server cannot make
# its own (PostgreSQL without key files), and a public URL phones cannot
# reach, are warnings: the server starts without them, as
# docs/registry-api.md promises, but whoever sets it up should know. Reads
# files, creates nothing (no key, no folder, no database). Here rather than in
# a module of its own: it reads the registry's and the plates' files, which
# only the composition layer may import (docs/architecture.md).


@dataclass
class Report:
    loaded: LoadedSettings | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # What happens to each key, rules and photo setting: field -> words.
    parts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        loaded = self.loaded
        return {
            "ok": self.ok,
            "settings": None if loaded is None else {k: _plain(v) for k, v in loaded.settings.model_dump().items()},
            "sources": None if loaded is None else loaded.sources,
            "problems": [p.as_json() for p in self.problems],
            "warnings": [p.as_json() for p in self.warnings],
        }


def _plain(value: object) -> object:
    from server.settings import redact

    return redact(value) if isinstance(value, str) else value


def check(environ: Any = None, **flags: Any) -> Report:
    """Every problem and warning of the settings from ``environ`` (default:
    the process's) and ``flags`` (by field name, None when not given)."""
    from server.settings import SettingsProblems, read_settings

    try:
        loaded = read_settings(environ, **flags)
    except SettingsProblems as exc:
        return Report(None, list(exc.problems))
    report = Report(loaded)
    _Checks(report, loaded).run()
    return report


def _file_trouble(path: str) -> str | None:
    """What keeps ``path`` from being read as a file, in words; the readers'
    own errors quote Python's (``[Errno 2] ...``), these say it plainly."""
    given = Path(path)
    if not given.exists():
        return tr(f"{path} 不存在", f"{path} does not exist")
    if given.is_dir():
        return tr(f"{path} 是文件夹，不是文件", f"{path} is a folder, not a file")
    if not os.access(given, os.R_OK):
        return tr(f"{path} 不可读（检查权限：服务器以哪个用户运行？）",
                  f"{path} cannot be read (check its permissions: which user runs the server?)")
    return None


def _folder_beside(database_url: str) -> Path | None:
    """The folder of a SQLite database file, where the server makes the keys
    and the photo folder it is not given; None for PostgreSQL or memory."""
    from server.registry.pii import PiiKeyUnavailable, generated_key_path

    try:
        return generated_key_path(database_url).parent
    except PiiKeyUnavailable:
        return None


class _Checks:
    def __init__(self, report: Report, loaded: LoadedSettings) -> None:
        self.report = report
        self.settings: ServerSettings = loaded.settings
        self.sources = loaded.sources
        self.folder = _folder_beside(self.settings.database_url)

    def _problem(self, field_name: str, code: str, zh: str, en: str) -> Problem:
        from server.settings import Problem, variable

        source = self.sources.get(field_name, "default")
        return Problem(variable(field_name) if source == "default" else source, code, tr(zh, en))

    def problem(self, field_name: str, code: str, zh: str, en: str) -> None:
        self.report.problems.append(self._problem(field_name, code, zh, en))

    def warning(self, field_name: str, code: str, zh: str, en: str) -> None:
        self.report.warnings.append(self._problem(field_name, code, zh, en))

    def run(self) -> None:
        self._key("pii_key_file", "身份证号密钥", "identity-number key", "rentgate keys pii FILE",
                  "不能登记或查找人员（接口返回 503）", "persons cannot be registered or looked up (the API answers 503)",
                  self._read_pii)
        self._key("plate_key_file", "门牌签名密钥", "plate-signing keyring", "rentgate keys plates --rotate --file FILE",
                  "不能打印门牌，扫码也打不开", "plates can be neither printed nor scanned", self._read_plates)
        self._key("allowlist_key_file", "门禁名单签名密钥", "allowlist signing key",
                  "openssl genpkey -algorithm ed25519 -out FILE",
                  "网关收不到新的门禁名单", "gateways get no new allowlists", self._read_allowlist_key)
        # Both are Ed25519 keys read like the allowlist key.
        self._key("audit_key_file", "审计日志签名密钥", "audit signing key",
                  "openssl genpkey -algorithm ed25519 -out FILE",
                  "审计日志的检查点没有签名，监督机构无法核验", "the audit log's checkpoints go unsigned and no "
                  "oversight body can verify them", self._read_allowlist_key)
        self._key("police_signing_key_file", "布控推送签名密钥", "police webhook signing key",
                  "openssl genpkey -algorithm ed25519 -out FILE",
                  "公安布控不能推送告警", "police watches cannot deliver alerts", self._read_allowlist_key)
        self._gateway_ca()
        self._rules()
        self._media()
        self._public_url()
        self._role()
        self._jetstream()

    # --------------------------------------------------------------- key files

    def _key(self, field_name: str, zh: str, en: str, make: str, zh_without: str, en_without: str,
             read: Callable[[str], str | None]) -> None:
        path = getattr(self.settings, field_name)
        if path:
            trouble = _file_trouble(path) or read(path)
            if trouble is not None:
                self.problem(field_name, "unreadable_file", f"{zh}文件不能用：{trouble}",
                             f"the {en} cannot be used: {trouble}")
                return
            self.report.parts[field_name] = path
        elif self.folder is not None:
            self.report.parts[field_name] = tr(f"未设置：在数据库旁的 {self.folder} 自动生成（请备份）",
                                               f"not set: generated beside the database in {self.folder} "
                                               "(back it up)")
        else:
            self.report.parts[field_name] = tr("未设置", "not set")
            self.warning(field_name, "not_set", f"没有设置：数据库不是 SQLite 文件，服务器不会自己生成{zh}，"
                                                f"没有它{zh_without}；用 `{make}` 生成一个",
                         f"not set: the database is no SQLite file, so the server makes no {en} of its own, and "
                         f"without one {en_without}; `{make}` writes one")

    # Each reader is the one the server uses, so what passes here loads there;
    # it returns its error's words (which name the file), or None.

    @staticmethod
    def _read_pii(path: str) -> str | None:
        from server.registry.pii import PiiKeyUnavailable, read_key_file

        try:
            read_key_file(path)
        except PiiKeyUnavailable as exc:
            return str(exc)
        return None

    @staticmethod
    def _read_plates(path: str) -> str | None:
        from server.plates.errors import PlateKeyUnavailable
        from server.plates.keys import read_keyring

        try:
            read_keyring(path)
        except PlateKeyUnavailable as exc:
            return str(exc)
        return None

    @staticmethod
    def _read_allowlist_key(path: str) -> str | None:
        from rentgate.signing import SigningKeyError, load_private_key_file

        try:
            load_private_key_file(path)
        except SigningKeyError as exc:
            return str(exc)
        return None

    def _gateway_ca(self) -> None:
        from server.fleet.ca import GENERATED_DIR_NAME, GatewayCa
        from server.fleet.errors import CaError

        path = self.settings.gateway_ca_dir
        if path:
            try:
                GatewayCa.load(Path(path))
            except CaError as exc:
                self.problem("gateway_ca_dir", "unreadable_ca", f"网关 CA 不能用：{exc}",
                             f"the gateway CA cannot be used: {exc}")
                return
            self.report.parts["gateway_ca_dir"] = path
        elif self.folder is not None:
            self.report.parts["gateway_ca_dir"] = tr(
                f"未设置：在数据库旁的 {self.folder / GENERATED_DIR_NAME} 自动生成（请备份）",
                f"not set: generated beside the database in {self.folder / GENERATED_DIR_NAME} (back it up)")
        else:
            self.report.parts["gateway_ca_dir"] = tr("未设置", "not set")
            self.warning("gateway_ca_dir", "not_set", "没有设置：数据库不是 SQLite 文件，服务器不会自己生成网关 CA，"
                                                      "没有它网关不能注册；用 `rentgate fleet broker-setup` 生成一个",
                         "not set: the database is no SQLite file, so the server makes no gateway CA of its own, "
                         "and without one no gateway can be enrolled; `rentgate fleet broker-setup` makes one")

    # --------------------------------------------------------------- the rest

    def _rules(self) -> None:
        from server.errors import SettingsError
        from server.rules import load_rules

        path = self.settings.rules_file
        if not path:
            self.report.parts["rules_file"] = tr("未设置：用默认规则（docs/registry.md）",
                                                 "not set: the default rules (docs/registry.md)")
            return
        try:
            load_rules(path)
        except SettingsError as exc:
            self.problem("rules_file", "bad_rules_file", f"城市规则文件不能用：{exc}",
                         f"the city's rules file cannot be used: {exc}")
            return
        self.report.parts["rules_file"] = path

    def _media(self) -> None:
        path = self.settings.media_dir
        if path:
            if Path(path).exists() and not Path(path).is_dir():
                self.problem("media_dir", "not_a_folder", f"{path} 不是文件夹：照片要存进一个文件夹",
                             f"{path} is not a folder: photos are kept in a folder")
                return
            self.report.parts["media_dir"] = path
        elif self.folder is not None:
            self.report.parts["media_dir"] = tr(f"未设置：{self.folder / 'media'}", f"not set: {self.folder / 'media'}")
        else:
            self.report.parts["media_dir"] = tr("未设置", "not set")
            self.warning("media_dir", "not_set", "没有设置：数据库不是 SQLite 文件，巡查和问题报告的照片无处保存",
                         "not set: the database is no SQLite file, so patrols' and reports' photos have nowhere "
                         "to go")

    def _role(self) -> None:
        s = self.settings
        if s.role == "ingest" and not s.ingest_share_group and s.ingest_source == "mqtt":
            self.warning("ingest_share_group", "no_share_group",
                         "角色是 ingest 但没有设置共享订阅组：每个 ingest 进程都会收到每条消息（重复处理，负载不分摊）；"
                         "只运行一个 ingest 进程时可以不设，运行多个时请给它们设同一个组名（docs/scaling.md）",
                         "the role is ingest but no shared subscription group is set: every ingest process would "
                         "get every message (the work done N times, not shared); fine for one ingest process, "
                         "for several give them all the same group name (docs/scaling.md)")
        if s.role != "all" and s.database_url.startswith("sqlite:"):
            self.warning("role", "role_on_sqlite",
                         f"角色 {s.role} 用的是 SQLite 数据库：多个进程共用一个 SQLite 文件只在同一台机器上可行，"
                         "写入互相排队，新事件要靠轮询才能通知对账；分开运行请用 PostgreSQL（docs/scaling.md）",
                         f"role {s.role} on a SQLite database: several processes on one SQLite file work on one "
                         "machine only, their writes queue behind each other, and reconciliation learns of new "
                         "events by polling; use PostgreSQL to run the roles apart (docs/scaling.md)")
        if s.ingest_share_group and s.role not in ("ingest", "all"):
            self.warning("ingest_share_group", "share_group_unused",
                         f"设置了共享订阅组，但角色 {s.role} 不接收事件：这个进程不用它",
                         f"a shared subscription group is set, but role {s.role} does not ingest: this process "
                         "does not use it")

    def _jetstream(self) -> None:
        if self.settings.ingest_source != "jetstream" or self.settings.role not in ("ingest", "all"):
            return
        # Not knowable before connecting (the version is the server's), and a
        # gateway id is the gateway's own: say it where it is set up.
        self.warning("ingest_source", "nats_topic_dots",
                     "NATS 2.9 的 MQTT 监听不接受含“.”的主题：网关编号含“.”的网关无法通过它发布事件（连接会被断开）；"
                     "请用 NATS 2.10 或更新版本，或不含“.”的网关编号（docs/clustering.md）",
                     "NATS 2.9's MQTT listener refuses topics holding a '.': a gateway whose id holds one cannot "
                     "publish through it (its connection is dropped); use NATS 2.10 or later, or gateway ids "
                     "without a '.' (docs/clustering.md)")

    def _public_url(self) -> None:
        from server.plates.public_url import PROBLEMS, REASONS, BadPublicUrl, check_public_url

        try:
            checked = check_public_url(self.settings.public_url)
        except BadPublicUrl as exc:
            zh, en = PROBLEMS[exc.problem]
            self.problem("public_url", "bad_public_url", f"门牌二维码的地址{zh}（现在是 {exc.url}）",
                         f"the address plates' QR codes point at {en} (given: {exc.url})")
            return
        if checked.not_public is not None:
            zh, en = REASONS[checked.not_public]
            self.warning("public_url", "not_public", f"门牌二维码会指向 {checked.url}（{zh}），住户的手机打不开；"
                                                     "请设为手机能访问的地址 https://…",
                         f"plates' QR codes would point at {checked.url} ({en}), which tenants' phones cannot "
                         "open; set the address phones reach, https://…")
        elif checked.insecure:
            self.warning("public_url", "plain_http", f"{checked.url} 是不加密的 http：手机能打开，但建议用 https",
                         f"{checked.url} is plain unencrypted http: phones open it, but prefer https")
