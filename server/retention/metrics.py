"""The purge job's lines of the Prometheus ``/metrics`` text (counters of
this process; no database query)."""

from __future__ import annotations

from datetime import datetime

from server.retention.job import PurgeMetrics


def render(metrics: PurgeMetrics) -> str:
    return "\n".join([
        "# HELP rentgate_events_purged_total Raw events deleted by the retention purge (kept as daily counts).",
        "# TYPE rentgate_events_purged_total counter",
        f"rentgate_events_purged_total {metrics.purged_total}",
        "# HELP rentgate_retention_purge_failures_total Purge runs that failed and were retried.",
        "# TYPE rentgate_retention_purge_failures_total counter",
        f"rentgate_retention_purge_failures_total {metrics.failures}",
        "# HELP rentgate_retention_last_run_timestamp_seconds When the last purge run completed (Unix time).",
        "# TYPE rentgate_retention_last_run_timestamp_seconds gauge",
        f"rentgate_retention_last_run_timestamp_seconds {_unix(metrics.last_run_at)}",
        "# HELP rentgate_retention_last_purge_timestamp_seconds When events were last deleted (Unix time).",
        "# TYPE rentgate_retention_last_purge_timestamp_seconds gauge",
        f"rentgate_retention_last_purge_timestamp_seconds {_unix(metrics.last_purge_at)}",
        "# HELP rentgate_snapshots_purged_total Camera snapshots deleted by the retention purge (events kept).",
        "# TYPE rentgate_snapshots_purged_total counter",
        f"rentgate_snapshots_purged_total {metrics.snapshots_purged_total}",
    ]) + "\n"


def _unix(at: datetime | None) -> str:
    return "NaN" if at is None else f"{at.timestamp():.3f}"
