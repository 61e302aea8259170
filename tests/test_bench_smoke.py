"""``bench/ingest.py --quick --json`` still runs and still loses nothing.

Speed is judged by the benchmark's own figures, not here: this only keeps the
benchmark from rotting, and checks the one thing that must hold at any speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import service_missing
from tests.services import Mosquitto, PostgresCluster, ServiceMissing, find_binary, find_postgres_bindir

REPO = Path(__file__).parents[1]


def test_quick_benchmark_prints_one_json_object_and_loses_nothing(tmp_path: Path) -> None:
    # The benchmark starts its own Mosquitto and PostgreSQL from these binaries.
    if find_binary("mosquitto", "/usr/sbin", "/usr/local/sbin") is None:
        service_missing(ServiceMissing(Mosquitto.service, Mosquitto.hint))
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/ingest.py", "--quick", "--json"], cwd=REPO,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("events", "events_per_s", "latency_ms_p50", "latency_ms_p99", "baseline_broker_per_s", "ratio",
                   "replay_events_per_s"):
        assert isinstance(result[figure], (int, float)) and result[figure] > 0, (figure, result)
    assert (result["lost"], result["duplicates"]) == (0, 0), result


def test_quick_reconcile_benchmark_prints_its_figures(tmp_path: Path) -> None:
    """``bench/reconcile.py --quick --json``: a small district on a throwaway
    PostgreSQL; the figures are there and the sweep opened cases."""
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/reconcile.py", "--quick", "--json"], cwd=REPO,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("registrations", "events", "sweep_s", "incremental_ms_p99", "rates_s"):
        assert isinstance(result[figure], (int, float)) and result[figure] > 0, (figure, result)


def test_quick_patrol_benchmark_prints_its_figures(tmp_path: Path) -> None:
    """``bench/patrol.py --quick --json``: a thousand units on a throwaway
    PostgreSQL, the coordinator's unit page under a few concurrent phones,
    the public scan page and a few plates; every page answered 200."""
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/patrol.py", "--quick", "--json", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("units", "people", "clients", "generate_s", "scan_page_ms_p50", "scan_page_ms_p99",
                   "scan_page_total_ms_p99", "client_ms_p50", "client_ms_p99", "requests_per_s",
                   "public_page_ms_p99", "plates_per_s", "unit_view_statements_per_page"):
        assert isinstance(result[figure], (int, float)) and result[figure] > 0, (figure, result)
    assert (result["errors"], result["public_errors"]) == (0, 0), result
    # The profile sees every read of the page, each with its plan.
    assert {"unit", "registrations", "events"} <= set(result["unit_view_queries"]), result["unit_view_queries"]
    assert (tmp_path / "plates.pdf").read_bytes().startswith(b"%PDF"), "the plates were rendered to a PDF"


def test_quick_police_benchmark_answers_every_check_right(tmp_path: Path) -> None:
    """``bench/police.py --quick --json``: 50,000 persons on a throwaway
    PostgreSQL, a few seconds of person checks, a 10,000-number batch and a
    small audit log (about 20 s); every answer was the registry's."""
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/police.py", "--quick", "--json", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("persons", "seed_s", "lookup_ms_p50", "lookup_ms_p99", "lookup_per_s", "lookup_paced_ms_p99",
                   "lookup_light_ms_p99", "lookup_server_cpu_ms_per_request", "batch_s", "bare_sql_s",
                   "batch_to_bare_sql_ratio", "audit_verify_s"):
        assert isinstance(result[figure], (int, float)) and result[figure] > 0, (figure, result)
    for phase in ("lookup", "lookup_paced", "lookup_light"):
        assert (result[f"{phase}_errors"], result[f"{phase}_wrong_answers"]) == (0, 0), result
    assert result["batch_lines_ok"] == result["batch_numbers"] == 10_000, result
    assert set(result["targets_met"]) == {"lookup_ms_p99<=20", "batch_100k_s<=5", "watch_alert_s_p99<=2"}


def test_quick_camera_benchmark_prints_its_figures() -> None:
    """``bench/camera.py --quick --json``: one short synthetic recording, the
    gateway's correlation and a running gateway with two cameras; every
    figure the issue names is there."""
    proc = subprocess.run([sys.executable, "bench/camera.py", "--quick", "--json"], cwd=REPO,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("count_error_pct", "fps_per_core", "streams_per_core", "door_decision_ms_p99_with_cameras",
                   "door_decision_ms_p99_no_cameras"):
        assert isinstance(result[figure], (int, float)), (figure, result)
    assert result["fps_per_core"] > 0 and result["streams_per_core"] > 0
    assert result["inward_true"] > 0 and result["inward_counted"] > 0
    for figure in ("tailgating_precision", "tailgating_recall"):
        assert figure in result, result


def test_quick_fleet_benchmark_prints_its_figures(tmp_path: Path) -> None:
    """``bench/fleet.py --quick --json``: six gateways enrolled through the
    real command line against a Mosquitto with dynamic security, a rollout,
    a rollback and a revocation; every figure there (speed is the full run's)."""
    if find_binary("mosquitto", "/usr/sbin", "/usr/local/sbin") is None:
        service_missing(ServiceMissing(Mosquitto.service, Mosquitto.hint))
    proc = subprocess.run([sys.executable, "bench/fleet.py", "--quick", "--json"], cwd=REPO,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("enroll_s_p99", "config_apply_s_p99", "rollback_s", "revoke_cutoff_s"):
        assert isinstance(result[figure], (int, float)) and result[figure] > 0, (figure, result)
    assert result["gateways"] == 6, result


def test_short_chaos_soak_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """``bench/soak.py --short --json``: three gateways under load for about a
    minute while the broker, ingest workers, the web process, PostgreSQL and
    gateways are SIGKILLed and restarted and gateways are cut off the
    network, one until its outbox holds 20,000 events; every event
    generated is stored exactly once, and faults of every kind were injected."""
    if find_binary("mosquitto", "/usr/sbin", "/usr/local/sbin") is None:
        service_missing(ServiceMissing(Mosquitto.service, Mosquitto.hint))
    if find_postgres_bindir() is None:
        service_missing(ServiceMissing(PostgresCluster.service, PostgresCluster.hint))
    proc = subprocess.run([sys.executable, "bench/soak.py", "--short", "--json", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    stderr = proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, stderr[-3000:]
    result = json.loads(lines[-1])
    assert "error" not in result, stderr[-3000:]
    assert result["events_generated"] > 20_000, result
    assert result["events_stored"] == result["events_generated"], result
    assert (result["lost"], result["duplicates"], result["seq_holes"]) == (0, 0, 0), result["per_gateway"]
    assert result["unexpected_exits"] == [], stderr[-3000:]
    kinds = {"broker_kill", "ingest_kill", "web_kill", "postgres_kill", "gateway_kill", "net_blackhole", "net_reset",
             "long_outage"}
    assert set(result["faults_injected"]) == kinds
    assert all(n > 0 for n in result["faults_injected"].values()), result["faults_injected"]
    assert result["max_outbox_depth"] >= 20_000 and result["catchup_s"] is not None, result["long_outage"]
    assert proc.returncode == (0 if result["ok"] else 1), result
    assert result["ok"], result
