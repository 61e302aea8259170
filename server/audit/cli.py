"""``rentgate audit verify|export|verify-export|checkpoint|public-key``
(docs/audit.md).

Exit codes: 0 done, and for the verifying commands: intact; 1 verification
found a problem (the message says which record and what to do); 2 the
command could not run: a database that is not ready, a setting, a key or a
date that cannot be used, an --out file that already exists (nothing is
ever overwritten), nothing in the period. What a person reads is in the
command's language (rentgate/lang.py); progress goes to stderr; ``--json``
prints one JSON object as the last line of stdout, with the same keys in
either language."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.cli_support import CommandRefused
from server.cli_support import action as _action

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa

    from rentgate.signing import Ed25519PublicKey
    from server.audit.keys import AuditKey
    from server.audit.report import Report
    from server.settings import ServerSettings

PUBLIC_KEY_HELP = ("a public key checkpoints may be signed with: base64, PEM, or a file holding either (a private "
                   "key file works too); repeat it for keys used before a key change")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="the tamper-evident audit log: verify, export, checkpoint",
                                   description="Every police request, answer size and view of a full identity "
                                   "number is appended to a hash chain with signed checkpoints (docs/audit.md).")
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = _action(sub, "verify", _verify, "recompute every hash of the log in the database and check every "
                     "signed checkpoint")
    verify.add_argument("--public-key", action="append", default=[], metavar="KEY", help=PUBLIC_KEY_HELP)
    export = _action(sub, "export", _export, "write a period of the log, with its signed checkpoints, for an "
                     "oversight body")
    export.add_argument("--from", dest="start", required=True, metavar="WHEN",
                        help="start: a date (2026-12-01, from its first moment in the city's time zone) or an "
                        "RFC 3339 time")
    export.add_argument("--to", dest="end", required=True, metavar="WHEN",
                        help="end: a date (2026-12-31, up to its last moment) or an RFC 3339 time (not included)")
    export.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="the file to write; it must not exist yet")
    export.add_argument("--public-key", action="append", default=[], metavar="KEY",
                        help="public keys used before a key change, whose checkpoints may anchor the export")
    check = sub.add_parser("verify-export", help="check an export file on its own, without the database",
                           description="Check an export file on its own, without the database.")
    check.add_argument("file", type=Path, metavar="FILE", help="the export file (rentgate audit export --out)")
    check.add_argument("--public-key", action="append", default=[], metavar="KEY",
                       help="the public key the operator published (without it the key named in the file is "
                       "used, which proves less)")
    check.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    check.set_defaults(func=_verify_export)
    _action(sub, "checkpoint", _checkpoint, "sign a checkpoint over the log now (the server does every "
            "RENTGATE_AUDIT_CHECKPOINT_INTERVAL_S)")
    _action(sub, "public-key", _public_key, "the public key checkpoints are signed with, to give to an "
            "oversight body")


# ---------------------------------------------------------------- commands


def _verify(args: argparse.Namespace) -> int:
    from server.audit.verify import verify_database

    def work() -> int:
        settings = _settings(args)
        keys = _keyring(settings, args.public_key)
        engine = _engine(args, settings)
        try:
            _say(tr("正在逐条重新计算审计日志的哈希……", "recomputing every hash of the audit log..."))
            report = verify_database(engine, keys)
        finally:
            engine.dispose()
        return _report(args, report, {"database": _shown_url(settings)})

    return _guarded("audit verify", work)


def _verify_export(args: argparse.Namespace) -> int:
    from server.audit.verify import verify_export

    def work() -> int:
        pinned = _public_keys(args.public_key) if args.public_key else None
        if not args.file.is_file():
            raise CommandRefused(tr(f"找不到文件 {args.file}", f"there is no file {args.file}"))
        report = verify_export(args.file, pinned)
        if report.ok and "keys_from_file" in report.notes:
            _say(tr(f"注意：没有给出 --public-key，用的是文件自己写的公钥（{', '.join(sorted(report.key_ids))}）："
                    "这只证明文件内部一致。请核对这个密钥 ID 和运营方公布的是否相同，或者用 --public-key 指定公布的公钥",
                    f"note: no --public-key given, so the key written in the file itself was used "
                    f"({', '.join(sorted(report.key_ids))}): that only proves the file agrees with itself. Check "
                    "that this key id is the one the operator published, or pass the published key with "
                    "--public-key"))
        return _report(args, report, {"file": str(args.file), "pinned": pinned is not None})

    return _guarded("audit verify-export", work)


def _export(args: argparse.Namespace) -> int:
    from server.audit.export import Period, export_period
    from server.audit.keys import load_key
    from server.rules import load_rules

    def work() -> int:
        if args.out.exists():
            raise CommandRefused(tr(f"{args.out} 已经存在：导出从不覆盖文件，请换一个文件名或先把旧文件移走",
                                    f"{args.out} already exists: an export never overwrites a file; choose another "
                                    "name or move the old file away first"))
        settings = _settings(args)
        zone = load_rules(settings.rules_file).zone
        period = Period(_when(args.start, zone, "--from", end=False), _when(args.end, zone, "--to", end=True))
        if period.start >= period.end:
            raise CommandRefused(tr("--from 必须早于 --to", "--from must be before --to"))
        key = load_key(settings, create=True)
        others = _public_keys(args.public_key)
        engine = _engine(args, settings)
        try:
            _say(tr(f"正在导出 {args.out}……", f"writing {args.out}..."))
            result = export_period(engine, key, period, args.out, other_keys=others)
        finally:
            engine.dispose()
        doc = result.as_json() | {"ok": True, "public_key": key.public_b64}
        return _print(args, doc, _exported_text(doc))

    return _guarded("audit export", work)


def _checkpoint(args: argparse.Namespace) -> int:
    from server.audit import store
    from server.audit.keys import load_key
    from server.web.transactions import write_transaction

    def work() -> int:
        settings = _settings(args)
        key = load_key(settings, create=True)
        engine = _engine(args, settings)
        try:
            with write_transaction(engine) as conn:
                made = store.make_checkpoint(conn, key)
                latest = made or store.latest_checkpoint(conn)
        finally:
            engine.dispose()
        doc = {"ok": True, "created": made is not None, "checkpoint": None if latest is None else latest.as_json()}
        return _print(args, doc, _checkpoint_text(made, latest))

    return _guarded("audit checkpoint", work)


def _public_key(args: argparse.Namespace) -> int:
    from server.audit.keys import load_key, public_key_info

    def work() -> int:
        info = public_key_info(load_key(_settings(args), create=True))
        text = tr(f"密钥 ID：{info['key_id']}\n公钥（Ed25519，base64）：{info['public_key']}\n{info['public_key_pem']}"
                  "请把公钥交给监督机构，他们用它核验检查点和导出文件",
                  f"key id: {info['key_id']}\npublic key (Ed25519, base64): {info['public_key']}\n"
                  f"{info['public_key_pem']}give the public key to the oversight body: it checks checkpoints and "
                  "exports with it")
        return _print(args, info | {"ok": True}, text)

    return _guarded("audit public-key", work)


# ---------------------------------------------------------------- plumbing


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _print(args: argparse.Namespace, doc: dict[str, Any], text: str) -> int:
    print(json.dumps(doc, ensure_ascii=False) if args.json else text)
    return 0


def _report(args: argparse.Namespace, report: Report, extra: dict[str, Any]) -> int:
    doc = report.as_json() | extra
    if args.json:
        if not report.ok:
            _say(report.summary())
        print(json.dumps(doc, ensure_ascii=False))
    elif report.ok:
        print(report.summary())
    else:
        print(tr("审计日志校验失败：", "audit log verification FAILED: ") + report.summary())
    return 0 if report.ok else 1


def _guarded(name: str, body: Callable[[], int]) -> int:
    """Errors a person can act on: one line on stderr and exit 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from rentgate.signing import SigningKeyError
    from server.errors import ServerError

    try:
        return body()
    except (CommandRefused, ServerError) as exc:
        _say(f"rentgate {name}: {_explained(exc)}")
    except SigningKeyError as exc:
        _say(f"rentgate {name}: " + tr(f"公钥不能用：{exc}", f"a public key cannot be used: {exc}"))
    except SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _say(f"rentgate {name}: " + tr(f"数据库出错：{first}（请检查数据库是否在运行、--database-url 是否正确）",
                                      f"database error: {first} (check that the database is running and "
                                      "--database-url is right)"))
    except OSError as exc:
        _say(f"rentgate {name}: " + tr(f"{exc}（请检查路径、权限和磁盘空间）",
                                      f"{exc} (check the path, its permissions and the free disk space)"))
    return 2


def _explained(exc: Exception) -> str:
    from server.audit.errors import AuditKeyUnavailable
    from server.audit.export import LogDamaged, NothingToExport

    if isinstance(exc, NothingToExport):
        return tr(f"这个时段没有可导出的记录（{exc}）：请换一个时段；刚写入、还没有签名检查点的记录要等下一个检查点",
                  f"nothing to export in this period ({exc}): choose another period; records not yet covered by a "
                  "checkpoint wait for the next one")
    if isinstance(exc, LogDamaged):
        return tr(f"数据库里的审计日志有问题（{exc}），没有写导出文件：请先运行 `rentgate audit verify` 查明",
                  f"the audit log in the database is damaged ({exc}); no export was written: run "
                  "`rentgate audit verify` to find out more")
    if isinstance(exc, AuditKeyUnavailable):
        return tr(f"没有可用的审计签名密钥：{exc}", f"no usable audit signing key: {exc}")
    return str(exc)


def _settings(args: argparse.Namespace) -> ServerSettings:
    from server.cli_support import settings_or_refuse

    return settings_or_refuse(args.database_url)


def _engine(args: argparse.Namespace, settings: ServerSettings) -> sa.Engine:
    from server.cli_support import check_database
    from server.db.engine import create_engine

    check_database(settings.database_url, args.database_url)
    return create_engine(settings.database_url)


def _shown_url(settings: ServerSettings) -> str:
    from server.db.engine import redacted

    return redacted(settings.database_url)


def _public_keys(texts: Sequence[str]) -> dict[str, Ed25519PublicKey]:
    from server.audit.keys import public_keys

    return public_keys(texts)


def _keyring(settings: ServerSettings, texts: Sequence[str]) -> dict[str, Ed25519PublicKey]:
    """The server's own key when this machine holds it (never generated
    here: verifying creates nothing), and every --public-key."""
    from server.audit.errors import AuditKeyUnavailable
    from server.audit.keys import keyring, load_key

    own: AuditKey | None
    try:
        own = load_key(settings, create=False)
    except AuditKeyUnavailable:
        own = None
    return keyring(own, _public_keys(texts))


def _when(text: str, zone: ZoneInfo, flag: str, *, end: bool) -> datetime:
    """A date means its whole day in the city's time zone (an end date
    includes that day); a time without an offset is the city's time too."""
    from datetime import date

    from server.web.times import in_range

    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=zone)
            moment = moment + timedelta(days=1) if end else moment
        else:
            moment = datetime.fromisoformat(value)
            moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    except ValueError:
        moment = None
    if moment is None or not in_range(moment):
        raise CommandRefused(tr(f"{flag} {text}：请写日期（2026-12-01）或 RFC 3339 时间（2026-12-01T08:00:00+08:00）",
                                f"{flag} {text}: give a date (2026-12-01) or an RFC 3339 time "
                                "(2026-12-01T08:00:00+08:00)"))
    return moment


def _exported_text(doc: dict[str, Any]) -> str:
    return tr(f"已把第 {doc['first_seq']} 到 {doc['size'] - 1} 条记录（所选时段是第 {doc['period_first_seq']} 到 "
              f"{doc['period_last_seq']} 条，两端延伸到最近的签名检查点）和 {doc['checkpoints']} 个签名检查点写入 "
              f"{doc['out']}。请把文件和公钥（密钥 ID {doc['key_id']}，`rentgate audit public-key` 显示）交给监督机构；"
              f"他们可以用 `rentgate audit verify-export {doc['out']} --public-key 公钥` 核验，或按 docs/audit.md "
              "自己写程序核验",
              f"wrote records {doc['first_seq']} to {doc['size'] - 1} (the period asked for is records "
              f"{doc['period_first_seq']} to {doc['period_last_seq']}, widened to the nearest signed checkpoint at "
              f"each end) and {doc['checkpoints']} signed checkpoints to {doc['out']}. Give the file and the public "
              f"key (key id {doc['key_id']}, shown by `rentgate audit public-key`) to the oversight body; they "
              f"check it with `rentgate audit verify-export {doc['out']} --public-key KEY`, or with a program of "
              "their own written from docs/audit.md")


def _checkpoint_text(made: Any, latest: Any) -> str:
    if made is not None:
        return tr(f"已签名检查点：日志前 {made.size} 条记录，头哈希 {made.head}（密钥 {made.key_id}）",
                  f"checkpoint signed: the log's first {made.size} records, head {made.head} (key {made.key_id})")
    if latest is None:
        return tr("日志还是空的，不需要检查点", "the log is empty: no checkpoint needed")
    return tr(f"自上一个检查点（{latest.size} 条记录）以来没有新记录，不需要新检查点",
              f"nothing appended since the last checkpoint ({latest.size} records): no new one needed")
