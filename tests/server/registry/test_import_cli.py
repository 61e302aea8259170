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
