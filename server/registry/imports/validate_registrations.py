"""Every check on a registrations file, before anything is written: each
row on its own, then rows against each other (one person in two places at
once, one card twice), then against the database."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from rentgate.lang import tr
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
# What Excel makes of an identity number kept in a number-formatted column once
# it is saved as CSV: 4.40106E+17, or 440106199001011000.0.
_EXCEL_NUMBER = re.compile(r"\d+(\.\d*)?[eE][+]?\d+|\d+\.0*")
# parse_id_number's reasons (server/registry/idnumber.py, in English), as
# sentences for the person fixing the file: none repeats the number.
_ID_REASONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"must be 18 characters, got (\d+)"), "应是 18 位，这里是 {0} 位", "must be 18 characters, not {0}"),
    (re.compile(r"must be 17 digits and a digit or X"), "应是 17 位数字加最后一位数字或 X",
     "must be 17 digits and a last digit or X"),
    (re.compile(r"unknown province code \d+"), "前两位不是省份代码", "the first two digits are no province code"),
    (re.compile(r"birth date is not a real date"), "第 7-14 位的出生日期不是真实日期",
     "the birth date (characters 7-14) is not a real date"),
    (re.compile(r"birth date is impossible"), "出生日期不可能（早于 1880 年或在将来）",
     "the birth date is impossible (before 1880 or in the future)"),
    (re.compile(r"sequence number 000 is not issued"), "第 15-17 位顺序码 000 不会签发",
     "sequence number 000 (characters 15-17) is never issued"),
    (re.compile(r"wrong check character"), "最后一位校验码不对，号码里有写错的地方",
     "the last (check) character does not match: a character is wrong"),
)


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


def id_problem(reason: str) -> str:
    """Why an identity number is refused and what to do, in the command's language."""
    for pattern, zh, en in _ID_REASONS:
        match = pattern.fullmatch(reason)
        if match:
            what = tr(zh, en).format(*match.groups())
            return tr(f"身份证号{what}；请对照身份证核对后改正", f"identity number {what}; check it against the "
                      "identity card and correct it")
    return tr(f"身份证号无效（{reason}）；请对照身份证核对后改正",
              f"invalid identity number ({reason}); check it against the identity card and correct it")


def stored_as_number(cell: Cell) -> bool:
    """True for an identity number that Excel held as a number: 18 digits are
    more than a double keeps (the last ones become zeros) and a final X is
    impossible, so the value is wrong even when its check character happens
    to match (one time in eleven): such a cell is refused, never parsed."""
    if isinstance(cell, bool):
        return False
    if isinstance(cell, int | float):
        return True
    return isinstance(cell, str) and _EXCEL_NUMBER.fullmatch(cell.strip()) is not None


def excel_number_problem() -> str:
    return tr("这一列在 Excel 里存成了数字，身份证号已丢失末尾几位。请把该列设为文本（设置单元格格式 → 文本）后重新"
              "输入号码，或导出时把这一列设为文本",
              "this column is stored as a number in Excel and the identity number has lost digits. Format the "
              "column as text (Format Cells → Text) and enter the numbers again, or export with the column as text")


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

    id_cell = c.cell(values, "id_number")
    raw_id = cells.text(id_cell)
    number: IdNumber | None = None
    if raw_id is None:
        out.fail(row, "id_number", cells.missing())
        ok = False
    elif stored_as_number(id_cell):
        out.fail(row, "id_number", excel_number_problem(), mask_id_number(normalise(raw_id)))
        ok = False
    else:
        try:
            number = parse_id_number(raw_id, today=today)
        except InvalidIdNumber as exc:
            out.fail(row, "id_number", id_problem(exc.reason), mask_id_number(normalise(raw_id)))
            ok = False

    def text(field_name: str, max_len: int, *, required: bool = False) -> str | None:
        nonlocal ok
        value = cells.text(c.cell(values, field_name))
        if value is None and required:
            out.fail(row, field_name, cells.missing())
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
        out.fail(row, "building_code", tr("没有这个楼栋编码：请先导入地址（rentgate import addresses），或核对编码",
                                          "no building has this code: import the addresses first (rentgate import "
                                          "addresses) or check the code"), code)
        ok = False
    elif building_id is not None and number_text is not None:
        unit_id = unit_ids.get((building_id, number_text))
        if unit_id is None:
            out.fail(row, "unit", tr(f"楼栋 {code} 没有房号 {number_text}：请核对房号，或先在地址文件里加上这个房间",
                                        f"building {code} has no unit {number_text}: check the unit, or add it "
                                        "to the addresses file first"), number_text)
            ok = False

    arrived = _day(out, row, values, "arrived_on", today, required=True)
    departed = _day(out, row, values, "departed_on", today, required=False)
    if arrived is not None and departed is not None and departed < arrived:
        out.fail(row, "departed_on", tr(f"早于入住日期（{arrived.isoformat()}），请核对两个日期",
                                        f"is before the arrival ({arrived.isoformat()}); check both dates"),
                 departed.isoformat())
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
                out.fail(row, "card", tr("已填离开日期，登记已结束：只给在住的人发卡，请删掉卡号或离开日期",
                                         "a departure is given, so the registration has ended: cards are only "
                                         "issued to current residents; remove the card or the departure"), raw_card)
                ok = False

    source = (cells.text(c.cell(values, "source")) or "import").lower()
    if source not in SOURCES:
        out.fail(row, "source", tr(f"请填以下之一：{'、'.join(SOURCES)}，或留空（import）",
                                   f"write one of {', '.join(SOURCES)}, or leave it empty (import)"), source)
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
            out.fail(row, field_name, cells.missing())
        return None
    if value > today:
        out.fail(row, field_name, cells.future(), value.isoformat())
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
                out.fail(r.row, "name", tr(f"第 {other.row} 行的身份证号相同，姓名却不同：请核对是否同一个人",
                                           f"row {other.row} has the same identity number with another name: "
                                           "check whether it is the same person"), r.name)
                break
            if _overlaps(other.arrived_at, other.departed_at, r.arrived_at, r.departed_at):
                out.fail(r.row, "id_number", tr(f"与第 {other.row} 行是同一个人，两段居住时间重叠：请核对入住和离开日期",
                                                f"the same person as row {other.row}, and the two stays overlap: "
                                                "check the arrival and departure dates"), r.number.masked)
                break
        if out.problems.failed(r.row):
            # A row already in error is not held against later rows too.
            continue
        earlier.append(r)
        if r.card is not None:
            key = (r.building_id, r.card)
            if key in cards:
                out.fail(r.row, "card", tr(f"第 {cards[key]} 行已把同一张卡给了这栋楼的另一人：一张卡只能给一个人",
                                           f"row {cards[key]} gives the same card in this building: a card "
                                           "belongs to one person"), r.card)
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
                where = labels.get(stay.unit_id) if stay.unit_id is not None else None
                start = _local_day(stay.start, rules)
                if stay.end is not None:
                    until = _local_day(stay.end, rules)
                    when = tr(f"{start} 至 {until}", f"from {start} until {until}")
                else:
                    when = tr(f"{start} 起至今（仍有效）", f"from {start} (still active)")
                out.fail(r.row, "id_number", tr(
                    f"此人{when}已登记在 {where or '另一栋楼'}，与这一行的居住时间重叠：请先注销原登记，或核对日期",
                    f"already registered at {where or 'another building'} {when}; the stays overlap: end that "
                    "registration first, or check the dates"), r.number.masked)
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
            out.fail(r.row, "card", tr("这张卡在这栋楼里已经在用：请先注销这张卡，或核对卡号",
                                       "this card is already in use in the building: revoke it first, or check "
                                       "the number"), r.card)
