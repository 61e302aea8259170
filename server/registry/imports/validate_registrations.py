"""Every check on a registrations file, before anything is written: each
row on its own, then rows against each other (one person in two places at
once, one card twice), then against the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from server.db.models import REGISTRATION_SOURCES
from server.registry.idnumber import IdNumber, InvalidIdNumber, mask_id_number, normalise, parse_id_number
from server.registry.imports import cells, checks, lookup
from server.registry.imports.cells import CellProblem
from server.registry.imports.columns import REGISTRATION_FIELDS, Columns, column_name
from server.registry.imports.readers import Cell
from server.registry.imports.report import Problems
from server.registry.pii import PiiVault
from server.rules import CityRules

SOURCES = tuple(s for s in REGISTRATION_SOURCES if s != "access")
CARD_FORMAT = "em4100"
Tick = Callable[[int], None]


@dataclass(frozen=True)
class RegistrationRow:
    row: int
    number: IdNumber
    digest: str
    name: str
    phone: str | None
    origin: str | None
    building_id: int
    unit_id: int
    arrived_at: datetime
    departed_at: datetime | None
    card: str | None
    source: str


@dataclass
class RegistrationPlan:
    rows: list[RegistrationRow]
    # Existing persons by digest (the rest are created).
    persons: dict[str, lookup.PersonRow]
    # Cards a landlord already handed to the unit, linked now: value -> credential id.
    adopt: dict[tuple[int, str], int] = field(default_factory=dict)


def _overlaps(a_start: datetime, a_end: datetime | None, b_start: datetime, b_end: datetime | None) -> bool:
    """Stays as half-open periods: leaving on the day of the next arrival is no overlap."""
    return (b_end is None or a_start < b_end) and (a_end is None or b_start < a_end)


class _Rows:
    """Reads one row's cells into typed values, noting each problem."""

    def __init__(self, columns: Columns, problems: Problems) -> None:
        self.columns = columns
        self.problems = problems

    def name(self, field_name: str) -> str:
        return column_name(self.columns, REGISTRATION_FIELDS, field_name)

    def fail(self, row: int, field_name: str, problem: str, value: Cell | str = None) -> None:
        shown = cells.text(value) if not isinstance(value, str) else value
        self.problems.add(row, self.name(field_name), problem, shown)


def validate_registrations(conn: sa.Connection, vault: PiiVault, rules: CityRules, columns: Columns,
                           rows: list[tuple[int, list[Cell]]], *, tick: Tick | None = None) -> tuple[
                               RegistrationPlan, Problems]:
    problems = Problems()
    out = _Rows(columns, problems)
    codes = {code: int(info["id"]) for code, info in lookup.all_buildings(conn).items()}
    unit_ids = {key: u.id for key, u in lookup.all_units(conn).items()}
    today = datetime.now(rules.zone).date()
    parsed: list[RegistrationRow] = []
    for done, (row, values) in enumerate(rows, start=1):
        item = _one_row(out, row, values, codes, unit_ids, vault, rules, today)
        if item is not None:
            parsed.append(item)
        if tick is not None and done % 1000 == 0:
            tick(1000)
    if tick is not None:
        tick(len(rows) % 1000)
    _within_file(out, parsed)
    known = lookup.persons_by_digest(conn, (r.digest for r in parsed))
    plan = RegistrationPlan([], known)
    _against_database(conn, out, parsed, plan, rules)
    plan.rows = [r for r in parsed if not problems.failed(r.row)]
    return plan, problems


def _one_row(out: _Rows, row: int, values: list[Cell], codes: dict[str, int], unit_ids: dict[tuple[int, str], int],
             vault: PiiVault, rules: CityRules, today: date) -> RegistrationRow | None:
    c = out.columns
    ok = True

    raw_id = cells.text(c.cell(values, "id_number"))
    number: IdNumber | None = None
    if raw_id is None:
        out.fail(row, "id_number", "is required")
        ok = False
    else:
        try:
            number = parse_id_number(raw_id, today=today)
        except InvalidIdNumber as exc:
            out.fail(row, "id_number", exc.reason, mask_id_number(normalise(raw_id)))
            ok = False

    def text(field_name: str, max_len: int, *, required: bool = False) -> str | None:
        nonlocal ok
        value = cells.text(c.cell(values, field_name))
        if value is None and required:
            out.fail(row, field_name, "is required")
            ok = False
        try:
            return checks.length(value, max_len)
        except CellProblem as exc:
            out.fail(row, field_name, exc.problem, value)
            ok = False
            return None

    name = text("name", 100, required=True)
    origin = text("origin", 100)
    phone = text("phone", 20)
    try:
        phone = checks.phone(phone)
    except CellProblem as exc:
        out.fail(row, "phone", exc.problem, phone)
        ok = False

    code = text("building_code", 32, required=True)
    number_text = text("unit", 32, required=True)
    building_id = codes.get(code) if code is not None else None
    unit_id = None
    if code is not None and building_id is None:
        out.fail(row, "building_code", "no building with this code (import addresses first)", code)
        ok = False
    elif building_id is not None and number_text is not None:
        unit_id = unit_ids.get((building_id, number_text))
        if unit_id is None:
            out.fail(row, "unit", f"building {code} has no unit {number_text}", number_text)
            ok = False

    arrived = _day(out, row, values, "arrived_on", today, required=True)
    departed = _day(out, row, values, "departed_on", today, required=False)
    if arrived is not None and departed is not None and departed < arrived:
        out.fail(row, "departed_on", f"is before the arrival ({arrived.isoformat()})", departed.isoformat())
        ok = False

    card = None
    raw_card = cells.text(c.cell(values, "card"))
    if raw_card is not None:
        try:
            card = checks.em4100(raw_card)
        except CellProblem as exc:
            out.fail(row, "card", exc.problem, raw_card)
            ok = False
        else:
            if departed is not None:
                out.fail(row, "card", "the registration has ended (departure given): a card is only issued to "
                         "a current resident", raw_card)
                ok = False

    source = (cells.text(c.cell(values, "source")) or "import").lower()
    if source not in SOURCES:
        out.fail(row, "source", f"must be one of {', '.join(SOURCES)}", source)
        ok = False

    if not ok or out.problems.failed(row) or number is None or name is None or building_id is None or unit_id is None or arrived is None:
        return None
    zone = rules.zone
    return RegistrationRow(
        row=row, number=number, digest=vault.digest(number.value), name=name, phone=phone, origin=origin,
        building_id=building_id, unit_id=unit_id,
        arrived_at=datetime(arrived.year, arrived.month, arrived.day, tzinfo=zone),
        departed_at=None if departed is None else datetime(departed.year, departed.month, departed.day, tzinfo=zone),
        card=card, source=source)


def _day(out: _Rows, row: int, values: list[Cell], field_name: str, today: date, *, required: bool) -> date | None:
    cell = out.columns.cell(values, field_name)
    try:
        value = cells.day(cell)
    except CellProblem as exc:
        out.fail(row, field_name, exc.problem, cell)
        return None
    if value is None:
        if required:
            out.fail(row, field_name, "is required")
        return None
    if value > today:
        out.fail(row, field_name, "is in the future", value.isoformat())
        return None
    return value


def _local_day(moment: datetime, rules: CityRules) -> str:
    return moment.astimezone(rules.zone).date().isoformat()


def _within_file(out: _Rows, parsed: list[RegistrationRow]) -> None:
    by_person: dict[str, list[RegistrationRow]] = {}
    cards: dict[tuple[int, str], int] = {}
    for r in parsed:
        earlier = by_person.setdefault(r.digest, [])
        for other in earlier:
            if other.name != r.name:
                out.fail(r.row, "name", f"row {other.row} gives another name for the same identity number", r.name)
                break
            if _overlaps(other.arrived_at, other.departed_at, r.arrived_at, r.departed_at):
                out.fail(r.row, "id_number", f"same person as row {other.row}, and the two stays overlap",
                         r.number.masked)
                break
        if out.problems.failed(r.row):
            # A row already in error is not held against later rows too.
            continue
        earlier.append(r)
        if r.card is not None:
            key = (r.building_id, r.card)
            if key in cards:
                out.fail(r.row, "card", f"the same card is given in row {cards[key]} for this building", r.card)
            else:
                cards[key] = r.row


def _against_database(conn: sa.Connection, out: _Rows, parsed: list[RegistrationRow], plan: RegistrationPlan,
                      rules: CityRules) -> None:
    stays = lookup.stays_of(conn, (p.id for p in plan.persons.values()))
    labels = lookup.unit_labels(conn, (s.unit_id for group in stays.values() for s in group if s.unit_id is not None))
    cards = lookup.active_cards(conn, {r.building_id for r in parsed if r.card is not None}, CARD_FORMAT)
    for r in parsed:
        if out.problems.failed(r.row):
            continue
        person = plan.persons.get(r.digest)
        for stay in stays.get(person.id, []) if person is not None else []:
            if _overlaps(stay.start, stay.end, r.arrived_at, r.departed_at):
                where = labels.get(stay.unit_id, "a building") if stay.unit_id is not None else "a building"
                until = f" until {_local_day(stay.end, rules)}" if stay.end is not None else " (still active)"
                out.fail(r.row, "id_number", f"already registered at {where} from "
                         f"{_local_day(stay.start, rules)}{until} (registration {stay.registration_id}); "
                         "the stays overlap", r.number.masked)
                break
        if r.card is None:
            continue
        held = cards.get((r.building_id, r.card))
        if held is None:
            continue
        adoptable = (held.registration_id is None and held.unit_id == r.unit_id
                     and held.person_id in (None, person.id if person is not None else None))
        if adoptable:
            plan.adopt[(r.building_id, r.card)] = held.id
        else:
            out.fail(r.row, "card", f"this card is already active in the building (credential {held.id}); "
                     "revoke it first", r.card)
