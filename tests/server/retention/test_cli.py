"""``rentgate retention status|purge``: the status figures, a purge that
refuses without --yes (and says what it would delete), and one that deletes
with it, audited as the command line's; camera snapshots reported and purged
as the server's job does; --json's last line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate.cli import main
from server.db.models import audit_log, event_snapshots
from server.media.store import MediaStore
from server.snapshots.check import check_jpeg
from server.snapshots.store import record, save_file
from server.web.transactions import write_transaction
from tests.server.retention.store import SHANGHAI, Events, local
from tests.server.scan.world import jpeg_bytes


@pytest.fixture
def store(engine: sa.Engine) -> Events:
    """Three events 200 days old (a card read twice), one 30 days old, one today; all reconciled."""
    store = Events(engine)
    store.gateway("gw-1", building="B1")
    old = datetime.now(UTC).astimezone(SHANGHAI).date() - timedelta(days=200)
    store.many([{"at": local(old, 1), "card": "A"}, {"at": local(old, 2), "card": "B"},
                {"at": local(old, 3), "card": "A"}, {"at": datetime.now(UTC) - timedelta(days=30)},
                {"at": datetime.now(UTC)}])
    store.all_reconciled()
    return store


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return doc


def test_status_says_what_is_held_and_what_is_due(store: Events, database_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "retention", "status", "--json", "--database-url", database_url)
    doc = last_json(out)
    assert code == 0
    assert (doc["retention_days"], doc["past_period"], doc["purgeable"], doc["held_back"]) == (180, 3, 3, 0)
    assert doc["aggregate_rows"] == 0 and doc["oldest_event_at"] is not None
    code, out, _err = run(capsys, "retention", "status", "--database-url", database_url)
    assert code == 0 and "3 条原始事件" in out and "rentgate retention purge --yes" in out


def test_purge_without_yes_deletes_nothing_and_says_to_add_it(store: Events, database_url: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "retention", "purge", "--json", "--database-url", database_url)
    assert code == 2 and "--yes" in err and "3 条原始事件" in err
    doc = last_json(out)
    assert (doc["confirmed"], doc["would_delete"]) == (False, 3)
    assert len(store.ids()) == 5 and store.daily() == {}
    code, _out, err = run(capsys, "--lang", "en", "retention", "purge", "--database-url", database_url)
    assert code == 2 and "add --yes" in err and "Nothing was deleted" in err


def test_purge_with_yes_deletes_keeps_the_counts_and_is_audited(store: Events, database_url: str,
                                                                engine: sa.Engine,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "retention", "purge", "--yes", "--json", "--database-url", database_url)
    doc = last_json(out)
    assert code == 0 and doc["confirmed"] is True and doc["deleted"] == 3 and doc["complete"] is True
    assert len(store.ids()) == 2
    assert [(n, c) for n, c, _b in store.daily().values()] == [(3, 2)]
    with engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(sa.select(audit_log.c.record)).scalars()]
    assert [(r["actor"], r["action"], r["size"]) for r in records] == [("cli:retention", "retention.purge", 3)]
    # Again: nothing left to delete, exit 0 without --yes too.
    code, out, _err = run(capsys, "retention", "purge", "--database-url", database_url)
    assert code == 0 and "没有可以删除" in out


def test_a_shorter_period_by_hand(store: Events, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "retention", "purge", "--older-than-days", "10", "--yes", "--json",
                          "--database-url", database_url)
    doc = last_json(out)
    assert code == 0 and doc["deleted"] == 4 and doc["retention_days"] == 10
    with pytest.raises(SystemExit) as refused:
        main(["retention", "purge", "--older-than-days", "0", "--database-url", database_url])
    assert refused.value.code == 2 and "1 到 36500" in capsys.readouterr().err


def test_a_database_that_is_not_ready_is_refused(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    code, _out, err = run(capsys, "retention", "status", "--database-url", url)
    assert code == 2 and "rentgate db upgrade" in err and not (tmp_path / "none.db").exists()


def test_snapshots_are_reported_and_purged_with_the_events_only_with_yes(
        store: Events, engine: sa.Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """As the server's job: snapshots stored 30 days ago or more, and those of
    events about to go, are deleted first (row and file, audited); a newer one
    stays, and so does a file in the folder that no row names."""
    media = tmp_path / "media"
    monkeypatch.setenv("RENTGATE_MEDIA_DIR", str(media))
    files = MediaStore(media / "snapshots")
    now = datetime.now(UTC)
    ids = sorted(store.ids())
    pictures = [check_jpeg(jpeg_bytes(size)) for size in ((16, 16), (24, 24), (32, 32), (40, 40))]
    for jpeg in pictures:
        save_file(files, jpeg)
    old_event, recent_upload, fresh, stray = pictures
    with write_transaction(engine) as conn:
        record(conn, ids[0], old_event, "gw-1", now - timedelta(days=1))  # its event is 200 days old
        record(conn, ids[3], recent_upload, "gw-1", now - timedelta(days=31))
        record(conn, ids[4], fresh, "gw-1", now)

    code, out, _err = run(capsys, "retention", "status", "--json", "--database-url", database_url)
    assert code == 0 and last_json(out)["snapshots"] == {"retention_days": 30, "stored": 3, "due": 2}
    code, out, _err = run(capsys, "retention", "status", "--database-url", database_url)
    assert "摄像头快照：保存 3 张，其中 2 张已到期" in out

    code, _out, err = run(capsys, "retention", "purge", "--database-url", database_url)
    assert code == 2 and "2 张摄像头快照" in err and "--yes" in err
    assert all(files.path_for(jpeg.sha256).exists() for jpeg in pictures)

    code, out, _err = run(capsys, "retention", "purge", "--yes", "--json", "--database-url", database_url)
    doc = last_json(out)
    assert code == 0 and doc["deleted"] == 3
    assert (doc["snapshots"]["deleted"], doc["snapshots"]["files_deleted"]) == (2, 2)
    assert [files.path_for(jpeg.sha256).exists() for jpeg in pictures] == [False, False, True, True]
    assert files.path_for(stray.sha256).exists()  # not the command's to delete
    with engine.connect() as conn:
        left = conn.execute(sa.select(event_snapshots.c.event_id)).scalars().all()
        records = [json.loads(r) for r in conn.execute(sa.select(audit_log.c.record)).scalars()]
    assert left == [ids[4]]
    assert ("cli:retention", "retention.snapshots", 2) in [(r["actor"], r["action"], r["size"]) for r in records]
    code, out, _err = run(capsys, "retention", "purge", "--database-url", database_url)
    assert code == 0 and "没有到期的摄像头快照" in out
    code, out, _err = run(capsys, "--lang", "en", "retention", "status", "--database-url", database_url)
    assert "camera snapshots: 1 stored, 0 due" in out
