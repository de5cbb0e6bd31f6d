"""The Protocol Buffers wire format: the few pieces an OTLP encoder and its splitter need.

Writing: varints, length prefixes and fixed-width numbers as `bytes`, so callers can build a
message with list joins. Reading: a walk over the top-level fields of one message, with bounds
checked, that never decodes more than it is asked to.
Format: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5

_UINT64_MOD: Final = 1 << 64

#: `pack_fixed32(n)` for uint32 n.
pack_fixed32: Final = struct.Struct("<I").pack
#: `pack_double(x)`: IEEE 754 little-endian, NaN and infinities included.
pack_double: Final = struct.Struct("<d").pack


def _varint_slow(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: `VARINTS[n]` is the varint encoding of n for n < VARINTS_SIZE: a tuple index is cheaper
#: than a call, and almost every length inside a log record is below this.
VARINTS_SIZE: Final = 4096
VARINTS: Final[tuple[bytes, ...]] = tuple(_varint_slow(n) for n in range(VARINTS_SIZE))


def varint(value: int) -> bytes:
    """Encode a non-negative int as a base-128 varint."""
    if value < VARINTS_SIZE:
        return VARINTS[value]
    return _varint_slow(value)


def int64_varint(value: int) -> bytes:
    """Encode an int64 (proto `int64`): negative values take ten bytes, two's complement."""
    if value < 0:
        value += _UINT64_MOD
    return varint(value)


def varint_size(value: int) -> int:
    """How many bytes `varint(value)` takes."""
    return max(1, (value.bit_length() + 6) // 7)


def tag(field_number: int, wire_type: int) -> bytes:
    """The key that starts a field."""
    return varint(field_number << 3 | wire_type)


def len_field(field_number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or sub-message)."""
    return b"".join((tag(field_number, LEN), varint(len(payload)), payload))


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


class Field(NamedTuple):
    """One field of a message as found on the wire; `data[start:end]` is the whole field."""

    number: int
    wire_type: int
    start: int
    value_start: int
    end: int
    #: The decoded value of a VARINT field, else 0.
    varint: int


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at `pos`; return it and the position after it."""
    result = 0
    shift = 0
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than ten bytes")


def iter_fields(data: bytes) -> Iterator[Field]:
    """Walk the top-level fields of one message; raise WireError on malformed bytes.

    Groups (wire types 3 and 4) are rejected: OTLP does not use them.
    """
    pos = 0
    size = len(data)
    while pos < size:
        start = pos
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value = 0
        if wire_type == VARINT:
            value, end = read_varint(data, pos)
        elif wire_type == LEN:
            length, pos = read_varint(data, pos)
            end = pos + length
        elif wire_type == I64:
            end = pos + 8
        elif wire_type == I32:
            end = pos + 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        if end > size:
            raise WireError("field runs past the end of the message")
        yield Field(number, wire_type, start, pos, end, value)
        pos = end
