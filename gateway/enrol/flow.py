"""The enrolment, step by step: read the invitation, check the folder, make
the key pair, ask the server, check its answer, write the folder. The
folder is checked (and its staging copy made) before the server is asked,
so a code is not spent on a box that cannot keep what it gets."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.enrol import client, qr
from gateway.enrol.answer import check_answer
from gateway.enrol.errors import EnrolError, EnrolInputError, EnrolWriteError
from gateway.enrol.files import TOML, Staging, write_enrolment
from gateway.enrol.invitation import normalise_server_url, parse_invitation, plain_http_warning, shown
from gateway.enrol.keys import csr_pem, key_pem, new_key
from rentgate import wire
from rentgate.lang import tr

Post = Callable[[str, wire.EnrolRequest], wire.EnrolResponse]
MAX_HOSTNAME = 64


@dataclass(frozen=True)
class Options:
    code: str | None  # the code or the QR text, as typed
    folder: Path
    server: str | None = None
    scan: str | None = None
    scan_timeout_s: float = qr.DEFAULT_TIMEOUT_S
    hostname: str | None = None
    ca_file: str | None = None
    allow_http: bool = False
    timeout_s: float = client.DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Result:
    gateway_id: str
    building: str
    folder: Path
    config_file: Path
    server_url: str
    mqtt_url: str
    config_version: int
    certificate_serial: str
    warnings: list[str] = field(default_factory=list)


def enrol(options: Options, progress: Callable[[str], None], *, post: Post | None = None,
          now: Callable[[], dt.datetime] | None = None) -> Result:
    """Raises EnrolError (a subclass saying whose problem it is) on any failure,
    with nothing left in ``options.folder``."""
    text = _invitation_text(options, progress)
    invitation = parse_invitation(text)
    server_url = _server_url(options, invitation.server_url, progress)
    warning = plain_http_warning(server_url, allow_http=options.allow_http)
    if warning:
        progress(warning)
    hostname = _hostname(options.hostname)
    ask = post or (lambda url, request: client.post_enrol(url, request, ca_file=options.ca_file,
                                                         timeout_s=options.timeout_s))
    if options.ca_file is not None:
        client.ssl_context(options.ca_file)  # a bad file is the person's to fix, before the code is spent
    with Staging(options.folder) as stage:
        progress(tr("正在生成网关的密钥……", "making the gateway's key pair..."))
        key = new_key()
        request = wire.EnrolRequest(code=invitation.code, csr=csr_pem(key, hostname), hostname=hostname)
        progress(tr(f"正在向 {server_url} 登记（登记码 {shown(invitation.code)}）……",
                    f"enrolling with {server_url} (code {shown(invitation.code)})..."))
        enrolment = check_answer(ask(server_url, request), key)
        answer = enrolment.answer
        when = (now or _utcnow)()
        try:
            warnings = write_enrolment(stage, enrolment, key_pem=key_pem(key), server_url=server_url,
                                       hostname=hostname, now=when)
            stage.commit()
        except EnrolError as exc:
            raise _after_enrolment(answer.gw, exc.code, exc.message) from exc
        except OSError as exc:
            raise _after_enrolment(answer.gw, "write_failed", tr(
                f"写不了 {options.folder}：{exc.strerror or exc}", f"cannot write {options.folder}: {exc.strerror or exc}")) from exc
    for each in warnings:
        progress(each)
    return Result(gateway_id=answer.gw, building=answer.building, folder=stage.target,
                  config_file=stage.target / TOML, server_url=server_url, mqtt_url=enrolment.mqtt_url,
                  config_version=enrolment.config.version, certificate_serial=enrolment.certificate_serial,
                  warnings=warnings)


def _invitation_text(options: Options, progress: Callable[[str], None]) -> str:
    if options.scan is not None and options.code:
        raise EnrolInputError("code_and_scan", tr("登记码和 --scan 只能给一个", "give either the code or --scan, not both"),
                              tr("去掉其中一个再试", "leave one of them out"))
    if options.scan is not None:
        progress(tr(f"正在用 {options.scan} 扫描登记二维码（最多 {options.scan_timeout_s:.0f} 秒）……",
                    f"looking for the enrolment QR code with {options.scan} (up to {options.scan_timeout_s:.0f} s)..."))
        return qr.scan(options.scan, timeout_s=options.scan_timeout_s)
    if not options.code:
        raise EnrolInputError("no_code", tr("没有登记码", "no enrolment code"),
                              tr("输入房东页面上显示的登记码，或用 --scan 扫描二维码",
                                 "type the code shown on the landlord's page, or scan its QR with --scan"))
    return options.code


def _server_url(options: Options, from_qr: str | None, progress: Callable[[str], None]) -> str:
    if options.server:
        url = normalise_server_url(options.server)
        if from_qr and from_qr != url:
            progress(tr(f"使用 --server {url}，而不是二维码里的 {from_qr}",
                        f"using --server {url} rather than the QR code's {from_qr}"))
        return url
    if from_qr:
        return from_qr
    raise EnrolInputError("no_server", tr("没有服务器地址：只有登记码时要用 --server 给出服务器",
                                          "no server address: with a typed code, give the server with --server"),
                          tr("例如 --server https://rentgate.example.cn（房东页面二维码里的地址）",
                             "for example --server https://rentgate.example.cn (the address in the landlord's QR code)"))


def _hostname(given: str | None) -> str | None:
    if given is not None:
        if not given.strip() or len(given) > MAX_HOSTNAME or not given.isprintable():
            raise EnrolInputError("bad_hostname", tr(f"--hostname 要 1 到 {MAX_HOSTNAME} 个可见字符",
                                                     f"--hostname must be 1 to {MAX_HOSTNAME} printable characters"),
                                  tr("换一个短一些的名字", "choose a shorter name"))
        return given.strip()
    name = socket.gethostname()
    return name[:MAX_HOSTNAME] if name and name.isprintable() else None


def _after_enrolment(gateway_id: str, code: str, why: str) -> EnrolWriteError:
    # The server has used the code and made the gateway: only a revocation
    # and a new code undo that.
    return EnrolWriteError(
        code,
        tr(f"服务器已把这台网关登记为 {gateway_id}，但网关的文件没有写成（{why}）；什么都没有留下",
           f"the server enrolled this box as gateway {gateway_id}, but its files could not be written ({why}); "
           "nothing was left behind"),
        tr(f"在楼栋页面上撤销网关 {gateway_id}，解决上面的问题后用新的登记码重新登记",
           f"revoke gateway {gateway_id} on the building's page, fix the problem above, and enrol again with a new code"))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
