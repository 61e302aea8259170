"""What the installer types or scans: the code (``XXXX-XXXX-XXXX``, any case,
separators ignored) or the QR text ``<server public url>/e/<CODE>``, which
also names the server; and the server's address, checked before anything is
sent to it."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.enrol.errors import EnrolInputError
from rentgate import wire
from rentgate.lang import tr

# The QR's path ends in /e/<code>; the server's public URL may have a prefix.
QR_MARK = "/e/"
MAX_TEXT = 600


@dataclass(frozen=True)
class Invitation:
    code: str  # normalised: 12 characters, upper case, no separators
    server_url: str | None  # from a QR text; None for a typed code


def parse_invitation(text: str) -> Invitation:
    """The code, and the server when ``text`` is the QR's URL. Raises
    EnrolInputError saying what an enrolment code looks like."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise _not_a_code()
    if "://" in text:
        parts = urlsplit(text)
        head, mark, tail = parts.path.rpartition(QR_MARK)
        code = wire.normalise_enrol_code(tail.strip("/")) if mark else None
        if code is None:
            raise _not_a_code()
        return Invitation(code, normalise_server_url(f"{parts.scheme}://{parts.netloc}{head}"))
    code = wire.normalise_enrol_code(text)
    if code is None:
        raise _not_a_code()
    return Invitation(code, None)


def is_invitation(text: str) -> bool:
    """True for a QR text that names a server and a code (what ``--scan`` waits for)."""
    try:
        return parse_invitation(text).server_url is not None
    except EnrolInputError:
        return False


def shown(code: str) -> str:
    """A normalised code as the landlord's page shows it: XXXX-XXXX-XXXX."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def normalise_server_url(text: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; no login,
    query or fragment. Raises EnrolInputError."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or parts.username is not None or parts.query or parts.fragment or len(text) > 300):
        raise EnrolInputError(
            "bad_server_url",
            tr(f"服务器地址不对：{text[:80]!r}", f"not a server address: {text[:80]!r}"),
            tr("写成 https://服务器地址（房东页面上二维码里的地址，去掉 /e/ 及后面的部分）",
               "write it as https://server.example.cn (the address in the landlord's QR code, without /e/...)"))
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def plain_http_warning(server_url: str, *, allow_http: bool) -> str | None:
    """None for https. Plain http sends the code and receives the gateway's
    broker password in clear, so it is allowed only to a loopback or private
    address (a server in the same building or LAN), or with ``allow_http``;
    either way the returned warning is shown. Raises EnrolInputError otherwise."""
    parts = urlsplit(server_url)
    if parts.scheme != "http":
        return None
    host = parts.hostname or ""
    if allow_http or _all_private(host):
        return tr(f"警告：{server_url} 不加密（http），登记码和网关密码以明文传输；请只在可信的局域网里这样做",
                  f"warning: {server_url} is not encrypted (http): the code and the gateway's password travel "
                  "in clear; do this only on a network you trust")
    raise EnrolInputError(
        "plain_http",
        tr(f"{server_url} 是不加密的 http 地址，而且不在局域网内", f"{server_url} is plain http and not on a local network"),
        tr("请用 https:// 地址；确实要用 http 时加 --allow-http", "use the https:// address; add --allow-http if you really must"))


def _all_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False  # unresolvable: the request will say so; do not allow on a guess
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(_private(address) for address in addresses)


def _private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def _not_a_code() -> EnrolInputError:
    return EnrolInputError(
        "bad_code",
        tr("这不是登记码：登记码是 12 位字母和数字（如 ABCD-EFGH-JKMN），或房东页面二维码里的网址",
           "this is not an enrolment code: a code is 12 letters and digits (like ABCD-EFGH-JKMN), "
           "or the address in the landlord's QR code"),
        tr("照房东页面上显示的登记码重新输入，或用 --scan 扫描二维码", "type the code shown on the landlord's page again, or scan its QR with --scan"))
