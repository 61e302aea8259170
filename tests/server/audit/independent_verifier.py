"""An audit-export verifier written from docs/audit.md alone ("The export
file", "Verifying an export"), as an oversight body would write one. It
imports nothing of rentgate: its own hashing, its own statement bytes, and
Ed25519 from ``cryptography``. If the server and this file ever disagree,
one of them or the document is wrong.

``python independent_verifier.py FILE PUBLIC_KEY_BASE64`` prints OK or the
reason and exits 0 or 1."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEX64 = re.compile(r"[0-9a-f]{64}")


class Rejected(Exception):
    pass


def key_id(public_b64: str) -> str:
    return "k-" + hashlib.sha256(public_b64.encode("ascii")).hexdigest()[:12]


def statement(size: int, head: str, at: str) -> bytes:
    return f"rentgate-audit-checkpoint v1\n{size}\n{head}\n{at}\n".encode("ascii")


def verify(data: bytes, published_keys_b64: list[str]) -> None:
    """Raises Rejected with the reason; returns when the export holds."""
    if not data.endswith(b"\n"):
        raise Rejected("the last line does not end in a line feed")
    lines = data[:-1].split(b"\n")
    keys = {key_id(k): Ed25519PublicKey.from_public_bytes(base64.b64decode(k)) for k in published_keys_b64}
    header = _object(lines[0], "header")
    if header.get("type") != "rentgate-audit-export" or header.get("version") != 1:
        raise Rejected("line 1 is not an export header of version 1")
    first, size, count = header.get("first_seq"), header.get("size"), header.get("checkpoints")
    previous = header.get("previous_hash")
    if not (_int(first) and _int(size) and _int(count)) or not 0 <= first < size or count < 1:
        raise Rejected("header numbers out of range")
    if not isinstance(previous, str) or not HEX64.fullmatch(previous):
        raise Rejected("previous_hash is not 64 hex digits")
    if first == 0 and previous != "0" * 64:
        raise Rejected("a log's first record chains to 64 zeros")

    heads: dict[int, str] = {}
    last = -1
    for line in lines[1:1 + count]:
        cp = _object(line, "checkpoint")
        if cp.get("type") != "checkpoint" or not _int(cp.get("size")) or cp["size"] <= last:
            raise Rejected("checkpoint lines malformed or not in increasing size")
        if not first <= cp["size"] <= size:
            raise Rejected(f"checkpoint at {cp['size']} outside the file")
        key = keys.get(str(cp.get("key_id")))
        if key is None:
            raise Rejected(f"checkpoint at {cp['size']} signed by a key not published: {cp.get('key_id')}")
        try:
            key.verify(base64.b64decode(cp["signature"]), statement(cp["size"], cp["head"], cp["at"]))
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise Rejected(f"checkpoint at {cp['size']}: bad signature") from exc
        heads[cp["size"]] = cp["head"]
        last = cp["size"]
    if len(heads) != count:
        raise Rejected("fewer checkpoint lines than the header says")
    if size not in heads:
        raise Rejected("no checkpoint at the end of the file")
    if first > 0 and heads.get(first) != previous:
        raise Rejected("no checkpoint at the start of the file matching previous_hash")

    records = lines[1 + count:]
    if len(records) != size - first:
        raise Rejected(f"{len(records)} record lines, the header says {size - first}")
    h = bytes.fromhex(previous)
    for seq, record in enumerate(records, start=first):
        if _object(record, f"record {seq}").get("seq") != seq:
            raise Rejected(f"record {seq} is not in its place")
        h = hashlib.sha256(b"\x01" + h + hashlib.sha256(b"\x00" + record).digest()).digest()
        if seq + 1 in heads and heads[seq + 1] != h.hex():
            raise Rejected(f"records before {seq + 1} do not match the signed checkpoint")


def _object(line: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise Rejected(f"{what} is not a JSON object")
    return value


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as file:
        data = file.read()
    try:
        verify(data, argv[1:])
    except Rejected as exc:
        print(f"REJECTED: {exc}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
