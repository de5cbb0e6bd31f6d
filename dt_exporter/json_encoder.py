"""Pure: records straight to Dynatrace JSON bytes, one object per record.

`RecordMapper.map` defines what a record becomes. Most records share one shape: attribute values
that are plain str/int/float/bool within the limits, a string body, no event name, and no key that
clashes with the resource's. For those, this encoder writes the same object's JSON without building
a dict per record: the resource-and-scope part is serialised once per resource, and the record's
attributes are serialised by orjson straight from the SDK's own dict. Every other record goes
through `RecordMapper.map`. The property tests hold both paths to equal objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter.mapping import (
    INT_MAX,
    INT_MIN,
    LEVEL_BY_SEVERITY,
    RESERVED_ATTRIBUTES,
    SPECIAL_KEYS,
    RecordMapper,
    loglevel_for,
)
from dt_exporter.text import json_dumps

#: Keys the mapper itself writes: a record attribute with one of these names takes the slow path.
_MAPPER_KEYS: Final = SPECIAL_KEYS | {"event.name", "dt.trace_sampled"}
_CACHE_SIZE: Final = 256


@dataclass(frozen=True, slots=True)
class _Prefix:
    """The serialised resource and scope attributes, ready to open each record's object."""

    resource: object
    scope: object
    opening: bytes  # b'{"service.name":"x",...,' or b'{'
    keys: frozenset[str]  # theirs plus the mapper's own: a clash sends a record the slow way
    count: int
    clean: bool  # no cut was needed (cut counts are per record: the slow path does that)


class RecordEncoder:
    """Encodes records to JSON object bytes; `fast_records` counts those that took the fast path.

    Not thread-safe: used under the exporter's export lock, like its mapper.
    """

    def __init__(self, mapper: RecordMapper) -> None:
        self.mapper = mapper
        self.fast_records = 0
        self._prefixes: dict[tuple[int, int], _Prefix] = {}
        self._last: _Prefix | None = None
        limits = mapper.limits
        self._budget = limits.max_attributes - RESERVED_ATTRIBUTES
        self._value_chars = limits.max_value_bytes // 4
        self._content_chars = limits.max_content_bytes // 4

    def encode(self, records: Sequence[ReadableLogRecord]) -> list[bytes]:
        parts: list[bytes] = []
        append = parts.append
        for record in records:
            part = self._fast(record)
            if part is None:
                data, scrubbed = json_dumps(self.mapper.map(record))
                if scrubbed:
                    self.mapper.truncations["invalid_unicode"] += 1
                part = data
            else:
                self.fast_records += 1
            append(part)
        return parts

    def _fast(self, record: ReadableLogRecord) -> bytes | None:
        """The record's JSON, or None when it needs the mapper's full treatment."""
        lr = record.log_record
        prefix = self._prefix(record.resource, record.instrumentation_scope)
        body = lr.body
        if not prefix.clean or lr.event_name or (
            body is not None and (type(body) is not str or len(body) > self._content_chars)
        ):
            return None
        attributes = lr.attributes
        plain = getattr(attributes, "_dict", None) if attributes else {}
        if plain is None or not self._plain(plain, prefix):
            return None
        try:
            middle = orjson.dumps(plain)[1:-1] + b"," if plain else b""
            content = orjson.dumps(body or "")
        except orjson.JSONEncodeError:  # lone surrogates: the mapper scrubs and counts them
            return None
        tail = b""
        if lr.trace_id:
            tail = b'"trace_id":"%s",' % lr.trace_id.to_bytes(16, "big").hex().encode()
            if lr.span_id:
                tail += b'"span_id":"%s",' % lr.span_id.to_bytes(8, "big").hex().encode()
            sampled = bool(lr.trace_flags and lr.trace_flags & 0x01)
            tail += b'"dt.trace_sampled":true,' if sampled else b'"dt.trace_sampled":false,'
        ts = lr.timestamp or lr.observed_timestamp
        timestamp = b',"timestamp":%d' % (ts // 1_000_000) if ts else b""
        severity = lr.severity_number
        level = LEVEL_BY_SEVERITY.get(severity) if severity else None
        if level is None:
            level = loglevel_for(None, lr.severity_text)
        loglevel = b',"loglevel":"%s"' % level.encode() if level else b""
        return b'%b%b%b"content":%b%b%b}' % (
            prefix.opening, middle, tail, content, timestamp, loglevel
        )

    def _plain(self, attributes: dict[str, object], prefix: _Prefix) -> bool:
        """Every key already known safe and unclashing; every value a plain value in limits."""
        if len(attributes) + prefix.count > self._budget or not prefix.keys.isdisjoint(attributes):
            return False
        known = self.mapper.known_keys
        value_chars = self._value_chars
        for key, value in attributes.items():
            if known.get(key) != key:
                return False
            kind = type(value)
            if kind is str:
                if len(value) > value_chars:  # type: ignore[arg-type]
                    return False
            elif kind is int:
                if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
                    return False
            elif kind is float:
                if value - value != 0:  # type: ignore[operator]  # NaN or infinite
                    return False
            elif kind is not bool:
                return False
        return True

    def _prefix(self, resource: Resource, scope: InstrumentationScope | None) -> _Prefix:
        last = self._last
        if last is not None and last.resource is resource and last.scope is scope:
            return last
        key = (id(resource), id(scope))
        prefix = self._prefixes.get(key)
        if prefix is None or prefix.resource is not resource or prefix.scope is not scope:
            attributes, cuts = self.mapper.base(resource, scope)
            data, scrubbed = json_dumps(attributes)
            opening = data[:-1] + b"," if attributes else b"{"
            prefix = _Prefix(resource, scope, opening, frozenset(attributes) | _MAPPER_KEYS,
                             len(attributes), not cuts and not scrubbed)
            if len(self._prefixes) >= _CACHE_SIZE:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        self._last = prefix
        return prefix
