"""``rentgate demo --duration N --json``: the one-command demo really works end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_demo(tmp_path: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "rentgate", "demo", "--json", "--data-dir", str(tmp_path / "demo"),
         "--http-port", "0", *args],
        capture_output=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((tmp_path / "demo" / "logs").glob("*.log")))
    assert proc.returncode == 0, (proc.stdout.decode(errors="replace")[-2000:] + proc.stderr.decode(errors="replace")[-3000:]
                                  + logs)
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def test_headless_em4100_demo_stores_every_swipe_once(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--readers", "em4100", "--duration", "8", "--rate-per-min", "120",
                      "--district-buildings", "0")
    assert "district" not in result
    assert result["events_generated"] > 0, result
    assert result["events_stored"] == result["events_generated"], result
    assert result["lost"] == 0 and result["duplicates"] == 0, result


def test_headless_osdp_demo_decides_at_the_door_and_raises_alarms(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--duration", "16", "--district-buildings", "4", "--district-days", "50")
    assert (result["lost"], result["duplicates"]) == (0, 0), result
    assert result["events_stored"] == result["events_generated"] > 0, result
    # The tenant who moved out is refused as revoked; the others get in.
    assert result["decisions"].get("revoked") == 1 and result["decisions"].get("granted", 0) >= 2, result
    assert result["door_alarms"] == {"forced": 1, "held_open": 1}, result

    # Before the building, the district: cases opened from its card reads,
    # every read stored.
    district = result["district"]
    assert district["events_stored"] == district["events_published"] > 0 and district["events_lost"] == 0, district
    assert district["kinds"]["unregistered_occupant"]["cases"] > 0, district

    # The first street's door plates, printed against this server: the
    # sample code opens its public plate page.
    plates = result["plates"]
    assert plates["plates"] > 0 and plates["pages"] >= 1 and Path(plates["pdf"]).stat().st_size > 0, plates
    assert plates["sample_page_status"] == 200 and plates["sample_page_is_plate"], plates
