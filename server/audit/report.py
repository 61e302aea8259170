"""What a verification found: ok, or the first problem with the seq it
concerns and what a person should do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rentgate.lang import tr


@dataclass(frozen=True)
class Problem:
    # Stable, for --json and tests: missing_record, record_moved,
    # record_changed, record_unreadable, checkpoint_mismatch,
    # checkpoint_signature, checkpoint_unknown_key, truncated,
    # head_mismatch, and for exports bad_header, bad_line, ends_early,
    # extra_lines, missing_anchor.
    code: str
    # The record concerned: the first one that is wrong, or for a
    # checkpoint the last record it covers; None for the file as a whole.
    seq: int | None
    # In the command's language; says what happened and what to do.
    message: str
    # The checkpoint (its size) the problem was found by, if one.
    checkpoint: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "seq": self.seq, "checkpoint": self.checkpoint, "message": self.message}


@dataclass
class Report:
    records: int = 0
    # The chain's head over the records checked (hex).
    head: str = ""
    checkpoints: int = 0
    # The size of the last checkpoint whose signature and head held: the
    # records below it are proven; the ones after it only chained.
    signed_size: int = 0
    key_ids: set[str] = field(default_factory=set)
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsigned(self) -> int:
        return max(0, self.records - self.signed_size)

    def fail(self, code: str, seq: int | None, message: str, checkpoint: int | None = None) -> Report:
        if self.problem is None:
            self.problem = Problem(code, seq, message, checkpoint)
        return self

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head": self.head, "checkpoints": self.checkpoints,
                "signed_size": self.signed_size, "unsigned_records": self.unsigned,
                "key_ids": sorted(self.key_ids), "problem": None if self.problem is None else self.problem.as_json(),
                "notes": self.notes}

    def summary(self) -> str:
        if self.problem is not None:
            return self.problem.message
        text = tr(f"审计日志完整：{self.records:,} 条记录，{self.checkpoints:,} 个签名检查点均有效",
                  f"the audit log is intact: {self.records:,} records, {self.checkpoints:,} signed checkpoints "
                  "all valid")
        if self.unsigned:
            text += tr(f"；最后 {self.unsigned:,} 条记录还没有检查点签名（下一个检查点会覆盖它们，"
                       "或运行 `rentgate audit checkpoint`）",
                       f"; the last {self.unsigned:,} records are not covered by a signed checkpoint yet (the next "
                       "checkpoint covers them, or run `rentgate audit checkpoint`)")
        return text
