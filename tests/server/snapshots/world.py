"""The scan tests' small city (tests/server/scan/world.py) with camera
alerts at its door: gateway gw-xf (building 幸福楼, grid G1) has an
unidentified entry and a tailgating, each naming the SHA-256 of a JPEG, a
card read that names one too (a kind that takes no picture), and a walk-out
without a picture; gateway gw-far (building 别人楼, grid G2) an alert of
its own."""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from PIL import Image

from server.db.models import events, gateways
from server.web.transactions import write_transaction
from tests.server.scan.world import ScanWorld, jpeg_bytes

GW, FAR_GW = "gw-xf", "gw-far"
UNIDENTIFIED_SEQ, TAILGATING_SEQ, CARD_SEQ, OUT_SEQ = 10, 11, 12, 13


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def noise_jpeg(width: int, height: int, quality: int = 95) -> bytes:
    """A JPEG that compresses badly: random pixels."""
    rng = random.Random(width * 7919 + height)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass(frozen=True)
class Door:
    """The pictures and the ids of the events that name them."""

    unidentified: bytes
    tailgating: bytes
    far: bytes
    unidentified_id: int
    tailgating_id: int
    card_id: int
    out_id: int
    far_id: int


def add_camera_events(world: ScanWorld, engine: sa.Engine, *, big: bytes | None = None) -> Door:
    """``big``: the tailgating names this picture instead of a small one."""
    unidentified, tailgating, far = jpeg_bytes((64, 48)), big or jpeg_bytes((80, 60)), jpeg_bytes((32, 24))
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        other_building = conn.execute(sa.text("SELECT id FROM buildings WHERE name = '别人楼'")).scalar_one()
        conn.execute(sa.insert(gateways).values(id=FAR_GW, first_seen=now, last_seen=now, building_id=other_building))

        def add(gw: str, seq: int, kind: str, data: dict[str, object], minutes: int) -> int:
            at = now - timedelta(minutes=minutes)
            return int(conn.execute(sa.insert(events).values(
                gateway_id=gw, seq=seq, kind=kind, device="cam-1", door="东门", occurred_at=at, received_at=at,
                stored_at=at, data=data).returning(events.c.id)).scalar_one())

        ids = (
            add(GW, UNIDENTIFIED_SEQ, "unidentified_entry", {"track": 3, "snapshot": sha(unidentified)}, 5),
            add(GW, TAILGATING_SEQ, "tailgating", {"track": 4, "snapshot": sha(tailgating), "entered": 2,
                                                   "granted": 1}, 4),
            add(GW, CARD_SEQ, "card_read", {"decision": "granted", "snapshot": sha(unidentified)}, 3),
            add(GW, OUT_SEQ, "people_crossing", {"track": 5, "direction": "out"}, 2),
            add(FAR_GW, UNIDENTIFIED_SEQ, "unidentified_entry", {"track": 1, "snapshot": sha(far)}, 1),
        )
    return Door(unidentified, tailgating, far, *ids)
