"""Is this the address phones reach? The check behind ``rentgate plates
render --base-url`` and the /c/plates page.

A plate hangs on a door for five years and its code holds
``<public_url>/p/<token>``: an address only this machine or this office
network can reach (127.0.0.1, 192.168.x.x, ``server.lan``, ``gateway``)
prints plates no tenant's phone can open, and nothing says so until the
plates are screwed on. So such an address is refused unless the operator
says they mean it (``--allow-private-url``: a demo, a closed campus
network), and plain http to a public host is allowed with a warning (phones
open it; see docs/plates.md).

Pure: no DNS look-up (a name that resolves to a private address here may be
public elsewhere, and the reverse), only the URL's text. Host forms are
read as browsers read them (WHATWG URL): ``127.1``, ``0x7f.0.0.1`` and
``2130706433`` are all 127.0.0.1."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.plates.errors import PlateError

# Why an address is not reachable from phones on the internet: (zh, en).
REASONS: dict[str, tuple[str, str]] = {
    "loopback": ("本机回环地址，只有这台电脑能打开", "a loopback address: only this computer reaches it"),
    "private": ("内部网络地址（RFC 1918）", "a private network address (RFC 1918)"),
    "link_local": ("链路本地地址", "a link-local address"),
    "shared": ("运营商共享地址（CGNAT 100.64.0.0/10）", "a carrier-grade NAT address (100.64.0.0/10)"),
    "unique_local": ("IPv6 内部网络地址（fc00::/7）", "an IPv6 unique local address (fc00::/7)"),
    "unspecified": ("未指定地址（0.0.0.0 或 ::）", "the unspecified address (0.0.0.0 or ::)"),
    "reserved": ("保留地址，不在公网上", "a reserved address, not on the internet"),
    "local_name": ("局域网主机名", "a local network name"),
    "single_label": ("不带域名的主机名，只在本地网络有效", "a bare host name without a domain: local networks only"),
}
# Names that never resolve on the public internet: RFC 6761/6762 special
# uses, RFC 8375's home.arpa, and the suffixes routers and companies use
# (ICANN will not delegate .internal, .lan/.home/.corp collide).
LOCAL_SUFFIXES = ("localhost", "local", "lan", "internal", "home.arpa", "localdomain", "test", "invalid", "intranet",
                  "home", "corp")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class BadPublicUrl(PlateError):
    """Not a URL a plate can hold at all (no flag makes it acceptable).
    ``problem`` is a code; the message is English, for logs; people get
    ``problem_text``."""

    def __init__(self, url: str, problem: str) -> None:
        # A password typed into the URL is not repeated on screen or in logs.
        self.url = re.sub(r"//[^/]*@", "//***@", url)
        super().__init__(f"public URL {self.url!r}: {PROBLEMS[problem][1]}")
        self.problem = problem


PROBLEMS: dict[str, tuple[str, str]] = {
    "missing": ("没有设置", "not set"),
    "scheme": ("必须以 https:// 或 http:// 开头", "must start with https:// or http://"),
    "no_host": ("缺少主机名", "has no host name"),
    "credentials": ("不能含用户名或密码（会印在每块门牌上）",
                    "must not hold a user name or password (it would be printed on every plate)"),
    "query": ("不能含 ? 查询或 # 片段", "must not hold a ?query or #fragment"),
    "port": ("端口无效", "has an invalid port"),
    "host": ("主机名无效", "has an invalid host name"),
    "chars": ("不能含空格、反斜杠或控制字符", "must not hold spaces, backslashes or control characters"),
}


@dataclass(frozen=True)
class PublicUrl:
    """A well-formed base URL and what it is. ``url``: as given without
    trailing slashes; ``host``: lower case, IDN in its ASCII (punycode)
    form, IPv6 without brackets; ``not_public``: a key of REASONS, or None
    for an address on the internet; ``insecure``: plain http;
    ``ip_literal``: an address instead of a name."""

    url: str
    host: str
    not_public: str | None
    insecure: bool
    ip_literal: bool

    @property
    def usable_as_is(self) -> bool:
        return self.not_public is None


def check_public_url(raw: str | None) -> PublicUrl:
    """What ``raw`` is as the base of plate URLs; BadPublicUrl when it
    cannot be one at all."""
    given = (raw or "").strip()
    url = given.rstrip("/")
    if not url:
        raise BadPublicUrl(url, "missing")
    try:
        parts = urlsplit(given)
    except ValueError:  # unbalanced or invalid [IPv6]
        raise BadPublicUrl(url, "host") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not given.lower().startswith(scheme + "://"):
        raise BadPublicUrl(url, "scheme")
    if "@" in parts.netloc:
        raise BadPublicUrl(url, "credentials")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise BadPublicUrl(url, "query")
    if any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in url):
        raise BadPublicUrl(url, "chars")
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise BadPublicUrl(url, "port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BadPublicUrl(url, "no_host")
    address = _address(url, parts.netloc, host)
    if address is not None:
        return PublicUrl(url, str(address), _address_reason(address), scheme == "http", True)
    ascii_host = _ascii_host(url, host)
    return PublicUrl(url, ascii_host, _name_reason(ascii_host), scheme == "http", False)


def _address(url: str, netloc: str, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` stands for, or None for a name."""
    if netloc.split("@")[-1].startswith("["):
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise BadPublicUrl(url, "host") from None
    last = host.rsplit(".", 1)[-1]
    # WHATWG: a host whose last label is a number is an IPv4 address, in
    # any of the legacy forms (127.1, 0x7f.1, 2130706433), which
    # inet_aton reads the same way; one that is not a valid address is no
    # host at all.
    if re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", last):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise BadPublicUrl(url, "host") from None
    return None


def _address_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "unique_local"
    if isinstance(address, ipaddress.IPv4Address) and any(address in net for net in _RFC1918):
        return "private"
    # Documentation ranges, multicast, 240/4, benchmarking and the like
    # (Python's is_private counts some of them as private: too vague here).
    if not address.is_global or address.is_multicast:
        return "reserved"
    return None


def _ascii_host(url: str, host: str) -> str:
    """``host`` as DNS carries it: an internationalised name (门牌.广州.cn)
    in its punycode form, each label checked."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadPublicUrl(url, "host") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise BadPublicUrl(url, "host")
    return ascii_host


def _name_reason(host: str) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    if any(host == suffix or host.endswith("." + suffix) for suffix in LOCAL_SUFFIXES):
        return "local_name"
    if "." not in host:
        return "single_label"
    return None
