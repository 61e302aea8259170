"""What the plate pages and the coordinator's unit and patrol pages share:
their extra CSS, the headers of a page reached by a plate token, and dates
in the city's time zone."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web

from server.pages.masks import mask_phone

# The token is in the URL: no Referer may carry it to another site, and
# nothing of a scan page may be kept by a cache or a search engine.
SCAN_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
WORK_ROLES = ("admin", "coordinator")

SCAN_CSS = """<style>
.button.big,button.big{display:block;width:100%;text-align:center;font-size:1.15rem;padding:16px;margin:10px 0}
.button.secondary{background:#5f6368}
.grade-banner{border-radius:8px;padding:14px 12px;font-size:1.2rem;font-weight:700;margin:0 0 10px;color:#fff}
.grade-banner.grade-normal{color:#222}
.grade-banner.none{background:#9aa0a6}
.address{font-size:1.15rem;font-weight:600;margin:4px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.8rem;background:#e8eaed;color:#333}
.badge.warn{background:#fce8e6;color:#a50e0e} .badge.ok{background:#e6f4ea;color:#137333}
.choices{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 8px}
.choices label{display:flex;align-items:center;gap:6px;margin:0;font-weight:400;min-height:44px;padding:6px 12px;
border:1px solid #b0b6be;border-radius:6px;background:#fff}
.choices input{width:auto;margin:0}
.check-item{border-top:1px solid #e3e5e8;padding-top:6px}
.check-item .item-name{font-weight:600;margin-top:6px}
ul.plain{list-style:none;padding:0;margin:0} ul.plain li{padding:6px 0;border-bottom:1px solid #e3e5e8}
.photos{display:flex;flex-wrap:wrap;gap:6px} .photos img{width:96px;height:96px;object-fit:cover;border-radius:4px}
.overdue{color:#d93025;font-weight:600}
textarea{min-height:6em}
</style>"""


R = TypeVar("R", bound=web.StreamResponse)


def scan_headers(response: R) -> R:
    response.headers.update(SCAN_HEADERS)
    return response


def day(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d") if value is not None else ""


def minute(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value is not None else ""


def mask_person_name(name: str | None) -> str:
    """The surname and a star: "张三" → "张*"."""
    name = (name or "").strip()
    return f"{name[0]}*" if name else ""


# The public page's landlord contact masks like every other phone number.
mask_contact_phone = mask_phone
