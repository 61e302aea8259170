"""Importing addresses and registrations: what lands in the database, each
kind of row error (right row, right column, nothing written), dry runs and
rollback when applying fails midway."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.access import registry as access_registry
from server.db.models import allowlist_versions, areas, buildings, credentials, history, persons, registrations, units
from server.registry.idnumber import make_id_number
from server.registry.imports import apply_registrations as apply_module
from server.registry.imports.run import ImportResult, run_import
from server.registry.pii import PiiVault
from server.rules import CityRules

FIXTURES = Path(__file__).parent / "fixtures"
VAULT = PiiVault.from_master(b"k" * 32)
RULES = CityRules()
ZHANG = make_id_number("440604", date(1990, 1, 1), 11)
WANG = make_id_number("440604", date(1985, 7, 9), 33)
HEADER = "身份证号,姓名,电话,户籍地,楼栋编码,房号,入住日期,离开日期,卡号,来源"


def run(engine: sa.Engine, kind: str, path: Path, **kw: Any) -> ImportResult:
    return run_import(engine, VAULT, RULES, kind, path, actor=f"import:{path.name}", **kw)  # type: ignore[arg-type]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def with_addresses(engine: sa.Engine) -> None:
    result = run(engine, "addresses", FIXTURES / "addresses.csv")
    assert result.errors == [] and result.imported == 4


def write(tmp_path: Path, *lines: str, name: str = "regs.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def errors_of(result: ImportResult) -> list[tuple[int, str]]:
    return [(e.row, e.column) for e in result.errors]


def test_csv_import_of_addresses_then_registrations(sqlite_engine: sa.Engine, sqlite_url: str) -> None:
    with_addresses(sqlite_engine)
    with sqlite_engine.connect() as conn:
        grid = conn.execute(sa.select(areas.c.id, areas.c.name).where(areas.c.code == "440604001001G1")).one()
        b1 = conn.execute(sa.select(buildings).where(buildings.c.code == "B0001")).mappings().one()
    assert grid.name == "普君一网格"
    assert (b1["address"], b1["grid_id"], b1["landlord_name"], b1["is_rental"]) == ("普君北路12号", grid.id, "陈大文", True)
    assert count(sqlite_engine, areas) == 5 and count(sqlite_engine, units) == 4

    result = run(sqlite_engine, "registrations", FIXTURES / "registrations.csv")
    assert (result.rows, result.imported, result.errors) == (4, 4, [])
    assert result.counts["persons_created"] == 3 and result.counts["ended"] == 1
    with sqlite_engine.connect() as conn:
        zhang = conn.execute(sa.select(persons).where(persons.c.display_name == "张三")).mappings().one()
        regs = conn.execute(sa.select(registrations.c.status, registrations.c.source, registrations.c.valid_from)
                            .order_by(registrations.c.id)).all()
        trail = conn.execute(sa.select(history.c.entity, history.c.action, history.c.actor)).all()
        cards = conn.execute(sa.select(credentials.c.value, credentials.c.registration_id)).all()
    assert zhang["id_masked"] == ZHANG[:4] + "*" * 10 + ZHANG[-4:]
    assert VAULT.decrypt(zhang["id_cipher"]) == ZHANG and zhang["id_digest"] == VAULT.digest(ZHANG)
    assert [r.status for r in regs] == ["active", "active", "ended", "active"]
    assert regs[1].source == "landlord"
    # Arrival 2025-06-01 is local midnight in Asia/Shanghai.
    assert regs[0].valid_from.isoformat() == "2025-05-31T16:00:00+00:00"
    assert {c.value for c in cards} == {"0A1B2C3D4E", "0A1B2C3D4F"}
    assert ("registration", "registered", "import:registrations.csv") in trail
    assert ("person", "created", "import:registrations.csv") in trail
    # Encrypted at rest: the full number is nowhere in the database's files.
    sqlite_engine.dispose()
    db = Path(sa.make_url(sqlite_url).database or "")
    for path in db.parent.glob(db.name + "*"):
        data = path.read_bytes()
        assert ZHANG.encode() not in data and WANG.encode() not in data


def test_xlsx_with_english_headers_and_date_cells(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    with_addresses(sqlite_engine)
    book = openpyxl.Workbook()
    book.active.title = "ignored"
    sheet = book.create_sheet("登记")
    sheet.append(["ID Number", "Name", "Building_Code", "UNIT", "arrived on", "departed_on", "Card"])
    sheet.append([ZHANG, "张三", "B0001", 101, date(2025, 6, 1), None, "0a1b2c3d4e"])
    sheet.append([WANG, "王五", "B0002", 301, "2025/01/01", date(2025, 9, 30), None])
    path = tmp_path / "regs.xlsx"
    book.save(path)
    result = run(sqlite_engine, "registrations", path, sheet="登记")
    assert result.errors == [] and result.imported == 2
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(credentials.c.value)).scalar_one() == "0A1B2C3D4E"
        assert conn.execute(sa.select(units.c.number).join(registrations, registrations.c.unit_id == units.c.id)
                            .where(registrations.c.status == "active")).scalar_one() == "101"


BAD_ROWS = [
    pytest.param(f"{ZHANG[:-1]}{'0' if ZHANG[-1] != '0' else '1'},张三,,,B0001,101,2025-06-01,,,", "身份证号",
                 "最后一位校验码不对", id="check-character"),
    pytest.param("440604199002300000,张三,,,B0001,101,2025-06-01,,,", "身份证号", "出生日期不是真实日期",
                 id="impossible-birth-date"),
    pytest.param(f"{ZHANG},张三,,,B9999,101,2025-06-01,,,", "楼栋编码", "没有这个楼栋编码", id="unknown-building"),
    pytest.param(f"{ZHANG},张三,,,B0001,909,2025-06-01,,,", "房号", "没有房号 909", id="unknown-unit"),
    pytest.param(f"{ZHANG},张三,,,B0001,101,2026-02-30,,,", "入住日期", "不是真实存在的日期", id="impossible-date"),
    pytest.param(f"{ZHANG},张三,,,B0001,101,2025-06-01,2025-05-01,,", "离开日期", "早于入住日期",
                 id="departure-before-arrival"),
    pytest.param(f"{ZHANG},张三,,,B0001,101,2999-01-01,,,", "入住日期", "将来的日期", id="future-arrival"),
    pytest.param(f"{ZHANG},张三,,,B0001,101,2025-06-01,,12345,", "卡号", "10 位十六进制", id="bad-card"),
    pytest.param(f"{ZHANG},,,,B0001,101,2025-06-01,,,", "姓名", "必填", id="missing-name"),
    pytest.param(f"{ZHANG},张三,,,B0001,101,2025-06-01,,,police", "来源", "请填以下之一", id="bad-source"),
]


@pytest.mark.parametrize(("line", "column", "problem"), BAD_ROWS)
def test_each_row_error_names_row_and_column_and_nothing_is_written(
        sqlite_engine: sa.Engine, tmp_path: Path, line: str, column: str, problem: str) -> None:
    with_addresses(sqlite_engine)
    good = f"{WANG},王五,,,B0002,301,2025-01-01,,,"
    result = run(sqlite_engine, "registrations", write(tmp_path, good, line, good.replace("301", "301")))
    assert result.imported == 0
    # The bad line is row 3 (header is row 1); the third row repeats the first
    # person in an overlapping stay, which is its own error on row 4.
    assert (3, column) in errors_of(result)
    assert problem in next(e.problem for e in result.errors if e.row == 3)
    assert count(sqlite_engine, persons) == 0 and count(sqlite_engine, registrations) == 0


def test_identity_numbers_in_errors_are_masked(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    bad = ZHANG[:-1] + ("0" if ZHANG[-1] != "0" else "1")
    result = run(sqlite_engine, "registrations", write(tmp_path, f"{bad},张三,,,B0001,101,2025-06-01,,,"))
    assert result.errors[0].value == bad[:4] + "*" * 10 + bad[-4:]


def test_same_person_twice_in_overlapping_stays_and_same_card_twice(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    path = write(tmp_path,
                 f"{ZHANG},张三,,,B0001,101,2025-01-01,2025-03-01,,",
                 f"{ZHANG},张三,,,B0001,102,2025-02-15,,,",        # overlaps row 2
                 f"{ZHANG},张三,,,B0001,201,2025-03-01,,0A1B2C3D4E,",  # moves in the day row 2 left: fine
                 f"{WANG},王五,,,B0001,102,2025-03-01,,0a1b2c3d4e,")   # same card, same building
    result = run(sqlite_engine, "registrations", path)
    assert errors_of(result) == [(3, "身份证号"), (5, "卡号")]
    assert "第 2 行" in result.errors[0].problem and "第 4 行" in result.errors[1].problem
    assert count(sqlite_engine, registrations) == 0


def test_overlap_with_a_registration_already_in_the_database(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    first = run(sqlite_engine, "registrations", write(tmp_path, f"{ZHANG},张三,,,B0001,101,2025-06-01,,,"))
    assert first.imported == 1
    again = run(sqlite_engine, "registrations", write(
        tmp_path, f"{ZHANG},张三,,,B0002,301,2025-08-01,,,", f"{WANG},王五,,,B0002,301,2025-08-01,,,"))
    assert errors_of(again) == [(2, "身份证号")]
    assert "2025-06-01 起至今（仍有效）已登记在 B0001/101" in again.errors[0].problem
    assert count(sqlite_engine, registrations) == 1 and count(sqlite_engine, persons) == 1
    # A stay that ended before the new arrival is history, not an overlap.
    ended = run(sqlite_engine, "registrations", write(
        tmp_path, f"{WANG},王五,,,B0002,301,2024-01-01,2024-12-31,,", f"{WANG},王五,,,B0001,102,2024-12-31,,,"))
    assert ended.errors == [] and count(sqlite_engine, registrations) == 3


def test_dry_run_validates_and_writes_nothing(sqlite_engine: sa.Engine) -> None:
    result = run(sqlite_engine, "addresses", FIXTURES / "addresses.csv", dry_run=True)
    assert result.errors == [] and result.imported == 0 and result.dry_run
    assert count(sqlite_engine, areas) == 0 and count(sqlite_engine, buildings) == 0


def test_failure_while_applying_rolls_back_everything(sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with_addresses(sqlite_engine)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    # Persons and registrations are written before the cards step fails.
    monkeypatch.setattr(apply_module, "_cards", broken)
    with pytest.raises(sa.exc.OperationalError):
        run(sqlite_engine, "registrations", FIXTURES / "registrations.csv")
    assert count(sqlite_engine, persons) == 0 and count(sqlite_engine, registrations) == 0


def test_address_rows_that_contradict_the_database_or_repeat_a_unit(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    with_addresses(sqlite_engine)
    path = tmp_path / "more.csv"
    path.write_text("\n".join([
        "district_code,district,street_code,street,grid_code,building_code,address,unit,area_m2,rooms",
        "440604,南海区,,,,B0003,新楼1号,101,20,1",            # district code known under another name
        ",,,,,B0001,别的地址,,,",                            # building known with another address
        ",,,,,B0004,新楼4号,101,20,1",
        ",,,,,B0004,新楼4号,101,25,1",                       # the same unit twice
        ",,440604999,新街道,,B0005,新楼5号,,,",              # a new street without its district
        ",,,,,B0001,,101,20,1",                              # same as in the database: reused
    ]) + "\n", encoding="utf-8")
    result = run(sqlite_engine, "addresses", path)
    assert errors_of(result) == [(2, "district"), (3, "address"), (5, "unit"), (6, "district_code")]
    assert count(sqlite_engine, buildings) == 2 and count(sqlite_engine, units) == 4
    assert "南海区" in result.errors[0].value and "第 4 行" in result.errors[2].problem


def test_cards_bump_the_allowlists_of_the_buildings_gateways(sqlite_engine: sa.Engine) -> None:
    with_addresses(sqlite_engine)
    with sqlite_engine.begin() as conn:
        b1 = conn.execute(sa.select(buildings.c.id).where(buildings.c.code == "B0001")).scalar_one()
        access_registry.assign_gateway(conn, datetime.now(UTC), "gw-1", b1)
    result = run(sqlite_engine, "registrations", FIXTURES / "registrations.csv")
    assert [(c.gateway_id, c.version, c.base_version) for c in result.changes] == [("gw-1", 2, None)]
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(allowlist_versions.c.version)).scalar_one() == 2


def test_postgresql_import_and_overlap(engine: sa.Engine, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "addresses.csv", tmp_path / "addresses.csv")
    assert run(engine, "addresses", tmp_path / "addresses.csv").imported == 4
    assert run(engine, "registrations", FIXTURES / "registrations.csv").imported == 4
    again = run(engine, "registrations", FIXTURES / "registrations.csv")
    assert again.imported == 0 and {e.row for e in again.errors} == {2, 3, 4, 5}
    assert count(engine, registrations) == 4 and count(engine, persons) == 3


@pytest.mark.parametrize("raw", ["44060419900101001", "44060419900101001Y", "990604199001010011",
                                 "440604199013010011", "440604187001010011", "440604199001010001"])
def test_every_identity_number_reason_has_its_own_sentence(raw: str) -> None:
    from server.registry.idnumber import InvalidIdNumber, parse_id_number
    from server.registry.imports.validate_registrations import id_problem

    with pytest.raises(InvalidIdNumber) as caught:
        parse_id_number(raw, today=date(2026, 1, 1))
    sentence = id_problem(caught.value.reason)
    # A reason without its own sentence falls back to quoting the English one.
    assert sentence.startswith("身份证号") and "身份证号无效" not in sentence and "请对照身份证" in sentence
    assert raw not in sentence
