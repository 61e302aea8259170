"""``rentgate demo --duration N --json``: the one-command demo really moves swipes end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_headless_demo_stores_every_swipe_once(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rentgate", "demo", "--duration", "8", "--rate-per-min", "120", "--json",
         "--data-dir", str(tmp_path / "demo"), "--http-port", "0"],
        capture_output=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((tmp_path / "demo" / "logs").glob("*.log")))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:] + logs
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["events_generated"] > 0, result
    assert result["events_stored"] == result["events_generated"], result
    assert result["lost"] == 0 and result["duplicates"] == 0, result
