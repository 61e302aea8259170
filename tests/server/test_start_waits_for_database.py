"""`rentgate server` started while its PostgreSQL is away (a supervisor
restarting it during a database restart or failover) waits for the database,
says so once, and starts when it answers, instead of exiting with a
traceback (found by the chaos soak: a web process restarted during a
PostgreSQL kill died, and its supervisor would have restarted it in a loop)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from server.db import migrate
from server.db.engine import create_engine
from tests.services import PostgresCluster, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(own_pg_cluster: PostgresCluster) -> PostgresCluster:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    return own_pg_cluster


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_a_server_started_while_the_database_is_down_waits_and_then_starts(
        cluster: PostgresCluster, tmp_path: Path) -> None:
    url = cluster.url(cluster.create_database())
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    cluster.stop()
    port = free_port()
    log_path = tmp_path / "server.log"
    env = dict(os.environ, RENTGATE_LANG="en", RENTGATE_MQTT_CLIENT_ID="wait-for-db",
               RENTGATE_MEDIA_DIR=str(tmp_path / "media"))
    with open(log_path, "wb") as log:
        # role web: no broker needed, so the database is the only thing it waits for.
        proc = subprocess.Popen([sys.executable, "-m", "rentgate", "server", "--role", "web", "--database-url", url,
                                 "--port", str(port)], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    try:
        wait_for(lambda: "waiting for it before starting" in log_path.read_text(errors="replace"), timeout=60,
                 what="the server to say it waits for the database")
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        cluster.start()
        wait_for(lambda: _healthy(port), timeout=60, what="the server to start once the database answers")
        text = log_path.read_text(errors="replace")
        assert text.count("waiting for it before starting") == 1
        assert "Traceback" not in text
        assert "back after" in text  # the wait's end, with its length, logged once
    finally:
        proc.terminate()
        proc.wait(30)
