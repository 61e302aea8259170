"""``rentgate gateway enroll`` against a small fake of the enrolment route
(aiohttp, in a thread): what it prints, its exit codes, and that a failure
leaves nothing behind. The real server is in test_enrol_e2e.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
from aiohttp import web

from gateway.config import load_config
from rentgate.cli import main
from server.fleet.ca import GatewayCa
from tests.gateway.enrol.fakes import CODE, GW, FakeServerSide, answering, enrolling, http_fake


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = main(["gateway", "enroll", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out.splitlines()[-1]), err


def test_enrol_with_the_code_writes_a_folder_the_gateway_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = FakeServerSide(tmp_path)
    folder = tmp_path / "gw"
    with http_fake(enrolling(side)) as url:
        code, doc, err = run(capsys, "abcd efgh jkmn", "--server", url + "/", "--dir", str(folder),
                             "--hostname", "box-7")
    assert code == 0, err
    assert doc["ok"] is True and doc["gateway_id"] == GW and doc["config_file"] == str(folder / "gateway.toml")
    assert "http" in err  # the plain-http warning, on stderr
    assert side.requests[0].code == "ABCDEFGHJKMN" and side.requests[0].hostname == "box-7"
    assert "PRIVATE" not in side.requests[0].csr
    assert load_config(folder / "gateway.toml").cameras.server_url == url
    private = (folder / "secrets" / "gateway.key").read_text()
    assert private.strip().splitlines()[1] not in err + json.dumps(doc)


def test_the_qr_text_names_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = FakeServerSide(tmp_path)
    with http_fake(enrolling(side)) as url:
        code, doc, err = run(capsys, f"{url}/e/{CODE}", "--dir", str(tmp_path / "gw"))
    assert code == 0, err
    assert doc["server_url"] == url


def test_in_english_and_in_chinese(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "enroll", CODE, "--dir", str(tmp_path / "a")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "没有服务器地址" in err and "下一步：" in err
    assert main(["gateway", "enroll", CODE, "--dir", str(tmp_path / "a"), "--lang", "en"]) == 2
    err = capsys.readouterr().err
    assert "no server address" in err and "what to do:" in err
    assert main(["--lang", "en", "gateway", "enroll", CODE, "--dir", str(tmp_path / "a")]) == 2
    assert "no server address" in capsys.readouterr().err


@pytest.mark.parametrize("status, body, headers, error, exit_code, says", [
    (404, {"error": "not_found", "detail": "no such enrolment code"}, None, "code_refused", 2, "ask the landlord"),
    (410, {"error": "gone", "detail": "expired"}, None, "code_refused", 2, "ask the landlord"),
    (409, {"error": "conflict", "detail": "used"}, None, "code_refused", 2, "ask the landlord"),
    (429, {"error": "too_many_attempts", "detail": "slow down"}, {"Retry-After": "42"}, "rate_limited", 1, "wait 42 s"),
    (500, "boom", None, "server_error", 1, "try again in a few minutes"),
    (503, {"error": "unavailable", "detail": "no broker"}, None, "server_error", 1, "try again in a few minutes"),
    (200, {"not": "an answer"}, None, "bad_answer", 1, "check the server address"),
    (200, "<html>a portal</html>", None, "bad_answer", 1, "check the server address"),
    (302, "", {"Location": "https://elsewhere.example.cn/api/v1/enrol"}, "redirected", 1, "https://elsewhere"),
])
def test_every_refusal_says_what_to_do_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int, body: object,
        headers: dict[str, str] | None, error: str, exit_code: int, says: str) -> None:
    folder = tmp_path / "gw"
    with http_fake(answering(status, body, headers)) as url:
        code, doc, err = run(capsys, CODE, "--server", url, "--dir", str(folder), "--lang", "en")
    assert (code, doc["ok"], doc["error"]) == (exit_code, False, error), err
    assert says in str(doc["next_step"]) + str(doc["message"])
    assert says in err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with http_fake(answering(200, {})) as url:
        pass  # now closed: nothing listens on its port
    code, doc, _err = run(capsys, CODE, "--server", url, "--dir", str(tmp_path / "gw"), "--timeout", "3")
    assert (code, doc["error"]) == (1, "unreachable")
    assert list(tmp_path.iterdir()) == []


def test_https_with_a_private_ca_needs_ca_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = FakeServerSide(tmp_path / "side")
    server_ca = GatewayCa.create(tmp_path / "server-ca")
    cert, key = server_ca.issue_server_cert(["127.0.0.1"])
    (tmp_path / "server.crt").write_text(cert)
    (tmp_path / "server.key").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    with http_fake(enrolling(side), ssl_context=context) as url:
        code, doc, err = run(capsys, CODE, "--server", url, "--dir", str(tmp_path / "gw"), "--lang", "en")
        assert (code, doc["error"]) == (1, "tls"), err
        assert "--ca-file" in str(doc["next_step"])
        assert not (tmp_path / "gw").exists()
        code, doc, err = run(capsys, CODE, "--server", url, "--dir", str(tmp_path / "gw"),
                             "--ca-file", str(tmp_path / "server-ca" / "ca.pem"))
        assert code == 0, err
        assert "http" not in err.replace("https", "")  # no plain-http warning


@pytest.mark.parametrize("args, error", [
    (["NOT-A-CODE"], "bad_code"),
    ([CODE, "--server", "rentgate.example.cn"], "bad_server_url"),
    ([CODE, "--server", "http://8.8.8.8"], "plain_http"),
    ([CODE, "--server", "https://x.cn", "--ca-file", "/no/such/ca.pem"], "bad_ca_file"),
    ([CODE, "--server", "https://x.cn", "--scan", "pic.png"], "code_and_scan"),
    (["--server", "https://x.cn"], "no_code"),
    ([CODE, "--server", "https://x.cn", "--hostname", "x" * 65], "bad_hostname"),
    ([CODE, "--server", "https://x.cn", "--timeout", "0"], "bad_timeout"),
])
def test_what_the_person_must_fix_exits_2_before_any_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str) -> None:
    code, doc, _err = run(capsys, *args, "--dir", str(tmp_path / "gw"))
    assert (code, doc["error"]) == (2, error)
    assert list(tmp_path.iterdir()) == []


def test_an_enrolled_folder_refuses_before_the_code_is_spent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    side = FakeServerSide(tmp_path / "side")
    folder = tmp_path / "gw"
    with http_fake(enrolling(side)) as url:
        assert run(capsys, CODE, "--server", url, "--dir", str(folder))[0] == 0
        code, doc, err = run(capsys, CODE, "--server", url, "--dir", str(folder), "--lang", "en")
    assert (code, doc["error"]) == (2, "already_enrolled")
    assert "revoke" in err and "new folder" in err
    assert len(side.requests) == 1


def test_a_server_that_does_not_answer_in_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})

    with http_fake(slow) as url:
        code, doc, _err = run(capsys, CODE, "--server", url, "--dir", str(tmp_path / "gw"), "--timeout", "0.5",
                              "--lang", "en")
    assert (code, doc["error"]) == (1, "unreachable")
    assert "did not answer in time" in str(doc["message"]) and "revoke" in str(doc["next_step"])
    assert list(tmp_path.iterdir()) == []


def test_the_folder_has_a_default_so_the_pages_command_works_as_typed() -> None:
    from gateway.enrol.cli import DEFAULT_DIR
    from rentgate.cli import build_parser

    args = build_parser().parse_args(["gateway", "enroll", CODE, "--server", "https://x.cn"])
    assert args.dir == DEFAULT_DIR == "/var/lib/rentgate-gateway"
