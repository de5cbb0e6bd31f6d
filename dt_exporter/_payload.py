"""Pure: mapped objects become request bodies within byte and record limits, optionally gzipped.

A `Body` is what waits in the buffer: the bytes exactly as they go on the wire, how many records
they carry, and the route that knows how to send, split and read them. Sizes are checked on the
uncompressed bytes, as Dynatrace measures its limits there (the 16 MB post-processing check).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import orjson

from dt_exporter._text import json_dumps

Encoding = Literal["gzip", "identity"]


@dataclass(frozen=True, slots=True)
class Body:
    """One finished request body, ready for the sender."""

    route: str  # name of the Route that sends it ("logs", "otlp", "events", "security")
    data: bytes  # on the wire: gzip-compressed when encoding == "gzip"
    records: int
    encoding: Encoding
    oldest_ns: int = 0  # timestamp of its oldest record (0: unknown); bodies expire at 24 h
    spool_name: str | None = None  # its file in the disk spool, when one is configured
    raw_size: int = 0  # bytes before compression (0: unknown; such bodies are not coalesced)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Batch:
    """What a front end hands the channel: `received` records became `bodies`; the rest were
    dropped (by reason) before any request, and `truncated` counts values cut to fit."""

    received: int
    bodies: Sequence[Body] = ()
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    truncated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def refused(cls, received: int, reason: str) -> Batch:
        """Records refused whole before encoding (`misconfigured`, `invalid_event`, ...)."""
        return cls(received, (), {reason: received} if received else {})


def compress(data: bytes, encoding: Encoding, level: int) -> bytes:
    if encoding == "identity":
        return data
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    return compressor.compress(data) + compressor.flush()


def decompress(data: bytes, encoding: Encoding) -> bytes:
    return data if encoding == "identity" else zlib.decompress(data, 31)


def json_arrays(
    objects: Sequence[Any],
    *,
    max_bytes: int,
    max_records: int,
    truncations: Counter[str],
    dropped: Counter[str],
) -> list[tuple[bytes, int]]:
    """Serialise `objects` as JSON arrays, each within `max_bytes` and `max_records`.

    The common case is one orjson call for the whole batch; only a batch over the limits is
    serialised object by object and packed. An object that alone exceeds `max_bytes` is dropped
    and counted as `record_too_large`.
    """
    if not objects:
        return []
    if len(objects) <= max_records:
        data, scrubbed = json_dumps(objects)
        if len(data) <= max_bytes and not scrubbed:
            return [(data, len(objects))]
        # Over the limit, or some object needed scrubbing: go object by object, which also
        # counts `invalid_unicode` once per affected object however the batch is packed.
    parts: list[bytes] = []
    for obj in objects:
        part, scrubbed = json_dumps(obj)
        if scrubbed:
            truncations["invalid_unicode"] += 1
        parts.append(part)
    return pack_json_arrays(parts, max_bytes=max_bytes, max_records=max_records, dropped=dropped)


def pack_json_arrays(
    parts: Sequence[bytes], *, max_bytes: int, max_records: int, dropped: Counter[str]
) -> list[tuple[bytes, int]]:
    """Pack serialised objects into JSON arrays within `max_bytes` and `max_records`; an object
    that alone exceeds `max_bytes` is dropped and counted as `record_too_large`."""
    arrays: list[tuple[bytes, int]] = []
    batch: list[bytes] = []
    size = 2  # the brackets
    for part in parts:
        if len(part) + 2 > max_bytes:
            dropped["record_too_large"] += 1
            continue
        if batch and (size + len(part) + 1 > max_bytes or len(batch) >= max_records):
            arrays.append((_join(batch), len(batch)))
            batch, size = [], 2
        batch.append(part)
        size += len(part) + (1 if len(batch) > 1 else 0)
    if batch:
        arrays.append((_join(batch), len(batch)))
    return arrays


def _join(parts: list[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def count_json_array(data: bytes) -> int:
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    return len(items) if isinstance(items, list) else 1
