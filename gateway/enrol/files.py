"""The enrolled gateway's folder, written in one step.

Everything goes into a hidden sibling folder first (mode 700, files that
must stay secret 600, each file and folder synced), which is then renamed
onto the target: the target either does not exist, or is empty, or holds the
complete enrolment; never half of one. A folder that already holds an
enrolment, or anything else, is not touched.

Layout (paths relative to the folder, as gateway.toml names them)::

    gateway.toml            settings: `rentgate gateway --config DIR/gateway.toml`
    identity.json           gateway id, building, server, certificate serial
    gateway.crt, ca.pem     the gateway's certificate and the rentgate CA
    secrets/gateway.key     the private key (never leaves the box)
    secrets/mqtt_password   its own broker password
    remote/received.json    the first configuration, signed, as received
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import tomllib
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.config import parse_config, parse_remote
from gateway.enrol.answer import Enrolment
from gateway.enrol.errors import EnrolInputError, EnrolServerError
from gateway.errors import ConfigError
from gateway.remote import store as remote_store
from rentgate import wire
from rentgate.lang import tr

TOML = "gateway.toml"
IDENTITY = "identity.json"
CERT = "gateway.crt"
CA = "ca.pem"
SECRETS = "secrets"
KEY = "secrets/gateway.key"
PASSWORD = "secrets/mqtt_password"
# Where the remote-configuration runner takes the first version at start.
RECEIVED_CONFIG = f"{remote_store.FOLDER}/{remote_store.RECEIVED_FILE}"
# Any of these present: the folder holds (part of) an enrolment.
_MARKERS = (IDENTITY, TOML, SECRETS, CERT)
PUBLIC, SECRET, PRIVATE_DIR = 0o644, 0o600, 0o700
_MAX_IDENTITY = 64 * 1024


class Staging:
    """A hidden folder beside ``target``, renamed onto it by :meth:`commit`,
    removed (with any parent folders it created) if the block ends without."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(os.path.realpath(target))
        self.path: Path | None = None
        self.committed = False
        self._made_parents: list[Path] = []

    def __enter__(self) -> Staging:
        check_target(self.target)
        parent = self.target.parent
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._made_parents.append(folder)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.enrolling-", dir=parent))
        except OSError as exc:
            self._remove_parents()
            raise EnrolInputError(
                "cannot_write", tr(f"不能在 {parent} 里建文件夹：{exc.strerror or exc}",
                                   f"cannot make a folder in {parent}: {exc.strerror or exc}"),
                tr("换一个可写的文件夹，或用有权限的用户运行", "choose a folder you can write to, or run as a user who can")) from exc
        return self

    def write(self, relative: str, data: bytes, mode: int) -> None:
        assert self.path is not None, "Staging used outside its with block"
        path = self.path / relative
        if not path.parent.exists():
            path.parent.mkdir(mode=PRIVATE_DIR)
            os.chmod(path.parent, PRIVATE_DIR)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # exactly this, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self) -> None:
        assert self.path is not None, "Staging used outside its with block"
        for folder, subfolders, _files in os.walk(self.path):
            for name in subfolders:
                remote_store.fsync_dir(Path(folder) / name)
        os.chmod(self.path, PRIVATE_DIR)
        remote_store.fsync_dir(self.path)
        # rename(2) replaces an empty folder and fails on one that is not:
        # another enrolment that got there first is never overwritten.
        os.rename(self.path, self.target)
        self.committed = True
        remote_store.fsync_dir(self.target.parent)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
            self._remove_parents()

    def _remove_parents(self) -> None:
        for folder in reversed(self._made_parents):
            try:
                folder.rmdir()
            except OSError:
                break
        self._made_parents.clear()


def check_target(target: Path) -> None:
    """Raises EnrolInputError unless ``target`` is missing or an empty folder."""
    if not target.exists():
        return
    if not target.is_dir():
        raise EnrolInputError("not_a_folder", tr(f"{target} 是文件，不是文件夹", f"{target} is a file, not a folder"),
                              tr("用 --dir 给一个新的文件夹", "give a new folder with --dir"))
    try:
        names = os.listdir(target)
    except OSError as exc:
        raise EnrolInputError("cannot_read", tr(f"读不了 {target}：{exc.strerror}", f"cannot read {target}: {exc.strerror}"),
                              tr("换一个文件夹，或用有权限的用户运行", "choose another folder, or run as a user who can")) from exc
    if any(name in names for name in _MARKERS):
        gw = _enrolled_id(target)
        which = tr(f"（网关 {gw}）", f" (gateway {gw})") if gw else ""
        raise EnrolInputError(
            "already_enrolled",
            tr(f"{target} 里已经有一台登记过的网关{which}，没有改动任何东西",
               f"{target} already holds an enrolled gateway{which}; nothing was changed"),
            tr("要重新登记，请用 --dir 指定一个新文件夹；或先在楼栋页面上撤销这台网关，再把这个文件夹移走",
               "to enrol again, give a new folder with --dir; or revoke this gateway on the building's page first, "
               "then move this folder away"))
    if names:
        raise EnrolInputError(
            "folder_not_empty", tr(f"{target} 不是空文件夹，没有改动任何东西", f"{target} is not empty; nothing was changed"),
            tr("用 --dir 指定一个新的或空的文件夹", "give a new or empty folder with --dir"))


def _enrolled_id(target: Path) -> str | None:
    try:
        with open(target / IDENTITY, "rb") as f:
            doc = json.loads(f.read(_MAX_IDENTITY))
    except (OSError, ValueError):
        return None
    gw = doc.get("gateway_id") if isinstance(doc, dict) else None
    return gw if isinstance(gw, str) and wire.is_gateway_id(gw) else None


# --------------------------------------------------------------------------- contents

def _q(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX).
    return json.dumps(text, ensure_ascii=False)


def render_toml(enrolment: Enrolment, server_url: str, *, now: dt.datetime) -> str:
    """The settings file the gateway runs as is: its identity and login, the
    allowlist keys it trusts, where snapshots go. Devices and the rest come
    by remote configuration (the first one is in remote/received.json)."""
    answer = enrolment.answer
    building = "".join(ch for ch in answer.building if ch.isprintable())[:100]
    lines = [
        "# Written by `rentgate gateway enroll` at " + now.strftime("%Y-%m-%d %H:%M:%S UTC")
        + (f" for {building}" if building else "") + ".",
        "# Run: rentgate gateway --config gateway.toml (relative paths are taken from this folder).",
        f"gateway_id = {_q(answer.gw)}",
        f"mqtt_url = {_q(enrolment.mqtt_url)}",
        'data_dir = "."',
        f"mqtt_username = {_q(answer.mqtt_username)}",
        f"mqtt_password_file = {_q(PASSWORD)}",
        f"mqtt_ca_file = {_q(CA)}",
        f"mqtt_cert_file = {_q(CERT)}",
        f"mqtt_key_file = {_q(KEY)}",
        "",
        "[access]",
        "# The server's allowlist keys: lists and configurations signed by another key are refused.",
        "public_keys = { " + ", ".join(f"{_q(k)} = {_q(v)}" for k, v in sorted(answer.allowlist_keys.items())) + " }",
        "",
        "[cameras]",
        f"server_url = {_q(server_url)}",
        "",
    ]
    return "\n".join(lines)


def identity(enrolment: Enrolment, server_url: str, hostname: str | None, *, now: dt.datetime) -> dict[str, Any]:
    answer = enrolment.answer
    return {
        "v": 1,
        "gateway_id": answer.gw,
        "building": answer.building,
        "server_url": server_url,
        "server_public_url": answer.server_url,
        "hostname": hostname,
        "enrolled_at": now.isoformat(timespec="seconds"),
        "certificate_serial": enrolment.certificate_serial,
        "certificate_expires": enrolment.certificate_expires.isoformat(timespec="seconds"),
        "config_version": enrolment.config.version,
    }


def check_settings(toml_text: str, enrolment: Enrolment, base_dir: Path) -> list[str]:
    """Raise if the settings file would not load (a bug or an odd answer);
    return warnings about the first configuration, which the gateway itself
    refuses, and reports, if it does not fit (it still runs on the file)."""
    try:
        parse_config(toml_text, source=TOML, base_dir=base_dir)
    except ConfigError as exc:
        raise EnrolServerError("bad_answer", tr(f"从服务器的回答生成的设置无效：{exc}",
                                                f"the settings made from the server's answer are not valid: {exc}"),
                               tr("告诉管理员", "tell the administrator")) from exc
    try:
        parse_remote(tomllib.loads(toml_text), enrolment.config.settings, base_dir=base_dir)
    except ConfigError as exc:
        return [tr(f"警告：服务器的第一份配置有问题，网关会拒绝它并报告：{exc}",
                   f"warning: the server's first configuration has problems; the gateway will refuse it and say so: {exc}")]
    return []


def write_enrolment(stage: Staging, enrolment: Enrolment, *, key_pem: bytes, server_url: str,
                    hostname: str | None, now: dt.datetime) -> list[str]:
    """Every file into the staging folder (not yet committed); the warnings
    of :func:`check_settings`."""
    assert stage.path is not None
    answer = enrolment.answer
    toml_text = render_toml(enrolment, server_url, now=now)
    warnings = check_settings(toml_text, enrolment, stage.path)
    stage.write(KEY, key_pem, SECRET)
    stage.write(PASSWORD, answer.mqtt_password.encode("utf-8") + b"\n", SECRET)
    stage.write(CERT, answer.certificate_pem.encode("utf-8"), PUBLIC)
    stage.write(CA, answer.ca_pem.encode("utf-8"), PUBLIC)
    # Secret: a configuration may hold a camera's login in its URL.
    signed = answer.config
    stage.write(RECEIVED_CONFIG, wire.signed_config_json(signed.payload, signed.key_id, signed.signature), SECRET)
    doc = identity(enrolment, server_url, hostname, now=now)
    stage.write(IDENTITY, (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8"), PUBLIC)
    stage.write(TOML, toml_text.encode("utf-8"), PUBLIC)
    return warnings
