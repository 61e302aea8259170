"""The sentences a verification failure is reported with: what was found
and what to do. Kept apart from the checks so the checks stay readable."""

from __future__ import annotations

from rentgate.lang import tr

_INVESTIGATE_ZH = "请保全数据库和日志文件，与监督机构保存的检查点和以前的导出文件对照，查明谁在什么时候改动了它"
_INVESTIGATE_EN = ("preserve the database and its logs, compare with the checkpoints and exports the oversight body "
                   "kept, and find out who changed it and when")


def missing_record(seq: int, found: int | None) -> str:
    nxt = tr(f"下一条是 {found}", f"the next one is {found}") if found is not None else tr("后面没有记录了", "none follow")
    return tr(f"第 {seq} 条记录不见了（{nxt}）：记录被删除了。{_INVESTIGATE_ZH}",
              f"record {seq} is missing ({nxt}): it was deleted. {_INVESTIGATE_EN}")


def record_moved(seq: int, claimed: object) -> str:
    return tr(f"第 {seq} 条的位置上是第 {claimed} 条记录：记录被挪动或调换了顺序。{_INVESTIGATE_ZH}",
              f"the place of record {seq} holds record {claimed}: records were moved or reordered. {_INVESTIGATE_EN}")


def out_of_place(seq: int, claimed: object) -> str:
    """In a file, where what follows is not known yet: a deletion and a
    reordering look alike at the first record out of place."""
    return tr(f"第 {seq} 条的位置上是第 {claimed} 条记录：有记录被删除，或记录的顺序被打乱了。请向导出方重新索取文件，"
              "并把这个文件交给监督机构调查",
              f"the place of record {seq} holds record {claimed}: a record was removed or the records were "
              "reordered. Ask the exporter for the file again, and hand this one to the oversight body")


def record_changed(seq: int) -> str:
    return tr(f"第 {seq} 条记录和写入时的哈希不符：写入后被改动过。{_INVESTIGATE_ZH}",
              f"record {seq} does not match the hash it was written with: it was changed after it was appended. "
              f"{_INVESTIGATE_EN}")


def record_unreadable(seq: int, why: str) -> str:
    return tr(f"第 {seq} 条记录不是有效的审计记录（{why}）：被改动过或已损坏。{_INVESTIGATE_ZH}",
              f"record {seq} is not a valid audit record ({why}): it was changed or damaged. {_INVESTIGATE_EN}")


def checkpoint_mismatch(size: int, since: int) -> str:
    return tr(f"大小为 {size} 的签名检查点与记录不符：第 {since} 到 {size - 1} 条之间有记录被改动、删除或插入，"
              f"而且哈希也被重新计算过。{_INVESTIGATE_ZH}",
              f"the signed checkpoint at size {size} does not match the records: between records {since} and "
              f"{size - 1} a record was changed, deleted or inserted, and the hashes recomputed to hide it. "
              f"{_INVESTIGATE_EN}")


def checkpoint_signature(size: int, key_id: str) -> str:
    return tr(f"大小为 {size} 的检查点签名无效（密钥 {key_id}）：检查点是伪造的或被改动过。{_INVESTIGATE_ZH}",
              f"the checkpoint at size {size} has an invalid signature (key {key_id}): it was forged or altered. "
              f"{_INVESTIGATE_EN}")


def checkpoint_unknown_key(size: int, key_id: str) -> str:
    return tr(f"大小为 {size} 的检查点由密钥 {key_id} 签名，但没有给出这个公钥：用 --public-key 提供它"
              "（换过密钥时，旧公钥要一直保留）",
              f"the checkpoint at size {size} was signed by key {key_id}, whose public key was not given: pass it "
              "with --public-key (after a key change, keep the old public key)")


def truncated(records: int, size: int) -> str:
    return tr(f"日志只有 {records} 条记录，但签名检查点证明曾经有 {size} 条：第 {records} 条及以后的记录被删掉了。"
              f"{_INVESTIGATE_ZH}",
              f"the log holds {records} records but a signed checkpoint proves it had {size}: records from {records} "
              f"on were removed. {_INVESTIGATE_EN}")


def head_mismatch(records: int, head_size: int) -> str:
    return tr(f"日志头记录的长度是 {head_size}，实际有 {records} 条记录（或最后的哈希不符）："
              f"日志末尾被截断或在日志之外插入了记录。{_INVESTIGATE_ZH}",
              f"the log's head row says {head_size} records, {records} are stored (or the last hash differs): the "
              f"tail was cut off or records were added outside the log. {_INVESTIGATE_EN}")


def not_an_export(why: str) -> str:
    return tr(f"这不是一个完整的审计日志导出文件（{why}）：请向导出方重新索取文件",
              f"this is not a complete audit export ({why}): ask the exporter for the file again")


def ends_early(seq: int, size: int) -> str:
    return tr(f"文件在第 {seq} 条记录前就结束了，文件头说应有到第 {size - 1} 条的记录：记录被删掉或文件不完整。"
              "请向导出方重新索取文件",
              f"the file ends before record {seq}, the header says it holds records up to {size - 1}: records were "
              "removed or the file is incomplete. Ask the exporter for the file again")


def missing_anchor(size: int) -> str:
    return tr(f"文件里没有大小为 {size} 的签名检查点，无法证明这一端没有记录被删掉：文件被改动过或不完整",
              f"the file has no signed checkpoint at size {size}, so nothing proves that no record was dropped at "
              "this end: the file was altered or is incomplete")
