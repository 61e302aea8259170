"""The ingest service tells its listener about each commit that stored new
events, and a failing listener does not stop ingest."""

from __future__ import annotations

import sqlalchemy as sa

from server.ingest.consumer import IngestService
from server.ingest.store import CommitResult, EventStore
from server.settings import ServerSettings
from tests.server.helpers import batch, card_read, message


async def test_commits_with_new_events_call_the_listener(sqlite_engine: sa.Engine, sqlite_url: str) -> None:
    # No broker: the acks are simply not sent; the commit is what matters here.
    service = IngestService(ServerSettings(database_url=sqlite_url, mqtt_url="mqtt://127.0.0.1:9"),
                            EventStore(sqlite_engine))
    seen: list[CommitResult] = []
    service.add_commit_listener(seen.append)
    msg = message("gw-1", batch("gw-1", [card_read("gw-1", 1), card_read("gw-1", 2)]))
    await service._commit([msg])
    assert [r.inserted for r in seen] == [2]
    await service._commit([msg])  # the same events again: duplicates, nothing new
    assert len(seen) == 1

    def broken(result: CommitResult) -> None:
        raise RuntimeError("listener bug")

    service.add_commit_listener(broken)
    await service._commit([message("gw-1", batch("gw-1", [card_read("gw-1", 3)]))])
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM events")).scalar() == 3
