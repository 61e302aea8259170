"""The verifier written from docs/audit.md alone (independent_verifier.py)
accepts what the server exports and rejects every tampered copy: the
document specifies the format exactly enough."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.audit.export import Period, export_period
from server.audit.keys import AuditKey
from tests.server.audit import independent_verifier
from tests.server.audit.helpers import T0, build_timed_log, new_key
from tests.server.audit.tampering import ALL, Lines

VERIFIER = Path(independent_verifier.__file__)


@pytest.fixture
def key() -> AuditKey:
    return new_key()


@pytest.fixture
def export_file(engine: sa.Engine, key: AuditKey, tmp_path: Path) -> Path:
    build_timed_log(engine, key)
    out = tmp_path / "audit.jsonl"
    export_period(engine, key, Period(T0 + timedelta(hours=12), T0 + timedelta(hours=28)), out)
    return out


def test_it_imports_nothing_of_rentgate() -> None:
    tree = ast.parse(VERIFIER.read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    ours = [m for m in modules if m.split(".")[0] in {"server", "rentgate", "tests", "gateway", "devices"}]
    assert ours == []


def test_it_accepts_the_servers_export(export_file: Path, key: AuditKey) -> None:
    proc = subprocess.run([sys.executable, "-I", str(VERIFIER), str(export_file), key.public_b64],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "OK"), proc.stderr


def test_it_accepts_a_whole_log_from_record_zero(engine: sa.Engine, key: AuditKey, tmp_path: Path) -> None:
    build_timed_log(engine, key, records=7, checkpoint_every=5)  # the export signs 7 itself
    export_period(engine, key, Period(T0 - timedelta(days=1), T0 + timedelta(days=1)), tmp_path / "all.jsonl")
    independent_verifier.verify((tmp_path / "all.jsonl").read_bytes(), [key.public_b64])


@pytest.mark.parametrize("tamper", ALL, ids=lambda f: f.__name__)
def test_it_rejects_a_tampered_export(export_file: Path, key: AuditKey, tamper: Callable[[Lines], Lines]) -> None:
    lines = export_file.read_bytes().splitlines(keepends=True)
    with pytest.raises(independent_verifier.Rejected):
        independent_verifier.verify(b"".join(tamper(lines)), [key.public_b64])


def test_it_rejects_another_key(export_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-I", str(VERIFIER), str(export_file), new_key().public_b64],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout.startswith("REJECTED"), proc.stdout
