"""The hash rule and the checkpoint statement (docs/audit.md, "The chain"
and "Checkpoints"). Pure functions, no I/O: the verifiers and the writer
share them, and docs/audit.md must say exactly what they do."""

from __future__ import annotations

import hashlib

# hash_{-1}: what the first record chains to.
EMPTY_HEAD = bytes(32)
EMPTY_HEAD_HEX = EMPTY_HEAD.hex()
CHECKPOINT_TITLE = "rentgate-audit-checkpoint v1"
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(record: bytes) -> bytes:
    """SHA-256(0x00 || record): RFC 6962's leaf prefix, so a record can never
    be passed off as a chain node or the other way round."""
    return hashlib.sha256(_LEAF + record).digest()


def chain_hash(previous: bytes, record: bytes) -> bytes:
    """hash_i = SHA-256(0x01 || hash_{i-1} || SHA-256(0x00 || record_i))."""
    return hashlib.sha256(_NODE + previous + leaf_hash(record)).digest()


def checkpoint_message(size: int, head: str, at: str) -> bytes:
    """The exact bytes a checkpoint's Ed25519 signature covers: the log's
    first ``size`` records end in ``head`` (lower-case hex), said at ``at``."""
    return f"{CHECKPOINT_TITLE}\n{size}\n{head}\n{at}\n".encode("ascii")
