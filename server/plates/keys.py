"""The plate-signing keyring: a text file, one key per line,

    <key id> <32 random bytes in base64>

newest last. The newest signs new plates; every key in the file verifies.
Rotating appends a key (old plates stay valid); retiring removes one (its
plates stop verifying and must be reprinted). Next to a SQLite database the
file is generated on first use, like the identity-number key; a PostgreSQL
server needs ``RENTGATE_PLATE_KEY_FILE``."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from rentgate.lang import tr
from server.plates.errors import PlateKeyUnavailable
from server.plates.tokens import KEY_ID_PATTERN

log = logging.getLogger(__name__)
GENERATED_KEYRING_NAME = "rentgate-plate-keys"
KEY_BYTES = 32


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    current_id: str

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current_id]


def parse_keyring(text: str, source: str = "keyring") -> Keyring:
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not KEY_ID_PATTERN.match(parts[0]):
            raise PlateKeyUnavailable(tr(f"{source} 第 {number} 行：应为 '<密钥编号> <base64 密钥>'",
                                         f"{source} line {number}: expected '<key id> <base64 key>'"))
        try:
            key = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise PlateKeyUnavailable(tr(f"{source} 第 {number} 行：密钥不是 base64",
                                         f"{source} line {number}: the key is not base64")) from None
        if len(key) < 16:
            raise PlateKeyUnavailable(tr(f"{source} 第 {number} 行：密钥短于 16 字节",
                                         f"{source} line {number}: the key is shorter than 16 bytes"))
        if parts[0] in keys:
            raise PlateKeyUnavailable(tr(f"{source} 第 {number} 行：密钥编号 {parts[0]} 重复",
                                         f"{source} line {number}: key id {parts[0]!r} appears twice"))
        keys[parts[0]] = key
        order.append(parts[0])
    if not order:
        raise PlateKeyUnavailable(tr(f"{source}：没有密钥（`rentgate keys plates --rotate` 添加一个）",
                                     f"{source}: holds no key (`rentgate keys plates --rotate` adds one)"))
    return Keyring(keys=keys, current_id=order[-1])


def read_keyring(path: str | Path) -> Keyring:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlateKeyUnavailable(tr(f"门牌密钥文件 {path} 无法读取：{exc}",
                                     f"plate keyring {path}: {exc}")) from exc
    return parse_keyring(text, str(path))


def _format(keyring_lines: list[tuple[str, bytes]]) -> str:
    return "".join(f"{kid} {base64.b64encode(key).decode()}\n" for kid, key in keyring_lines)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _next_id(existing: dict[str, bytes]) -> str:
    numbers = [int(kid[1:]) for kid in existing if kid.startswith("k") and kid[1:].isdigit()]
    return f"k{max(numbers, default=0) + 1}"


def rotate(path: str | Path) -> str:
    """Append a new key (creating the file if need be); its id."""
    target = Path(path)
    current = read_keyring(target).keys if target.exists() else {}
    kid = _next_id(current)
    lines = list(current.items()) + [(kid, secrets.token_bytes(KEY_BYTES))]
    _write_atomically(target, _format(lines))
    return kid


def retire(path: str | Path, key_id: str) -> None:
    target = Path(path)
    keyring = read_keyring(target)
    if key_id not in keyring.keys:
        raise PlateKeyUnavailable(tr(f"{path} 里没有密钥 {key_id}（`rentgate keys plates --list` 列出编号）",
                                     f"{path} holds no key {key_id!r} (`rentgate keys plates --list` shows the ids)"))
    if key_id == keyring.current_id:
        raise PlateKeyUnavailable(tr(f"{key_id} 是正在签发新门牌的密钥：先 --rotate 添加新密钥，再停用它",
                                     f"{key_id!r} is the key that signs new plates: rotate first, then retire it"))
    _write_atomically(target, _format([(k, v) for k, v in keyring.keys.items() if k != key_id]))


def default_keyring_path(database_url: str) -> Path:
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite":
        raise PlateKeyUnavailable(tr("没有门牌密钥：请设置 RENTGATE_PLATE_KEY_FILE（`rentgate keys plates --rotate "
                                     "--file F` 生成一个）；只有 SQLite 数据库会自动生成密钥",
                                     "no plate key: set RENTGATE_PLATE_KEY_FILE (`rentgate keys plates --rotate "
                                     "--file F` writes one); keys are only generated for SQLite databases"))
    if not database or database == ":memory:" or database.startswith("file:"):
        raise PlateKeyUnavailable(tr("没有门牌密钥：内存数据库没有可以保存密钥的文件夹；请设置 RENTGATE_PLATE_KEY_FILE",
                                     "no plate key: an in-memory database has no folder to keep a generated key "
                                     "in; set RENTGATE_PLATE_KEY_FILE"))
    return Path(database).resolve().parent / GENERATED_KEYRING_NAME


def load_keyring(key_file: str | None, database_url: str) -> Keyring:
    """The configured keyring, or one generated next to a SQLite database."""
    if key_file:
        return read_keyring(key_file)
    path = default_keyring_path(database_url)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another process made it first: use theirs.
            return read_keyring(path)
        with os.fdopen(fd, "w") as out:
            out.write(_format([("k1", secrets.token_bytes(KEY_BYTES))]))
        log.warning("generated plate-signing key %s: back it up, printed plates depend on it", path)
    return read_keyring(path)
