"""``rentgate plates`` and ``rentgate keys plates`` as an operator runs
them: files written, the JSON line, exit codes and messages that say what
to do (Chinese by default, English with --lang en), progress kept off
stdout, and base URLs phones cannot reach refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import cv2
import pytest

from rentgate.cli import main
from server.db.engine import create_engine
from server.plates.fonts import PlateFont
from tests.server.plates.conftest import english
from tests.server.plates.qr_read import read_qr
from tests.server.plates.world import World, build


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plate_font: PlateFont) -> tuple[str, World]:
    for name in ("RENTGATE_PLATE_KEY_FILE", "RENTGATE_RULES_FILE"):
        monkeypatch.delenv(name, raising=False)
    # A deployment with its public address set, as the docs ask.
    monkeypatch.setenv("RENTGATE_PUBLIC_URL", "https://plates.example.cn")
    monkeypatch.setenv("RENTGATE_PLATE_FONT", str(plate_font.path))
    url = f"sqlite:///{tmp_path / 'plates.db'}"
    # A fixed key (the one generated next to the database would be random):
    # the same codes, and the same images, on every run.
    (tmp_path / "rentgate-plate-keys").write_text("k1 " + "A" * 43 + "=\n")
    (tmp_path / "rentgate-plate-keys").chmod(0o600)
    assert main(["db", "upgrade", "--database-url", url]) == 0
    engine = create_engine(url)
    world = build(engine)
    engine.dispose()
    return url, world


def image(path: Path) -> Any:
    loaded = cv2.imread(str(path))
    assert loaded is not None, path
    return loaded


def last_json(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return doc


def plates_of(db: str, unit: int, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["plates", "list", "--unit", str(unit), "--database-url", db, "--json"]) == 0
    listed: list[dict[str, Any]] = last_json(capsys.readouterr().out)["plates"]
    return listed


def test_render_a_street_then_reprint_then_reissue(db: tuple[str, World], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    english(monkeypatch)
    url, world = db
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["plates", "render", "--street", "S1", "--out", str(out), "--format", "pdf,png,svg",
                 "--dpi", "150", "--base-url", "https://plates.example.cn/", "--database-url", url, "--json"]) == 0
    stdout, stderr = capsys.readouterr()
    doc = last_json(stdout)
    assert (doc["plates"], doc["issued"], doc["pages"], doc["formats"]) == (7, 7, 3, ["pdf", "png", "svg"])
    assert doc["plates_per_s"] > 0 and doc["seconds"] > 0
    assert len(stdout.strip().splitlines()) == 1  # progress went to stderr
    assert "7 units in street S1" in stderr and "rendering" in stderr
    files = [Path(f) for f in doc["files"]]
    assert len(files) == 1 + 7 + 7 and all(f.is_file() and f.parent == out for f in files)
    assert files[0].name == "plates.pdf" and files[0].read_bytes().startswith(b"%PDF")
    unit = world.unit("B2", "10")
    scanned = read_qr(image(out / f"unit-{unit}.png"))
    assert scanned.startswith("https://plates.example.cn/p/k1.")

    # Printed again: the same plates, nothing new issued.
    assert main(["plates", "render", "--building", "B2", "--out", str(out), "--format", "svg", "--database-url",
                 url, "--base-url", "https://plates.example.cn", "--json"]) == 0
    doc = last_json(capsys.readouterr().out)
    assert (doc["plates"], doc["issued"], doc["pages"]) == (4, 0, 0)
    assert len(plates_of(url, unit, capsys)) == 1

    # Lost plate: --reissue withdraws the old one.
    assert main(["plates", "render", "--unit", str(unit), "--out", str(out), "--format", "png", "--dpi", "150",
                 "--base-url", "https://plates.example.cn", "--reissue", "--database-url", url, "--json"]) == 0
    assert last_json(capsys.readouterr().out)["issued"] == 1
    rescanned = read_qr(image(out / f"unit-{unit}.png"))
    assert rescanned and rescanned != scanned
    states = [(p["state"], p["revoked_reason"]) for p in plates_of(url, unit, capsys)]
    assert states == [("revoked", "reissued"), ("active", None)]


def test_revoke_and_list(db: tuple[str, World], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    english(monkeypatch)
    url, world = db
    unit = world.unit("B1", "301")
    assert main(["plates", "list", "--unit", str(unit), "--database-url", url]) == 0
    assert "no plates yet" in capsys.readouterr().out
    assert main(["plates", "render", "--unit", str(unit), str(world.unit("B9", "1")), "--out", str(tmp_path),
                 "--format", "svg", "--database-url", url, "--json"]) == 0
    assert last_json(capsys.readouterr().out)["plates"] == 2
    [plate] = plates_of(url, unit, capsys)
    assert plate["state"] == "active" and plate["key_id"] == "k1" and plate["expires_at"]

    assert main(["plates", "revoke", "--unit", str(unit), "--reason", "stolen", "--database-url", url,
                 "--json"]) == 0
    assert last_json(capsys.readouterr().out) == {"revoked": [plate["plate_id"]], "unit_id": unit,
                                                  "reason": "stolen"}
    assert main(["plates", "revoke", "--unit", str(unit), "--database-url", url]) == 2
    assert "has no plate in use" in capsys.readouterr().err
    assert main(["plates", "revoke", "--plate", str(plate["plate_id"]), "--database-url", url]) == 2
    assert "already withdrawn" in capsys.readouterr().err
    assert main(["plates", "revoke", "--plate", "999", "--database-url", url]) == 2
    assert "no plate 999" in capsys.readouterr().err
    assert main(["plates", "list", "--unit", str(unit), "--database-url", url]) == 0
    assert "revoked (stolen" in capsys.readouterr().out
    assert main(["plates", "list", "--unit", "99999", "--database-url", url]) == 2


BAD_REQUESTS = [
    (["--building", "NOPE"], "no building with code NOPE"),
    (["--street", "G1"], "G1 is a grid, not a street"),
    (["--unit", "99999"], "no unit 99999"),
    (["--grid", "G1", "--size", "150by90"], "WIDTHxHEIGHT"),
    (["--grid", "G1", "--qr-mm", "15"], "phones need at least 0.5 mm"),
    (["--grid", "G1", "--size", "250x150"], "does not fit on an A4 sheet"),
    (["--grid", "G1", "--format", "jpg"], "choose from pdf, png, svg"),
    (["--grid", "G1", "--dpi", "10"], "--dpi 10"),
    (["--grid", "G1", "--base-url", "ftp://x"], "must start with https:// or http://"),
    (["--grid", "G1", "--base-url", "https://admin:pw@plates.example.cn"], "must not hold a user name"),
    (["--grid", "G1", "--base-url", "http://192.168.1.20:8080"], "a private network address"),
    (["--grid", "G1", "--font", "/nonexistent/font.ttc"], "no such file"),
]


def test_bad_requests_exit_2_and_write_nothing(db: tuple[str, World], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    english(monkeypatch)
    url, world = db
    capsys.readouterr()
    for extra, problem in BAD_REQUESTS:
        assert main(["plates", "render", "--out", str(tmp_path / "out"), "--database-url", url, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert problem in err and err.startswith("rentgate plates render: "), (extra, err)
    assert not (tmp_path / "out").exists()
    assert plates_of(url, world.unit("B2", "10"), capsys) == []  # nothing issued


def test_a_database_not_yet_made_is_named_and_left_unmade(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'none' / 'rentgate.db'}"
    for argv in (["plates", "render", "--grid", "G1", "--out", str(tmp_path / "out"), "--base-url", "https://plates.example.cn",
                  "--database-url", url], ["plates", "list", "--unit", "1", "--database-url", url]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"rentgate db upgrade --database-url {url}" in err, err
    assert not (tmp_path / "none").exists() and not (tmp_path / "out").exists()


def test_a_missing_character_stops_before_any_plate_is_issued(db: tuple[str, World], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import sqlalchemy as sa

    from server.db.models import buildings

    url, world = db
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(buildings).where(buildings.c.code == "B1").values(address="越秀区𪚥街1号"))
    engine.dispose()
    assert main(["plates", "render", "--grid", "G1", "--out", str(tmp_path), "--database-url", url]) == 2
    assert "U+2A6A5" in capsys.readouterr().err
    assert plates_of(url, world.unit("B2", "10"), capsys) == []


def test_argument_errors_are_exit_2(db: tuple[str, World], tmp_path: Path) -> None:
    url, _ = db
    for argv in (["plates", "render", "--out", str(tmp_path)],
                 ["plates", "render", "--street", "S1", "--grid", "G1", "--out", str(tmp_path)],
                 ["plates", "render", "--street", "S1"],
                 ["plates", "revoke", "--unit", "1", "--plate", "2"],
                 ["keys", "plates", "--rotate", "--list"]):
        with pytest.raises(SystemExit) as caught:
            main([*argv, "--database-url", url])
        assert caught.value.code == 2


def test_keys_rotate_list_retire(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    english(monkeypatch)
    path = tmp_path / "keys" / "plates"
    assert main(["keys", "plates", "--file", str(path), "--list"]) == 2
    assert "--rotate" in capsys.readouterr().err
    assert main(["keys", "plates", "--file", str(path), "--rotate"]) == 0
    assert main(["keys", "plates", "--file", str(path), "--rotate", "--json"]) == 0
    out, err = capsys.readouterr()
    assert last_json(out) == {"file": str(path), "key_ids": ["k1", "k2"], "current": "k2"}
    assert "added key k2" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keys", "plates", "--file", str(path), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["k1", "k2  (signs new plates)"]
    secrets = [line.split()[1] for line in path.read_text().splitlines()]
    assert not any(s in out for s in secrets)
    assert main(["keys", "plates", "--file", str(path), "--retire", "k2"]) == 2
    assert "rotate first" in capsys.readouterr().err
    assert main(["keys", "plates", "--file", str(path), "--retire", "k1", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["key_ids"] == ["k2"]
    path.write_text("garbage\n")
    assert main(["keys", "plates", "--file", str(path), "--list"]) == 2
    assert "line 1" in capsys.readouterr().err


def test_keys_default_to_the_file_next_to_a_sqlite_database(db: tuple[str, World], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    assert main(["keys", "plates", "--rotate", "--database-url", url, "--json"]) == 0
    doc = last_json(capsys.readouterr().out)
    assert doc["file"] == str(tmp_path / "rentgate-plate-keys") and doc["key_ids"] == ["k1", "k2"]


def test_no_public_url_is_refused_with_what_to_do(db: tuple[str, World], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url, world = db
    monkeypatch.delenv("RENTGATE_PUBLIC_URL")
    out = tmp_path / "out"
    argv = ["plates", "render", "--grid", "G1", "--out", str(out), "--database-url", url]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rentgate plates render: 没有指定 --base-url，也没有设置 RENTGATE_PUBLIC_URL，"), err
    assert "http://127.0.0.1:8080/p/…，这是本机回环地址" in err and "住户的手机打不开" in err
    assert "请用 --base-url https://" in err and "--allow-private-url" in err
    assert main(["--lang", "en", *argv]) == 2
    err = capsys.readouterr().err
    assert ("no --base-url and no RENTGATE_PUBLIC_URL: the plates' codes would point at http://127.0.0.1:8080/p/…, "
            "a loopback address: only this computer reaches it, so tenants' phones cannot open them. Pass "
            "--base-url https://… with the server's address") in err, err
    # A private address in the environment is refused the same way, without
    # the "no --base-url" part.
    monkeypatch.setenv("RENTGATE_PUBLIC_URL", "http://rentgate.lan:8080")
    assert main(["--lang", "en", *argv]) == 2
    err = capsys.readouterr().err
    assert "codes would point at http://rentgate.lan:8080/p/…, a local network name" in err
    assert "no --base-url" not in err
    assert not out.exists() and plates_of(url, world.unit("B2", "10"), capsys) == []


def test_a_private_url_prints_when_acknowledged_with_a_warning(db: tuple[str, World], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, world = db
    monkeypatch.delenv("RENTGATE_PUBLIC_URL")
    unit = world.unit("B1", "301")
    capsys.readouterr()
    assert main(["plates", "render", "--unit", str(unit), "--out", str(tmp_path), "--format", "png", "--dpi", "150",
                 "--allow-private-url", "--database-url", url, "--json"]) == 0
    out, err = capsys.readouterr()
    assert last_json(out)["plates"] == 1
    assert "警告：门牌指向 http://127.0.0.1:8080（本机回环地址，只有这台电脑能打开），这个网络以外的手机打不开这些门牌" in err
    assert read_qr(image(tmp_path / f"unit-{unit}.png")).startswith("http://127.0.0.1:8080/p/k1.")


def test_plain_http_to_a_public_host_prints_with_a_warning(db: tuple[str, World], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    url, world = db
    capsys.readouterr()
    assert main(["--lang", "en", "plates", "render", "--unit", str(world.unit("B9", "1")), "--out", str(tmp_path),
                 "--format", "svg", "--base-url", "http://plates.example.cn", "--database-url", url]) == 0
    err = capsys.readouterr().err
    assert "warning: the plates point at http://plates.example.cn, plain unencrypted http: phones open it" in err


def test_summaries_count_in_words(db: tuple[str, World], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, world = db
    one = ["plates", "render", "--unit", str(world.unit("B9", "1")), "--out", str(tmp_path), "--database-url", url]
    capsys.readouterr()
    assert main(one) == 0
    out, err = capsys.readouterr()
    assert f"单元 {world.unit('B9', '1')}：1 个单元" in err and "新发 1 块门牌，重印 0 块" in err
    assert out.strip() == f"1 块门牌（新发 1 块）已写入 {tmp_path}：plates.pdf 共 1 页 A4"
    assert main(["--lang", "en", *one]) == 0
    out, err = capsys.readouterr()
    assert f"1 unit in unit {world.unit('B9', '1')}" in err and "0 plates issued, 1 reprinted" in err
    assert out.strip() == f"1 plate (0 new) written to {tmp_path}: 1 A4 page in plates.pdf"
    assert main(["--lang", "en", "plates", "render", "--street", "S1", "--out", str(tmp_path), "--database-url",
                 url]) == 0
    out, err = capsys.readouterr()
    assert "7 units in street S1" in err
    assert out.strip() == f"7 plates (7 new) written to {tmp_path}: 3 A4 pages in plates.pdf"


def test_refusals_are_in_chinese_by_default(db: tuple[str, World], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    capsys.readouterr()
    for extra, problem in ((["--qr-mm", "15"], "手机至少需要 0.5 毫米：请用 --qr-mm 19 或更大"),
                           (["--size", "250x150"], "放不进带裁切线的 A4 纸"),
                           (["--base-url", "ftp://x"], "门牌地址 ftp://x 必须以 https:// 或 http:// 开头"),
                           (["--font", "/nonexistent/font.ttc"], "文件不存在")):
        assert main(["plates", "render", "--grid", "G1", "--out", str(tmp_path / "out"), "--database-url", url,
                     *extra]) == 2
        assert problem in capsys.readouterr().err, extra
    assert main(["plates", "render", "--street", "G1", "--out", str(tmp_path / "out"), "--database-url", url]) == 2
    assert "G1 是网格，不是街道：请填街道的编码" in capsys.readouterr().err
