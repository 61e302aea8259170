"""``rentgate import``: exit codes, the JSON line, the report file, and the
progress bar kept off stdout."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from rentgate.cli import main
from server.registry.idnumber import make_id_number
from server.registry.imports.progress import Progress

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    return url


def last_json(text: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    return doc


def test_import_then_reimport_exit_codes_json_and_report(db: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["import", "addresses", str(FIXTURES / "addresses.csv"), "--database-url", db, "--json"]) == 0
    out, err = capsys.readouterr()
    assert last_json(out) == {**last_json(out), "rows": 4, "imported": 4, "errors": 0, "dry_run": False}
    assert "检查" in err and "检查" not in out and "导入" not in out

    assert main(["import", "registrations", str(FIXTURES / "registrations.csv"), "--database-url", db,
                 "--json"]) == 0
    doc = last_json(capsys.readouterr().out)
    assert (doc["rows"], doc["imported"], doc["errors"]) == (4, 4, 0)
    assert isinstance(doc["seconds"], float)

    report = tmp_path / "errors.csv"
    assert main(["import", "registrations", str(FIXTURES / "registrations.csv"), "--database-url", db, "--json",
                 "--report", str(report)]) == 1
    out, err = capsys.readouterr()
    doc = last_json(out)
    assert (doc["imported"], doc["failed_rows"]) == (0, 4)
    with report.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [r["行号"] for r in rows if r["列"] == "身份证号"] == ["2", "3", "4", "5"]
    assert "已登记在 B0001/101" in rows[0]["问题和改法"] and "请先注销原登记" in rows[0]["问题和改法"]
    full = make_id_number("440604", date(1990, 1, 1), 11)
    assert full not in report.read_text(encoding="utf-8-sig") and full not in err and full not in out
    assert rows[0]["值"] == full[:4] + "*" * 10 + full[-4:]


def test_dry_run_exit_0_and_nothing_written(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["import", "addresses", str(FIXTURES / "addresses.csv"), "--database-url", db, "--dry-run",
                 "--json"]) == 0
    assert last_json(capsys.readouterr().out)["imported"] == 0
    # The registrations then fail: the dry run created no building.
    assert main(["import", "registrations", str(FIXTURES / "registrations.csv"), "--database-url", db,
                 "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "什么都没有写入" in out and "没有这个楼栋编码" in err


def test_unusable_input_exits_2_and_says_why(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    missing = tmp_path / "missing.csv"
    missing.write_text("姓名,楼栋编码,房号\n张三,B0001,101\n", encoding="utf-8")
    assert main(["import", "registrations", str(missing), "--database-url", db]) == 2
    err = capsys.readouterr().err
    assert "缺少必填的列：身份证号/id_number、入住日期/arrived_on" in err
    odd = tmp_path / "data.json"
    odd.write_text("{}", encoding="utf-8")
    assert main(["import", "addresses", str(odd), "--database-url", db]) == 2
    assert "不认识的文件格式 .json" in capsys.readouterr().err


def test_gb18030_csv_is_read(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes((FIXTURES / "addresses.csv").read_text(encoding="utf-8").encode("gb18030"))
    assert main(["import", "addresses", str(path), "--database-url", db, "--json", "--no-progress"]) == 0
    assert last_json(capsys.readouterr().out)["imported"] == 4


def test_progress_redraws_one_line_on_a_tty_and_prints_tenths_otherwise() -> None:
    import io

    piped = io.StringIO()
    bar = Progress("importing", 1000, stream=piped, tty=False)
    for _ in range(100):
        bar.tick(10)
    bar.finish()
    lines = piped.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("importing") and "1,000/1,000" in lines[-1]

    tty = io.StringIO()
    bar = Progress("validating", 10, stream=tty, tty=True)
    bar.tick(10)
    bar.finish()
    assert tty.getvalue().startswith("\rvalidating") and tty.getvalue().count("\n") == 1


ZHANG = make_id_number("440604", date(1990, 1, 1), 11)
REG_HEADER = "身份证号,姓名,楼栋编码,房号,入住日期"


def folder(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_refused_before_db_upgrade_leaves_the_folder_as_it_was(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = folder(tmp_path)
    url = f"sqlite:///{tmp_path / 'new' / 'rentgate.db'}"
    report = tmp_path / "errors.csv"
    assert main(["import", "registrations", str(FIXTURES / "registrations.csv"), "--database-url", url,
                 "--report", str(report)]) == 2
    err = capsys.readouterr().err
    # No database file, no folder for it, no identity-number key, no report.
    assert folder(tmp_path) == before
    assert f"rentgate db upgrade --database-url {url}" in err and "还不存在" in err


def test_refused_input_and_dry_run_create_no_key_and_no_report(db: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "登记"
    book.active.append(REG_HEADER.split(","))
    xlsx = tmp_path / "regs.xlsx"
    book.save(xlsx)
    odd = tmp_path / "regs.xls"
    odd.write_bytes(b"\xd0\xcf\x11\xe0")
    report = tmp_path / "errors.csv"
    before = folder(tmp_path)
    for argv, code in ((["registrations", str(odd)], 2),                                   # old Excel format
                       (["registrations", str(xlsx), "--sheet", "Sheet9"], 2),             # no such sheet
                       (["registrations", str(FIXTURES / "registrations.csv"), "--dry-run"], 1),
                       (["addresses", str(FIXTURES / "addresses.csv"), "--dry-run"], 0)):
        assert main(["import", *argv, "--database-url", db, "--report", str(report), "--no-progress"]) == code
        if code == 2:
            assert not report.exists()
        report.unlink(missing_ok=True)
        assert folder(tmp_path) == before, argv
    err = capsys.readouterr().err
    assert "另存为” .xlsx" in err and "没有名为“Sheet9”的工作表，文件里有：登记" in err
    # The key is made when registrations are first written, not before.
    assert main(["import", "addresses", str(FIXTURES / "addresses.csv"), "--database-url", db, "--no-progress"]) == 0
    assert main(["import", "registrations", str(FIXTURES / "registrations.csv"), "--database-url", db,
                 "--no-progress"]) == 0
    assert folder(tmp_path) - before == {"pii.key"}


def test_english_messages_and_summary(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "regs.csv"
    path.write_text(f"{REG_HEADER}\n{ZHANG},张三,B0001,101,2025-06-01\n", encoding="utf-8")
    report = tmp_path / "errors.csv"
    assert main(["--lang", "en", "import", "registrations", str(path), "--database-url", db, "--no-progress",
                 "--report", str(report)]) == 1
    out, err = capsys.readouterr()
    assert "1 of 1 row has errors (1 error in all)" in out and "nothing was written" in out
    assert "row 2, 楼栋编码: no building has this code: import the addresses first" in err
    with report.open(encoding="utf-8-sig") as f:
        assert next(csv.reader(f)) == ["row", "column", "problem and what to do", "value"]
    assert ZHANG not in out + err + report.read_text(encoding="utf-8-sig")


EXCEL_SAYS = "这一列在 Excel 里存成了数字"


def test_identity_numbers_stored_as_numbers_in_excel_are_named_as_such(db: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    assert main(["import", "addresses", str(FIXTURES / "addresses.csv"), "--database-url", db, "--no-progress"]) == 0
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(REG_HEADER.split(","))
    # What Excel keeps of a number typed into a General column: 15 significant
    # digits (a float); and an int as openpyxl writes it, all 18 digits intact
    # and valid, which Excel itself could not hold: refused just the same.
    sheet.append([float(ZHANG), "张三", "B0001", 101, date(2025, 6, 1)])
    sheet.append([int(ZHANG), "李四", "B0001", 102, date(2025, 6, 1)])
    xlsx = tmp_path / "numbers.xlsx"
    book.save(xlsx)
    report = tmp_path / "errors.csv"
    assert main(["import", "registrations", str(xlsx), "--database-url", db, "--no-progress",
                 "--report", str(report)]) == 1
    with report.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [(r["行号"], r["列"]) for r in rows] == [("2", "身份证号"), ("3", "身份证号")]
    assert all(EXCEL_SAYS in r["问题和改法"] and "设置单元格格式 → 文本" in r["问题和改法"] for r in rows)
    assert all("校验码" not in r["问题和改法"] for r in rows)
    assert ZHANG not in report.read_text(encoding="utf-8-sig") + capsys.readouterr().err

    # The same column saved from Excel as CSV: scientific notation, or ".0".
    path = tmp_path / "numbers.csv"
    path.write_text(f"{REG_HEADER}\n4.40604E+17,张三,B0001,101,2025-06-01\n{ZHANG}.0,李四,B0001,102,2025-06-01\n"
                    f"{ZHANG},王五,B0001,201,2025-06-01\n", encoding="utf-8")
    assert main(["--lang", "en", "import", "registrations", str(path), "--database-url", db, "--no-progress",
                 "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("this column is stored as a number in Excel and the identity number has lost digits") == 2
    assert "row 2, 身份证号" in err and "row 3, 身份证号" in err and "row 4" not in err
    assert "Format the column as text" in err and ZHANG not in err
