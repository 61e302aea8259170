"""Reconciliation's lines of the Prometheus ``/metrics`` text."""

from __future__ import annotations

from server.db.models import CASE_KINDS
from server.reconcile.runner import Reconciler


def render(reconciler: Reconciler) -> str:
    """Blocking (two small queries): call it in a thread."""
    totals = reconciler.totals
    lag = reconciler.watermark_lag()
    open_cases = reconciler.open_cases()
    lines = [
        "# HELP rentgate_reconcile_reads_total Card reads turned into evidence by this process.",
        "# TYPE rentgate_reconcile_reads_total counter",
        f"rentgate_reconcile_reads_total {totals.events}",
        "# HELP rentgate_reconcile_unknown_reads_total Reads of cards their building has no record of.",
        "# TYPE rentgate_reconcile_unknown_reads_total counter",
        f"rentgate_reconcile_unknown_reads_total {totals.unknown}",
        "# HELP rentgate_reconcile_lag_events Stored events not yet reconciled.",
        "# TYPE rentgate_reconcile_lag_events gauge",
        f"rentgate_reconcile_lag_events {lag}",
        "# HELP rentgate_reconcile_last_sweep_seconds Duration of the last full sweep.",
        "# TYPE rentgate_reconcile_last_sweep_seconds gauge",
        f"rentgate_reconcile_last_sweep_seconds {totals.last_sweep_s if totals.last_sweep_s is not None else 'NaN'}",
        "# HELP rentgate_cases_open Open or acknowledged reconciliation cases.",
        "# TYPE rentgate_cases_open gauge",
    ]
    lines += [f'rentgate_cases_open{{kind="{kind}"}} {open_cases.get(kind, 0)}' for kind in CASE_KINDS]
    return "\n".join(lines) + "\n"
