"""The district simulator end to end: ``rentgate sim district`` with the
embedded broker, the real ingest service, SQLite (and PostgreSQL) and the
reconciliation engine, scored against its own ground truth."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.district.driver import CaseEvent, DistrictOptions, run_district

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("unregistered_occupant", "presumed_departure")


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    """One small district (8 buildings, 50 days) through the command line."""
    proc = subprocess.run(
        [sys.executable, "-m", "rentgate", "sim", "district", "--buildings", "8", "--days", "50", "--seed", "7",
         "--json"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[district] 第 7/50 天" in proc.stderr  # weekly progress on stderr, in Chinese by default
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_prints_one_json_object_with_every_kind_and_rate(small_run: dict[str, Any]) -> None:
    r = small_run
    assert (r["buildings"], r["days"], r["seed"]) == (8, 50, 7)
    assert r["people"] > 50 and r["events"] > 3000 and r["elapsed_s"] > 0
    for kind in (*TARGETS, "address_mismatch", "overcrowding", "unknown_credential", "credential_unused"):
        assert set(r["kinds"][kind]) >= {"precision", "recall", "median_delay_days", "period_days", "cases",
                                         "incidents"}
    for rate in ("registration", "rental", "consistency", "pledge"):
        assert set(r["rates"][rate]) >= {"true", "computed"}
        assert r["rates"][rate]["true"] is not None and r["rates"][rate]["computed"] is not None
    assert set(r["targets_met"]) == {f"{k}.{t}" for k in TARGETS
                                     for t in ("precision>=0.98", "recall>=0.98", "median_delay<=period+1")}


def test_no_card_read_is_lost(small_run: dict[str, Any]) -> None:
    assert small_run["events_published"] == small_run["events"]
    assert small_run["events_stored"] == small_run["events_published"]
    assert small_run["events_lost"] == 0


def test_every_unregistered_occupant_and_departure_is_found_in_time(small_run: dict[str, Any]) -> None:
    for kind in TARGETS:
        k = small_run["kinds"][kind]
        assert k["incidents_due"] >= 1, f"the small world has no due {kind} incident to find"
        assert k["recall"] == 1.0, (kind, small_run["missed"])
        # Opened at the first end-of-day sweep after the rule's period ran out.
        assert k["max_delay_days"] <= k["period_days"] + 1, kind
        assert small_run["targets_met"][f"{kind}.recall>=0.98"]
        assert small_run["targets_met"][f"{kind}.median_delay<=period+1"]


def test_departures_are_not_presumed_wrongly(small_run: dict[str, Any]) -> None:
    assert small_run["kinds"]["presumed_departure"]["precision"] >= 0.98, small_run["wrong"]


def test_unregistered_occupant_cases_are_right(small_run: dict[str, Any]) -> None:
    assert small_run["kinds"]["unregistered_occupant"]["precision"] >= 0.98, small_run["wrong"]


def test_runs_on_postgresql_and_reports_cases_as_they_happen(postgres_url: str, tmp_path: Path) -> None:
    seen: list[CaseEvent] = []
    options = DistrictOptions(buildings=4, days=40, seed=3, database_url=postgres_url, workdir=tmp_path)
    result = asyncio.run(run_district(options, on_case=seen.append))
    assert result["events_stored"] == result["events_published"] > 0
    assert result["kinds"]["presumed_departure"]["recall"] in (1.0, None)
    opened = [e for e in seen if e.action == "opened"]
    assert len(opened) == sum(k["cases"] for k in result["kinds"].values())
    assert any(e.action == "closed" for e in seen)
    assert all(e.building is not None and e.building.startswith("B") for e in opened)
