"""One import from file to committed transaction: read, map the headers,
validate every row without holding the write lock, then in ONE write
transaction validate again against what the database holds now (someone may
have written in between) and apply. Any row error, or any failure while
applying, rolls the whole transaction back: nothing is ever half-imported."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from server.access.allowlists import Change
from server.registry.imports.apply_addresses import apply_addresses
from server.registry.imports.apply_registrations import apply_registrations
from server.registry.imports.columns import ADDRESS_FIELDS, REGISTRATION_FIELDS, Columns, map_headers
from server.registry.imports.readers import Cell, read_sheet
from server.registry.imports.report import Problems, RowError
from server.registry.imports.validate_addresses import validate_addresses
from server.registry.imports.validate_registrations import validate_registrations
from server.registry.pii import PiiVault
from server.rules import CityRules
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

Kind = Literal["addresses", "registrations"]
KINDS: tuple[Kind, ...] = ("addresses", "registrations")
Rows = list[tuple[int, list[Cell]]]


class Phase(Protocol):
    """What a progress display needs; progress.Progress is one."""

    def tick(self, n: int) -> None: ...

    def finish(self) -> None: ...


class NoPhase:
    def tick(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


PhaseFactory = Callable[[str, int], Phase]
# The identity-number key, asked for when needed: ``writing`` is False for the
# checks before the write transaction. The CLI answers a throwaway key when no
# key exists yet and nothing is to be written, so that a dry run or a refused
# file does not leave a new key file behind.
VaultSource = Callable[[bool], PiiVault]


@dataclass
class ImportResult:
    kind: Kind
    rows: int
    imported: int
    dry_run: bool
    seconds: float = 0.0
    errors: list[RowError] = field(default_factory=list)
    failed_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    # Allowlist versions bumped by imported cards: publish after commit when
    # running inside the server (AccessService.publish).
    changes: list[Change] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "imported": self.imported, "errors": len(self.errors),
                "failed_rows": self.failed_rows, "dry_run": self.dry_run, "seconds": round(self.seconds, 3),
                **self.counts}


class _RolledBack(Exception):
    def __init__(self, problems: Problems) -> None:
        super().__init__("row errors")
        self.problems = problems


def _no_phase(_name: str, _total: int) -> Phase:
    return NoPhase()


def run_import(engine: sa.Engine, vault: PiiVault | VaultSource, rules: CityRules, kind: Kind, path: Path, *, actor: str,
               dry_run: bool = False, sheet: str | None = None, phases: PhaseFactory | None = None) -> ImportResult:
    """Raises UnusableInput when the file cannot be read or lacks columns."""
    started = time.monotonic()
    phases = phases or _no_phase
    table = read_sheet(path, sheet=sheet)
    columns = map_headers(table.headers, ADDRESS_FIELDS if kind == "addresses" else REGISTRATION_FIELDS)
    result = ImportResult(kind, len(table.rows), 0, dry_run, ignored_columns=columns.ignored)
    if columns.ignored:
        log.warning("import %s: columns ignored (not known): %s", path.name, ", ".join(columns.ignored))

    def key(writing: bool) -> PiiVault:
        return vault if isinstance(vault, PiiVault) else vault(writing)

    checking = phases("validating", len(table.rows))
    with engine.connect() as conn:
        problems = _validate(conn, key, False, rules, kind, columns, table.rows, checking.tick)[1]
    checking.finish()
    if problems.errors or dry_run:
        return _done(result, problems, started)

    applying = phases("importing", len(table.rows))
    try:
        with write_transaction(engine) as conn:
            now = datetime.now(UTC)
            plan, problems = _validate(conn, key, True, rules, kind, columns, table.rows, None)
            if problems.errors:
                raise _RolledBack(problems)
            if kind == "registrations":
                counts = apply_registrations(conn, now, actor, key(True), plan, tick=applying.tick)
                result.changes = counts.changes
                result.counts = {k: v for k, v in asdict(counts).items() if k != "changes"}
            else:
                address_counts = apply_addresses(conn, now, actor, rules, plan, columns, problems,
                                                 tick=applying.tick)
                if problems.errors:
                    raise _RolledBack(problems)
                result.counts = asdict(address_counts)
    except _RolledBack as exc:
        return _done(result, exc.problems, started)
    applying.finish()
    result.imported = result.rows
    log.info("import %s: %s %s rows imported by %s", path.name, result.rows, kind, actor)
    return _done(result, Problems(), started)


def _validate(conn: sa.Connection, key: VaultSource, writing: bool, rules: CityRules, kind: Kind, columns: Columns,
              rows: Rows, tick: Callable[[int], None] | None) -> tuple[Any, Problems]:
    if kind == "registrations":
        # Addresses never need the key: asking only here keeps an address
        # import from creating one.
        return validate_registrations(conn, key(writing), rules, columns, rows, tick=tick)
    return validate_addresses(conn, rules, columns, rows, tick=tick)


def _done(result: ImportResult, problems: Problems, started: float) -> ImportResult:
    result.errors = problems.sorted()
    result.failed_rows = problems.failed_rows
    result.seconds = time.monotonic() - started
    return result
