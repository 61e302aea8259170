"""The code or QR text typed at the box, and the server's address."""

from __future__ import annotations

import pytest

from gateway.enrol.errors import EnrolInputError
from gateway.enrol.invitation import (
    Invitation,
    is_invitation,
    normalise_server_url,
    parse_invitation,
    plain_http_warning,
    shown,
)


@pytest.mark.parametrize("text", ["ABCD-EFGH-JKMN", "abcd efgh jkmn", " abcdefghjkmn\n", "ABCD-EFGH-JKMN  "])
def test_a_typed_code_in_any_case_with_any_separators(text: str) -> None:
    assert parse_invitation(text) == Invitation("ABCDEFGHJKMN", None)


def test_letters_that_look_like_digits_are_read_as_digits() -> None:
    assert parse_invitation("ABCD-EFGH-JKMO").code == "ABCDEFGHJKM0"
    assert parse_invitation("ABCD-EFGH-JKIL").code == "ABCDEFGHJK11"


@pytest.mark.parametrize("text, server", [
    ("https://rentgate.example.cn/e/ABCD-EFGH-JKMN", "https://rentgate.example.cn"),
    ("https://rentgate.example.cn/e/abcdefghjkmn/", "https://rentgate.example.cn"),
    ("HTTPS://Rentgate.Example.cn:8443/city/e/ABCDEFGHJKMN", "https://rentgate.example.cn:8443/city"),
    ("http://192.168.1.5:8080/e/ABCDEFGHJKMN?lang=en", "http://192.168.1.5:8080"),
    ("http://[::1]:8080/e/ABCDEFGHJKMN", "http://[::1]:8080"),
])
def test_the_qr_text_names_the_server_and_the_code(text: str, server: str) -> None:
    assert parse_invitation(text) == Invitation("ABCDEFGHJKMN", server)
    assert is_invitation(text)


@pytest.mark.parametrize("text", [
    "", "ABCD-EFGH", "ABCD-EFGH-JKMN-P", "ABCD-EFGH-JKM!", "ABCD-EFGH-JKMU",  # U is not in Crockford's base32
    "https://rentgate.example.cn/p/ABCDEFGHJKMN",  # a door plate, not an enrolment
    "https://rentgate.example.cn/e/", "ftp://x/e/ABCDEFGHJKMN", "https://user:pw@x.cn/e/ABCDEFGHJKMN",
    "A" * 700,
])
def test_what_is_not_a_code_says_what_a_code_looks_like(text: str) -> None:
    with pytest.raises(EnrolInputError) as caught:
        parse_invitation(text)
    assert caught.value.exit_code == 2
    assert caught.value.code in ("bad_code", "bad_server_url")
    assert not is_invitation(text)


def test_a_typed_code_is_not_what_the_scanner_waits_for() -> None:
    assert not is_invitation("ABCD-EFGH-JKMN")


def test_shown_in_three_groups() -> None:
    assert shown("ABCDEFGHJKMN") == "ABCD-EFGH-JKMN"


@pytest.mark.parametrize("text", ["rentgate.example.cn", "https://", "https://x.cn/?a=1", "https://x.cn/#f",
                                  "https://u@x.cn", "https://x.cn:99999", "mqtt://x.cn"])
def test_a_bad_server_address_is_refused(text: str) -> None:
    with pytest.raises(EnrolInputError) as caught:
        normalise_server_url(text)
    assert caught.value.code == "bad_server_url"


def test_plain_http_only_to_a_local_address_and_always_with_a_warning() -> None:
    assert plain_http_warning("https://rentgate.example.cn", allow_http=False) is None
    for url in ("http://127.0.0.1:8080", "http://localhost:8080", "http://10.1.2.3", "http://192.168.0.9"):
        assert plain_http_warning(url, allow_http=False)
    with pytest.raises(EnrolInputError) as caught:
        plain_http_warning("http://8.8.8.8", allow_http=False)
    assert caught.value.code == "plain_http" and "--allow-http" in (caught.value.next_step or "")
    assert plain_http_warning("http://8.8.8.8", allow_http=True)
    # A name that does not resolve is not taken for a local one.
    with pytest.raises(EnrolInputError):
        plain_http_warning("http://no-such-host.invalid", allow_http=False)
