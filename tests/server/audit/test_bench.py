"""bench/audit.py still runs (small sizes, SQLite, in-process): its figures
are there and its filled log verifies. Speed is judged by the bench itself."""

from __future__ import annotations

from pathlib import Path

from bench.audit import measure


def test_the_audit_benchmark_measures_a_small_log(tmp_path: Path) -> None:
    result = measure(f"sqlite:///{tmp_path / 'bench.db'}", records=25_000, tasks=10, appends=300)
    assert result["records"] == 25_000 and result["database"] == "sqlite"
    for figure in ("audit_verify_s", "append_per_s", "single_commit_append_per_s", "append_ms_p99"):
        assert result[figure] > 0, (figure, result)
    assert result["append_commits"] < 300  # grouped
