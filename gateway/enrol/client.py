"""``POST <server>/api/v1/enrol``: the code and the CSR out, the gateway's
identity back. Plain urllib: one request, no event loop, nothing to install
on a small box.

Every way it can go wrong becomes an EnrolError that says what to do next:
a refused code (ask the landlord for a new one), too many attempts (wait),
no route to the server, a certificate that cannot be verified (give the CA
with --ca-file), a redirect (use the address it points to), a server error."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from gateway.enrol.errors import EnrolError, EnrolNetworkError, EnrolRefused, EnrolServerError
from rentgate import wire
from rentgate.lang import tr

ENROL_PATH = "/api/v1/enrol"
DEFAULT_TIMEOUT_S = 20.0
# The answer holds a configuration (at most wire.MAX_CONFIG_BYTES, signed and
# wrapped) and a few certificates: anything far larger is not an answer.
MAX_ANSWER_BYTES = 4 * wire.MAX_CONFIG_BYTES
# Statuses by which the server says "this code gives nothing": wrong, used,
# expired or cancelled (the server does not say which, not to help guessing).
_REFUSED = (401, 403, 404, 409, 410)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body; say
    # where the server points instead (usually http -> https).
    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str,
                         headers: Message, newurl: str) -> None:
        return None


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's CAs, or only ``ca_file`` (a server with a private CA)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        from gateway.enrol.errors import EnrolInputError

        raise EnrolInputError("bad_ca_file", tr(f"读不了 --ca-file {ca_file}：{exc}", f"cannot read --ca-file {ca_file}: {exc}"),
                              tr("给出服务器 CA 证书的 PEM 文件", "give the server CA's certificate as a PEM file")) from exc


def post_enrol(server_url: str, request: wire.EnrolRequest, *, ca_file: str | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> wire.EnrolResponse:
    """The server's answer, validated against the wire contract (not yet
    checked against this gateway's key: that is :mod:`.answer`'s job)."""
    url = server_url + ENROL_PATH
    body = request.model_dump_json(exclude_none=True).encode("utf-8")
    context = ssl_context(ca_file) if url.startswith("https://") else None
    reply = send(url, body, context=context, timeout_s=timeout_s)
    return read_answer(server_url, reply)


def send(url: str, body: bytes, *, context: ssl.SSLContext | None, timeout_s: float) -> Reply:
    opener = urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        try:
            with opener.open(req, timeout=timeout_s) as resp:
                return Reply(resp.status, resp.headers, _read(resp))
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, exc.headers, _read(exc))
    except urllib.error.URLError as exc:
        raise _network_error(url, exc.reason) from exc
    except (OSError, ssl.SSLError) as exc:  # timeouts while reading, resets
        raise _network_error(url, exc) from exc


def _read(resp: object) -> bytes:
    data: bytes = resp.read(MAX_ANSWER_BYTES + 1)  # type: ignore[attr-defined]
    return data


def read_answer(server_url: str, reply: Reply) -> wire.EnrolResponse:
    status = reply.status
    if status in (200, 201):
        if len(reply.body) > MAX_ANSWER_BYTES:
            raise _bad_answer(server_url, f"an answer over {MAX_ANSWER_BYTES} bytes")
        try:
            return wire.decode_enrol_response(reply.body)
        except wire.WireError as exc:
            raise _bad_answer(server_url, str(exc)[:300]) from exc
    detail = _detail(reply.body)
    said = tr(f"（服务器说：{detail}）", f" (the server says: {detail})") if detail else ""
    if status == 404 and detail in ("", "not found"):
        # aiohttp's own 404 (no such route), not the enrolment's refusal.
        raise _bad_answer(server_url, tr("这个地址没有登记服务", "no enrolment at this address"))
    if status in _REFUSED:
        raise EnrolRefused(
            "code_refused",
            # The server's detail says the same, in English only: not repeated.
            tr("服务器不接受这个登记码：码不对、已用过、已过期或已取消",
               "the server does not accept this code: it is wrong, already used, expired or cancelled"),
            tr("请房东在楼栋页面上“添加终端”，生成一个新的登记码", "ask the landlord for a new code ('add a terminal' on the building's page)"))
    if status == 429:
        wait = _retry_after(reply.headers)
        raise EnrolNetworkError(
            "rate_limited",
            tr(f"尝试次数太多，服务器暂时拒绝登记{said}", f"too many attempts: the server refuses enrolments for now{said}"),
            tr(f"等 {wait} 秒后再试", f"wait {wait} s and try again") if wait else tr("等几分钟再试", "wait a few minutes and try again"))
    if status == 400:
        raise EnrolServerError(
            "request_refused",
            tr(f"服务器拒绝了登记请求{said}", f"the server refused the enrolment request{said}"),
            tr("检查 rentgate 的版本是否与服务器相符", "check that this rentgate's version matches the server's"))
    if status in (301, 302, 303, 307, 308):
        where = str(reply.headers.get("Location", ""))[:200]
        raise EnrolNetworkError(
            "redirected",
            tr(f"服务器把请求转到了别的地址：{where}", f"the server redirects to another address: {where}"),
            tr("用它指向的地址作为 --server 再试（一般是 https://）", "try again with that address as --server (usually https://)"))
    if status == 405:
        raise _bad_answer(server_url, f"HTTP {status}")
    raise EnrolServerError(
        "server_error",
        tr(f"服务器出错（HTTP {status}）{said}", f"the server failed (HTTP {status}){said}"),
        tr("过几分钟再试；一直不行请联系管理员。登记码如未用掉仍然有效",
           "try again in a few minutes; if it keeps failing tell the administrator. An unused code stays valid"))


def _network_error(url: str, reason: object) -> EnrolError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return EnrolNetworkError(
            "tls",
            tr(f"无法验证服务器的证书（{reason.verify_message}）", f"the server's certificate cannot be verified ({reason.verify_message})"),
            tr("检查地址是否正确、网关的时钟是否准确；服务器用自己的 CA 时用 --ca-file 给出它的证书",
               "check the address and the gateway's clock; if the server uses its own CA, give its certificate with --ca-file"))
    if isinstance(reason, ssl.SSLError):
        return EnrolNetworkError(
            "tls", tr(f"与服务器的 TLS 连接失败：{reason}", f"the TLS connection to the server failed: {reason}"),
            tr("检查地址和端口是否是服务器的 https 地址", "check that the address and port are the server's https address"))
    if isinstance(reason, (socket.timeout, TimeoutError)):
        # The server may have enrolled the gateway and its answer got lost.
        return EnrolNetworkError(
            "unreachable", tr(f"{url} 没有及时回答", f"{url} did not answer in time"),
            tr("检查网络后用同一个登记码再试；如果房东页面上这个码已显示“已登记”，请在页面上撤销那台终端，再要一个新码",
               "check the network and try again with the same code; if the landlord's page already shows the code "
               "as enrolled, revoke that terminal there and ask for a new code"))
    if isinstance(reason, socket.gaierror):
        text = tr("找不到这个服务器名字（DNS）", "the server's name cannot be resolved (DNS)")
    elif isinstance(reason, ConnectionRefusedError):
        text = tr("服务器拒绝连接（没有在这个端口上运行）", "the server refused the connection (nothing listens on that port)")
    else:
        text = str(reason)[:200]
    return EnrolNetworkError(
        "unreachable", tr(f"连不上服务器 {url}：{text}", f"cannot reach the server at {url}: {text}"),
        tr("检查网关的网络和服务器地址，然后再试；登记码如未用掉仍然有效",
           "check the gateway's network and the server address, then try again; an unused code stays valid"))


def _bad_answer(server_url: str, why: str) -> EnrolError:
    return EnrolServerError(
        "bad_answer",
        tr(f"{server_url} 的回答不是 rentgate 的登记结果（{why}）", f"{server_url} did not answer as a rentgate server enrolling a gateway ({why})"),
        tr("检查服务器地址；地址没错时联系管理员", "check the server address; if it is right, tell the administrator"))


def _detail(body: bytes) -> str:
    try:
        doc = json.loads(body[:4096])
    except (ValueError, UnicodeDecodeError):
        return ""
    text = doc.get("detail") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        return ""
    return "".join(ch for ch in text if ch.isprintable())[:200]


def _retry_after(headers: Message) -> int | None:
    value = headers.get("Retry-After")
    try:
        seconds = int(str(value).strip())
    except ValueError:
        return None
    return seconds if 0 < seconds < 86400 else None
