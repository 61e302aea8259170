"""The allowlist messages on the wire, and the door benchmark still running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rentgate import wire
from tests.gateway.access.helpers import snapshot

REPO = Path(__file__).parents[3]


def test_allowlist_topics_name_their_gateway() -> None:
    for topic in (wire.allowlist_topic("gw-1"), wire.allowlist_delta_topic("gw-1"),
                  wire.allowlist_request_topic("gw-1")):
        assert wire.gateway_from_topic(topic) == "gw-1"


def test_a_signed_snapshot_carries_its_payload_text_unchanged() -> None:
    message = snapshot(3, "AA")
    envelope = wire.decode_signed_allowlist(message)
    update = wire.decode_allowlist_update(envelope.payload)
    assert isinstance(update, wire.AllowlistSnapshot) and update.version == 3
    assert wire.allowlist_payload(update) == envelope.payload
    # Empty optional fields stay off the wire.
    assert "valid_from" not in envelope.payload and "bits" not in envelope.payload


def test_door_benchmark_prints_its_json() -> None:
    proc = subprocess.run([sys.executable, "bench/door.py", "--quick", "--no-broker", "--json"], cwd=REPO,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for figure in ("decision_ms_p50", "decision_ms_p99", "allowlist_sync_s", "terminal_sync_s"):
        assert isinstance(result[figure], float) and result[figure] > 0, (figure, result)
    # Without the broker and the server nothing is revoked through them: said, not made up.
    assert result["terminal_revocation_s_p99"] is None and result["targets_met"]["terminal_revocation_s_p99"] is None
