"""The base URL check: which addresses phones on the internet can reach,
read as a browser reads them (legacy IPv4 forms, IPv6 in brackets, IDN
names), and which URLs cannot go on a plate at all."""

from __future__ import annotations

import pytest

from server.plates.public_url import PROBLEMS, REASONS, BadPublicUrl, check_public_url

PUBLIC = [
    ("https://plates.example.cn", "plates.example.cn"),
    ("https://plates.example.cn/", "plates.example.cn"),
    ("https://Plates.Example.CN:8443/rentgate/", "plates.example.cn"),
    ("https://plates.example.cn.", "plates.example.cn"),
    ("https://gz.rentgate.org.cn/sub/path", "gz.rentgate.org.cn"),
    ("https://门牌.广州.cn", "xn--m1xp37e.xn--6rtwn.cn"),
    ("https://出租屋.中国/p", "xn--79q64w9yy.xn--fiqs8s"),
    ("https://203.0.114.7", "203.0.114.7"),           # 203.0.113/24 is documentation; .114 is public
    ("https://8.8.8.8:8443", "8.8.8.8"),
    ("https://[2400:3200::1]", "2400:3200::1"),
    ("https://[2400:3200::1]:8443/x", "2400:3200::1"),
    ("https://100.63.255.1", "100.63.255.1"),          # just below CGNAT
    ("https://100.128.0.1", "100.128.0.1"),            # just above
    ("https://172.32.0.1", "172.32.0.1"),              # just outside 172.16/12
    ("https://local.example.cn", "local.example.cn"),  # "local" as a label, not the suffix
]


@pytest.mark.parametrize(("url", "host"), PUBLIC)
def test_public_addresses_pass(url: str, host: str) -> None:
    checked = check_public_url(url)
    assert checked.not_public is None and checked.usable_as_is, url
    assert checked.host == host and not checked.insecure
    assert checked.url == url.rstrip("/")


NOT_PUBLIC = [
    ("http://127.0.0.1:8080", "loopback"),
    ("http://127.9.9.9", "loopback"),
    ("http://127.1", "loopback"),                      # browsers read it as 127.0.0.1
    ("http://0x7f.0.0.1", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://017700000001", "loopback"),               # octal
    ("http://[::1]:8080", "loopback"),
    ("http://[::ffff:127.0.0.1]", "loopback"),
    ("http://localhost:8080", "loopback"),
    ("http://LOCALHOST.", "loopback"),
    ("http://plates.localhost", "loopback"),
    ("http://10.0.0.5", "private"),
    ("http://172.16.0.1", "private"),
    ("http://172.31.255.254", "private"),
    ("http://192.168.1.20:8080/", "private"),
    ("http://[::ffff:192.168.1.20]", "private"),
    ("http://169.254.10.1", "link_local"),
    ("http://[fe80::1]", "link_local"),
    ("http://[fe80::1%25eth0]", "link_local"),
    ("http://100.64.0.1", "shared"),
    ("http://100.127.255.254", "shared"),
    ("http://[fd12:3456::1]", "unique_local"),
    ("http://[fc00::1]", "unique_local"),
    ("http://0.0.0.0:8080", "unspecified"),
    ("http://[::]", "unspecified"),
    ("http://192.0.2.10", "reserved"),                 # documentation
    ("http://224.0.0.1", "reserved"),                  # multicast
    ("http://240.0.0.1", "reserved"),
    ("http://server.local", "local_name"),
    ("http://rentgate.lan:8080", "local_name"),
    ("http://plates.corp.internal", "local_name"),
    ("http://nas.home.arpa", "local_name"),
    ("http://box.localdomain", "local_name"),
    ("https://rentgate.test", "local_name"),
    ("http://gateway", "single_label"),
    ("http://rentgate-server:8080/", "single_label"),
    ("http://服务器", "single_label"),
]


@pytest.mark.parametrize(("url", "reason"), NOT_PUBLIC)
def test_addresses_phones_outside_cannot_reach(url: str, reason: str) -> None:
    checked = check_public_url(url)
    assert checked.not_public == reason, url
    assert not checked.usable_as_is and reason in REASONS


def test_plain_http_and_addresses_are_flagged() -> None:
    checked = check_public_url("http://plates.example.cn")
    assert checked.not_public is None and checked.insecure and not checked.ip_literal
    assert check_public_url("HTTPS://8.8.8.8").ip_literal and not check_public_url("HTTPS://8.8.8.8").insecure
    assert check_public_url("https://[2400:3200::1]").ip_literal


UNUSABLE = [
    (None, "missing"),
    ("", "missing"),
    ("   /", "missing"),
    ("ftp://plates.example.cn", "scheme"),
    ("plates.example.cn", "scheme"),
    ("https:plates.example.cn", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("https://", "no_host"),
    ("https://:8443", "no_host"),
    ("https://admin:secret@plates.example.cn", "credentials"),
    ("https://token@plates.example.cn", "credentials"),
    ("https://plates.example.cn/?x=1", "query"),
    ("https://plates.example.cn/#top", "query"),
    ("https://plates.example.cn:99999", "port"),
    ("https://plates.example.cn:port", "port"),
    ("https://plates example.cn", "chars"),
    ("https://plates.example.cn\\p", "chars"),
    ("https://-plates.example.cn", "host"),
    ("https://plates..example.cn", "host"),
    ("https://plates_x.example.cn", "host"),
    ("https://" + "a" * 64 + ".cn", "host"),
    ("https://1.2.3.999", "host"),                     # ends in a number: an address, and not a valid one
    ("https://[::1", "host"),
    ("https://[zz::1]", "host"),
]


@pytest.mark.parametrize(("url", "problem"), UNUSABLE)
def test_urls_that_cannot_go_on_a_plate(url: str | None, problem: str) -> None:
    with pytest.raises(BadPublicUrl) as caught:
        check_public_url(url)
    assert caught.value.problem == problem, (url, caught.value)
    assert problem in PROBLEMS
    if url and "@" in url:
        assert "secret" not in str(caught.value) and "token" not in caught.value.url
        assert caught.value.url.startswith("https://***@plates.example.cn")
