"""Page texts. Simplified Chinese is the default; ``?lang=en`` (or an English
Accept-Language without Chinese) switches to English."""

from __future__ import annotations

from collections.abc import Mapping

LANGS = ("zh", "en")

TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "rentgate 门禁事件",
        "gateways": "网关",
        "recent": "最近进出记录",
        "gateway": "网关",
        "state": "状态",
        "online": "在线",
        "offline": "离线",
        "unknown": "未知",
        "last_seen": "最后上报",
        "outbox": "待发事件",
        "oldest": "最早待发(秒)",
        "gaps": "缺号",
        "time": "时间",
        "door": "门",
        "kind": "类型",
        "detail": "事件",
        "none": "暂无记录",
        "refresh": "每 5 秒自动刷新",
        "switch": "English",
        "card_read": "刷卡",
        "door_state": "门磁",
        "device_status": "设备状态",
        "gateway_started": "网关启动",
        "events_dropped": "事件丢弃",
        "granted": "放行",
        "denied": "拒绝",
        "reason.unknown": "未登记的卡",
        "reason.revoked": "已注销",
        "reason.expired": "登记已过期",
        "reason.not_yet_valid": "登记未生效",
        "reason.wrong_door": "无此门权限",
        "reason.anti_passback": "防反传",
        "door.open": "开门",
        "door.closed": "关门",
        "door.forced": "强行开门（报警）",
        "door.held_open": "门长时间未关（报警）",
    },
    "en": {
        "title": "rentgate access events",
        "gateways": "Gateways",
        "recent": "Recent entries",
        "gateway": "Gateway",
        "state": "State",
        "online": "online",
        "offline": "offline",
        "unknown": "unknown",
        "last_seen": "Last seen",
        "outbox": "Unsent",
        "oldest": "Oldest unsent (s)",
        "gaps": "Gaps",
        "time": "Time",
        "door": "Door",
        "kind": "Kind",
        "detail": "Event",
        "none": "Nothing yet",
        "refresh": "Refreshes every 5 s",
        "switch": "中文",
        "card_read": "card read",
        "door_state": "door contact",
        "device_status": "device status",
        "gateway_started": "gateway started",
        "events_dropped": "events dropped",
        "granted": "granted",
        "denied": "denied",
        "reason.unknown": "unknown card",
        "reason.revoked": "revoked",
        "reason.expired": "registration expired",
        "reason.not_yet_valid": "registration not yet valid",
        "reason.wrong_door": "not for this door",
        "reason.anti_passback": "anti-passback",
        "door.open": "opened",
        "door.closed": "closed",
        "door.forced": "forced open (alarm)",
        "door.held_open": "held open (alarm)",
    },
}


def pick_language(query: Mapping[str, str], accept_language: str | None) -> str:
    lang = query.get("lang")
    if lang in LANGS:
        return lang
    header = (accept_language or "").lower()
    if header.startswith("en") and "zh" not in header:
        return "en"
    return "zh"
