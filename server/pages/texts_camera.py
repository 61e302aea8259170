"""Page texts of the door cameras (what a camera event was, its snapshot),
merged into server/pages/i18n.TEXTS. Every key needs both languages."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "camera.title": "门口摄像头",
        "camera.none": "最近没有摄像头告警",
        "camera.tailgating": "尾随进入",
        "camera.unidentified_entry": "身份不明进入",
        "camera.in": "进门",
        "camera.out": "出门",
        "camera.tailgating_detail": "{entered} 人进门，只刷了 {granted} 次卡",
        "camera.show": "查看抓拍",
        "camera.photo": "门口抓拍",
        "camera.no_photo": "无抓拍",
        "camera.audited": "抓拍含人脸：每次查看都记入审计日志。",
    },
    "en": {
        "camera.title": "Door camera",
        "camera.none": "No camera alerts lately",
        "camera.tailgating": "tailgating",
        "camera.unidentified_entry": "unidentified entry",
        "camera.in": "walked in",
        "camera.out": "walked out",
        "camera.tailgating_detail": "{entered} people walked in on {granted} card reads",
        "camera.show": "Show the snapshot",
        "camera.photo": "Snapshot at the door",
        "camera.no_photo": "no snapshot",
        "camera.audited": "Snapshots show faces: every view is recorded in the audit log.",
    },
}
