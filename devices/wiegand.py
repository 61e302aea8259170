"""Wiegand 26 (HID H10301) and 34 (H10306) frames: parity checks, decoding
to a :class:`wire.Credential`, and an encoder for tests and simulators.

Bits are MSB first: an even-parity bit over the first half, facility and card
numbers, an odd-parity bit over the second half. OSDP carries them packed into
bytes, left-aligned and padded to whole bytes (:func:`from_packed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from devices.errors import DeviceError
from rentgate import wire

Mode = Literal["standard", "raw"]

# (facility bits, card bits) for the formats we decode; the frame adds 2 parity bits.
_LAYOUTS: dict[int, tuple[int, int]] = {26: (8, 16), 34: (16, 16)}
MAX_BITS = 512  # 64 bytes, the most an OSDP card read carries; fits Credential.value in hex


class WiegandError(DeviceError, ValueError):
    """A frame cannot be decoded (or built); ``reason`` says why."""

    def __init__(self, reason: str, *, bits: int | None = None) -> None:
        super().__init__(reason if bits is None else f"{bits}-bit frame: {reason}")
        self.reason = reason
        self.bits = bits


@dataclass(frozen=True, slots=True)
class WiegandCard:
    bits: int
    facility: int
    card: int


def _parity(value: int) -> int:
    return value.bit_count() & 1


def _check_length(value: int, bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise WiegandError(f"bit length {bits} out of range 1..{MAX_BITS}")
    if value < 0 or value >> bits:
        raise WiegandError("value has more bits than the frame", bits=bits)


def decode(value: int, bits: int) -> WiegandCard:
    """Decode a 26- or 34-bit frame given as an integer (first bit = MSB)."""
    _check_length(value, bits)
    layout = _LAYOUTS.get(bits)
    if layout is None:
        raise WiegandError("not a 26- or 34-bit format", bits=bits)
    half = bits // 2
    first = value >> half  # leading parity bit and the first data half
    second = value & ((1 << half) - 1)  # the second data half and trailing parity bit
    if _parity(first) != 0:
        raise WiegandError("even parity (first bit) does not match", bits=bits)
    if _parity(second) != 1:
        raise WiegandError("odd parity (last bit) does not match", bits=bits)
    facility_bits, card_bits = layout
    payload = (value >> 1) & ((1 << (bits - 2)) - 1)
    return WiegandCard(bits, payload >> card_bits, payload & ((1 << card_bits) - 1))


def encode(facility: int, card: int, bits: int = 26) -> int:
    """Build a frame with correct parity bits (for simulators and tests)."""
    layout = _LAYOUTS.get(bits)
    if layout is None:
        raise WiegandError("only 26- and 34-bit frames can be encoded", bits=bits)
    facility_bits, card_bits = layout
    if not 0 <= facility < 1 << facility_bits:
        raise WiegandError(f"facility {facility} does not fit {facility_bits} bits", bits=bits)
    if not 0 <= card < 1 << card_bits:
        raise WiegandError(f"card {card} does not fit {card_bits} bits", bits=bits)
    payload = (facility << card_bits) | card
    data_half = (bits - 2) // 2
    even = _parity(payload >> data_half)
    odd = 1 - _parity(payload & ((1 << data_half) - 1))
    return (even << (bits - 1)) | (payload << 1) | odd


def pack(value: int, bits: int) -> bytes:
    """Pack a frame as OSDP does: MSB first, left-aligned, zero-padded to bytes."""
    _check_length(value, bits)
    nbytes = (bits + 7) // 8
    return (value << (nbytes * 8 - bits)).to_bytes(nbytes, "big")


def unpack(data: bytes, bits: int) -> int:
    """The inverse of :func:`pack`; padding bits are ignored."""
    if not 1 <= bits <= MAX_BITS:
        raise WiegandError(f"bit length {bits} out of range 1..{MAX_BITS}")
    nbytes = (bits + 7) // 8
    if len(data) < nbytes:
        raise WiegandError(f"{len(data)} bytes cannot hold the bits", bits=bits)
    return int.from_bytes(data[:nbytes], "big") >> (nbytes * 8 - bits)


def to_credential(value: int, bits: int, *, mode: Mode = "standard") -> wire.Credential:
    """A credential for the wire: ``wiegand26``/``wiegand34`` as ``facility:card``
    when the frame is one of those (and ``mode`` is not ``raw``), otherwise
    ``osdp_raw`` with the bits in hex. Raises on bad parity of a standard frame."""
    _check_length(value, bits)
    if mode == "standard" and bits in _LAYOUTS:
        card = decode(value, bits)
        fmt: Literal["wiegand26", "wiegand34"] = "wiegand26" if bits == 26 else "wiegand34"
        return wire.Credential(format=fmt, value=f"{card.facility}:{card.card}", bits=bits)
    return wire.Credential(format="osdp_raw", value=f"{value:0{(bits + 3) // 4}x}", bits=bits)


def credential_from_packed(data: bytes, bits: int, *, mode: Mode = "standard") -> wire.Credential:
    """:func:`to_credential` for OSDP's packed card data."""
    return to_credential(unpack(data, bits), bits, mode=mode)
