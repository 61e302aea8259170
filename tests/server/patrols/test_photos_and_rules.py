"""Pure pieces: photo checking and re-encoding, masking on the public page,
the patrol schedule, the patrol input checks, the body-size guard."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from server.media.errors import MediaTooLarge, UnsupportedMedia
from server.media.limits import OTHER_BODY_MAX, UPLOAD_PATHS
from server.media.photos import MAX_SIDE, process, sniff
from server.pages.scan_common import mask_contact_phone, mask_person_name
from server.patrols.errors import PatrolInvalid
from server.patrols.service import PatrolInput, check_input
from server.reports.errors import ReportInvalid
from server.reports.service import check_fields
from tests.server.scan.world import gif_bytes, jpeg_bytes, png_bytes


def test_types_are_sniffed_from_the_bytes() -> None:
    assert sniff(jpeg_bytes()[:8]) == "JPEG" and sniff(png_bytes()[:8]) == "PNG"
    assert sniff(gif_bytes()[:8]) is None and sniff(b"MZ\x90\x00") is None and sniff(b"") is None


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(out, "PNG")  # 64 megapixels in a few kilobytes
    assert len(out.getvalue()) < 100_000
    with pytest.raises(MediaTooLarge, match="megapixels"):
        process(out.getvalue())


def test_transparency_goes_onto_white_and_large_photos_shrink() -> None:
    photo = process(png_bytes((40, 30)))
    image = Image.open(io.BytesIO(photo.data))
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (40, 30)
    red, _, _ = image.convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    assert red > 100  # half-transparent green on white, not on black
    big = process(jpeg_bytes((4000, 3000)))
    assert max(big.width, big.height) == MAX_SIDE and big.content_type == "image/jpeg"
    assert big.sha256 == hashlib.sha256(big.data).hexdigest()


def test_garbage_with_a_photo_signature_is_refused() -> None:
    with pytest.raises(UnsupportedMedia):
        process(b"\xff\xd8\xff" + b"\x00" * 100)
    with pytest.raises(UnsupportedMedia):
        process(png_bytes()[:30])


def test_public_masking() -> None:
    assert mask_person_name("张三丰") == "张*" and mask_person_name(None) == ""
    assert mask_contact_phone("13812341234") == "138****1234"
    assert mask_contact_phone("020-8765 4321") == "020****4321"
    assert mask_contact_phone("12") == "**" and mask_contact_phone(None) == ""


@pytest.mark.parametrize("data, field", [
    (PatrolInput(-1, [], {}, None), "occupants_observed"),
    (PatrolInput(None, [], {"kitchen": "ok"}, None), "checklist"),
    (PatrolInput(None, [], {"pledge": "maybe"}, None), "pledge"),
    (PatrolInput(None, [], {}, "x" * 2001), "notes"),
])
def test_patrol_input_checks(data: PatrolInput, field: str) -> None:
    with pytest.raises(PatrolInvalid) as caught:
        check_input(data)
    assert caught.value.field == field


def test_report_fields() -> None:
    fields = check_fields("suspicious", "  有陌生人撬门  ", "+86 138 0013 8000")
    assert (fields.description, fields.contact_phone) == ("有陌生人撬门", "13800138000")
    assert check_fields("other", "x", "020-87654321").contact_phone == "020-87654321"
    for args, field in ((("", "x", ""), "category"), (("hazard", " ", ""), "description"),
                        (("hazard", "x", "110"), "phone")):
        with pytest.raises(ReportInvalid) as caught:
            check_fields(*args)
        assert caught.value.field == field


def test_only_the_photo_forms_take_big_bodies() -> None:
    assert UPLOAD_PATHS.fullmatch("/p/k1.abc/report") and UPLOAD_PATHS.fullmatch("/c/units/12/patrol")
    assert not UPLOAD_PATHS.fullmatch("/api/v1/declarations") and not UPLOAD_PATHS.fullmatch("/p/k1.abc/declare")
    assert OTHER_BODY_MAX == 1024 * 1024


def test_a_read_on_a_dead_connection_is_tried_once_more() -> None:
    import sqlalchemy as sa

    from server.db.read_pool import with_retry

    calls: list[int] = []

    def read() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                                          connection_invalidated=True)
        return "rows"

    assert with_retry(read) == "rows" and len(calls) == 2

    def broken() -> str:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("syntax"))

    with pytest.raises(sa.exc.OperationalError):
        with_retry(broken)
