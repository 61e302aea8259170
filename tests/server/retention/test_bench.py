"""``bench/retention.py --quick --json`` still runs, and its purge is exact
on both databases (speed is judged by the benchmark's own figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import service_missing
from tests.services import PostgresCluster, ServiceMissing, find_postgres_bindir

REPO = Path(__file__).parents[3]


def test_quick_retention_benchmark_is_exact() -> None:
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/retention.py", "--quick", "--json"], cwd=REPO,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["exact"] is True
    for database in ("postgresql", "sqlite"):
        figures = result[database]
        assert figures["events"] == 50_000 and figures["exact"] is True, figures
        for figure in ("purge_s", "events_per_s", "batches", "ingest_commits"):
            assert isinstance(figures[figure], (int, float)) and figures[figure] > 0, (figure, figures)
