"""``rentgate retention status|purge``: how much raw door-event data and how
many camera snapshots are held and for how long, and a purge run by hand
(docs/retention.md). The purge does what the server's job does: snapshots
past RENTGATE_SNAPSHOT_RETENTION_DAYS (and those of events about to go)
first, then the raw events.

The project's rule: no command deletes data without explicit confirmation.
``purge`` without ``--yes`` says what it would delete and exits with code 2,
telling the person to add ``--yes``; with nothing to delete it exits 0.
Snapshot files are deleted only when a row of event_snapshots names them
(what the server stored), never other files in the media folder.

Exit codes: 0 done (or nothing to do); 2 a database that is not ready, a
setting or rules file that cannot be used, or a purge not confirmed; 1 the
database failed during the purge (every batch committed before is complete:
the command can simply be run again). What a person reads is in the
command's language (rentgate/lang.py); progress goes to stderr; ``--json``
prints one JSON object as the last line of stdout, with the same keys in
either language."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rentgate.lang import count, tr
from server.cli_support import action as _action

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa

    from server.retention.purge import AuditSink, BatchResult
    from server.retention.status import RetentionStatus
    from server.settings import ServerSettings
    from server.snapshots.purge import SnapshotPurgeReport, SnapshotStatus

# Progress on stderr every this many batches (a million events: ten lines).
_PROGRESS_EVERY = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("retention", help="raw door events and camera snapshots past the retention "
                                   "period: status, purge",
                                   description="Raw door events are kept for RENTGATE_EVENT_RETENTION_DAYS days "
                                   "(default 180); older ones are deleted, their daily counts kept. Camera "
                                   "snapshots are kept for RENTGATE_SNAPSHOT_RETENTION_DAYS (default 30).")
    sub = parser.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    _action(sub, "status", _status, "the oldest event, how many are past the retention period, the daily counts "
            "kept, the camera snapshots stored and due")
    purge = _action(sub, "purge", _purge, "delete the raw events and camera snapshots past their retention "
                    "periods now, keeping the events' daily counts (the server also does this on its own every "
                    "RENTGATE_PURGE_INTERVAL_S)")
    purge.add_argument("--older-than-days", type=_days, metavar="N",
                       help="delete events of whole days more than N days old (default: "
                       "RENTGATE_EVENT_RETENTION_DAYS, 180 unless set)")
    purge.add_argument("--yes", action="store_true",
                       help="really delete; without it the command only says what it would delete")
    purge.add_argument("--batch", type=_batch, metavar="N",
                       help="events per transaction, ingest goes on between them (default: 10000 on PostgreSQL, "
                       "1000 on SQLite)")


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 36_500:
        raise argparse.ArgumentTypeError(tr(f"{text}：请填 1 到 36500 之间的天数", f"{text}: give a number of days "
                                            "from 1 to 36500"))
    return value


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 100 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(tr(f"{text}：请填 100 到 1000000 之间的数", f"{text}: give a number from 100 "
                                            "to 1000000"))
    return value


def _events(n: int) -> str:
    """``1,234 条原始事件`` / ``1,234 raw events``."""
    return count(n, "条原始事件", "raw event")


def _snapshots(n: int) -> str:
    """``2 张摄像头快照`` / ``2 camera snapshots``."""
    return count(n, "张摄像头快照", "camera snapshot")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Ready:
    """What both actions need: the settings, the city's zone, an engine."""

    def __init__(self, args: argparse.Namespace) -> None:
        from server.cli_support import engine_at_head, settings_or_refuse
        from server.errors import SettingsError
        from server.reconcile.watermarks import advancing
        from server.rules import load_rules

        self.settings: ServerSettings = settings_or_refuse(args.database_url)
        try:
            rules = load_rules(self.settings.rules_file)
        except SettingsError as exc:
            from server.cli_support import CommandRefused

            raise CommandRefused(tr(f"城市规则文件不能用，请改正：{exc}", f"the rules file cannot be used, correct it: "
                                    f"{exc}")) from exc
        self.zone: ZoneInfo = rules.zone
        # The reconciliation folds an event must have been read by before it
        # goes: the same as the server's job (server/retention/setup.py).
        self.watermarks = advancing(rules)
        self.engine: sa.Engine = engine_at_head(args.database_url)


def _guarded(args: argparse.Namespace, body: Callable[[_Ready], int]) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from server.audit.log import one_line
    from server.cli_support import CommandRefused
    from server.errors import ServerError

    name = f"rentgate retention {args.retention_command}"
    try:
        ready = _Ready(args)
    except CommandRefused as exc:
        _say(f"{name}: {exc}")
        return 2
    except SQLAlchemyError as exc:
        _say(f"{name}: " + tr(f"连不上数据库：{one_line(exc)}（请检查 --database-url 或 RENTGATE_DATABASE_URL，以及数据库是否在运行）",
                              f"cannot reach the database: {one_line(exc)} (check --database-url or "
                              "RENTGATE_DATABASE_URL, and that the database is running)"))
        return 1
    try:
        return body(ready)
    except (CommandRefused, ServerError) as exc:
        _say(f"{name}: {exc}")
        return 2
    except SQLAlchemyError as exc:
        text = tr(f"数据库出错：{one_line(exc)}", f"database error: {one_line(exc)}")
        if args.retention_command == "purge":
            text += tr("。已经完成的批次是完整的（事件已删除、计数已保存、已记入审计日志），可以直接重新运行这个命令继续",
                       ". The batches done so far are complete (events deleted, counts kept, audited): run the "
                       "command again to go on")
        _say(f"{name}: {text}")
        return 1
    finally:
        ready.engine.dispose()


def _read_status(ready: _Ready, days: int) -> tuple[RetentionStatus, SnapshotStatus]:
    """The events' figures, and the snapshots' with the same cut-offs as a
    purge (the snapshot period, and any snapshot of an event that goes)."""
    from server.retention.purge import cutoff_for
    from server.retention.status import retention_status
    from server.snapshots.purge import snapshot_status

    now = datetime.now(UTC)
    snapshot_days = ready.settings.snapshot_retention_days
    with ready.engine.connect() as conn:
        status = retention_status(conn, now, days, ready.zone, ready.watermarks)
        snapshots = snapshot_status(conn, snapshot_days, cutoff_for(now, snapshot_days), event_before=status.before)
    return status, snapshots


def _local(at: datetime | None, zone: ZoneInfo) -> str:
    """A time as the city reads it, with its zone (the rules' ``timezone``)."""
    return "-" if at is None else f"{at.astimezone(zone).strftime('%Y-%m-%d %H:%M')} ({zone.key})"


def _status(args: argparse.Namespace) -> int:
    def body(ready: _Ready) -> int:
        status, snapshots = _read_status(ready, ready.settings.event_retention_days)
        if args.json:
            print(json.dumps({**status.as_json(), "snapshots": snapshots.as_json()}))
            return 0
        day = status.before.astimezone(ready.zone).date().isoformat()
        lines = [
            tr(f"保留期限：{status.retention_days} 天（{day} 之前各整天的原始事件到期）",
               f"retention period: {status.retention_days} days (raw events of whole days before {day} are due)"),
            tr(f"最早的原始事件：{_local(status.oldest_event_at, ready.zone)}",
               f"oldest raw event: {_local(status.oldest_event_at, ready.zone)}"),
            tr("超过保留期限：", "past the retention period: ") + _events(status.past_period),
        ]
        if status.held_back:
            held = _events(status.held_back)
            lines.append(tr(f"  其中 {held}还没有对账（或是最新的一条），暂不删除；服务器运行时对账会处理它们",
                            f"  of which {held} not reconciled yet (or the newest event) stay for now; the "
                            "running server reconciles them"))
        span = (f"{status.first_aggregate_day} – {status.last_aggregate_day}" if status.first_aggregate_day
                else tr("无", "none"))
        rows, total = count(status.aggregate_rows, "行", "row"), _events(status.aggregate_events)
        lines.append(tr(f"保留的每日计数：{rows}，共 {total}（{span}）", f"daily counts kept: {rows} for {total} ({span})"))
        kept, due = snapshots.stored, snapshots.due
        lines.append(tr(f"摄像头快照：保存 {kept:,} 张，其中 {due:,} 张已到期（保留 {snapshots.retention_days} 天）",
                        f"camera snapshots: {kept:,} stored, {due:,} due (kept {snapshots.retention_days} days)"))
        if status.purgeable or snapshots.due:
            lines.append(tr("服务器会按 RENTGATE_PURGE_INTERVAL_S 自动删除它们；要立即删除，运行 "
                            "`rentgate retention purge --yes`",
                            "the server deletes them on its own every RENTGATE_PURGE_INTERVAL_S; to delete them now, "
                            "run `rentgate retention purge --yes`"))
        print("\n".join(lines))
        return 0

    return _guarded(args, body)


def _purge(args: argparse.Namespace) -> int:
    def body(ready: _Ready) -> int:
        from server.retention.purge import CLI_ACTOR, purge_before

        days = args.older_than_days or ready.settings.event_retention_days
        status, snapshots = _read_status(ready, days)
        day = status.before.astimezone(ready.zone).date().isoformat()
        if not args.yes:
            return _unconfirmed(args, status, snapshots, day)
        if not status.purgeable and not snapshots.due:
            return _nothing(args, status, snapshots, day)
        # Snapshots first, as the job: a snapshot's row refers to its event.
        pictures = _purge_snapshots(ready, status, snapshots) if snapshots.due else None
        due = _events(status.purgeable)
        if status.purgeable:
            _say(tr(f"正在删除 {day} 之前的 {due}（每天的计数保留）…",
                    f"deleting {due} of days before {day} (daily counts kept)..."))

        def progress(result: BatchResult) -> None:
            if result.number % _PROGRESS_EVERY == 0:
                _say(tr(f"  第 {result.number} 批，已到 {result.last_day}",
                        f"  batch {result.number}, up to {result.last_day}"))

        # Run even with no event due: the JSON has the same keys either way,
        # and an event that became due since the count above is not left.
        report = purge_before(ready.engine, status.cutoff, zone=ready.zone, audit=_audit_log(ready),
                              actor=CLI_ACTOR, batch=args.batch, on_batch=progress, watermarks=ready.watermarks)
        if args.json:
            print(json.dumps({"confirmed": True, "retention_days": days, **report.as_json(),
                              "snapshots": pictures.as_json() if pictures else None}))
            return 0
        text = _snapshots_done(pictures)
        if report.deleted:
            gone, batches = _events(report.deleted), count(report.batches, "批", "batch", "batches")
            text += tr(f"已删除 {gone}（{report.first_day} 至 {report.last_day}，{batches}，用时 {report.seconds:.1f} 秒）；"
                       "每天的计数已保存，这次删除已记入审计日志",
                       f"deleted {gone} ({report.first_day} to {report.last_day}, {batches}, "
                       f"{report.seconds:.1f} s); their daily counts are kept and the purge is in the audit log")
        else:
            text += tr(f"{day} 之前没有可以删除的原始事件", f"no raw events of days before {day} to delete")
        if report.held_back:
            held = _events(report.held_back)
            text += "\n" + tr(f"{held}还没有对账（或是最新的一条），暂未删除：服务器对账后，下一次自动清理会删除它们，"
                              "也可以再运行一次这个命令",
                              f"{held} not reconciled yet (or the newest event) stayed: once the server has "
                              "reconciled them, its next purge takes them, or run this again")
        print(text)
        return 0

    return _guarded(args, body)


def _purge_snapshots(ready: _Ready, status: RetentionStatus, snapshots: SnapshotStatus) -> SnapshotPurgeReport:
    from server.media.errors import MediaUnavailable
    from server.retention.purge import CLI_ACTOR, cutoff_for
    from server.snapshots.purge import purge_snapshots
    from server.snapshots.store import snapshot_files

    try:
        files = snapshot_files(ready.settings)
    except MediaUnavailable:
        files = None  # the rows go; their files, wherever they are, are counted as left
    _say(tr(f"正在删除 {_snapshots(snapshots.due)}…", f"deleting {_snapshots(snapshots.due)}..."))
    return purge_snapshots(ready.engine, files, cutoff_for(datetime.now(UTC), snapshots.retention_days),
                           audit=_audit_log(ready), actor=CLI_ACTOR, event_before=status.before)


def _snapshots_done(report: SnapshotPurgeReport | None) -> str:
    if report is None:
        return ""
    text = tr(f"已删除 {_snapshots(report.deleted)}", f"deleted {_snapshots(report.deleted)}")
    if report.files_left:
        text += tr(f"（{report.files_left} 个文件没能删除，请检查媒体文件夹 RENTGATE_MEDIA_DIR）",
                   f" ({report.files_left} files could not be deleted: check the media folder, RENTGATE_MEDIA_DIR)")
    return text + tr("，已记入审计日志\n", "; audited\n")


def _unconfirmed(args: argparse.Namespace, status: RetentionStatus, snapshots: SnapshotStatus, day: str) -> int:
    if not status.purgeable and not snapshots.due:
        return _nothing(args, status, snapshots, day)
    due = _events(status.purgeable)
    pictures = _snapshots(snapshots.due)
    _say(tr(f"将删除 {day} 之前的 {due}（每天的计数保留）和 {pictures}。现在没有删除任何数据：确认要删除，请在命令后加 --yes",
            f"this would delete {due} of days before {day} (their daily counts are kept) and {pictures}. "
            "Nothing was deleted: add --yes to the command to delete them"))
    if args.json:
        print(json.dumps({"confirmed": False, "would_delete": status.purgeable, **status.as_json(),
                          "snapshots": snapshots.as_json()}))
    return 2


def _nothing(args: argparse.Namespace, status: RetentionStatus, snapshots: SnapshotStatus, day: str) -> int:
    text = tr(f"{day} 之前没有可以删除的原始事件，也没有到期的摄像头快照",
              f"no raw events of days before {day} and no camera snapshots to delete")
    if status.held_back:
        held = _events(status.held_back)
        text += tr(f"（{held}还没有对账，对账后才能删除）", f" ({held} wait for reconciliation first)")
    if args.json:
        print(json.dumps({"confirmed": bool(args.yes), "would_delete": 0, "deleted": 0, **status.as_json(),
                          "snapshots": snapshots.as_json()}))
    else:
        print(text)
    return 0


def _audit_log(ready: _Ready) -> AuditSink:
    """The audit log the purge appends to, as the server's own."""
    from server.audit.log import AuditLog

    return AuditLog(ready.engine)
